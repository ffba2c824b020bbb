"""Certificates for the fleet: a trusted CA, an unrelated CA, and leaves wrong on purpose.

The good leaf covers every name a test may dial (127.0.0.1, ::1, localhost,
registry.test, *.registry.test, registry.corp.test). The faulty leaves differ
from it in exactly one way each: ``expired`` (validity ended yesterday),
``notyet`` (starts tomorrow), ``mismatch`` (only ``wrong.example``) and
``untrusted`` (same names, issued by the other CA). The token signer is a
self-signed RSA certificate, as Distribution's ``rootcertbundle`` expects.

It refuses to write anything outside the directory it is given.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

__all__ = ["GOOD_IDENTITIES", "FleetCerts", "LeafFiles", "make_certs"]

GOOD_IDENTITIES = (
    "127.0.0.1",
    "::1",
    "localhost",
    "registry.test",
    "*.registry.test",
    "registry.corp.test",
)


@dataclass(frozen=True)
class LeafFiles:
    """A server certificate chain (PEM) and its private key (PEM)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class FleetCerts:
    """Every certificate file the fleet uses; ``leaves`` is keyed by flavour."""

    ca_file: Path
    other_ca_file: Path
    leaves: dict[str, LeafFiles]
    token_signing_key: Path
    token_signing_cert: Path


def _write_leaf(leaf: trustme.LeafCert, directory: Path, name: str) -> LeafFiles:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)
    return LeafFiles(cert=cert, key=key)


def _token_signer(directory: Path) -> tuple[Path, Path]:
    """A self-signed RSA-2048 certificate + key for signing registry tokens."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pulldoctor-fleet-token-signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "token-signer.key", directory / "token-signer.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def make_certs(directory: Path) -> FleetCerts:
    """Create the CAs, the leaves and the token signer under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, other = trustme.CA(), trustme.CA()
    ca_file, other_ca_file = directory / "ca.pem", directory / "other-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    other.cert_pem.write_to_path(str(other_ca_file))
    now = dt.datetime.now(dt.UTC)
    day = dt.timedelta(days=1)
    issued = {
        "good": ca.issue_cert(*GOOD_IDENTITIES),
        "expired": ca.issue_cert(*GOOD_IDENTITIES, not_before=now - 30 * day, not_after=now - day),
        "notyet": ca.issue_cert(*GOOD_IDENTITIES, not_before=now + day, not_after=now + 30 * day),
        "mismatch": ca.issue_cert("wrong.example"),
        "untrusted": other.issue_cert(*GOOD_IDENTITIES),
    }
    leaves = {name: _write_leaf(leaf, directory, f"leaf-{name}") for name, leaf in issued.items()}
    signing_key, signing_cert = _token_signer(directory)
    return FleetCerts(
        ca_file=ca_file,
        other_ca_file=other_ca_file,
        leaves=leaves,
        token_signing_key=signing_key,
        token_signing_cert=signing_cert,
    )
