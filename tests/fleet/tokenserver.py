"""A Docker registry token server (Distribution "token" auth) for the ``token`` registry.

Follows infra-recipes §1: RS256 JWTs with an ``x5c`` header holding the
signing certificate, which Distribution verifies against ``rootcertbundle``.
It answers both ``GET /token`` (Basic auth; docker, skopeo, httpx) and
``POST /token`` (OAuth2 password grant; containerd tries it first).

Policy:

* ``alice``/``secret`` — granted every requested scope;
* ``bob``/``bob`` — authenticated, granted nothing;
* anonymous — ``pull`` only, and only on repositories under ``public/``;
* a wrong password or unknown user — 401 with a JSON error.

Tokens expire after 300 s; responses carry ``token``, ``access_token``,
``expires_in`` and ``issued_at``. Every request is recorded (method, path,
user name, scopes, status) in :attr:`TokenServer.requests` — never a password
or a token. It refuses refresh-token grants (400 ``unsupported_grant_type``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import ssl
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.fleet.accounts import ALICE, BOB, TOKEN_ISSUER, TOKEN_SERVICE
from tests.fleet.certs import FleetCerts
from tests.fleet.httpbase import QuietHandler, ServerThread, TrackingHTTPServer
from tests.fleet.sockets import LOOPBACK, record

__all__ = ["TOKEN_LIFETIME_SECONDS", "TokenRequest", "TokenServer", "grant", "start_token_server"]

TOKEN_LIFETIME_SECONDS = 300
_USERS = dict([ALICE, BOB])


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server answered (no secrets recorded)."""

    method: str
    path: str
    username: str | None
    scopes: tuple[str, ...]
    status: int


def _parse_scope(scope: str) -> tuple[str, str, list[str]]:
    """``repository:name:pull,push`` → type, name, actions (the name may contain ``:``)."""
    typ, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    return typ, name, [a for a in actions.split(",") if a]


def grant(user: str | None, scopes: list[str]) -> list[dict[str, object]]:
    """The ``access`` claim for ``user`` (None = anonymous) asking for ``scopes``."""
    access: list[dict[str, object]] = []
    for scope in scopes:
        typ, name, actions = _parse_scope(scope)
        if user == ALICE[0]:
            allowed = actions
        elif user is None and typ == "repository" and name.startswith("public/"):
            allowed = [a for a in actions if a == "pull"]
        else:
            allowed = []
        if allowed:
            access.append({"type": typ, "name": name, "actions": allowed})
    return access


@dataclass
class _Signer:
    key: bytes = field(repr=False)
    x5c: list[str]
    issuer: str = TOKEN_ISSUER

    @classmethod
    def load(cls, certs: FleetCerts) -> _Signer:
        cert = x509.load_pem_x509_certificate(certs.token_signing_cert.read_bytes())
        der = cert.public_bytes(serialization.Encoding.DER)
        return cls(key=certs.token_signing_key.read_bytes(), x5c=[base64.b64encode(der).decode()])

    def issue(self, user: str | None, service: str, scopes: list[str]) -> dict[str, object]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": service,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "nbf": now - 1,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": grant(user, scopes),
        }
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"x5c": self.x5c})
        issued = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "token": token,
            "access_token": token,
            "expires_in": TOKEN_LIFETIME_SECONDS,
            "issued_at": issued,
        }


_BAD_CREDENTIALS = json.dumps(
    {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}
).encode()


class _TokenHandler(QuietHandler):
    server: _TokenHTTPServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        cred = self._basic_credentials()
        scopes = [s for v in query.get("scope", []) for s in v.split()]
        self._answer(url.path, cred, query.get("service", [TOKEN_SERVICE])[0], scopes)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode(errors="replace"))
        grant_type = form.get("grant_type", [""])[0]
        if url.path == "/token" and grant_type != "password":
            self._json(400, {"error": "unsupported_grant_type"}, None, [])
            return
        name = form.get("username", [None])[0]
        cred = (name, form.get("password", [""])[0]) if name else None
        scopes = [s for v in form.get("scope", []) for s in v.split()]
        self._answer(url.path, cred, form.get("service", [TOKEN_SERVICE])[0], scopes)

    def _basic_credentials(self) -> tuple[str, str] | None:
        auth = self.headers.get("Authorization", "")
        if not auth.lower().startswith("basic "):
            return None
        try:
            name, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return ("", "")
        return name, password

    def _answer(
        self, path: str, cred: tuple[str, str] | None, service: str, scopes: list[str]
    ) -> None:
        user = cred[0] if cred else None
        if path != "/token":
            self._json(
                404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]}, user, scopes
            )
        elif cred is not None and _USERS.get(cred[0]) != cred[1]:
            self._record(401, user, scopes)
            self.send_body(
                401,
                _BAD_CREDENTIALS,
                "application/json",
                {"WWW-Authenticate": 'Basic realm="pulldoctor-fleet-token"'},
            )
        else:
            self._json(200, self.server.signer.issue(user, service, scopes), user, scopes)

    def _json(self, status: int, body: object, user: str | None, scopes: list[str]) -> None:
        self._record(status, user, scopes)
        self.send_body(status, json.dumps(body).encode(), "application/json")

    def _record(self, status: int, user: str | None, scopes: list[str]) -> None:
        path = urlsplit(self.path).path
        record(self.server.requests, TokenRequest(self.command, path, user, tuple(scopes), status))


class _TokenHTTPServer(TrackingHTTPServer):
    def __init__(self, log: Path, context: ssl.SSLContext, signer: _Signer) -> None:
        self.signer = signer
        self.requests: list[TokenRequest] = []
        super().__init__(_TokenHandler, log, context)


@dataclass
class TokenServer:
    """The running token server: ``url`` is the realm (``https://127.0.0.1:PORT/token``)."""

    port: int
    log: Path
    requests: list[TokenRequest] = field(repr=False)
    _thread: ServerThread = field(repr=False)
    service: str = TOKEN_SERVICE
    issuer: str = TOKEN_ISSUER

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.host}/token"

    def stop(self) -> None:
        self._thread.stop()


def start_token_server(certs: FleetCerts, log: Path) -> TokenServer:
    """Start the HTTPS token server in a thread (leaf from the fleet CA)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf = certs.leaves["good"]
    context.load_cert_chain(leaf.cert, leaf.key)
    server = _TokenHTTPServer(log, context, _Signer.load(certs))
    thread = ServerThread(server, "fleet-token-server")
    return TokenServer(port=server.port, log=log, requests=server.requests, _thread=thread)
