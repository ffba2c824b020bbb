"""Layer 2: open a TCP connection to each address of the registry (or proxy).

Every resolved address is tried (IPv6 and IPv4 alike) so the report says which
answered and which did not; the first that answered carries on to the next
layer. Each address gets an equal slice of the layer's time so one black-holed
address cannot starve the others.
"""

from __future__ import annotations

import time

from probes import _net
from probes.codes import Code
from probes.dns import lookup_host
from probes.errors import describe_exception, diagnose_exception
from probes.result import LayerResult
from probes.state import ProbeState, failed, ok

NAME = "tcp"
#: Addresses tried at most (a DNS answer may list hundreds).
MAX_TRIED = 4


def run(state: ProbeState) -> LayerResult:
    _host, port, role = lookup_host(state)
    addresses = state.addresses[:MAX_TRIED]
    attempts: list[dict[str, object]] = []
    codes: list[Code] = []
    share = state.time_left() / max(len(addresses), 1)
    for index, address in enumerate(addresses):
        slice_ = min(share, state.time_left() / (len(addresses) - index))
        started = time.monotonic()
        try:
            sock = _net.connect(address, port, slice_, state.sockets)
        except OSError as exc:
            code = diagnose_exception(exc, NAME)
            codes.append(code)
            attempts.append({"address": address, "result": code.value,
                             "error": describe_exception(exc),
                             "seconds": round(time.monotonic() - started, 4)})
            continue
        attempts.append({"address": address, "result": "connected",
                         "seconds": round(time.monotonic() - started, 4)})
        if state.stream is None:
            state.stream = sock
            state.connected_address = address
        else:
            sock.close()
    evidence = {"port": port, "role": role, "attempts": attempts}
    if state.stream is None:
        code = codes[0] if codes else Code.UNKNOWN
        if role == "proxy":
            code = Code.PROXY_UNREACHABLE
        first = attempts[0]["error"] if attempts else "no address to connect to"
        return failed(code, f"{role} {_fmt(addresses, port)}: {first}", **evidence)
    others = [a for a in attempts if a["result"] != "connected"]
    note = f"; {len(others)} other address(es) failed" if others else ""
    return ok(f"connected to {role} {_fmt((state.connected_address or '',), port)}{note}",
              connected=state.connected_address, **evidence)


def _fmt(addresses: tuple[str, ...], port: int) -> str:
    return ", ".join(f"[{a}]:{port}" if ":" in a else f"{a}:{port}" for a in addresses)
