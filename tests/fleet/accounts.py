"""The fleet's test accounts, in one place so no test spells a password twice.

These are throw-away credentials for loopback servers started by the tests;
they still must never be logged or shown in a repr by code under test.
"""

from __future__ import annotations

__all__ = [
    "ALICE",
    "BOB",
    "PROXY_PASSWORD",
    "PROXY_USER",
    "TOKEN_ISSUER",
    "TOKEN_SERVICE",
]

#: Granted every requested scope by the token server; the htpasswd user of ``basic``.
ALICE = ("alice", "secret")
#: Authenticates at the token server but is granted nothing.
BOB = ("bob", "bob")
PROXY_USER = "proxyuser"
PROXY_PASSWORD = "proxypass"
#: The ``service`` and ``issuer`` shared by the token registry and the token server.
TOKEN_SERVICE = "registry.test"
TOKEN_ISSUER = "pulldoctor-fleet-issuer"
