"""The `modeldeploy` command: `modeldeploy operator` runs the operator, `modeldeploy serve` the
instrumented model server that runs in serving pods. Each subcommand parses its own flags, so the
serving image never imports the operator's dependencies (kopf) and vice versa."""

from __future__ import annotations

import sys

USAGE = """usage: modeldeploy {operator,serve,version} [options]

  operator   run the Kubernetes operator (watches ModelDeployments)
  serve      serve an MLflow model with Prometheus metrics (runs in serving pods)
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
    if command == "version":
        from modeldeploy import __version__

        print(__version__)
        return 0
    print(f"modeldeploy: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
