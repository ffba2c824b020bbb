"""Turn a reference plus the node's registry configuration into probe targets.

The node's containerd ``certs.d`` (``hosts.toml``) or docker ``certs.d`` decide
the scheme, CAs, client certificates, ``skip_verify`` and mirrors of a
registry; ``--plain-http`` forces HTTP. This module only translates that
configuration into :class:`~probes.state.Target` values; it does no I/O beyond
reading the configuration files.
"""

from __future__ import annotations

from probes.hostsconfig import Endpoint, HostsConfig, load_hosts_config
from probes.reference import Reference
from probes.state import ProbeOptions, Target

__all__ = ["upstream_target", "endpoint_targets", "target_from_endpoint"]


def _split(netloc: str, scheme: str) -> tuple[str, int]:
    default = 443 if scheme == "https" else 80
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default
    if netloc.count(":") == 1:
        host, port = netloc.split(":")
        return host, int(port)
    return netloc, default


def target_from_endpoint(endpoint: Endpoint, config: HostsConfig, plain_http: bool) -> Target:
    scheme = "http" if plain_http else endpoint.scheme
    host, port = _split(endpoint.host, endpoint.scheme)
    if plain_http and endpoint.scheme == "https" and ":" not in endpoint.host.rsplit("]", 1)[-1]:
        port = 80
    client = endpoint.client_certs[0] if endpoint.client_certs else None
    return Target(
        scheme=scheme, host=host, port=port, path=endpoint.path,
        http_fallback=endpoint.http_fallback and not plain_http,
        ca_files=tuple(endpoint.ca_files), client_cert=client, skip_verify=endpoint.skip_verify,
        is_mirror=endpoint.is_mirror, source=str(config.source) if config.source else None,
    )


def endpoint_targets(reference: Reference, options: ProbeOptions) -> list[Target]:
    """Every endpoint the runtime would try for a pull, in its order (mirrors, then server)."""
    config = load_hosts_config(reference.registry, options.certs_dirs)
    return [target_from_endpoint(e, config, options.plain_http) for e in config.endpoints
            if not e.is_mirror or "pull" in e.capabilities]


def upstream_target(reference: Reference, options: ProbeOptions) -> Target:
    """The registry's own endpoint (hosts.toml ``server``, or the registry host)."""
    config = load_hosts_config(reference.registry, options.certs_dirs)
    servers = [e for e in config.endpoints if not e.is_mirror] or list(config.endpoints)
    server = servers[-1]
    # a [host."<server url>"] table configures the server itself (its ca, client, skip_verify)
    # and containerd tries it first: prefer it
    same = [e for e in config.endpoints if (e.url, e.path) == (server.url, server.path)]
    return target_from_endpoint(same[0], config, options.plain_http)
