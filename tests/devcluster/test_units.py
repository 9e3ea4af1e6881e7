"""Pure helpers of the local control plane: flags, certificates, kubeconfigs, names."""

from __future__ import annotations

import base64
import ipaddress
import socket
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.fixtures.cluster import namespace_name
from wasmlet_dev.cluster.binaries import BinariesError, KubeBinaries
from wasmlet_dev.cluster.cli import build_parser
from wasmlet_dev.cluster.cluster import (
    CONTROLLERS,
    Ports,
    _port_in_use,
    apiserver_args,
    controller_manager_args,
    etcd_args,
    free_port,
)
from wasmlet_dev.cluster.identities import issue_token, kubeconfig_dict
from wasmlet_dev.cluster.kubectl import manifest_files
from wasmlet_dev.cluster.pki import write_cluster_pki

PORTS = Ports(etcd_client=1001, etcd_peer=1002, apiserver=1003, controller_manager=1004)


def flags(argv: list[str]) -> dict[str, str]:
    out = {}
    for arg in argv[1:]:
        key, _, value = arg.partition("=")
        out[key] = value
    return out


def test_etcd_listens_only_on_loopback_ports_we_chose(tmp_path: Path) -> None:
    f = flags(etcd_args(Path("/bin/etcd"), tmp_path / "data", PORTS))
    assert f["--listen-client-urls"] == "http://127.0.0.1:1001"
    assert f["--listen-peer-urls"] == "http://127.0.0.1:1002"
    assert f["--initial-cluster"] == "default=http://127.0.0.1:1002"
    assert f["--data-dir"] == str(tmp_path / "data")
    assert "--unsafe-no-fsync" in f


def test_apiserver_flags_enable_rbac_tokens_and_token_requests(tmp_path: Path) -> None:
    pki = write_cluster_pki(tmp_path / "pki", "10.96.0.1")
    f = flags(apiserver_args(Path("/bin/kas"), pki, tmp_path / "tokens.csv", PORTS))
    assert f["--authorization-mode"] == "RBAC"
    assert f["--bind-address"] == "127.0.0.1"
    assert f["--secure-port"] == "1003"
    assert f["--etcd-servers"] == "http://127.0.0.1:1001"
    assert f["--token-auth-file"] == str(tmp_path / "tokens.csv")
    assert f["--client-ca-file"] == str(pki.ca.cert)
    assert f["--service-account-issuer"] == "https://127.0.0.1:1003"
    assert f["--service-account-signing-key-file"] == str(pki.sa_private_key)
    assert f["--service-account-key-file"] == str(pki.sa_public_key)


def test_controller_manager_runs_only_the_controllers_we_need(tmp_path: Path) -> None:
    pki = write_cluster_pki(tmp_path / "pki", "10.96.0.1")
    argv = controller_manager_args(Path("/bin/kcm"), tmp_path, pki, tmp_path / "kc", PORTS)
    f = flags(argv)
    assert f["--controllers"].split(",") == list(CONTROLLERS)
    assert {"namespace-controller", "garbage-collector-controller"} <= set(CONTROLLERS)
    assert f["--secure-port"] == "1004"
    assert f["--bind-address"] == "127.0.0.1"
    assert f["--leader-elect"] == "false"


def test_pki_certs_chain_to_the_ca_with_the_right_names(tmp_path: Path) -> None:
    pki = write_cluster_pki(tmp_path, "10.96.0.1")
    ca = x509.load_pem_x509_certificate(pki.ca.cert.read_bytes())
    server = x509.load_pem_x509_certificate(pki.apiserver.cert.read_bytes())
    kcm = x509.load_pem_x509_certificate(pki.controller_manager.cert.read_bytes())
    for leaf in (server, kcm):
        leaf.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "kubernetes.default.svc"} <= set(sans.get_values_for_type(x509.DNSName))
    ips = sans.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in ips
    assert ipaddress.ip_address("10.96.0.1") in ips
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    cn = kcm.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "system:kube-controller-manager"
    assert pki.sa_private_key.stat().st_mode & 0o077 == 0
    assert pki.apiserver.key.stat().st_mode & 0o077 == 0


def test_kubeconfig_embeds_ca_and_token() -> None:
    cfg = kubeconfig_dict("https://127.0.0.1:6443", b"PEM", "tok", namespace="ns")
    assert cfg["clusters"][0]["cluster"] == {
        "server": "https://127.0.0.1:6443",
        "certificate-authority-data": base64.b64encode(b"PEM").decode(),
    }
    assert cfg["users"][0]["user"] == {"token": "tok"}
    assert cfg["contexts"][0]["context"]["namespace"] == "ns"
    assert cfg["current-context"] == cfg["contexts"][0]["name"]


def test_token_shorter_than_the_api_minimum_is_refused_before_asking() -> None:
    with pytest.raises(ValueError, match="at least 600"):
        issue_token(Path("/nonexistent"), "ns", "sa", seconds=60)


def test_free_port_is_bindable_and_given_apiserver_port_is_kept() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
    assert Ports.pick(apiserver=port).apiserver == port


def test_port_in_use_is_found_in_go_listen_errors() -> None:
    log = (
        "E1125 run.go:72] failed to create listener: failed to listen on 127.0.0.1:41234: "
        "listen tcp 127.0.0.1:41234: bind: address already in use"
    )
    assert _port_in_use(log) == 41234
    assert _port_in_use("exited with code 1") is None


def test_missing_binaries_are_named(tmp_path: Path) -> None:
    (tmp_path / "etcd").write_text("")
    with pytest.raises(BinariesError, match="kube-apiserver, kube-controller-manager, kubectl"):
        KubeBinaries.in_dir(tmp_path)


def test_manifest_files_are_yaml_in_name_order(tmp_path: Path) -> None:
    for name in ("20-b.yaml", "00-a.yml", "README.md", "10-c.yaml"):
        (tmp_path / name).write_text("")
    assert [p.name for p in manifest_files(tmp_path)] == ["00-a.yml", "10-c.yaml", "20-b.yaml"]
    assert manifest_files(tmp_path / "missing") == []


@pytest.mark.parametrize(
    "test_name",
    ["test_x", "test_weird[Param-1/2 ÄÖ]", "T" * 200, "---", "test_gc[" + "x" * 80 + "]"],
)
def test_namespace_names_are_valid_labels(test_name: str) -> None:
    name = namespace_name(test_name)
    assert len(name) <= 63
    assert name[0].isalpha() and name[-1].isalnum()
    assert all(c.islower() or c.isdigit() or c == "-" for c in name)
    assert namespace_name(test_name) != name  # unique per call


def test_cli_up_takes_workdir_and_port(tmp_path: Path) -> None:
    args = build_parser().parse_args(["up", "--workdir", str(tmp_path), "--port", "1234"])
    assert (args.command, args.workdir, args.port) == ("up", tmp_path, 1234)
    with pytest.raises(SystemExit):
        build_parser().parse_args([])
