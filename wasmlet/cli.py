"""The `wasmlet` command: a local cluster, standalone runs, and a view of apps and nodes.

wasmlet dev up                 local control plane + operator + node agents
wasmlet run app.yaml           run WasmApp manifests on this machine, no cluster
wasmlet status [-n NS|-A] [-o wide|json|yaml]   apps, nodes and instances (kubectl's flags:
                                                --kubeconfig, --context, -n, -A)
wasmlet logs APP [--tail N] [--instance NAME]   instance logs, read from the agents
wasmlet --version
Also a kubectl plugin: kubectl wasmlet status, kubectl wasmlet logs APP.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from importlib.metadata import entry_points

# Each command belongs to the component that implements it; this package imports none of them
# and finds their entry points when a command runs: (script, what to install when missing).
AGENT = ("wasmlet-agent", "the node agent: pip install wasmlet")
DEV = (
    "wasmlet-dev",
    "the development tooling: pip install -e '.[dev]' from a checkout",
)


def _usage() -> int:
    print(__doc__, file=sys.stderr)
    return 2


def _entry_point(script: str) -> Callable[[list[str]], int]:
    """The `main` of an installed component's console script, loaded now. Raises
    ModuleNotFoundError when the component (or a dependency of its extra) is not installed."""
    for ep in entry_points(group="console_scripts", name=script):
        main: Callable[[list[str]], int] = ep.load()
        return main
    raise ModuleNotFoundError(f"no console script {script!r} is installed", name=script)


def _dispatch(command: str, component: tuple[str, str], argv: list[str]) -> int:
    script, install = component
    try:
        main = _entry_point(script)
    except ModuleNotFoundError as e:
        print(f"wasmlet {command} needs {install} (missing: {e.name})", file=sys.stderr)
        return 2
    return main(argv)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        return _usage() if not args else (print(__doc__) or 0)
    if args[0] == "--version":
        from wasmlet.version import wasmlet_version

        print(f"wasmlet {wasmlet_version()}")
        return 0
    command, rest = args[0], args[1:]
    if command == "dev":
        return _dispatch(command, DEV, rest)
    if command == "run":
        return _dispatch(command, AGENT, ["run", *rest])
    if command in ("status", "logs"):
        from wasmlet.inspect import main as inspect_main

        try:
            return inspect_main([command, *rest])
        except BrokenPipeError:  # `wasmlet logs app | head`: the reader is done
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    print(f"wasmlet: unknown command {command!r}", file=sys.stderr)
    return _usage()


def kubectl_plugin(argv: list[str] | None = None) -> int:
    """`kubectl wasmlet ...` (kubectl runs `kubectl-wasmlet` from PATH): status and logs."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("status", "logs", "--version"):
        return main(args)
    print("usage: kubectl wasmlet status|logs ... (see wasmlet --help)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
