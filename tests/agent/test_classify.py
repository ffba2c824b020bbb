"""Tests for agent.classify: the real-message table, wrappers, fields, secrets, junk and the CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.classify import MAX_MESSAGE_CHARS, RULES, Classification, classify, main
from probes.codes import Code

TABLE = Path(__file__).resolve().parent.parent / "data" / "runtime_messages.jsonl"
RUNTIMES = {"containerd", "cri-o", "docker"}
ROWS: list[dict[str, Any]] = [
    json.loads(line) for line in TABLE.read_text(encoding="utf-8").splitlines() if line.strip()
]


def _row_id(index: int, row: dict[str, Any]) -> str:
    source = row["source"].rstrip("/").rsplit("/", 3)
    return f"{index:03d}-{row['expected_code']}-{'/'.join(source[-3:])[:40]}"


# ---------------------------------------------------------------------------------------
# The real-message table
# ---------------------------------------------------------------------------------------


def test_table_is_well_formed() -> None:
    """Every row has a message, a known runtime, a valid expected code and a source."""
    assert len(ROWS) >= 60
    seen = set()
    for row in ROWS:
        assert set(row) <= {"message", "reason", "runtime", "expected_code", "source"}, row
        assert isinstance(row["message"], str) and row["message"].strip()
        assert row["runtime"] in RUNTIMES
        Code(row["expected_code"])
        assert row["source"].startswith("https://") or row["source"].startswith(
            "infra-recipes.md measured 2026-11-26"), row["source"]
        key = (row["message"], row.get("reason"))
        assert key not in seen, f"duplicate row: {row['message'][:80]}"
        seen.add(key)


def test_table_covers_many_codes_and_every_runtime() -> None:
    """The table exercises at least 25 diagnosis codes and all three runtimes."""
    assert len({row["expected_code"] for row in ROWS}) >= 25
    assert {row["runtime"] for row in ROWS} == RUNTIMES


@pytest.mark.parametrize("row", ROWS, ids=[_row_id(i, r) for i, r in enumerate(ROWS)])
def test_table_row(row: dict[str, Any]) -> None:
    """Each real message gets its expected code, and any runtime named is the right one."""
    result = classify(row["message"], row.get("reason"))
    assert result.code.value == row["expected_code"], (row["source"], result.detail)
    assert result.runtime in (None, row["runtime"]), row["source"]


def test_table_accuracy_per_code(capsys: pytest.CaptureFixture[str]) -> None:
    """Per-code accuracy over the table is reported and is 100% for every code."""
    totals: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    confusions: dict[str, Counter[str]] = defaultdict(Counter)
    runtime_named = 0
    for row in ROWS:
        result = classify(row["message"], row.get("reason"))
        expected = row["expected_code"]
        totals[expected] += 1
        runtime_named += result.runtime == row["runtime"]
        if result.code.value == expected:
            hits[expected] += 1
        else:
            confusions[expected][result.code.value] += 1
    with capsys.disabled():
        print(f"\nclassify accuracy over {len(ROWS)} real messages "
              f"(runtime named for {runtime_named}):")
        for code in sorted(totals):
            print(f"  {code:28s} {hits[code]:3d}/{totals[code]:<3d}"
                  f" {100 * hits[code] / totals[code]:5.1f}%")
    assert not confusions, dict(confusions)


# ---------------------------------------------------------------------------------------
# Wrappers and event reasons
# ---------------------------------------------------------------------------------------

# A verbatim containerd error (infra-recipes.md §2), wrapped the ways the kubelet does.
CORE = ('failed to resolve reference "127.0.0.1:25443/test/hello:v1": failed to do request: '
        'Head "https://127.0.0.1:25443/v2/test/hello/manifests/v1": '
        "x509: certificate signed by unknown authority")
WRAPPED = [
    CORE,
    f"rpc error: code = Unknown desc = {CORE}",
    (f'Failed to pull image "127.0.0.1:25443/test/hello:v1": rpc error: code = Unknown desc = '
    f'failed to pull and unpack image "127.0.0.1:25443/test/hello:v1": {CORE}'),
    f'Failed to pull image "127.0.0.1:25443/test/hello:v1": {CORE}',
    'Error syncing pod 1 ("p_ns(1)"), skipping: failed to "StartContainer" for "c" with '
    'ErrImagePull: "' + CORE.replace('"', '\\"') + '"',
    'E0101 00:00:00.000000 1 remote_image.go:171] "PullImage from image service failed" err="'
    + ("rpc error: code = Unknown desc = " + CORE).replace('"', '\\"')
    + '" image="127.0.0.1:25443/test/hello:v1"',
]


@pytest.mark.parametrize("message", WRAPPED)
def test_wrappers_do_not_change_the_diagnosis(message: str) -> None:
    """The CRI rpc wrapper, kubelet wrappers and klog quoting all yield the inner cause."""
    result = classify(message, "Failed")
    assert result.code is Code.TLS_UNKNOWN_AUTHORITY
    assert result.url == "https://127.0.0.1:25443/v2/test/hello/manifests/v1"
    assert result.registry == "127.0.0.1:25443"
    assert result.runtime == "containerd"


@pytest.mark.parametrize(("message", "reason", "code"), [
    ('Back-off pulling image "nginx:1.25"', "BackOff", Code.BACKOFF),
    ("Error: ImagePullBackOff", "Failed", Code.BACKOFF),
    ("", "ImagePullBackOff", Code.BACKOFF),
    ("Back-off restarting failed container", "BackOff", Code.UNKNOWN),
    ('Container image "app:dev" is not present with pull policy of Never', "ErrImageNeverPull",
     Code.IMAGE_NEVER_PULL),
    ("", "ErrImageNeverPull", Code.IMAGE_NEVER_PULL),
    ("", "InvalidImageName", Code.INVALID_IMAGE_NAME),
    (('Failed to inspect image "Foo:1": couldn\'t parse image reference "Foo:1": invalid reference '
     "format: repository name must be lowercase"), "InspectFailed", Code.INVALID_IMAGE_NAME),
    (('Successfully pulled image "nginx:1.25" in 1.2s (1.2s including waiting). Image size: 401 '
     "bytes."), "Pulled", Code.OK),
    ('Container image "nginx:1.25" already present on machine', "Pulled", Code.OK),
    ('Pulling image "nginx:1.25"', "Pulling", Code.UNKNOWN),
    ("Error: ErrImagePull", "Failed", Code.UNKNOWN),
])
def test_event_and_waiting_reasons(message: str, reason: str, code: Code) -> None:
    """Kubelet states map to their codes; a reason alone is used only when the text is silent."""
    assert classify(message, reason).code is code


def test_backoff_message_carrying_a_cause_reports_the_cause() -> None:
    """A back-off message that includes the last error is diagnosed by that error."""
    message = ('Back-off pulling image "127.0.0.1:25000/test/hello:nope": ErrImagePull: '
               'failed to resolve reference "127.0.0.1:25000/test/hello:nope": '
               "127.0.0.1:25000/test/hello:nope: not found")
    assert classify(message, "BackOff").code is Code.IMAGE_NOT_FOUND


# ---------------------------------------------------------------------------------------
# The rules the brief spells out (Go and runtime wordings)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("message", "code"), [
    # A bare 401 does not say whether credentials were sent.
    ('pulling from host r.test failed with status code [manifests v1]: 401 Unauthorized',
     Code.AUTH_FAILED),
    ("reading manifest v1 in r.test/a: unauthorized: authentication required", Code.AUTH_FAILED),
    # containerd uses the oauth (credentialed) flow only when it has credentials.
    ("failed to authorize: failed to fetch oauth token: unexpected status: 401 Unauthorized",
     Code.AUTH_INVALID),
    ("failed to authorize: failed to fetch anonymous token: unexpected status: 401 Unauthorized",
     Code.AUTH_MISSING),
    ("Error response from daemon: Get https://r.test/v2/a/manifests/1: no basic auth credentials",
     Code.AUTH_MISSING),
    (("pull access denied, repository does not exist or may require authorization: server "
     "message: insufficient_scope: authorization failed"), Code.AMBIGUOUS_NOT_FOUND_OR_AUTH),
    ("x509: cannot validate certificate for 10.0.0.1 because it doesn't contain any IP SANs",
     Code.TLS_HOSTNAME_MISMATCH),
    ("x509: certificate is valid for a.test, b.test, not r.test", Code.TLS_HOSTNAME_MISMATCH),
    # Go crypto/x509 (verify.go): "current time %s is after %s" / "is before %s".
    (("x509: certificate has expired or is not yet valid: current time 2026-01-02T00:00:00Z is "
     "after 2026-01-01T00:00:00Z"), Code.TLS_EXPIRED),
    (("x509: certificate has expired or is not yet valid: current time 2026-01-01T00:00:00Z is "
     "before 2026-01-02T00:00:00Z"), Code.TLS_NOT_YET_VALID),
    ("no match for platform in manifest: not found", Code.PLATFORM_MISMATCH),
    ('Get "https://r.test/v2/": http: server gave HTTP response to HTTPS client',
     Code.TLS_PLAIN_HTTP),
    ("unexpected status code https://r.test/v2/a/manifests/1: 429 Too Many Requests",
     Code.RATE_LIMITED),
    ("toomanyrequests: You have reached your pull rate limit.", Code.RATE_LIMITED),
    (('Get "https://r.test/v2/": proxyconnect tcp: dial tcp 10.0.0.9:3128: connect: '
     "connection refused"), Code.PROXY_UNREACHABLE),
    ('Get "https://r.test/v2/": Proxy Authentication Required', Code.PROXY_AUTH_REQUIRED),
    ('Head "https://r.test/v2/a/manifests/1": Forbidden', Code.PROXY_REFUSED),
    ("write /var/lib/containerd/x: no space left on device", Code.DISK_PRESSURE_OR_UNPACK),
    ("failed to extract layer sha256:ab: mount callback failed", Code.DISK_PRESSURE_OR_UNPACK),
    ("failed to unpack image on snapshotter overlayfs: content digest sha256:ab: not found",
     Code.DISK_PRESSURE_OR_UNPACK),
    ("dial tcp: lookup r.test on 10.0.0.2:53: no such host", Code.DNS_NXDOMAIN),
    ("dial tcp: lookup r.test on 10.0.0.2:53: read udp 10.0.0.3:1->10.0.0.2:53: i/o timeout",
     Code.DNS_TIMEOUT),
    ("dial tcp: lookup r.test on 10.0.0.2:53: server misbehaving", Code.DNS_FAILURE),
    ("dial tcp 10.0.0.1:443: connect: connection refused", Code.TCP_REFUSED),
    ("dial tcp 10.0.0.1:443: i/o timeout", Code.TCP_TIMEOUT),
    ("dial tcp 10.0.0.1:443: connect: network is unreachable", Code.NETWORK_UNREACHABLE),
    ('Get "https://r.test/v2/": net/http: TLS handshake timeout', Code.TLS_HANDSHAKE_TIMEOUT),
    ('Get "https://r.test/v2/": remote error: tls: handshake failure', Code.TLS_OTHER),
    ("read tcp 10.0.0.3:1->10.0.0.1:443: read: connection reset by peer", Code.EOF_OR_RESET),
    ("manifest unknown: manifest unknown", Code.IMAGE_NOT_FOUND),
    (("failed to fetch anonymous token: Get \"https://auth.r.test/token?scope=repository%3Aa%3A"
     "pull\": dial tcp 10.0.0.4:443: i/o timeout"), Code.TOKEN_ENDPOINT_UNREACHABLE),
    ("context deadline exceeded", Code.TIMEOUT),
    # containers/image wording for a [[registry]] with blocked = true.
    (("initializing source docker://ubuntu:latest: registry docker.io is blocked in "
     "/etc/containers/registries.conf or /root/.config/containers/registries.conf.d"),
     Code.REGISTRY_BLOCKED),
])
def test_brief_rules(message: str, code: Code) -> None:
    """Each wording the design names maps to the code it names."""
    assert classify(message).code is code


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors(status: int) -> None:
    """Any 5xx answer from the registry is a registry server error with its status."""
    reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
              504: "Gateway Timeout"}[status]
    result = classify(f"unexpected status code https://r.test/v2/a/manifests/1: {status} {reason}")
    assert result.code is Code.REGISTRY_SERVER_ERROR
    assert result.http_status == status


def test_docker_api_wrapper_status_is_not_the_registry_status() -> None:
    """Docker's '(HTTP code 500) server error' wrapper does not make a DNS failure a 5xx."""
    message = ("(HTTP code 500) server error - Get https://r.test/v2/: dial tcp: lookup r.test: "
               "Temporary failure in name resolution")
    result = classify(message)
    assert result.code is Code.DNS_FAILURE
    assert result.http_status is None
    assert result.runtime == "docker"


def test_every_rule_code_is_in_the_vocabulary() -> None:
    """The rule table only returns codes of probes.codes.Code, never invented strings."""
    assert all(isinstance(rule.code, Code) for rule in RULES)
    assert all(rule.tokens or rule.statuses for rule in RULES)


# ---------------------------------------------------------------------------------------
# Field extraction
# ---------------------------------------------------------------------------------------


def test_fields_from_a_containerd_message() -> None:
    """Image, registry, URL and dialled host come out of a kubelet+containerd message."""
    ref = "localhost:7439/ghcr.io/koenkk/zigbee2mqtt:1.30.1"
    message = (f'Failed to pull image "{ref}": rpc error: code = Unknown desc = failed to pull and '
               f'unpack image "{ref}": failed to resolve reference "{ref}": failed to do request: '
               'Head "http://localhost:7439/v2/ghcr.io/koenkk/zigbee2mqtt/manifests/1.30.1": '
               "dial tcp 127.0.0.1:7439: connect: connection refused")
    result = classify(message, "Failed")
    assert result == Classification(
        code=Code.TCP_REFUSED, runtime="containerd",
        image="localhost:7439/ghcr.io/koenkk/zigbee2mqtt:1.30.1", registry="localhost:7439",
        url="http://localhost:7439/v2/ghcr.io/koenkk/zigbee2mqtt/manifests/1.30.1",
        host="127.0.0.1", http_status=None, detail=result.detail)
    assert result.detail.startswith("connection refused: ")


def test_docker_hub_hosts_are_the_docker_io_registry() -> None:
    """registry-1.docker.io in a URL is reported as the docker.io registry."""
    result = classify('Error response from daemon: Get "https://registry-1.docker.io/v2/": '
                      "net/http: TLS handshake timeout")
    assert result.registry == "docker.io"
    assert result.host == "registry-1.docker.io"
    assert result.url == "https://registry-1.docker.io/v2/"


def test_short_image_names_resolve_to_docker_hub_unless_the_text_names_a_registry() -> None:
    """A short name is docker.io, except when CRI-O says which registry it searched."""
    short = classify('Failed to pull image "busybox": context deadline exceeded')
    assert short.registry == "docker.io"
    cri_o = ('Failed to pull image "wazuh/wazuh-kibana-odfe:4.2.6": rpc error: code = Unknown '
             "desc = "
             "reading manifest 4.2.6 in quay.io/wazuh/wazuh-kibana-odfe: unauthorized: access to "
             "the requested resource is not authorized")
    assert classify(cri_o).registry == "quay.io"


@pytest.mark.parametrize(("message", "host"), [
    ("dial tcp: lookup registry.invalid on 127.0.0.1:53: no such host", "registry.invalid"),
    ("dial tcp [2600:1f18::a507]:443: connect: network is unreachable", "2600:1f18::a507"),
    ("read tcp 10.0.0.3:4000->104.18.123.25:443: read: connection reset by peer", "104.18.123.25"),
    ("x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs",
     "127.0.0.1"),
    ('Head "https://r.test:5000/v2/a/manifests/1": x509: certificate signed by unknown authority',
     "r.test"),
])
def test_host_extraction(message: str, host: str) -> None:
    """The failing host comes from lookups, dials, reads, certificates or the URL."""
    assert classify(message).host == host


@pytest.mark.parametrize(("message", "status"), [
    ("pulling from host r.test failed with status code [manifests v1]: 400 Bad Request", 400),
    ("unexpected status from HEAD request to https://r.test/v2/a/manifests/1: 403 Forbidden", 403),
    ("received unexpected HTTP status: 503 Service Unavailable", 503),
    ("Requesting bearer token: invalid status code from registry 403 (Forbidden)", 403),
    ('error parsing HTTP 404 response body: invalid character \'<\' looking for beginning of value',
     404),
    ("Error processing tar file(exit status 128): write /x: no space left on device", None),
])
def test_http_status_extraction(message: str, status: int | None) -> None:
    """HTTP statuses are read from every runtime's wording, and exit statuses are not."""
    assert classify(message).http_status == status


def test_invalid_image_names_yield_no_url_or_host() -> None:
    """A reference that looks like a URL is not mistaken for a failing request."""
    result = classify('Failed to apply default image tag "https://harbor.test/app:1": couldn\'t '
                      'parse image reference "https://harbor.test/app:1": invalid reference format')
    assert result.code is Code.INVALID_IMAGE_NAME
    assert (result.url, result.host, result.registry) == (None, None, None)
    assert result.image == "https://harbor.test/app:1"


def test_to_dict_is_json_ready() -> None:
    """to_dict holds the code string and every parsed field, and serialises to JSON."""
    result = classify("unexpected status code https://r.test/v2/a/manifests/1: 429 Too Many "
                      "Requests")
    data = result.to_dict()
    assert data["code"] == "rate_limited"
    assert set(data) == {"code", "runtime", "image", "registry", "url", "host", "http_status",
                         "detail"}
    assert json.loads(json.dumps(data)) == data


# ---------------------------------------------------------------------------------------
# Credentials never leave the classifier
# ---------------------------------------------------------------------------------------

SECRETS = ["s3cretPass", "hunter2", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
           "YWxpY2U6c2VjcmV0", "pw123456", "Zm9vOmJhcg==", "AKIAEXAMPLE", "sigvalue123"]
LEAKY = [
    ('Failed to pull image "https://alice:s3cretPass@reg.test/app:1": couldn\'t parse image '
    'reference "https://alice:s3cretPass@reg.test/app:1": invalid reference format'),
    ('failed to do request: Head "https://bob:hunter2@reg.test/v2/app/manifests/1": dial tcp '
    "10.0.0.1:443: connect: connection refused"),
    ("unexpected status code 401 Unauthorized; Authorization: Bearer "
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"),
    'token request failed: {"auth":"YWxpY2U6c2VjcmV0"} 401 Unauthorized',
    "login failed password=pw123456: unauthorized: authentication required",
    "proxy said 407 Proxy Authentication Required for Proxy-Authorization: Basic Zm9vOmJhcg==",
    ('error pulling image configuration: Get "https://cdn.test/blob/data?X-Amz-Credential='
    'AKIAEXAMPLE&X-Amz-Signature=sigvalue123": net/http: TLS handshake timeout'),
]


@pytest.mark.parametrize("message", LEAKY)
def test_credentials_are_stripped(message: str) -> None:
    """No password, token, basic auth or URL signature survives into any output field."""
    output = json.dumps(classify(message).to_dict())
    for secret in SECRETS:
        assert secret not in output
    assert "***" in output or "?..." in output or "app:1" in output


def test_detail_is_short() -> None:
    """detail stays within ~300 characters even for huge messages."""
    message = ('Failed to pull image "a": ' + "x" * 5000
               + " dial tcp 1.2.3.4:1: connect: connection refused")
    result = classify(message)
    assert result.code is Code.TCP_REFUSED
    assert len(result.detail) <= 300
    assert result.detail.endswith("connection refused")


# ---------------------------------------------------------------------------------------
# Garbage never raises, and work is bounded
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("message", [
    "", " ", "\x00\x01\x02", "\ufffd" * 10, "🙂" * 100, "null", "{}", "\\" * 1000, '"' * 1000,
    "İ" * 1000, "Get \"https://", "lookup ", "x509: " * 5,
])
def test_garbage_gives_unknown_or_a_code(message: str) -> None:
    """Junk text classifies without raising and yields a vocabulary code."""
    result = classify(message)
    assert isinstance(result.code, Code)
    assert len(result.detail) <= 300


def test_non_text_inputs_do_not_raise() -> None:
    """Bytes and None (wrong types from careless callers) are handled, not raised on."""
    junk = b"\xff\xfe dial tcp 1.2.3.4:1: connect: connection refused"
    assert classify(junk).code is Code.TCP_REFUSED  # type: ignore[arg-type]
    assert classify(None).code is Code.UNKNOWN  # type: ignore[arg-type]


@pytest.mark.parametrize("message", [
    "a" * 5_000_000,
    "lookup " * 200_000,
    'Get "https://' + "a" * 2_000_000,
    "certificate is valid for " + "a, " * 500_000,
    "failed to fetch oauth token: unexpected status " + "x" * 1_000_000,
    "write " + "/a" * 500_000,
    "pulling from host " * 100_000,
    # Many starting points for the bounded gaps in the patterns.
    "https://x" * 8000 + "?",
    ('get "https://' + "a" * 60 + '": ') * 1000,
    "?" * 70_000,
    ('"auth": "' + "x" * 100) * 600,
    ("token=" + "a" * 100 + " ") * 600,
    ("Bearer " + "a" * 100) * 600,
    ("fetch oauth token: get https://" + "a" * 100 + ": ") * 400,
    ("certificate is valid for " + "a," * 200) * 100,
    ' "a"' * 20_000,
])
def test_megabyte_messages_are_bounded(message: str) -> None:
    """Multi-megabyte and adversarial messages finish quickly (only 64 KiB is read)."""
    start = time.perf_counter()
    result = classify(message)
    assert time.perf_counter() - start < 1.0
    assert isinstance(result.code, Code)
    assert len(result.detail) <= 300


def test_only_the_first_64_kib_is_read() -> None:
    """A cause beyond the first 64 KiB is not seen (the documented bound)."""
    message = "x" * MAX_MESSAGE_CHARS + " dial tcp 1.2.3.4:1: connect: connection refused"
    assert classify(message).code is Code.UNKNOWN


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000))
def test_classify_never_raises_on_arbitrary_text(message: str) -> None:
    """Any text at all yields a Classification whose dict serialises to JSON."""
    result = classify(message, None)
    assert isinstance(result.code, Code)
    json.dumps(result.to_dict())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from(["Failed", "BackOff", None, ""]))
def test_classify_never_raises_on_binary_junk(junk: bytes, reason: str | None) -> None:
    """Binary junk decoded as text classifies without raising."""
    result = classify(junk.decode("latin-1"), reason)
    assert len(result.detail) <= 300


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ROWS), st.text(max_size=200), st.text(max_size=200))
def test_real_messages_inside_noise_never_raise(
        row: dict[str, Any], before: str, after: str) -> None:
    """Real messages surrounded by arbitrary text still classify without raising."""
    assert isinstance(classify(before + row["message"] + after, row.get("reason")).code, Code)


# ---------------------------------------------------------------------------------------
# CLI and layering
# ---------------------------------------------------------------------------------------


def _run(argv: list[str], stdin_text: str = "") -> tuple[int, list[dict[str, Any]]]:
    out = io.StringIO()
    code = main(argv, io.StringIO(stdin_text), out)
    return code, [json.loads(line) for line in out.getvalue().splitlines()]


def test_cli_with_a_message_argument() -> None:
    """pulldoctor classify MESSAGE prints one JSON object with the code and fields."""
    code, lines = _run(["dial tcp 10.0.0.1:443: connect: connection refused"])
    assert code == 0
    assert len(lines) == 1
    assert lines[0]["code"] == "tcp_refused"
    assert lines[0]["host"] == "10.0.0.1"


def test_cli_reason_flag() -> None:
    """--reason is passed to the classifier for a message argument."""
    assert _run(["", "--reason", "ErrImageNeverPull"])[1][0]["code"] == "image_never_pull"


def test_cli_reads_json_and_plain_lines_from_stdin() -> None:
    """Without MESSAGE each stdin line (JSON object, plain text, or bad JSON) gets one line out."""
    stdin = "\n".join([
        json.dumps({"message": 'Back-off pulling image "nginx"', "reason": "BackOff"}),
        json.dumps({"message": "", "reason": "InvalidImageName"}),
        "no match for platform in manifest: not found",
        '{"message": broken json dial tcp 1.2.3.4:1: connect: connection refused',
        "",
        json.dumps(["not", "an", "object"]),
        json.dumps({"msg": "missing message key"}),
    ]) + "\n"
    code, lines = _run([], stdin)
    assert code == 0
    assert [line["code"] for line in lines] == [
        "backoff", "invalid_image_name", "platform_mismatch", "tcp_refused", "unknown", "unknown"]


def test_cli_output_has_no_credentials() -> None:
    """Credentials in stdin messages do not reach stdout."""
    stdin = "\n".join(json.dumps({"message": message}) for message in LEAKY) + "\n"
    out = io.StringIO()
    assert main([], io.StringIO(stdin), out) == 0
    for secret in SECRETS:
        assert secret not in out.getvalue()


def test_classify_module_does_not_import_kubernetes() -> None:
    """agent.classify is pure text work: importing it pulls in no Kubernetes client."""
    probe = ("import sys, agent.classify; "
             "print(any(m == 'kubernetes' or m.startswith('kubernetes.') for m in sys.modules))")
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True,
                            text=True, check=True, timeout=60)
    assert result.stdout.strip() == "False"


def test_table_classifies_fast() -> None:
    """The whole table classifies in well under a second (a loose guard against slow rules)."""
    start = time.perf_counter()
    for row in ROWS:
        classify(row["message"], row.get("reason"))
    assert time.perf_counter() - start < 1.0
