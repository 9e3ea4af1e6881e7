"""The `wasmlet` command: a local cluster, standalone runs, and a view of apps and nodes.

wasmlet dev up                 local control plane + operator + node agents
wasmlet run app.yaml           run WasmApp manifests on this machine, no cluster
wasmlet status                 apps, nodes and instances of the cluster in KUBECONFIG
wasmlet logs APP               instance logs, read from the agents
"""

from __future__ import annotations

import os
import sys


def _usage() -> int:
    print(__doc__, file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        return _usage() if not args else (print(__doc__) or 0)
    command, rest = args[0], args[1:]
    if command == "dev":
        from wasmlet.devstack import main as dev_main

        return dev_main(rest)
    if command == "run":
        from wasmlet_agent.main import main as agent_main

        code: int = agent_main(["run", *rest])
        return code
    if command in ("status", "logs"):
        from wasmlet.inspect import main as inspect_main

        try:
            return inspect_main([command, *rest])
        except BrokenPipeError:  # `wasmlet logs app | head`: the reader is done
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    print(f"wasmlet: unknown command {command!r}", file=sys.stderr)
    return _usage()


if __name__ == "__main__":
    sys.exit(main())
