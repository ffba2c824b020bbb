"""Structured JSON logs for ``kubectl logs``: one object per line, a sentence in ``message``.

Event names are snake_case facts (``pull_diagnosed``, ``probe_failed``) and
field names match the metric labels (``registry``, ``code``, ``layer``). As a
last line of defence every string that passes through is scrubbed of things
shaped like credentials (Basic/Bearer values, JWTs, docker-config ``auth``
fields, ``user:password@`` in URLs): the code above never logs one, and this
makes sure a message quoted from elsewhere cannot either.
"""

from __future__ import annotations

import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["Log", "configure", "scrub"]

Log = Any  # a structlog bound logger: .info/.warning/.error(event, **fields)

_SECRETS = (
    # a credential after Basic/Bearer: long, and with a digit or base64 punctuation (not a word)
    (re.compile(r"(?i)\b(basic|bearer)\s+(?=[A-Za-z0-9._~+/=-]*[0-9+/=])[A-Za-z0-9._~+/=-]{8,}"),
     r"\1 [redacted]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*"), "[redacted-jwt]"),
    (re.compile(r'(?i)("?(?:auth|password|identitytoken|token|access_token)"?\s*[:=]\s*)'
                r'"[^"]*"'), r'\1"[redacted]"'),
    (re.compile(r"(?i)\b(password|passwd|token)=([^&\s\"']+)"), r"\1=[redacted]"),
    (re.compile(r"(://[^/\s:@]+):[^/\s@]+@"), r"\1:[redacted]@"),
)


def scrub(value: Any) -> Any:
    """Redact credential-shaped substrings in strings, recursively through lists and dicts."""
    if isinstance(value, str):
        for pattern, replacement in _SECRETS:
            value = pattern.sub(replacement, value)
        return value
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


def _scrub_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    return {key: scrub(value) for key, value in event.items()}


def configure(stream: TextIO | None = None, **context: Any) -> Log:
    """A JSON logger writing to ``stream`` (stdout by default), with ``context`` on every line."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _scrub_processor,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=False,
    )
    return structlog.get_logger().bind(**context)
