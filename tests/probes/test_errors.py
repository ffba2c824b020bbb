"""Foreign exceptions map to the most specific diagnosis, and none is left unmapped."""

from __future__ import annotations

import errno
import inspect
import ssl

import dns.exception
import dns.resolver
import httpcore
import httpx
import pytest

from probes.codes import Code
from probes.errors import EXCEPTION_TABLE, describe_exception, diagnose_exception


# Misuse of the httpx API (reading a stream twice, and so on): programming errors
# that must raise, not be diagnosed as a registry's fault.
PROGRAMMING_ERRORS = {httpx.CookieConflict, httpx.RequestNotRead, httpx.ResponseNotRead,
                      httpx.StreamClosed, httpx.StreamConsumed, httpx.StreamError}


def _foreign_exception_classes() -> list[type[BaseException]]:
    classes: set[type[BaseException]] = set()
    for module in (httpx, dns.resolver, dns.exception, ssl):
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.split(".")[0] in (
                    "httpx", "dns", "ssl", "_ssl"):
                classes.add(obj)
    classes |= {ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError,
                BrokenPipeError, TimeoutError}
    return sorted(classes - PROGRAMMING_ERRORS, key=lambda c: c.__qualname__)


@pytest.mark.parametrize("exc_type", _foreign_exception_classes(), ids=lambda c: c.__qualname__)
def test_every_foreign_exception_has_a_table_entry(exc_type: type[BaseException]) -> None:
    """A new exception type in httpx, dnspython or ssl fails here until the table maps it."""
    assert any(issubclass(exc_type, mapped) for mapped, _ in EXCEPTION_TABLE), exc_type


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    exc.verify_code = code
    exc.verify_message = message
    return exc


def _ssl_reason(reason: str) -> ssl.SSLError:
    exc = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower()}")
    exc.reason = reason
    return exc


def _wrapped(inner: BaseException, outer: type[Exception]) -> Exception:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise httpcore.ConnectError(str(exc)) from exc
    except httpcore.ConnectError as exc:
        try:
            raise outer(str(exc)) from exc
        except Exception as final:  # noqa: BLE001
            return final
    raise AssertionError("unreachable")


CASES = [
    (dns.resolver.NXDOMAIN(), "dns", Code.DNS_NXDOMAIN),
    (dns.resolver.LifetimeTimeout(timeout=1.0, errors=[]), "dns", Code.DNS_TIMEOUT),
    (dns.resolver.NoNameservers(), "dns", Code.DNS_FAILURE),
    (dns.resolver.NoAnswer(), "dns", Code.DNS_FAILURE),
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "tcp", Code.TCP_REFUSED),
    (TimeoutError("timed out"), "tcp", Code.TCP_TIMEOUT),
    (TimeoutError("timed out"), "tls", Code.TLS_HANDSHAKE_TIMEOUT),
    (TimeoutError("timed out"), "manifest", Code.TIMEOUT),
    (OSError(errno.ENETUNREACH, "unreachable"), "tcp", Code.NETWORK_UNREACHABLE),
    (OSError(errno.EHOSTUNREACH, "no route"), "tcp", Code.NETWORK_UNREACHABLE),
    (ConnectionResetError(errno.ECONNRESET, "reset"), "challenge", Code.EOF_OR_RESET),
    (_verify_error(10, "certificate has expired"), "tls", Code.TLS_EXPIRED),
    (_verify_error(9, "certificate is not yet valid"), "tls", Code.TLS_NOT_YET_VALID),
    (_verify_error(20, "unable to get local issuer certificate"), "tls",
     Code.TLS_UNKNOWN_AUTHORITY),
    (_verify_error(18, "self-signed certificate"), "tls", Code.TLS_UNKNOWN_AUTHORITY),
    (_verify_error(62, "Hostname mismatch"), "tls", Code.TLS_HOSTNAME_MISMATCH),
    (_verify_error(64, "IP address mismatch"), "tls", Code.TLS_HOSTNAME_MISMATCH),
    (_ssl_reason("WRONG_VERSION_NUMBER"), "tls", Code.TLS_PLAIN_HTTP),
    (_ssl_reason("RECORD_LAYER_FAILURE"), "tls", Code.TLS_PLAIN_HTTP),
    (_ssl_reason("TLSV1_ALERT_PROTOCOL_VERSION"), "tls", Code.TLS_OTHER),
    (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), "tls", Code.EOF_OR_RESET),
    (httpx.ProxyError("407 Proxy Authentication Required"), "challenge",
     Code.PROXY_AUTH_REQUIRED),
    (httpx.ProxyError("403 Access violation"), "challenge", Code.PROXY_REFUSED),
    (httpx.RemoteProtocolError("Server disconnected"), "challenge", Code.EOF_OR_RESET),
    (httpx.ReadTimeout("timed out"), "manifest", Code.TIMEOUT),
    (httpx.ConnectTimeout("timed out"), "token", Code.TCP_TIMEOUT),
    (_wrapped(ConnectionRefusedError(errno.ECONNREFUSED, "refused"), httpx.ConnectError),
     "token", Code.TCP_REFUSED),
    (_wrapped(_verify_error(10, "certificate has expired"), httpx.ConnectError), "token",
     Code.TLS_EXPIRED),
    (_wrapped(dns.resolver.NXDOMAIN(), httpx.ConnectError), "token", Code.DNS_NXDOMAIN),
    (ValueError("something else"), "manifest", Code.UNKNOWN),
]


@pytest.mark.parametrize(("exc", "layer", "code"), CASES,
                         ids=[f"{type(e).__name__}-{layer}" for e, layer, _ in CASES])
def test_exception_maps_to_most_specific_code(exc: BaseException, layer: str, code: Code) -> None:
    """The innermost known cause wins, and timeouts depend on the layer."""
    assert diagnose_exception(exc, layer) is code


def test_description_is_the_innermost_cause() -> None:
    """The description names the real cause, not the wrapper."""
    exc = _wrapped(_verify_error(10, "certificate has expired"), httpx.ConnectError)
    assert "certificate has expired" in describe_exception(exc)


def test_cyclic_cause_chain_terminates() -> None:
    """A cause chain with a cycle does not loop forever."""
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert diagnose_exception(a, "tcp") is Code.UNKNOWN
