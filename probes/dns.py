"""Layer 1: resolve the registry (or the proxy in front of it) as the node does.

Uses the node's hosts file and resolv.conf (nameservers, search list, ndots),
or an explicit DNS server. IP literals need no lookup and skip the layer. When
a proxy applies, the name resolved here is the proxy's: the registry's own name
is resolved by the proxy. It refuses to fall back to the process's resolver.
"""

from __future__ import annotations

from probes._net import is_ip
from probes.codes import Code
from probes.errors import describe_exception, diagnose_exception
from probes.result import LayerResult
from probes.state import ProbeState, failed, ok, skipped

NAME = "dns"


def lookup_host(state: ProbeState) -> tuple[str, int, str]:
    """The host and port the node connects to first, and what it is (registry or proxy)."""
    if state.proxy_url:
        from urllib.parse import urlsplit

        parts = urlsplit(state.proxy_url)
        default = 443 if parts.scheme == "https" else 80
        return (parts.hostname or ""), (parts.port or default), "proxy"
    return state.target.host, state.target.port, "registry"


def run(state: ProbeState) -> LayerResult:
    host, _port, role = lookup_host(state)
    if is_ip(host):
        state.addresses = (host,)
        return skipped(f"{role} address {host} is an IP literal", role=role, addresses=[host])
    evidence: dict[str, object] = {"name": host, "role": role, "nameservers": state.resolver.nameservers,
                "search": state.resolver.search}
    if state.resolver.config_error:
        evidence["resolv_conf_error"] = state.resolver.config_error
    try:
        resolution = state.resolver.resolve(host, state.time_left())
    except Exception as exc:  # noqa: BLE001 - dnspython raises many types; the table maps them
        code = diagnose_exception(exc, NAME)
        if role == "proxy":  # the node cannot even find its proxy
            evidence["cause"], code = code.value, Code.PROXY_UNREACHABLE
        return failed(code, f"{role} {host}: {describe_exception(exc)}", **evidence)
    state.addresses = resolution.addresses
    evidence.update(addresses=list(resolution.addresses), source=resolution.source,
                    canonical=resolution.canonical, total_addresses=resolution.total)
    truncated = f" (first {len(resolution.addresses)} of {resolution.total})" \
        if resolution.total > len(resolution.addresses) else ""
    return ok(f"{role} {host} -> {', '.join(resolution.addresses)}{truncated} via {resolution.source}",
              **evidence)
