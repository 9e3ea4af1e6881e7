"""The agent API's TLS certificate: given by flags, or self-signed at start for clients to pin.

A self-signed certificate lives in `<cache-dir>/tls/` (0700): kept while it is valid for this
node's names and more than a week from expiry, replaced otherwise. Its PEM goes into the
WasmNode's `status.servingCertificate`, which `wasmlet logs` and Prometheus trust exactly.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALIDITY = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=7)


@dataclass(frozen=True)
class ServingCert:
    cert_file: Path
    key_file: Path

    def pem(self) -> str:
        return self.cert_file.read_text()

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def _sans(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for n in dict.fromkeys(names):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def _usable(cert_file: Path, key_file: Path, names: list[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    if not key_file.exists():
        return False
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    return left > RENEW_BEFORE and all(s in list(sans) for s in _sans(names))


def self_signed(directory: Path, node: str, addresses: list[str]) -> ServingCert:
    """This node's self-signed serving certificate (made if missing, stale or for other names).

    It is its own CA (basicConstraints CA:TRUE) so that a client can trust exactly it."""
    names = [node, *addresses]
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    files = ServingCert(directory / "agent-api.crt", directory / "agent-api.key")
    if _usable(files.cert_file, files.key_file, names):
        return files
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"wasmlet-agent {node}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectAlternativeName(_sans(names)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    files.key_file.write_bytes(b"")
    files.key_file.chmod(0o600)
    files.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files
