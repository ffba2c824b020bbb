"""Layer 6: authenticate the way the runtime will: fetch a Bearer token, or check Basic.

Credentials are the ones the kubelet would hand the runtime for this image
(every matching docker-config entry, most specific first, tried in order as the
kubelet does). For Bearer the realm is asked for ``repository:NAME:pull``; a
JWT's ``access`` claim is read (not verified) to say whether it grants pull.
For Basic the credentials are checked against ``/v2/``. Anonymous registries
skip the layer. Tokens and passwords stay in memory: evidence names only the
matching key and where it came from.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from probes._http import MAX_REDIRECTS, Exchange, base_evidence, exchange, exchange_following
from probes._http import prepare as prepare  # HTTP stack, loaded by the engine
from probes.cache import CachedToken, fingerprint
from probes.challenge import status_code
from probes.codes import Code
from probes.credentials import Credential
from probes.errors import describe_exception, diagnose_exception
from probes.result import LayerResult
from probes.state import ProbeState, failed, ok, skipped
from probes.wwwauth import Challenge

NAME = "token"
MAX_TOKEN_RESPONSE = 1024 * 1024


def basic_header(cred: Credential) -> str:
    raw = f"{cred.username}:{cred.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def jwt_access(token: str) -> list[dict[str, Any]] | None:
    """The ``access`` claim of a JWT, read without verifying it (None if not a JWT)."""
    parts = token.split(".")
    if len(parts) != 3 or len(parts[1]) > 64 * 1024:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    access = payload.get("access") if isinstance(payload, dict) else None
    return [a for a in access if isinstance(a, dict)] if isinstance(access, list) else None


def grants_pull(access: list[dict[str, Any]], repository: str) -> bool:
    for entry in access:
        actions = entry.get("actions")
        if entry.get("type") == "repository" and entry.get("name") in (repository, "*") \
                and isinstance(actions, list) and ({"pull", "*"} & set(map(str, actions))):
            return True
    return False


def _credentials(state: ProbeState) -> list[Credential]:
    keyring = state.options.keyring
    state.credentials = keyring.lookup(state.reference.name) if keyring is not None else []
    return state.credentials


def run(state: ProbeState) -> LayerResult:
    bearer = next((c for c in state.challenges if c.scheme == "bearer"), None)
    basic = next((c for c in state.challenges if c.scheme == "basic"), None)
    creds = _credentials(state)
    evidence: dict[str, Any] = {"credentials_matched": len(creds)}
    if creds:
        evidence["credential_keys"] = [f"{c.source}: {c.key}" for c in creds[:8]]
    if bearer is not None:
        return _bearer(state, bearer, creds, evidence)
    if basic is not None:
        return _basic(state, creds, evidence)
    if state.challenges:
        schemes = ", ".join(c.scheme for c in state.challenges)
        return failed(Code.REGISTRY_NOT_V2, f"no supported auth scheme among: {schemes}",
                      **evidence)
    return skipped("registry allows anonymous access; no token needed", **evidence)


def _basic(state: ProbeState, creds: list[Credential], evidence: dict[str, Any]) -> LayerResult:
    if not creds:
        return failed(Code.AUTH_MISSING, f"{state.reference.registry} requires Basic "
                      "credentials and no docker-config key matches it", **evidence)
    for cred in creds:
        ex = exchange(state, "GET", f"{state.base_url()}/",
                      headers={"Authorization": basic_header(cred)})
        evidence.update(base_evidence(ex))
        common = status_code(ex.status)
        if common is not None:
            return failed(common, f"GET /v2/ with credentials answered {ex.status}", **evidence)
        if ex.status == 200:
            state.credential, state.authorization = cred, basic_header(cred)
            return ok(f"Basic credentials of key {cred.key} ({cred.source}) accepted",
                      credential=f"{cred.source}: {cred.key}", **evidence)
    return failed(Code.AUTH_INVALID, f"the registry rejected the Basic credentials of "
                  f"{len(creds)} matching key(s) (last answer {ex.status})", **evidence)


def _token_request(state: ProbeState, bearer: Challenge, cred: Credential | None) -> Exchange:
    query = {"service": bearer.service} if bearer.service else {}
    scope = f"repository:{state.reference.repository}:pull" if state.reference.repository else None
    if cred is not None and cred.identity_token:
        form = {"grant_type": "refresh_token", "refresh_token": cred.identity_token,
                "client_id": "pulldoctor", **query, **({"scope": scope} if scope else {})}
        return exchange(state, "POST", bearer.realm or "", data=form, limit=MAX_TOKEN_RESPONSE)
    if scope:
        query["scope"] = scope
    url = (bearer.realm or "") + ("&" if "?" in (bearer.realm or "") else "?") + urlencode(query)
    headers = {"Authorization": basic_header(cred)} if cred is not None else {}
    return exchange_following(state, "GET", url, headers=headers, limit=MAX_TOKEN_RESPONSE)[0]


def _bearer(state: ProbeState, bearer: Challenge, creds: list[Credential],
            evidence: dict[str, Any]) -> LayerResult:
    realm = bearer.realm or ""
    evidence.update(realm=realm[:200], service=bearer.service)
    if urlsplit(realm).scheme not in ("http", "https"):
        return failed(Code.REGISTRY_NOT_V2, f"Bearer challenge has no usable realm: {realm[:80]!r}",
                      **evidence)
    reused = _reuse_token(state, bearer, creds, evidence)
    if reused is not None:
        return reused
    last: Exchange | None = None
    choices: list[Credential | None] = list(creds) or [None]
    for cred in choices:
        try:
            ex = _token_request(state, bearer, cred)
        except Exception as exc:  # noqa: BLE001 - any network failure of the realm
            cause, why = diagnose_exception(exc, "token"), describe_exception(exc)
            if state.sockets.expired:  # the watchdog cut a slow realm; it did not reset
                cause, why = Code.TIMEOUT, f"no complete answer by the deadline ({why})"
            return failed(Code.TOKEN_ENDPOINT_UNREACHABLE,
                          f"token endpoint {urlsplit(realm).netloc}: {why}",
                          cause=cause.value, **evidence)
        last = ex
        evidence.update(base_evidence(ex))
        common = status_code(ex.status)
        if common is not None:
            return failed(common, f"token endpoint answered {ex.status}", **evidence)
        if 300 <= ex.status < 400:  # a loop or a redirect without Location: no credential fault
            return failed(Code.REGISTRY_NOT_V2, f"token endpoint still answers {ex.status} after "
                          f"{MAX_REDIRECTS} redirects or gives no Location", **evidence)
        if ex.status == 200:
            return _accept_token(state, ex, cred, evidence, _token_key(state, bearer, cred))
    assert last is not None
    if not creds:
        return failed(Code.AUTH_MISSING, f"the token endpoint refuses anonymous access "
                      f"({last.status}) and no docker-config key matches "
                      f"{state.reference.registry}", **evidence)
    return failed(Code.AUTH_INVALID, f"the token endpoint rejected the credentials of "
                  f"{len(creds)} matching key(s) (last answer {last.status})", **evidence)


def _token_key(state: ProbeState, bearer: Challenge, cred: Credential | None) -> tuple[str, ...]:
    return (state.target.url, bearer.realm or "", bearer.service or "",
            state.reference.repository, fingerprint(cred))


def _reuse_token(state: ProbeState, bearer: Challenge, creds: list[Credential],
                 evidence: dict[str, Any]) -> LayerResult | None:
    """A still-valid token from an earlier probe, as a runtime would reuse it."""
    if state.cache is None:
        return None
    choices: list[Credential | None] = list(creds) or [None]
    for cred in choices:
        cached = state.cache.token(_token_key(state, bearer, cred))
        if cached is not None:
            state.credential, state.authorization = cred, cached.authorization
            state.token_grants_pull = cached.grants_pull
            left = int(cached.expires_at - time.monotonic())
            return ok(f"reused a token of {_who(cred)} valid for {left}s more",
                      **{**evidence, **cached.evidence, "shared": True})
    return None


def _who(cred: Credential | None) -> str:
    return f"key {cred.key} ({cred.source})" if cred else "anonymous"


def _accept_token(state: ProbeState, ex: Exchange, cred: Credential | None,
                  evidence: dict[str, Any], bearer_key: tuple[str, ...] | None) -> LayerResult:
    data = ex.json()
    token = None
    if isinstance(data, dict):
        token = data.get("token") or data.get("access_token")
    if not isinstance(token, str) or not token or ex.truncated:
        return failed(Code.REGISTRY_NOT_V2, "token endpoint answered 200 without a token",
                      **evidence)
    raw_expiry = data.get("expires_in")
    expires = min(max(raw_expiry, 0), 86400) if type(raw_expiry) is int else 60
    evidence.update(expires_in=expires, issued_at=str(data.get("issued_at", ""))[:40],
                    anonymous=cred is None)
    state.credential, state.authorization = cred, f"Bearer {token}"
    access = jwt_access(token)
    who = _who(cred)
    if access is None or not state.reference.repository:
        evidence["token_kind"] = "opaque" if access is None else "jwt"
        detail = f"token issued to {who}, expires in {expires}s"
    else:
        state.token_grants_pull = grants_pull(access, state.reference.repository)
        evidence.update(token_kind="jwt", grants_pull=state.token_grants_pull)
        verdict = "grants" if state.token_grants_pull else "does NOT grant"
        detail = f"token issued to {who} {verdict} pull on {state.reference.repository}"
    if state.cache is not None and bearer_key is not None:
        state.cache.store_token(bearer_key, CachedToken(
            state.authorization, time.monotonic() + expires, state.token_grants_pull,
            {k: evidence[k] for k in ("token_kind", "grants_pull", "anonymous") if k in evidence}))
    return ok(detail, **evidence)
