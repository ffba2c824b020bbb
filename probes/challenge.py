"""Layer 5: ``GET /v2/`` without credentials, the registry API's front door.

A registry answers 200 (anonymous access) or 401 with a ``WWW-Authenticate``
challenge that names how to authenticate. Anything else (a 404, an HTML page,
a redirect to a login page) means the endpoint is not a v2 registry. The
parsed challenges are kept for the token layer.
"""

from __future__ import annotations

from probes._http import base_evidence, exchange
from probes._http import prepare as prepare  # HTTP stack, loaded by the engine
from probes.codes import Code
from probes.result import LayerResult
from probes.state import ProbeState, failed, ok
from probes.wwwauth import parse_www_authenticate

NAME = "challenge"


def status_code(status: int) -> Code | None:
    """Codes that any registry answer may carry, whichever layer asked."""
    if status == 429:
        return Code.RATE_LIMITED
    if status >= 500:
        return Code.REGISTRY_SERVER_ERROR
    return None


def run(state: ProbeState) -> LayerResult:
    ex = exchange(state, "GET", f"{state.base_url()}/")
    evidence = base_evidence(ex)
    common = status_code(ex.status)
    if common is not None:
        return failed(common, f"GET /v2/ answered {ex.status}", **evidence)
    if ex.status == 200:
        if ex.content_type == "text/html" or (
                "api_version" not in evidence and ex.json() is None and ex.body.strip()):
            return failed(Code.REGISTRY_NOT_V2,
                          f"GET /v2/ answered 200 with {ex.content_type or 'a non-JSON body'}, "
                          "not a registry API response", **evidence)
        return ok("registry allows anonymous access to /v2/", auth="anonymous", **evidence)
    if ex.status == 401:
        state.challenges = parse_www_authenticate(ex.headers.get_list("www-authenticate"))
        if not state.challenges:
            return failed(Code.REGISTRY_NOT_V2, "GET /v2/ answered 401 without a usable "
                          "WWW-Authenticate challenge", **evidence)
        first = state.challenges[0]
        evidence["challenges"] = [
            {"scheme": c.scheme, **{k: v[:200] for k, v in c.params.items()
                                    if k in ("realm", "service", "scope", "error")}}
            for c in state.challenges[:4]]
        return ok(f"registry requires {first.scheme.title()} authentication"
                  + (f" (realm {first.realm})" if first.realm else ""), auth=first.scheme,
                  **evidence)
    if ex.status == 403:
        return failed(Code.ACCESS_DENIED, "GET /v2/ answered 403: the registry refuses this "
                      "client before authentication (IP allow-list, WAF or policy)", **evidence)
    hint = ""
    if ex.status == 400 and b"HTTPS server" in ex.body:
        hint = ": the port speaks TLS, but the node is configured for plain HTTP"
    return failed(Code.REGISTRY_NOT_V2, f"GET /v2/ answered {ex.status}{hint}", **evidence)
