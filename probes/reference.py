"""Image references, parsed and normalised the way the Docker distribution library does.

``nginx`` means ``docker.io/library/nginx:latest``; ``index.docker.io`` is
``docker.io``; a first component with a ``.`` or ``:`` or equal to
``localhost`` is a registry. Registry hosts are additionally accepted on their
own (``registry.example.com:5000``) so a registry can be probed without an
image; such a reference has no repository and stops before the manifest layer.
This module refuses to guess: anything outside the grammar is a
:class:`ReferenceError` that says what is wrong.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = ["Reference", "ReferenceError", "parse_reference", "DOCKER_HUB", "DOCKER_HUB_API"]

DOCKER_HUB = "docker.io"
#: The host Docker Hub's registry API actually answers on.
DOCKER_HUB_API = "registry-1.docker.io"
_MAX_NAME = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"^(?P<host>{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]+))?$"
)
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)  # Go's \w is ASCII only
_DIGEST_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")


class ReferenceError(ValueError):
    """The text is not a valid image reference; the message says why."""


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalised image reference (or a bare registry when ``repository`` is empty)."""

    domain: str  # host[:port] as written, docker.io normalised
    repository: str  # "" for a bare registry
    tag: str | None = None
    digest: str | None = None

    @property
    def host(self) -> str:
        """The host part of the domain, without port or IPv6 brackets."""
        host = self.domain.rsplit(":", 1)[0] if self._has_port else self.domain
        return host.strip("[]")

    @property
    def _has_port(self) -> bool:
        return bool(re.search(r":[0-9]+$", self.domain)) and not self.domain.endswith("]")

    @property
    def port(self) -> int | None:
        if not self._has_port:
            return None
        return int(self.domain.rsplit(":", 1)[1])

    @property
    def registry(self) -> str:
        """The registry as ``host[:port]``: the ``registry`` label value."""
        return self.domain

    @property
    def api_domain(self) -> str:
        """The ``host[:port]`` to contact: Docker Hub's API lives on another host."""
        return DOCKER_HUB_API if self.domain == DOCKER_HUB else self.domain

    @property
    def is_bare_registry(self) -> bool:
        return not self.repository

    @property
    def manifest_ref(self) -> str:
        """What goes after ``/manifests/``: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def name(self) -> str:
        """``domain/repository`` without tag or digest (what the kubelet matches keys to)."""
        return f"{self.domain}/{self.repository}" if self.repository else self.domain

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def _looks_like_registry(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost" or _is_ip(first)


def _is_bare_registry(text: str) -> bool:
    """``host[:port]`` alone: a host-like first part and, if any, a numeric port."""
    text = text.rstrip("/")
    if "/" in text or "@" in text:
        return False
    if text.startswith("["):
        return True
    host, _, port = text.partition(":")
    return ("." in host or host == "localhost") and (not port or port.isdigit())


def _check_domain(domain: str, text: str) -> None:
    match = _DOMAIN_RE.match(domain)
    if not match or (match.group("host").startswith("[") and not _is_ip(match.group("host"))):
        raise ReferenceError(f"invalid registry host {domain!r} in {text!r}")
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise ReferenceError(f"invalid port {port} in {text!r}")


def parse_reference(text: str) -> Reference:
    """Parse ``text`` into a normalised :class:`Reference`, or raise :class:`ReferenceError`."""
    if not isinstance(text, str) or not text.strip():
        raise ReferenceError("empty image reference")
    text = text.strip()
    if len(text) > 4096 or any(ch.isspace() for ch in text):
        raise ReferenceError(f"image reference {text[:80]!r} contains whitespace or is too long")
    if _is_bare_registry(text):
        domain = text.rstrip("/")
        _check_domain(domain, text)
        return Reference(domain=_normalise_domain(domain), repository="")

    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise ReferenceError(f"invalid digest {digest!r} in {text!r}")
    tag = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
        if not _TAG_RE.match(tag):
            raise ReferenceError(f"invalid tag {tag!r} in {text!r}")

    first, sep, remainder = rest.partition("/")
    if sep and _looks_like_registry(first):
        domain, path = first, remainder
        _check_domain(domain, text)
    else:
        domain, path = DOCKER_HUB, rest
    domain = _normalise_domain(domain)
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if path.lower() != path and _PATH_RE.match(path.lower()):
        raise ReferenceError(f"repository name must be lowercase: {path!r} in {text!r}")
    if not _PATH_RE.match(path):
        raise ReferenceError(f"invalid repository name {path!r} in {text!r}")
    if len(f"{domain}/{path}") > _MAX_NAME:
        raise ReferenceError(f"repository name longer than {_MAX_NAME} characters in {text!r}")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(domain=domain, repository=path, tag=tag, digest=digest)


def _normalise_domain(domain: str) -> str:
    return DOCKER_HUB if domain in {"index.docker.io", DOCKER_HUB} else domain
