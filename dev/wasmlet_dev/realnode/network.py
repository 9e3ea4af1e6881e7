"""The node's network: a netns joined to the host by a veth pair, so the node has an address of
its own (not loopback) and its iptables rules, bridge and pods stay out of the host's."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVICE_PORT = 443  # the `kubernetes` Service's port
POD_SUBNET = "10.88.0.0/24"  # inside the node's netns only


class NetworkError(RuntimeError):
    """A link, address or rule could not be set up; the message holds the command's output."""


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise NetworkError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")
    return done


def _used_subnets() -> str:
    return run("ip", "-4", "route", "show", "table", "all").stdout


@dataclass(frozen=True)
class NodeNetwork:
    """netns `netns` holding veth end `node_link` (node_ip); `host_link` (host_ip) on the host."""

    netns: str
    host_link: str
    node_link: str
    host_ip: str
    node_ip: str

    @classmethod
    def pick(cls) -> NodeNetwork:
        """Fresh names and a /30 under 10.123.0.0/16 that no route on the host uses yet."""
        used = _used_subnets()
        for _ in range(64):
            third, fourth = secrets.randbelow(256), secrets.randbelow(64) * 4
            if f"10.123.{third}.{fourth}/30" not in used:
                tag, net = secrets.token_hex(3), f"10.123.{third}"
                return cls(f"wasmlet-{tag}", f"wlh{tag}", f"wln{tag}",
                           f"{net}.{fourth + 1}", f"{net}.{fourth + 2}")  # fmt: skip
        raise NetworkError("no free /30 under 10.123.0.0/16 for the node's veth pair")

    @property
    def netns_path(self) -> Path:
        return Path("/var/run/netns") / self.netns

    def enter(self, argv: list[str]) -> list[str]:
        """`argv` run in the node's network namespace (and nothing else: same mounts)."""
        return ["nsenter", f"--net={self.netns_path}", "--", *argv]

    def in_netns(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return run(*self.enter(list(argv)))

    def create(self) -> None:
        """Creates the netns and veth pair, with a default route to the host."""
        run("ip", "netns", "add", self.netns)
        try:
            run("ip", "link", "add", self.host_link, "type", "veth", "peer", "name",
                self.node_link, "netns", self.netns)  # fmt: skip
            run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_link)
            run("ip", "link", "set", self.host_link, "up")
            ns = ("ip", "-n", self.netns)
            run(*ns, "addr", "add", f"{self.node_ip}/30", "dev", self.node_link)
            run(*ns, "link", "set", self.node_link, "up")
            run(*ns, "link", "set", "lo", "up")
            run(*ns, "route", "add", "default", "via", self.host_ip)
            self.in_netns("sysctl", "-qw", "net.ipv4.ip_forward=1")
        except BaseException:
            self.delete()
            raise

    def route_service(self, service_ip: str, apiserver_port: int) -> None:
        """What kube-proxy would do for the `kubernetes` Service, in the node's netns only:
        DNAT service_ip:443 to the apiserver on the host end, for pods and host-network pods."""
        target = f"{self.host_ip}:{apiserver_port}"
        for chain in ("OUTPUT", "PREROUTING"):
            self.in_netns("iptables", "-w", "-t", "nat", "-A", chain, "-d", f"{service_ip}/32",
                          "-p", "tcp", "--dport", str(SERVICE_PORT), "-j", "DNAT",
                          "--to-destination", target)  # fmt: skip

    def delete(self) -> None:
        """Removes the veth pair and the netns (its rules and bridge go with it)."""
        run("ip", "link", "del", self.host_link, check=False)
        run("ip", "netns", "del", self.netns, check=False)
