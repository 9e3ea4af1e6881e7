"""`wasmlet dev node` (make up-node): the control plane and a real node in the foreground, the
wasmlet image imported into its containerd; Ctrl-C stops everything."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from wasmlet_dev.cluster.cli import _signals_interrupt, default_workdir
from wasmlet_dev.realnode.node import RealNode


def run_node(workdir: Path | None, *, with_image: bool = True) -> int:
    """Starts a RealNode in `workdir` (default: .cache/dev/node) and runs until interrupted."""
    images = []
    if with_image:
        from wasmlet_dev.images import image_tarball

        images.append(image_tarball())
    node = RealNode(workdir or default_workdir() / "node", images=images)
    try:
        with _signals_interrupt():
            print(f"wasmlet dev: starting a control plane and a real node in {node.workdir}")
            with node:
                print(
                    f"wasmlet dev: node {node.node} Ready at {node.node_ip} in "
                    f"{node.startup_seconds:.1f}s (logs: {node.log_dir}, {node.cluster.log_dir})\n"
                    f"  export KUBECONFIG={node.cluster.kubeconfig}\n"
                    f"  kubectl apply -k deploy/   # the image wasmlet:dev is on the node\n"
                    f"  kubectl built from source: {node.cluster.binaries.kubectl}",
                    flush=True,
                )
                while True:
                    node.check_alive()
                    time.sleep(0.5)
    except KeyboardInterrupt:
        print("wasmlet dev: stopped")
        return 0
    except RuntimeError as e:
        print(f"wasmlet dev: {e}", file=sys.stderr)
        return 1
