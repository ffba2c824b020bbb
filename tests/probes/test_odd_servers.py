"""Codes the Distribution registry cannot produce, from small real servers on loopback.

A registry whose token realm points at a dead port (``token_endpoint_unreachable``),
and a registry that requires a TLS client certificate: without one the handshake
fails (``tls_other``); with the certificate named in the node's hosts.toml
``client`` entry the probe passes.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from probes import Code
from tests.fleet import Fleet
from tests.probes.conftest import ProbeFn


class _Registry(BaseHTTPRequestHandler):
    """Answers like a registry: /v2/ per the server's mode, manifests found."""

    realm = ""

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in {"Docker-Distribution-Api-Version": "registry/2.0",
                            "Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.realm:
            self._reply(401, {"WWW-Authenticate": f'Bearer realm="{self.realm}",service="odd"',
                              "Content-Type": "application/json"}, b'{"errors":[]}')
        else:
            self._reply(200, {"Content-Type": "application/json"}, b"{}")

    def do_HEAD(self) -> None:  # noqa: N802
        self._reply(200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                          "Docker-Content-Digest": "sha256:" + "0" * 64})


def _serve(handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext | None
           ) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def dead_realm_registry(fleet: Fleet) -> Iterator[int]:
    """A plain-HTTP registry whose Bearer realm is a port nothing listens on."""
    handler = type("DeadRealm", (_Registry,),
                   {"realm": f"http://127.0.0.1:{fleet.closed_port}/token"})
    yield from _serve(handler, None)


@pytest.fixture
def mtls(tmp_path: Path) -> Iterator[tuple[int, Path, Path, Path]]:
    """A TLS 1.2 registry that requires a client certificate; yields port, CA, cert, key."""
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("pulldoctor-client")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # the refusal happens in the handshake
    server_cert.configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    ca_file, cert, key = tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "client.key"
    ca.cert_pem.write_to_path(str(ca_file))
    client_cert.cert_chain_pems[0].write_to_path(str(cert))
    client_cert.private_key_pem.write_to_path(str(key))
    for port in _serve(_Registry, context):
        yield port, ca_file, cert, key


def test_unreachable_token_realm(run_probe: ProbeFn, dead_realm_registry: int) -> None:
    """A realm on a dead port is token_endpoint_unreachable; the evidence names the cause."""
    report = run_probe(f"127.0.0.1:{dead_realm_registry}/a/b:v1", plain_http=True)
    token = report.layer("token")
    assert report.code is Code.TOKEN_ENDPOINT_UNREACHABLE and token is not None
    assert token.evidence["cause"] == "tcp_refused"


def test_client_certificate_required_and_missing(run_probe: ProbeFn,
                                                 mtls: tuple[int, Path, Path, Path]) -> None:
    """A server that demands a client certificate fails the handshake: tls_other."""
    port, ca_file, _, _ = mtls
    report = run_probe(f"127.0.0.1:{port}/a/b:v1", ca_files=(ca_file,), certs_dirs=())
    assert (report.code, report.diagnosis.layer if report.diagnosis else None) == (
        Code.TLS_OTHER, "tls")


def test_client_certificate_from_hosts_toml(run_probe: ProbeFn, tmp_path: Path,
                                            mtls: tuple[int, Path, Path, Path]) -> None:
    """The hosts.toml ``client`` pair is presented, as containerd would: the probe passes."""
    port, ca_file, cert, key = mtls
    host_dir = tmp_path / "certs.d" / f"127.0.0.1:{port}"
    host_dir.mkdir(parents=True)
    (host_dir / "hosts.toml").write_text(
        f'server = "https://127.0.0.1:{port}"\n\n[host."https://127.0.0.1:{port}"]\n'
        f'  capabilities = ["pull", "resolve"]\n  ca = "{ca_file}"\n'
        f'  client = [["{cert}", "{key}"]]\n')
    report = run_probe(f"127.0.0.1:{port}/a/b:v1", certs_dirs=(tmp_path / "certs.d",))
    assert report.ok, report.to_dict()


def test_closed_port_is_really_closed(fleet: Fleet) -> None:
    """Guard for the realm case: nothing listens on the fleet's closed port."""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", fleet.closed_port), timeout=1).close()
