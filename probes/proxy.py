"""Layer 3: open a CONNECT tunnel through the HTTP proxy the node's runtime uses.

Skipped when no proxy applies to the registry (``--proxy``, else the runtime's
HTTPS_PROXY/NO_PROXY with Go's semantics). A plain-HTTP registry is reached
through a proxy with forwarded requests, not a tunnel, so that case is checked
by the challenge layer instead. The proxy's answer is read with a hard cap;
its credentials come from the proxy URL and never appear in evidence.
"""

from __future__ import annotations

import base64
from urllib.parse import unquote, urlsplit

from probes.codes import Code
from probes.proxyenv import redact_url
from probes.result import LayerResult
from probes.state import ProbeState, failed, ok, skipped

NAME = "proxy"
#: Bytes of the proxy's CONNECT answer read at most.
MAX_RESPONSE = 16 * 1024


def connect_request(state: ProbeState) -> bytes:
    host = f"[{state.target.host}]" if ":" in state.target.host else state.target.host
    authority = f"{host}:{state.target.port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}",
             f"User-Agent: {state.options.user_agent}"]
    parts = urlsplit(state.proxy_url or "")
    if parts.username is not None:
        raw = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        lines.append(f"Proxy-Authorization: Basic {base64.b64encode(raw).decode()}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_head(sock: object, limit: int = MAX_RESPONSE) -> bytes:
    """Read an HTTP response head (up to the blank line) without reading past it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)  # type: ignore[attr-defined]  # byte-wise: the tunnel follows
        if not chunk:
            break
        data += chunk
        if len(data) >= limit:
            break
    return data


def tunnel(state: ProbeState, sock: object) -> tuple[int, str, dict[str, str]]:
    """Send CONNECT on ``sock`` and return the proxy's status, reason and headers."""
    sock.sendall(connect_request(state))  # type: ignore[attr-defined]
    head = read_head(sock)
    if not head:
        raise ConnectionResetError("the proxy closed the connection without answering CONNECT")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise ConnectionResetError(f"the proxy answered CONNECT with {status_line[:80]!r}")
    headers = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()[:200]
    return int(fields[1]), (fields[2] if len(fields) > 2 else ""), headers


def run(state: ProbeState) -> LayerResult:
    if not state.proxy_url:
        source = state.options.proxy_source or "the environment"
        return skipped(f"no proxy applies to {state.target.netloc} (from {source})")
    proxy = redact_url(state.proxy_url)
    if state.target.scheme != "https":
        return skipped(f"plain HTTP goes through {proxy} as forwarded requests (no tunnel)",
                       proxy=proxy)
    status, reason, headers = tunnel(state, state.stream)
    evidence = {"proxy": proxy, "status": status, "reason": reason[:100],
                "proxy_authenticate": headers.get("proxy-authenticate")}
    if 200 <= status < 300:
        return ok(f"{proxy} opened a tunnel to {state.target.netloc}", **evidence)
    if status in (401, 407):
        return failed(Code.PROXY_AUTH_REQUIRED,
                      f"{proxy} answered CONNECT with {status} {reason}".strip(), **evidence)
    return failed(Code.PROXY_REFUSED, f"{proxy} answered CONNECT with {status} {reason}".strip(),
                  **evidence)
