"""Free loopback ports for servers that dev tooling, tests and benchmarks start."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on `host` that was free a moment ago (bound to port 0, then released).

    Also a port nothing listens on, for tests that need a connection to be refused.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port
