"""Every diagnosis loopback can produce, produced by a real server of the fleet.

Each row names a fleet member, a reference, the credentials and options, and the
code and layer the probe must report. The servers are the Debian Distribution
registry (plain, TLS, htpasswd, token auth, bad certificates), tinyproxy, a real
DNS server, and small Python servers for what the registry cannot do.
"""

from __future__ import annotations

from typing import Any

import pytest

from probes import Code, ProbeReport, Status
from tests.fleet import ALICE, BOB, PROXY_PASSWORD, PROXY_USER, Fleet
from tests.probes.conftest import ProbeFn


def hosts(fleet: Fleet) -> dict[str, str]:
    table = {name: reg.host for name, reg in fleet.registries.items()}
    table.update({f"q_{name}": q.host for name, q in fleet.quirky.items()})
    table.update(closed=f"127.0.0.1:{fleet.closed_port}", silent=f"127.0.0.1:{fleet.silent_port}",
                 blackhole=f"127.0.0.1:{fleet.blackhole_port}",
                 reset=f"127.0.0.1:{fleet.reset_port}",
                 plain_port=str(fleet.registries["plain"].port),
                 tls_port=str(fleet.registries["tls"].port))
    return table


# (id, reference template, probe kwargs, expected code, failing layer or None)
CASES: list[tuple[str, str, dict[str, Any], Code, str | None]] = [
    ("plain-healthy", "{plain}/test/hello:v1", {"plain_http": True}, Code.OK, None),
    ("tls-healthy", "{tls}/test/hello:v1", {}, Code.OK, None),
    ("multi-platform-index", "{tls}/test/multi:v1", {}, Code.OK, None),
    ("docker-manifest-list", "{tls}/test/dockerlist:v1", {}, Code.OK, None),
    ("index-without-platform", "{tls}/test/otherarch:v1", {}, Code.PLATFORM_MISMATCH, "manifest"),
    ("missing-tag", "{tls}/test/hello:nope", {}, Code.IMAGE_NOT_FOUND, "manifest"),
    ("missing-repository", "{plain}/nope/nope:v1", {"plain_http": True}, Code.IMAGE_NOT_FOUND,
     "manifest"),
    ("untrusted-ca", "{untrusted}/test/hello:v1", {}, Code.TLS_UNKNOWN_AUTHORITY, "tls"),
    ("expired-cert", "{expired}/test/hello:v1", {}, Code.TLS_EXPIRED, "tls"),
    ("not-yet-valid-cert", "{notyet}/test/hello:v1", {}, Code.TLS_NOT_YET_VALID, "tls"),
    ("hostname-mismatch", "{mismatch}/test/hello:v1", {}, Code.TLS_HOSTNAME_MISMATCH, "tls"),
    # a non-loopback name gets HTTPS and no plain-HTTP fallback (containerd's default)
    ("tls-to-plain-port", "registry.test:{plain_port}/test/hello:v1", {}, Code.TLS_PLAIN_HTTP,
     "tls"),
    # loopback registries without hosts.toml: HTTPS first, then plain HTTP, as containerd does
    ("loopback-http-fallback", "{plain}/test/hello:v1", {}, Code.OK, None),
    ("plain-to-tls-port", "{tls}/test/hello:v1", {"plain_http": True}, Code.REGISTRY_NOT_V2,
     "challenge"),
    ("basic-good", "{basic}/test/hello:v1", {"creds": {"{basic}": ALICE}}, Code.OK, None),
    ("basic-wrong-password", "{basic}/test/hello:v1",
     {"creds": {"{basic}": (ALICE[0], "wrong")}}, Code.AUTH_INVALID, "token"),
    ("basic-no-credentials", "{basic}/test/hello:v1", {}, Code.AUTH_MISSING, "token"),
    ("basic-key-for-other-registry", "{basic}/test/hello:v1",
     {"creds": {"{tls}": ALICE}}, Code.AUTH_MISSING, "token"),
    ("token-good", "{token}/test/hello:v1", {"creds": {"{token}": ALICE}}, Code.OK, None),
    ("token-good-username-shape", "{token}/test/hello:v1",
     {"creds": {"https://{token}": ALICE}, "shape": "username"}, Code.OK, None),
    ("token-good-dockercfg-shape", "{token}/test/hello:v1",
     {"creds": {"{token}": ALICE}, "shape": "dockercfg"}, Code.OK, None),
    ("token-wrong-password", "{token}/test/hello:v1",
     {"creds": {"{token}": (ALICE[0], "wrong")}}, Code.AUTH_INVALID, "token"),
    ("token-no-credentials", "{token}/test/hello:v1", {}, Code.AUTH_MISSING, "manifest"),
    ("token-no-pull-right", "{token}/test/hello:v1", {"creds": {"{token}": BOB}},
     Code.ACCESS_DENIED, "manifest"),
    ("token-anonymous-public", "{token}/public/hello:v1", {}, Code.OK, None),
    ("token-missing-tag", "{token}/test/hello:nope", {"creds": {"{token}": ALICE}},
     Code.IMAGE_NOT_FOUND, "manifest"),
    ("bare-registry-token", "{token}", {"creds": {"{token}": ALICE}}, Code.OK, None),
    ("bare-registry-basic-no-creds", "{basic}", {}, Code.AUTH_MISSING, "token"),
    ("closed-port", "{closed}/test/hello:v1", {}, Code.TCP_REFUSED, "tcp"),
    ("blackhole-port", "{blackhole}/test/hello:v1", {"timeout": 2.0}, Code.TCP_TIMEOUT, "tcp"),
    ("silent-tls-port", "{silent}/test/hello:v1", {"timeout": 2.0}, Code.TLS_HANDSHAKE_TIMEOUT,
     "tls"),
    ("silent-plain-port", "{silent}/test/hello:v1", {"timeout": 2.0, "plain_http": True},
     Code.TIMEOUT, "challenge"),
    ("reset-port", "{reset}/test/hello:v1", {"plain_http": True}, Code.EOF_OR_RESET, "challenge"),
    ("html-front-page", "{q_html}/test/hello:v1", {"plain_http": True}, Code.REGISTRY_NOT_V2,
     "challenge"),
    ("rate-limited", "{q_ratelimit}/test/hello:v1", {"plain_http": True}, Code.RATE_LIMITED,
     "manifest"),
    ("registry-503", "{q_error500}/test/hello:v1", {"plain_http": True},
     Code.REGISTRY_SERVER_ERROR, "challenge"),
    ("manifest-500", "{q_manifest500}/test/hello:v1", {"plain_http": True},
     Code.REGISTRY_SERVER_ERROR, "manifest"),
    ("forbidden", "{q_forbidden}/test/hello:v1", {"plain_http": True}, Code.ACCESS_DENIED,
     "manifest"),
    ("dns-name-healthy", "registry.test:{tls_port}/test/hello:v1", {}, Code.OK, None),
    ("dns-search-list", "registry:{plain_port}/test/hello:v1", {"plain_http": True}, Code.OK,
     None),
    # the search list finds registry.corp.test, but TLS verifies the name as written
    ("search-list-short-name-tls", "registry:{tls_port}/test/hello:v1", {"ca_files": "CA"},
     Code.TLS_HOSTNAME_MISMATCH, "tls"),
    ("hosts-file-name", "hostsonly.test:{plain_port}/test/hello:v1", {"plain_http": True},
     Code.OK, None),
    ("dns-nxdomain", "registry.nx.test:{tls_port}/test/hello:v1", {}, Code.DNS_NXDOMAIN, "dns"),
    ("dns-servfail", "registry.servfail.test:{tls_port}/test/hello:v1", {}, Code.DNS_FAILURE,
     "dns"),
    ("dns-refused", "registry.refused.test:{tls_port}/test/hello:v1", {}, Code.DNS_FAILURE,
     "dns"),
    ("dns-no-address", "noaddr.test:{tls_port}/test/hello:v1", {}, Code.DNS_FAILURE, "dns"),
    ("dns-silent", "registry.drop.test:{tls_port}/test/hello:v1", {"timeout": 2.0},
     Code.DNS_TIMEOUT, "dns"),
    ("proxy-open", "{tls}/test/hello:v1", {"proxy": "open"}, Code.OK, None),
    ("proxy-auth-good", "{tls}/test/hello:v1", {"proxy": "auth-good"}, Code.OK, None),
    ("proxy-auth-missing", "{tls}/test/hello:v1", {"proxy": "auth-none"},
     Code.PROXY_AUTH_REQUIRED, "proxy"),
    ("proxy-auth-wrong", "{tls}/test/hello:v1", {"proxy": "auth-wrong"},
     Code.PROXY_AUTH_REQUIRED, "proxy"),
    ("proxy-port-not-allowed", "{q_html}/test/hello:v1", {"proxy": "open"}, Code.PROXY_REFUSED,
     "proxy"),
    ("proxy-cannot-reach-registry", "{closed}/test/hello:v1", {"proxy": "open"},
     Code.PROXY_REFUSED, "proxy"),
    ("proxy-down", "{tls}/test/hello:v1", {"proxy": "down"}, Code.PROXY_UNREACHABLE, "tcp"),
    ("proxy-name-unknown", "{tls}/test/hello:v1", {"proxy": "nxname"}, Code.PROXY_UNREACHABLE,
     "dns"),
    ("proxy-token-through-tunnel", "{token}/test/hello:v1",
     {"proxy": "open", "creds": {"{token}": ALICE}}, Code.OK, None),
]


def _proxy_url(fleet: Fleet, kind: str) -> str:
    port = fleet.proxies["auth" if kind.startswith("auth") else "open"].port
    return {
        "open": f"http://127.0.0.1:{port}",
        "auth-good": f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{port}",
        "auth-none": f"http://127.0.0.1:{port}",
        "auth-wrong": f"http://{PROXY_USER}:wrong@127.0.0.1:{port}",
        "down": f"http://127.0.0.1:{fleet.closed_port}",
        "nxname": "http://proxy.nx.test:3128",
    }[kind]


def _kwargs(fleet: Fleet, table: dict[str, str], raw: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(raw)
    if "creds" in kwargs:
        kwargs["creds"] = {k.format(**table): v for k, v in kwargs["creds"].items()}
    if kwargs.get("ca_files") == "CA":
        kwargs["ca_files"] = (fleet.ca_file,)
    if "proxy" in kwargs:
        url = _proxy_url(fleet, kwargs.pop("proxy"))
        kwargs["proxy_for"] = lambda scheme, host, port: url
    return kwargs


@pytest.mark.parametrize(("case", "template", "raw", "code", "layer"), CASES,
                         ids=[c[0] for c in CASES])
def test_fleet_member_is_diagnosed(fleet: Fleet, run_probe: ProbeFn, case: str, template: str,
                                   raw: dict[str, Any], code: Code, layer: str | None) -> None:
    """The probe names the right code at the right layer for each real fault."""
    table = hosts(fleet)
    report = run_probe(template.format(**table), **_kwargs(fleet, table, raw))
    assert (report.code, report.diagnosis.layer if report.diagnosis else None) == (code, layer), \
        report.to_dict()
    assert report.ok is (code is Code.OK)


def test_timeouts_end_within_deadline(fleet: Fleet, run_probe: ProbeFn) -> None:
    """A black-holed port ends by the probe's deadline, not the kernel's SYN retries."""
    report = run_probe(f"127.0.0.1:{fleet.blackhole_port}/test/hello:v1", timeout=1.5)
    assert report.code is Code.TCP_TIMEOUT and report.seconds < 1.5 + 0.5


def test_healthy_tls_reports_certificate_evidence(fleet: Fleet, run_probe: ProbeFn) -> None:
    """A verified handshake reports the certificate's expiry and the trust used."""
    tls = run_probe(f"{fleet.registries['tls'].host}/test/hello:v1").layer("tls")
    assert tls is not None and tls.status is Status.OK
    assert tls.evidence["days_left"] > 300 and tls.evidence["not_after_timestamp"] > 0
    assert any(str(fleet.ca_file) in source for source in tls.evidence["trust"])


def test_untrusted_certificate_evidence_names_the_issuer(fleet: Fleet,
                                                         run_probe: ProbeFn) -> None:
    """On a verify failure the unverified re-handshake shows who issued the certificate."""
    tls = run_probe(f"{fleet.registries['untrusted'].host}/test/hello:v1").layer("tls")
    assert tls is not None and tls.evidence["issuer"] and tls.evidence["sans"]
    assert "unable to get local issuer" in tls.evidence["verify_error"]


def test_manifest_evidence(fleet: Fleet, run_probe: ProbeFn) -> None:
    """A found manifest reports digest, media type and size."""
    image = fleet.images["hello"]
    manifest = run_probe(f"{fleet.registries['tls'].host}/test/hello:v1").layer("manifest")
    assert manifest is not None
    assert manifest.evidence["digest"] == image.digest
    assert manifest.evidence["media_type"] == image.media_type and manifest.evidence["size"] > 0


def test_missing_tag_and_missing_repository_are_told_apart(fleet: Fleet,
                                                           run_probe: ProbeFn) -> None:
    """The registry's error code says whether the tag or the repository is unknown."""
    host = fleet.registries["tls"].host
    tag = run_probe(f"{host}/test/hello:nope").layer("manifest")
    repo = run_probe(f"{host}/nope/nope:v1").layer("manifest")
    assert tag is not None and repo is not None
    assert (tag.evidence["missing"], repo.evidence["missing"]) == ("manifest", "repository")


def test_rate_limit_headers_are_reported(fleet: Fleet, run_probe: ProbeFn) -> None:
    """Docker Hub style RateLimit headers become evidence for the metrics."""
    report = run_probe(f"{fleet.quirky['ratelimit'].host}/test/hello:v1", plain_http=True)
    layer = report.failed_layer
    assert layer is not None
    assert (layer.evidence["rate_limit_remaining"], layer.evidence["rate_limit_limit"]) == (0, 100)


def test_platform_override(fleet: Fleet, run_probe: ProbeFn) -> None:
    """--platform selects which platform the index must list."""
    from probes import Platform

    host = fleet.registries["tls"].host
    assert run_probe(f"{host}/test/otherarch:v1", platform=Platform.parse("linux/s390x")).ok
    report = run_probe(f"{host}/test/multi:v1", platform=Platform.parse("linux/riscv64"))
    assert report.code is Code.PLATFORM_MISMATCH


def test_credentials_tried_in_kubelet_order(fleet: Fleet, run_probe: ProbeFn) -> None:
    """A wrong most-specific key does not hide a right less specific one (kubelet tries all)."""
    host = fleet.registries["token"].host
    report = run_probe(f"{host}/test/hello:v1",
                       creds={f"{host}/test": (ALICE[0], "wrong"), host: ALICE})
    assert report.ok, report.to_dict()
    token = report.layer("token")
    assert token is not None and token.evidence["credentials_matched"] == 2


def _report_text(report: ProbeReport) -> str:
    import json

    return json.dumps(report.to_dict())


@pytest.mark.parametrize("secret", ["secret", "wrong"])
def test_reports_never_contain_credentials(fleet: Fleet, run_probe: ProbeFn, secret: str) -> None:
    """Neither the password nor its base64 form appears anywhere in a report."""
    import base64

    for name in ("basic", "token"):
        host = fleet.registries[name].host
        report = run_probe(f"{host}/test/hello:v1", creds={host: (ALICE[0], secret)})
        text = _report_text(report)
        encoded = base64.b64encode(f"{ALICE[0]}:{secret}".encode()).decode()
        assert f":{secret}" not in text and encoded not in text and "Bearer ey" not in text
