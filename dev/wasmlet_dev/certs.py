"""Generates the PKI a local control plane needs: a CA, serving and client certs, SA keys."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Short-lived on purpose: a dev cluster lives for hours, a test session for minutes.
VALIDITY = datetime.timedelta(days=30)


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterPKI:
    """Paths of every PEM file the control plane reads."""

    ca: CertFiles
    apiserver: CertFiles
    controller_manager: CertFiles  # client cert for kube-controller-manager
    sa_private_key: Path  # signs ServiceAccount tokens
    sa_public_key: Path  # verifies them


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: accepted by Go's TLS and the ServiceAccount signer (ES256), and fast to generate.
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o600 if private else 0o644)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate small clock skew
        .not_valid_after(now + VALIDITY)
    )


def make_ca(
    common_name: str = "wasmlet-dev-ca",
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    name = _name(common_name)
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_cert(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    *,
    organizations: Sequence[str] = (),
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate signed by the CA; for a client cert, CN is the user and O the groups."""
    key = _new_key()
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        _builder(_name(common_name, organizations), ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _write_pair(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> CertFiles:
    files = CertFiles(cert=directory / f"{stem}.crt", key=directory / f"{stem}.key")
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    _write(files.key, _key_pem(key), private=True)
    return files


def apiserver_sans(service_ip: str) -> tuple[list[str], list[str]]:
    """DNS names and IPs the apiserver answers to: loopback and the in-cluster Service."""
    dns = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    return dns, ["127.0.0.1", "::1", service_ip]


def write_cluster_pki(directory: Path, service_ip: str) -> ClusterPKI:
    """Writes a fresh CA, apiserver serving cert, controller-manager client cert and SA keys."""
    ca_cert, ca_key = make_ca()
    ca = _write_pair(directory, "ca", ca_cert, ca_key)
    dns, ips = apiserver_sans(service_ip)
    api_cert, api_key = issue_cert(
        ca_cert, ca_key, "kube-apiserver", dns_names=dns, ip_addresses=ips, server=True
    )
    apiserver = _write_pair(directory, "apiserver", api_cert, api_key)
    # Its own identity: the bootstrap RBAC role system:kube-controller-manager is bound to it.
    kcm_cert, kcm_key = issue_cert(ca_cert, ca_key, "system:kube-controller-manager", client=True)
    controller_manager = _write_pair(directory, "controller-manager", kcm_cert, kcm_key)
    sa_key = _new_key()
    sa_private = directory / "sa.key"
    sa_public = directory / "sa.pub"
    _write(sa_private, _key_pem(sa_key), private=True)
    _write(
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
