"""Layer 7: ``HEAD`` the manifest with the runtime's Accept types and credentials.

Reports digest, media type and size. A 404 is followed by a GET to read the
registry's error code (tag unknown vs repository unknown). An index or manifest
list is fetched (capped) and must list the node's platform, as the runtime
would require when it picks a manifest. A 401 is told apart as the runtime
cannot: no credentials, rejected credentials, or a token without pull rights.
"""

from __future__ import annotations

from typing import Any

from probes._http import Exchange, base_evidence, exchange, exchange_following, registry_errors
from probes._http import prepare as prepare  # HTTP stack, loaded by the engine
from probes.challenge import status_code
from probes.codes import Code
from probes.result import LayerResult
from probes.state import ProbeState, failed, ok, skipped
from probes.wwwauth import parse_www_authenticate

NAME = "manifest"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
INDEX_TYPES = {OCI_INDEX, DOCKER_LIST}
#: Bytes of an index read at most (real indexes are a few KiB).
MAX_INDEX = 4 * 1024 * 1024
#: Tags listed at most as evidence of what does exist.
MAX_TAGS = 10


def _request(state: ProbeState, method: str, limit: int = 64 * 1024) -> Exchange:
    ref = state.reference
    headers = {"Accept": ACCEPT}
    if state.authorization:
        headers["Authorization"] = state.authorization
    url = f"{state.base_url()}/{ref.repository}/manifests/{ref.manifest_ref}"
    ex, hops = exchange_following(state, method, url, headers=headers, limit=limit)
    if hops:
        state.redirects = hops  # evidence: registries may serve manifests from elsewhere
    return ex


def run(state: ProbeState) -> LayerResult:
    ref = state.reference
    if ref.is_bare_registry:
        return skipped("no repository given: probed the registry only")
    ex = _request(state, "HEAD")
    evidence = base_evidence(ex)
    if state.redirects:
        evidence["redirected_to"] = state.redirects
    common = status_code(ex.status)
    if common is not None:
        return failed(common, f"HEAD manifest answered {ex.status}", **evidence)
    if ex.status == 200:
        return _found(state, ex, evidence)
    if ex.status == 404:
        return _not_found(state, evidence)
    if ex.status == 401:
        return _unauthorized(state, ex, evidence)
    if ex.status == 403:
        return failed(Code.ACCESS_DENIED, f"the registry denies pull of {ref.repository} "
                      f"to {_who(state)} (403)", **_with_errors(state, evidence))
    return failed(Code.UNKNOWN, f"HEAD manifest answered {ex.status}", **evidence)


def _who(state: ProbeState) -> str:
    cred = state.credential
    return f"key {cred.key} ({cred.source})" if cred else "anonymous"


def _with_errors(state: ProbeState, evidence: dict[str, Any]) -> dict[str, Any]:
    """HEAD has no body: GET once to read the registry's error codes."""
    get = _request(state, "GET")
    errors = registry_errors(get)
    return {**evidence, "registry_errors": errors} if errors else evidence


def _found(state: ProbeState, ex: Exchange, evidence: dict[str, Any]) -> LayerResult:
    media = ex.content_type
    evidence.update(digest=ex.headers.get("docker-content-digest", "")[:100], media_type=media,
                    size=int(ex.headers.get("content-length", "0") or 0))
    if media not in INDEX_TYPES:
        return ok(f"{media or 'manifest'} {evidence['digest']}".strip(), **evidence)
    body = _request(state, "GET", limit=MAX_INDEX)
    data = body.json()
    manifests = data.get("manifests") if isinstance(data, dict) else None
    if not isinstance(manifests, list) or body.truncated:
        return failed(Code.REGISTRY_NOT_V2, "the index could not be read as JSON", **evidence)
    platforms: list[dict[str, Any]] = [
        m["platform"] for m in manifests if isinstance(m, dict) and isinstance(m.get("platform"), dict)]
    listed = sorted({"/".join(str(p.get(k)) for k in ("os", "architecture", "variant")
                              if p.get(k)) for p in platforms})
    evidence.update(platforms=listed[:32], node_platform=str(state.options.platform))
    if not any(state.options.platform.matches(p) for p in platforms):
        return failed(Code.PLATFORM_MISMATCH, f"index lists {', '.join(listed[:8]) or 'no platform'}"
                      f" but not {state.options.platform}", **evidence)
    return ok(f"index {evidence['digest']} has {state.options.platform}", **evidence)


def _tags(state: ProbeState) -> tuple[bool | None, list[str]]:
    """Whether the repository exists, from ``tags/list``, and its first tags."""
    headers = {"Authorization": state.authorization} if state.authorization else {}
    url = f"{state.base_url()}/{state.reference.repository}/tags/list?n={MAX_TAGS}"
    try:
        ex = exchange(state, "GET", url, headers=headers)
    except Exception:  # noqa: BLE001 - best-effort evidence only
        return None, []
    data = ex.json()
    if ex.status == 200 and isinstance(data, dict):
        tags = data.get("tags") or []
        return True, [str(t)[:64] for t in tags[:MAX_TAGS]] if isinstance(tags, list) else []
    if ex.status == 404 and "NAME_UNKNOWN" in registry_errors(ex):
        return False, []
    return None, []


def _not_found(state: ProbeState, evidence: dict[str, Any]) -> LayerResult:
    evidence = _with_errors(state, evidence)
    errors = evidence.get("registry_errors", [])
    ref = state.reference
    exists, tags = (False, []) if "NAME_UNKNOWN" in errors else _tags(state)
    if exists is False:
        what, evidence["missing"] = f"repository {ref.repository} does not exist", "repository"
    elif exists:
        shown = ", ".join(tags) if tags else "none"
        what = f"{ref.repository} has no manifest {ref.manifest_ref} (tags: {shown})"
        evidence.update(missing="manifest", tags=tags)
    else:
        what = f"{ref.repository}:{ref.manifest_ref} not found"
        evidence["missing"] = "manifest"
    return failed(Code.IMAGE_NOT_FOUND, what, **evidence)


def _unauthorized(state: ProbeState, ex: Exchange, evidence: dict[str, Any]) -> LayerResult:
    challenges = parse_www_authenticate(ex.headers.get_list("www-authenticate"))
    insufficient = any(c.error == "insufficient_scope" for c in challenges)
    evidence["insufficient_scope"] = insufficient
    repo = state.reference.repository
    if state.credential is None:
        return failed(Code.AUTH_MISSING, f"pull of {repo} needs credentials and no docker-config "
                      f"key matches {state.reference.registry}", **evidence)
    if insufficient or state.token_grants_pull is False:
        return failed(Code.ACCESS_DENIED, f"{_who(state)} authenticated but has no pull right on "
                      f"{repo} (the registry does not say whether the repository exists)",
                      **evidence)
    return failed(Code.AUTH_INVALID, f"the registry rejected {_who(state)} for {repo} (401)",
                  **evidence)
