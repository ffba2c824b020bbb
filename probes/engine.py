"""Walk the layers in order, give each its share of the deadline, stop at the first failure.

The layer table is the single list of what a probe does; adding a layer is one
module with ``NAME`` and ``run(state) -> LayerResult`` (optionally ``prepare()``, its
deferred imports, run outside the layer's clock), and one entry here. The engine owns
time: it arms the watchdog so a layer that blocks past its deadline has its sockets
shut down, and it turns an exhausted overall deadline into a ``timeout`` diagnosis.
With a :class:`~probes.cache.ProbeCache` the endpoint-level layers run once per
endpoint and cycle and are shared. It never lets a target's failure escape as an
exception; only programming errors propagate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from types import ModuleType

from probes import challenge, dns, manifest, proxy, tcp, tls, token
from probes._net import WATCHDOG, NodeResolver, is_ip
from probes.cache import FRESH_WINDOW, SHARED_LAYERS, ProbeCache, SharedPrefix
from probes.codes import Code
from probes.errors import describe_exception, diagnose_exception
from probes.reference import Reference
from probes.result import LAYERS, LayerResult, ProbeReport, Status
from probes.state import ProbeOptions, ProbeState, Target

__all__ = ["LAYER_TABLE", "run_probe", "prefix_key"]

#: (module, weight): a layer's share of the remaining time is weight / remaining weights.
LAYER_TABLE: tuple[tuple[ModuleType, float], ...] = (
    (dns, 1.0),
    (tcp, 1.0),
    (proxy, 1.0),
    (tls, 1.0),
    (challenge, 1.5),
    (token, 1.5),
    (manifest, 2.0),
)
assert tuple(m.NAME for m, _ in LAYER_TABLE) == LAYERS
_SPLIT = len(SHARED_LAYERS)
assert LAYERS[:_SPLIT] == SHARED_LAYERS

# Network failures that happen while the engine is already past the deadline are the
# deadline's doing, not the target's.
_DEADLINE_CODES = {Code.EOF_OR_RESET, Code.UNKNOWN, Code.TIMEOUT}
OnLayer = Callable[[LayerResult], None] | None


def prefix_key(target: Target, options: ProbeOptions) -> str:
    """What makes two probes see the same endpoint the same way (not the credentials)."""
    return repr((target, options.dns, options.ca_files, options.proxy_source, options.system_ca))


def run_probe(reference: Reference, target: Target, options: ProbeOptions, *,
              resolver: NodeResolver | None = None, cache: ProbeCache | None = None,
              on_layer: OnLayer = None, fresh: bool = False) -> ProbeReport:
    """Probe ``reference`` through ``target``; always returns a report. ``fresh`` runs the
    endpoint layers anew even if the cache holds a result (a pull just failed)."""
    started = time.monotonic()
    report = _run_once(reference, target, options, resolver, cache, on_layer, fresh)
    if target.http_fallback and report.code is Code.TLS_PLAIN_HTTP:
        # containerd's localhost default: HTTPS first, plain HTTP when the port speaks HTTP;
        # the retry gets what is left of the caller's deadline, not a deadline of its own
        left = max(options.timeout - (time.monotonic() - started), 0.0)
        return _run_once(reference, replace(target, scheme="http", http_fallback=False),
                         replace(options, timeout=left), resolver, cache, on_layer, fresh)
    return report


def _run_once(reference: Reference, target: Target, options: ProbeOptions,
              resolver: NodeResolver | None, cache: ProbeCache | None,
              on_layer: OnLayer, fresh: bool = False) -> ProbeReport:
    if cache is not None and resolver is None:
        resolver = cache.resolver(options.dns)
    state = ProbeState(reference, target, options, resolver, cache)
    try:
        _prepare_resolver(state)
        if cache is None:
            results = _walk(state, 0, len(LAYER_TABLE), [], on_layer)
        else:
            results = _shared_prefix(state, cache, on_layer, fresh)
            results = _walk(state, _SPLIT, len(LAYER_TABLE), results, on_layer)
    finally:
        state.close()
    return ProbeReport(
        reference=str(reference), registry=reference.registry, layers=tuple(results),
        endpoint=target.url, credential=_credential_label(state),
    )


def _prepare_resolver(state: ProbeState) -> None:
    """Configure the node's resolver now, before any layer's clock, if the dns layer needs it.

    The resolver loads dnspython lazily so that a probe of an IP literal never pays for
    it; when the first hop is a name, loading it here keeps that cost out of the dns
    layer's time and share, where it never was.
    """
    host, _port, _role = dns.lookup_host(state)
    if not is_ip(host):
        state.resolver.configure()


def _shared_prefix(state: ProbeState, cache: ProbeCache, on_layer: OnLayer,
                   fresh: bool = False) -> list[LayerResult]:
    key = prefix_key(state.target, state.options)
    with cache.lock_for(key):
        prefix = cache.prefix(key, FRESH_WINDOW if fresh else None)
        if prefix is None:
            results = _walk(state, 0, _SPLIT, [], on_layer)
            cache.store_prefix(key, SharedPrefix(
                tuple(results), state.ssl_context, tuple(state.challenges), state.proxy_url,
                state.addresses))
            return results
    # Time spent waiting for another probe's shared layers is not this probe's to lose.
    spent = sum(r.seconds for r in prefix.results)
    state.deadline = time.monotonic() + max(state.options.timeout - spent, 0.0)
    state.ssl_context, state.challenges = prefix.ssl_context, list(prefix.challenges)
    state.proxy_url, state.addresses = prefix.proxy_url, prefix.addresses
    shared = [replace(r, evidence={**r.evidence, "shared": True}) for r in prefix.results]
    for result in shared:
        if on_layer is not None:
            on_layer(result)
    return shared


def _walk(state: ProbeState, start: int, stop: int, results: list[LayerResult],
          on_layer: OnLayer) -> list[LayerResult]:
    failed_at = next((r.name for r in results if r.status is Status.FAILED), None)
    last = state.options.stop_after
    stopped = last is not None and any(r.name == last for r in results)
    for index in range(start, stop):
        module, weight = LAYER_TABLE[index]
        if failed_at is not None:
            result = LayerResult(module.NAME, Status.SKIPPED, detail=f"not run: {failed_at} failed")
        elif stopped:
            result = LayerResult(module.NAME, Status.SKIPPED,
                                 detail=f"not run: an endpoint check stops after {last}")
        else:
            rest = sum(w for _, w in LAYER_TABLE[index:])
            result = _run_layer(module, state, weight / rest)
            if result.status is Status.FAILED:
                failed_at = module.NAME
            stopped = module.NAME == last
        results.append(result)
        if on_layer is not None:
            on_layer(result)
    return results


def _credential_label(state: ProbeState) -> str | None:
    cred = state.credential or (state.credentials[0] if state.credentials else None)
    return f"{cred.source} key {cred.key}" if cred else None


def _prepare(module: ModuleType, state: ProbeState) -> None:
    """Run the layer's optional ``prepare()`` (its deferred imports) before its clock starts.

    Imports that a probe may never need (the HTTP stack) are deferred until a layer needs
    them; the deadline moves by the time they take, so the target still gets all of it.
    """
    prepare = getattr(module, "prepare", None)
    if prepare is not None:
        began = time.monotonic()
        prepare()
        state.deadline += time.monotonic() - began


def _run_layer(module: ModuleType, state: ProbeState, share: float) -> LayerResult:
    _prepare(module, state)
    now = time.monotonic()
    remaining = state.deadline - now
    if remaining <= 0:
        return LayerResult(module.NAME, Status.FAILED, detail=(
            f"the probe's {state.options.timeout:g}s deadline ran out before the {module.NAME} layer"),
            code=Code.TIMEOUT)
    # Each layer may use its share, but never less than a usable slice of what is left.
    state.layer_deadline = now + max(remaining * share, min(remaining, 1.0))
    state.sockets.reset()
    handle = WATCHDOG.schedule(state.layer_deadline, state.sockets.shutdown_all)
    try:
        result = module.run(state)
    except Exception as exc:  # noqa: BLE001 - target failures must become diagnoses
        result = _from_exception(module.NAME, exc)
    finally:
        WATCHDOG.cancel(handle)
    seconds = time.monotonic() - now
    if state.sockets.expired and result.status is Status.FAILED and result.code in _DEADLINE_CODES:
        result = replace(result, code=_deadline_code(module.NAME), detail=(
            f"no answer within {seconds:.2f}s, this layer's share of the "
            f"{state.options.timeout:g}s deadline ({result.detail})"))
    final: LayerResult = replace(result, name=module.NAME, seconds=seconds)
    return final


def _from_exception(layer: str, exc: Exception) -> LayerResult:
    if isinstance(exc, (AssertionError, AttributeError, NameError, TypeError)):
        raise exc  # programming errors are ours, not the registry's
    code = diagnose_exception(exc, layer)
    return LayerResult(layer, Status.FAILED, detail=describe_exception(exc), code=code,
                       evidence={"exception": type(exc).__name__})


def _deadline_code(layer: str) -> Code:
    return {"dns": Code.DNS_TIMEOUT, "tcp": Code.TCP_TIMEOUT, "proxy": Code.PROXY_UNREACHABLE,
            "tls": Code.TLS_HANDSHAKE_TIMEOUT}.get(layer, Code.TIMEOUT)
