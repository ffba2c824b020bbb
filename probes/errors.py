"""One table from foreign exceptions (socket, ssl, httpx, dnspython) to diagnosis codes.

Layers catch what the network throws at them and ask :func:`diagnose_exception`
for the code; nothing else in ``probes/`` decides what an exception means. The
table is ordered most specific first; wrapped exceptions (httpx wraps httpcore
wraps OSError/SSLError) are unwrapped so the innermost known cause wins. Some
exceptions mean different things in different layers (a timeout while
connecting is ``tcp_timeout``, during a handshake ``tls_handshake_timeout``);
the per-layer overrides are part of the table. Unknown exceptions map to
``unknown`` rather than raising: a hostile server must not crash a probe.
"""

from __future__ import annotations

import errno
import functools
import ssl
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from probes.codes import Code

__all__ = ["diagnose_exception", "EXCEPTION_TABLE", "describe_exception"]

Entry = tuple[type[BaseException], object]

if TYPE_CHECKING:
    #: The whole table, built on first access by the module ``__getattr__`` below.
    EXCEPTION_TABLE: tuple[Entry, ...]

# OpenSSL X509_V_ERR_* verify codes we tell apart.
_VERIFY_CODES: dict[int, Code] = {
    9: Code.TLS_NOT_YET_VALID,  # CERT_NOT_YET_VALID
    10: Code.TLS_EXPIRED,  # CERT_HAS_EXPIRED
    13: Code.TLS_NOT_YET_VALID,  # ERROR_IN_CERT_NOT_BEFORE_FIELD
    14: Code.TLS_EXPIRED,  # ERROR_IN_CERT_NOT_AFTER_FIELD
    2: Code.TLS_UNKNOWN_AUTHORITY,  # UNABLE_TO_GET_ISSUER_CERT
    18: Code.TLS_UNKNOWN_AUTHORITY,  # DEPTH_ZERO_SELF_SIGNED_CERT
    19: Code.TLS_UNKNOWN_AUTHORITY,  # SELF_SIGNED_CERT_IN_CHAIN
    20: Code.TLS_UNKNOWN_AUTHORITY,  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: Code.TLS_UNKNOWN_AUTHORITY,  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
    62: Code.TLS_HOSTNAME_MISMATCH,  # HOSTNAME_MISMATCH
    64: Code.TLS_HOSTNAME_MISMATCH,  # IP_ADDRESS_MISMATCH
}

# OpenSSL reasons that mean "the peer spoke something other than TLS" (usually HTTP).
_PLAIN_HTTP_REASONS = {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"}

_UNREACHABLE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT}
_RESET_ERRNOS = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}

_GENERIC = {Code.TIMEOUT, Code.UNKNOWN}

_TIMEOUT_BY_LAYER = {
    "dns": Code.DNS_TIMEOUT,
    "tcp": Code.TCP_TIMEOUT,
    "proxy": Code.PROXY_UNREACHABLE,
    "tls": Code.TLS_HANDSHAKE_TIMEOUT,
}


def _ssl_cert_code(exc: BaseException) -> Code:
    assert isinstance(exc, ssl.SSLCertVerificationError)
    return _VERIFY_CODES.get(exc.verify_code, Code.TLS_OTHER)


def _ssl_code(exc: BaseException) -> Code:
    assert isinstance(exc, ssl.SSLError)
    reason = getattr(exc, "reason", None) or ""
    return Code.TLS_PLAIN_HTTP if reason in _PLAIN_HTTP_REASONS else Code.TLS_OTHER


def _oserror_code(exc: BaseException) -> Code | None:
    assert isinstance(exc, OSError)
    if exc.errno in _UNREACHABLE_ERRNOS:
        return Code.NETWORK_UNREACHABLE
    if exc.errno in _RESET_ERRNOS:
        return Code.EOF_OR_RESET
    if exc.errno == errno.ECONNREFUSED:
        return Code.TCP_REFUSED
    if exc.errno == errno.ETIMEDOUT:
        return Code.TIMEOUT
    return None


def _h11_code(exc: BaseException) -> Code:
    """h11 raises one type for a peer that hung up and for one that broke HTTP."""
    if "closed connection" in str(exc):  # "peer (unexpectedly) closed connection ..."
        return Code.EOF_OR_RESET
    return Code.REGISTRY_NOT_V2  # oversized head (431 hint), malformed status or header line


def _proxy_error_code(exc: BaseException) -> Code:
    text = str(exc)
    return Code.PROXY_AUTH_REQUIRED if text.startswith(("407", "401")) else Code.PROXY_REFUSED


# The table: (exception type, code or function of the exception), most specific first.
# A ``None`` code from a function means "look further down the table". dnspython's and
# the HTTP stack's parts are built only once that library is loaded, so that a probe
# that never resolved a name or sent a request does not import them (tens of
# milliseconds each): none of a library's exceptions can exist before it is imported,
# and none is related to a type of another part, so the parts' order cannot change a
# result. ``EXCEPTION_TABLE`` is the whole table, in this order.


@functools.cache
def _dns_entries() -> tuple[Entry, ...]:
    import dns.exception
    import dns.resolver

    return (
        (dns.resolver.NXDOMAIN, Code.DNS_NXDOMAIN),
        (dns.resolver.LifetimeTimeout, Code.DNS_TIMEOUT),
        (dns.exception.Timeout, Code.DNS_TIMEOUT),
        (dns.resolver.NoNameservers, Code.DNS_FAILURE),
        (dns.resolver.NoAnswer, Code.DNS_FAILURE),
        (dns.resolver.YXDOMAIN, Code.DNS_FAILURE),
        (dns.exception.DNSException, Code.DNS_FAILURE),
    )


_SOCKET_ENTRIES: tuple[Entry, ...] = (
    (ssl.SSLCertVerificationError, _ssl_cert_code),
    (ssl.SSLEOFError, Code.EOF_OR_RESET),
    (ssl.SSLZeroReturnError, Code.EOF_OR_RESET),
    (ssl.SSLError, _ssl_code),
    (ssl.CertificateError, Code.TLS_HOSTNAME_MISMATCH),
    (ConnectionRefusedError, Code.TCP_REFUSED),
    (ConnectionResetError, Code.EOF_OR_RESET),
    (ConnectionAbortedError, Code.EOF_OR_RESET),
    (BrokenPipeError, Code.EOF_OR_RESET),
    (TimeoutError, Code.TIMEOUT),
    (EOFError, Code.EOF_OR_RESET),
)


@functools.cache
def _http_entries() -> tuple[Entry, ...]:
    import h11
    import httpx

    return (
        (httpx.ProxyError, _proxy_error_code),
        (httpx.ConnectTimeout, Code.TCP_TIMEOUT),
        (httpx.TimeoutException, Code.TIMEOUT),
        (h11.RemoteProtocolError, _h11_code),
        (httpx.RemoteProtocolError, Code.EOF_OR_RESET),
        (httpx.LocalProtocolError, Code.UNKNOWN),
        (httpx.DecodingError, Code.REGISTRY_NOT_V2),
        (httpx.TooManyRedirects, Code.REGISTRY_NOT_V2),
        (httpx.UnsupportedProtocol, Code.REGISTRY_NOT_V2),
        (httpx.ConnectError, Code.UNKNOWN),
        (httpx.ReadError, Code.EOF_OR_RESET),
        (httpx.WriteError, Code.EOF_OR_RESET),
        (httpx.CloseError, Code.EOF_OR_RESET),
        (httpx.NetworkError, Code.EOF_OR_RESET),
        (httpx.InvalidURL, Code.UNKNOWN),
        (httpx.ProtocolError, Code.EOF_OR_RESET),
        (httpx.TransportError, Code.UNKNOWN),
        (httpx.RequestError, Code.UNKNOWN),
        (httpx.HTTPError, Code.UNKNOWN),  # incl. HTTPStatusError: probes never raise_for_status
    )


_LAST_ENTRIES: tuple[Entry, ...] = ((OSError, _oserror_code),)


def _entries() -> tuple[Entry, ...]:
    """The table as far as it can match now: a library's part once that library is loaded."""
    loaded = sys.modules
    dns_part = _dns_entries() if "dns.exception" in loaded else ()
    http_part = _http_entries() if "httpx" in loaded or "h11" in loaded else ()
    return dns_part + _SOCKET_ENTRIES + http_part + _LAST_ENTRIES


def __getattr__(name: str) -> Any:
    if name == "EXCEPTION_TABLE":
        return _dns_entries() + _SOCKET_ENTRIES + _http_entries() + _LAST_ENTRIES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and its causes, innermost last, cycle-safe and bounded."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        current = (current.__cause__ or current.__context__
                   or getattr(current, "pulldoctor_cause", None))


def _lookup(exc: BaseException) -> Code | None:
    for exc_type, mapped in _entries():
        if isinstance(exc, exc_type):
            code = mapped(exc) if callable(mapped) and not isinstance(mapped, Code) else mapped
            if code is not None:
                assert isinstance(code, Code)
                return code
    return None


def diagnose_exception(exc: BaseException, layer: str) -> Code:
    """The diagnosis for ``exc`` raised in ``layer``: the innermost mapped cause wins."""
    specific: Code | None = None
    generic: Code | None = None
    for link in _chain(exc):
        code = _lookup(link)
        if code in _GENERIC:
            generic = generic or code  # the outermost generic code is the most precise one
        elif code is not None:
            specific = code  # keep going: an inner cause is more specific
    code = specific or generic or Code.UNKNOWN
    if code in (Code.TIMEOUT, Code.TCP_TIMEOUT) and layer in _TIMEOUT_BY_LAYER:
        return _TIMEOUT_BY_LAYER[layer]
    return code


def describe_exception(exc: BaseException) -> str:
    """A short, credential-free description of the innermost cause."""
    parts = []
    for link in _chain(exc):
        text = str(link).strip() or type(link).__name__
        if isinstance(link, ssl.SSLCertVerificationError) and link.verify_message:
            text = f"certificate verify failed: {link.verify_message}"
        if text not in parts:
            parts.append(f"{type(link).__name__}: {text}"[:300])
    return parts[-1] if parts else type(exc).__name__
