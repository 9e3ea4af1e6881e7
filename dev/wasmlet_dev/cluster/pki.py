"""The PKI a local control plane needs: a CA, serving and client certs, ServiceAccount keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from wasmlet_dev.certs import (
    CertFiles,
    issue_cert,
    key_pem,
    make_ca,
    new_key,
    write_pair,
    write_pem,
)


@dataclass(frozen=True)
class ClusterPKI:
    """Paths of every PEM file the control plane reads."""

    ca: CertFiles
    apiserver: CertFiles
    controller_manager: CertFiles  # client cert for kube-controller-manager
    sa_private_key: Path  # signs ServiceAccount tokens
    sa_public_key: Path  # verifies them


def apiserver_sans(service_ip: str, extra_ips: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """DNS names and IPs the apiserver answers to: loopback, the in-cluster Service, extras."""
    dns = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    return dns, ["127.0.0.1", "::1", service_ip, *extra_ips]


def write_cluster_pki(
    directory: Path, service_ip: str, extra_ips: Sequence[str] = ()
) -> ClusterPKI:
    """Writes a fresh CA, apiserver serving cert, controller-manager client cert and SA keys."""
    ca_cert, ca_key = make_ca()
    ca = write_pair(directory, "ca", ca_cert, ca_key)
    dns, ips = apiserver_sans(service_ip, extra_ips)
    api_cert, api_key = issue_cert(
        ca_cert, ca_key, "kube-apiserver", dns_names=dns, ip_addresses=ips, server=True
    )
    apiserver = write_pair(directory, "apiserver", api_cert, api_key)
    # Its own identity: the bootstrap RBAC role system:kube-controller-manager is bound to it.
    kcm_cert, kcm_key = issue_cert(ca_cert, ca_key, "system:kube-controller-manager", client=True)
    controller_manager = write_pair(directory, "controller-manager", kcm_cert, kcm_key)
    sa_key = new_key()
    sa_private = directory / "sa.key"
    sa_public = directory / "sa.pub"
    write_pem(sa_private, key_pem(sa_key), private=True)
    write_pem(
        sa_public,
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return ClusterPKI(
        ca=ca,
        apiserver=apiserver,
        controller_manager=controller_manager,
        sa_private_key=sa_private,
        sa_public_key=sa_public,
    )
