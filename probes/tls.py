"""Layer 4: the TLS handshake, verified the way the node's runtime verifies it.

Trust is the system store plus ``--ca-file`` plus the per-registry CAs of the
node's containerd/docker ``certs.d``; ``skip_verify`` in hosts.toml is honoured
and reported. When verification fails the layer shakes hands once more without
verification, only to report what the server presented (subject, issuer, SANs,
validity). A plain-HTTP target skips the layer. It never downgrades a failed
verification into success.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

from probes import _net
from probes.errors import describe_exception, diagnose_exception
from probes.proxy import tunnel
from probes.result import LayerResult
from probes.state import ProbeState, failed, ok, skipped

NAME = "tls"


#: Contexts by trust configuration: loading a CA store costs tens of milliseconds, and
#: an SSLContext is safe to share between threads once configured.
_CONTEXTS: dict[tuple[object, ...], tuple[ssl.SSLContext, list[str], list[str]]] = {}
_CONTEXTS_LOCK = threading.Lock()
_MAX_CONTEXTS = 64


def _file_stamp(path: Path) -> tuple[str, float]:
    try:
        return str(path), path.stat().st_mtime
    except OSError:
        return str(path), -1.0


def build_context(state: ProbeState) -> tuple[ssl.SSLContext, list[str], list[str]]:
    """The client context for this target (cached per trust configuration and file mtimes)."""
    target = state.target
    files = (*state.options.ca_files, *target.ca_files,
             *(p for p in (target.client_cert or ()) if p is not None))
    key = (state.options.system_ca, target.skip_verify, target.client_cert,
           tuple(_file_stamp(Path(f)) for f in files))
    with _CONTEXTS_LOCK:
        cached = _CONTEXTS.get(key)
    if cached is not None:
        return cached
    built = _new_context(state)
    with _CONTEXTS_LOCK:
        if len(_CONTEXTS) >= _MAX_CONTEXTS:
            _CONTEXTS.clear()
        _CONTEXTS[key] = built
    return built


def _system_trust(context: ssl.SSLContext) -> None:
    """Trust the system store. A hashed CA directory is read lazily by OpenSSL at
    verification time, where loading the whole bundle costs ~60 ms per process."""
    paths = ssl.get_default_verify_paths()
    capath = paths.capath
    if capath and not os.environ.get(paths.openssl_cafile_env) and \
            any(name.endswith(".0") for name in _listdir(capath)):
        context.load_verify_locations(capath=capath)
    else:
        context.set_default_verify_paths()


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _new_context(state: ProbeState) -> tuple[ssl.SSLContext, list[str], list[str]]:
    target = state.target
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if state.options.system_ca:
        _system_trust(context)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # what Go's crypto/tls clients accept
    sources = ["system store"] if state.options.system_ca else []
    problems: list[str] = []
    for ca in (*state.options.ca_files, *target.ca_files):
        try:
            context.load_verify_locations(cafile=str(ca))
            sources.append(str(ca))
        except (OSError, ssl.SSLError, ValueError) as exc:
            problems.append(f"CA file {ca}: {type(exc).__name__}: {exc}"[:200])
    if target.client_cert is not None:
        cert, key = target.client_cert
        try:
            context.load_cert_chain(str(cert), str(key) if key else None)
        except (OSError, ssl.SSLError, ValueError) as exc:
            problems.append(f"client certificate {cert}: {type(exc).__name__}"[:200])
    if target.skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context, sources, problems


def certificate_evidence(der: bytes | None) -> dict[str, Any]:
    """Subject, issuer, SANs and validity of a DER certificate (empty when unparseable)."""
    if not der:
        return {}
    from cryptography import x509  # deferred: only needed when a certificate was seen

    try:
        cert = x509.load_der_x509_certificate(der)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = [str(v) for v in san.get_values_for_type(x509.DNSName)]
            names += [str(v) for v in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            names = []
        not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    except ValueError as exc:
        return {"certificate_error": str(exc)[:200]}
    now = dt.datetime.now(dt.timezone.utc)
    return {
        "subject": cert.subject.rfc4514_string()[:300],
        "issuer": cert.issuer.rfc4514_string()[:300],
        "self_signed": cert.subject == cert.issuer,
        "sans": names[:32],
        "not_before": not_before.isoformat(),
        "not_after": not_after.isoformat(),
        "not_after_timestamp": not_after.timestamp(),
        "days_left": round((not_after - now).total_seconds() / 86400, 2),
        "serial": format(cert.serial_number, "x")[:64],
    }


_RDN_NAMES = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
              "countryName": "C", "stateOrProvinceName": "ST", "localityName": "L",
              "domainComponent": "DC", "emailAddress": "E"}


def _name(rdns: Any) -> str:
    """An ssl-module name tuple as an RFC 4514-style string (most specific first)."""
    parts = [f"{_RDN_NAMES.get(k, k)}={v}" for rdn in reversed(rdns or ()) for k, v in rdn]
    return ",".join(parts)[:300]


def verified_certificate_evidence(cert: dict[str, Any]) -> dict[str, Any]:
    """Evidence from ``getpeercert()`` of a verified peer: no X.509 parser needed."""
    try:
        not_before = ssl.cert_time_to_seconds(cert["notBefore"])
        not_after = ssl.cert_time_to_seconds(cert["notAfter"])
    except (KeyError, ValueError):
        return {}
    utc = dt.timezone.utc
    subject, issuer = _name(cert.get("subject")), _name(cert.get("issuer"))
    return {
        "subject": subject,
        "issuer": issuer,
        "self_signed": subject == issuer,
        "sans": [value for _, value in cert.get("subjectAltName", ())][:32],
        "not_before": dt.datetime.fromtimestamp(not_before, utc).isoformat(),
        "not_after": dt.datetime.fromtimestamp(not_after, utc).isoformat(),
        "not_after_timestamp": float(not_after),
        "days_left": round((not_after - dt.datetime.now(utc).timestamp()) / 86400, 2),
        "serial": str(cert.get("serialNumber", "")).lower()[:64],
    }


def _handshake(state: ProbeState, sock: socket.socket, context: ssl.SSLContext) -> ssl.SSLSocket:
    sock.settimeout(max(state.time_left(), 0.001))
    tls = context.wrap_socket(sock, server_hostname=state.target.host)
    state.sockets.add(tls)
    return tls


def _unverified_certificate(state: ProbeState) -> bytes | None:
    """Connect again and shake hands without verification, only to read the certificate."""
    try:
        sock = _net.connect(state.connected_address or state.target.host, _first_hop_port(state),
                            state.time_left(), state.sockets)
        if state.proxy_url:
            status, _, _ = tunnel(state, sock)
            if not 200 <= status < 300:
                return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with _handshake(state, sock, context) as tls:
            return tls.getpeercert(binary_form=True)
    except (OSError, ValueError):
        return None


def _first_hop_port(state: ProbeState) -> int:
    from probes.dns import lookup_host

    return lookup_host(state)[1]


def run(state: ProbeState) -> LayerResult:
    if state.target.scheme != "https":
        return skipped(f"{state.target.netloc} is configured for plain HTTP")
    context, sources, problems = build_context(state)
    evidence: dict[str, Any] = {"server_name": state.target.host, "trust": sources,
                                "skip_verify": state.target.skip_verify}
    if problems:
        evidence["trust_problems"] = problems
    try:
        with _handshake(state, state.stream, context) as tls:
            state.stream = None  # consumed: the with-block closes it
            der = tls.getpeercert(binary_form=True)
            parsed = tls.getpeercert() if context.verify_mode != ssl.CERT_NONE else None
            evidence.update(version=tls.version(), cipher=(tls.cipher() or ("",))[0])
    except (OSError, ValueError) as exc:
        state.stream = None
        code = diagnose_exception(exc, NAME)
        if isinstance(exc, ssl.SSLCertVerificationError):
            evidence["verify_error"] = exc.verify_message
            evidence.update(certificate_evidence(_unverified_certificate(state)))
        return failed(code, f"{state.target.netloc}: {describe_exception(exc)}", **evidence)
    state.ssl_context = context
    # a verified peer's certificate is already parsed by the ssl module; only an
    # unverified one (skip_verify) needs the X.509 parser
    evidence.update(verified_certificate_evidence(parsed) if parsed else certificate_evidence(der))
    days = evidence.get("days_left")
    verified = "not verified (skip_verify)" if state.target.skip_verify else "verified"
    return ok(f"{evidence.get('version')} {verified}; certificate expires in {days} days",
              **evidence)


__all__ = ["NAME", "run", "build_context", "certificate_evidence"]
