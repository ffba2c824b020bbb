"""Docker client configuration files in the three shapes kubelet and tools read.

* ``auths`` — ``{"auths": {KEY: {"auth": base64("user:pass")}}}`` (config.json);
* ``username`` — ``{"auths": {KEY: {"username": U, "password": P}}}``;
* ``dockercfg`` — the legacy ``.dockercfg``: ``{KEY: {"auth": …, "email": …}}``.

Files are written with mode 0600. It refuses unknown shapes, and never prints
the content it writes.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

__all__ = ["SHAPES", "write_docker_config"]

SHAPES = ("auths", "username", "dockercfg")


def _entry(user: str, password: str, shape: str) -> dict[str, str]:
    if shape == "username":
        return {"username": user, "password": password}
    entry = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    if shape == "dockercfg":
        entry["email"] = f"{user}@example.invalid"
    return entry


def write_docker_config(
    entries: dict[str, tuple[str, str]], path: Path, shape: str = "auths"
) -> Path:
    """Write ``entries`` (registry key → (user, password)) to ``path`` in ``shape``."""
    if shape not in SHAPES:
        raise ValueError(f"unknown docker config shape {shape!r}; expected one of {SHAPES}")
    body = {key: _entry(user, password, shape) for key, (user, password) in entries.items()}
    document = body if shape == "dockercfg" else {"auths": body}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out, indent=2)
    return path
