"""Argo CD's way of running a health check, with a real Lua interpreter (Debian's lua5.4).

Argo CD (util/lua in argoproj/argo-cd) hands the object to the script as the global `obj`, a Lua
table made from its JSON (maps are tables, lists are 1-based arrays, null is absent), opens only
the base, table and a safe os library (the string library is not there unless
`resource.customizations.useOpenLibs` says so), and reads back a table {status, message}: an
empty or nil result is a status of "", a status outside Argo's set is Unknown. This does the
same with lua5.4, so a health.lua that leans on anything Argo CD does not give fails here too.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO, unavailable

HEALTH_DIR = REPO / "gitops" / "argocd" / "modeldeploy.io" / "ModelDeployment"
VALID = {"Unknown", "Progressing", "Suspended", "Healthy", "Degraded", "Missing"}
INVALID_STATUS = "Lua returned an invalid health status"  # Argo CD's message for it

# Runs health.lua in an environment holding only what Argo CD opens: base and table (its
# "safe" os library has only time functions, which a health check has no use for), with the
# string methods taken off strings.
DRIVER = r"""
local path = arg[1]
local f = assert(io.open(path, "r"))
local source = f:read("a")
f:close()
local env = {table = table}
for _, name in ipairs({"assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall",
    "print", "rawequal", "rawget", "rawlen", "rawset", "select", "setmetatable", "tonumber",
    "tostring", "type", "xpcall"}) do
  env[name] = _G[name]
end
env._G = env
env.obj = OBJ
local fmt, gsub, write = string.format, string.gsub, io.write
getmetatable("").__index = {}
local chunk = assert(load(source, "=health.lua", "t", env))
local hs = chunk()
local function field(v)
  if v == nil then return "" end
  return (gsub(tostring(v), "\n", "\\n"))
end
if type(hs) == "table" then
  write(field(hs.status), "\n", field(hs.message), "\n")
elseif hs == nil then
  write("\n\n")
else
  error(fmt("expect table output from Lua script, not %s", type(hs)))
end
"""


def lua_binary() -> str:
    found = shutil.which("lua5.4")
    if found is None:
        unavailable(
            "lua5.4 is not installed: `dev/build-tools.sh --system-deps lua5.4` "
            "(SYSTEM_PACKAGES in dev/versions.env, installed by `make test`)"
        )
    return str(found)


def lua_literal(value: Any) -> str:
    """A Lua expression for a JSON value, as Argo CD's decodeValue builds it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not JSON: {value}")
        return repr(value)
    if isinstance(value, str):
        escaped = "".join(
            c if c.isprintable() and c not in '"\\' else f"\\u{{{ord(c):x}}}" for c in value
        )
        return f'"{escaped}"'
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value if v is not None) + "}"
    if isinstance(value, dict):
        items = [
            f"[{lua_literal(str(k))}] = {lua_literal(v)}" for k, v in value.items() if v is not None
        ]
        return "{" + ", ".join(items) + "}"
    if value is None:
        return "nil"
    raise TypeError(f"not JSON: {type(value).__name__}")


def health(obj: dict[str, Any], script: Path = HEALTH_DIR / "health.lua") -> tuple[str, str]:
    """(status, message) of `script` on `obj`, the way Argo CD's ExecuteHealthLua reports it."""
    program = DRIVER.replace("OBJ", lua_literal(obj), 1)
    done = subprocess.run(
        [lua_binary(), "-", str(script)],
        input=program,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"{script.name} failed: {done.stderr.strip()}")
    status, message = done.stdout.split("\n")[:2]
    message = message.replace("\\n", "\n")
    if status and status not in VALID:
        return "Unknown", INVALID_STATUS
    return status, message


def load(path: Path) -> dict[str, Any]:
    obj = yaml.safe_load(path.read_text())
    assert isinstance(obj, dict), path
    return obj


def health_tests() -> list[dict[str, Any]]:
    """health_test.yaml's tests: [{inputPath, healthStatus: {status, message}}]."""
    doc = yaml.safe_load((HEALTH_DIR / "health_test.yaml").read_text())
    tests = doc["tests"]
    assert isinstance(tests, list) and tests
    return tests
