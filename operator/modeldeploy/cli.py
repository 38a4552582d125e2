"""The `modeldeploy` command: `modeldeploy operator` runs the operator, `modeldeploy serve` the
instrumented model server that runs in serving pods, `approve`, `revoke`, `promote`, `policy` and
`lineage` the governance commands (docs/governance.md). Each subcommand parses its own flags, so
the serving image never imports the operator's dependencies (kopf) and vice versa."""

from __future__ import annotations

import sys

GOVERNANCE_COMMANDS = frozenset({"approve", "revoke", "promote", "policy", "lineage"})

USAGE = """usage: modeldeploy COMMAND [options]

  operator   run the Kubernetes operator (watches ModelDeployments)
  serve      serve an MLflow model with Prometheus metrics (runs in serving pods)
  approve    approve a model version for a stage (recorded as MLflow tags)
  revoke     withdraw a version's approval for a stage
  promote    point a stage's alias at a version (refused without a required approval)
  policy     show or set a model's stages and which of them need an approval
  lineage    datasets → preprocessing → training run → model version → ModelDeployments
  version    print the version

`modeldeploy COMMAND --help` shows the options of a command."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "operator":
        from modeldeploy.controller.main import main as operator_main

        return operator_main(rest)
    if command == "serve":
        from modeldeploy.serving.cli import main as serve_main

        return serve_main(rest)
    if command in GOVERNANCE_COMMANDS:
        from modeldeploy.governance.cli import main as governance_main

        return governance_main(args)
    if command == "version":
        from modeldeploy import __version__

        print(__version__)
        return 0
    print(f"modeldeploy: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
