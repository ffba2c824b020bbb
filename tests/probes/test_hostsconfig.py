"""Tests for probes.hostsconfig: containerd's certs.d / hosts.toml resolution."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.hostsconfig import (
    CAPABILITIES,
    HostsConfigError,
    go_path_clean,
    host_dir_candidates,
    load_hosts_config,
    parse_go_duration,
)

NODECONFIG = Path(__file__).resolve().parent.parent / "data" / "nodeconfig"
CERTS = NODECONFIG / "containerd" / "certs.d"
INVALID = NODECONFIG / "containerd" / "invalid"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- defaults


@pytest.mark.parametrize(("registry", "url", "skip_verify", "fallback"), [
    ("docker.io", "https://registry-1.docker.io", False, False),
    ("quay.io", "https://quay.io", False, False),
    ("registry.example.com:5000", "https://registry.example.com:5000", False, False),
    ("localhost:5000", "https://localhost:5000", True, True),
    ("127.0.0.1:5000", "https://127.0.0.1:5000", True, True),
    ("[::1]:5000", "https://[::1]:5000", True, True),
    ("localhost", "https://localhost", True, False),
    ("localhost:443", "https://localhost:443", True, False),
    ("localhost:80", "http://localhost:80", False, False),
])
def test_defaults_without_config(tmp_path: Path, registry: str, url: str, skip_verify: bool,
                                 fallback: bool) -> None:
    """Without a host directory, containerd 2.x's default server is the only endpoint."""
    cfg = load_hosts_config(registry, [tmp_path / "missing"])
    assert cfg.source is None and len(cfg.endpoints) == 1
    ep = cfg.endpoints[0]
    assert (ep.url, ep.path, ep.capabilities) == (url, "/v2", CAPABILITIES)
    assert (ep.skip_verify, ep.http_fallback, ep.is_mirror) == (skip_verify, fallback, False)


def test_legacy_localhost_is_plain_https(tmp_path: Path) -> None:
    """containerd 1.6 has no localhost special case: verified HTTPS only."""
    ep = load_hosts_config("localhost:5000", [tmp_path], legacy=True).endpoints[0]
    assert (ep.url, ep.skip_verify, ep.http_fallback) == ("https://localhost:5000", False, False)


# --------------------------------------------------------------------------- the fixture tree


def test_docker_io_mirrors_in_file_order_server_last() -> None:
    """Mirrors come in table order with their own settings, the server entry last."""
    cfg = load_hosts_config("docker.io", [CERTS])
    assert cfg.source == CERTS / "docker.io" / "hosts.toml"
    assert [e.url for e in cfg.endpoints] == [
        "https://public-mirror.example.com", "https://docker-mirror.internal:5000",
        "https://plain-mirror.internal", "https://registry-1.docker.io"]
    public, private, plain, server = cfg.endpoints
    assert public.capabilities == ("pull",) and public.is_mirror
    assert private.capabilities == ("pull", "resolve")
    assert private.ca_files == (CERTS / "docker.io" / "docker-mirror.crt",)
    assert private.client_certs == ((CERTS / "docker.io" / "client.cert",
                                     CERTS / "docker.io" / "client.key"),
                                    (Path("/etc/certs/combined.pem"), None))
    assert private.dial_timeout == 1.5
    assert dict(private.headers) == {"x-custom-1": ("custom header",),
                                     "authorization": ("Basic c2VjcmV0LXVzZXI6c2VjcmV0LXBhc3M=",)}
    assert (plain.scheme, plain.http_fallback, plain.skip_verify) == ("https", True, True)
    assert server.capabilities == CAPABILITIES and not server.is_mirror
    assert [e.url for e in cfg.pull_endpoints()] == [e.url for e in cfg.endpoints]


def test_endpoint_repr_hides_header_values() -> None:
    """Header values may be credentials: repr shows header names only."""
    private = load_hosts_config("docker.io", [CERTS]).endpoints[1]
    text = repr(private)
    assert "authorization" in text and "c2VjcmV0" not in text and "custom header" not in text


def test_port_directory_form_wins() -> None:
    """host_port_ is tried before host:port; relative CA paths resolve against that directory."""
    cfg = load_hosts_config("registry.example.com:5000", [CERTS])
    assert cfg.source == CERTS / "registry.example.com_5000_" / "hosts.toml"
    (ep,) = cfg.endpoints
    assert ep.url == "https://registry.example.com:5000"
    assert ep.ca_files == (Path("/etc/pki/registry-ca.pem"),
                           CERTS / "registry.example.com_5000_" / "relative" / "ca.pem")


def test_default_directory_applies_to_other_registries() -> None:
    """_default's mirror comes first, then the image's own registry as default server."""
    cfg = load_hosts_config("quay.io", [CERTS])
    assert cfg.source == CERTS / "_default" / "hosts.toml"
    mirror, server = cfg.endpoints
    assert (mirror.url, mirror.path, mirror.override_path) == (
        "https://pull-through.internal", "", True)
    assert (server.url, server.path) == ("https://quay.io", "/v2")


def test_existing_directory_without_hosts_toml_blocks_default() -> None:
    """The first existing directory wins even without hosts.toml: _default is not consulted."""
    cfg = load_hosts_config("empty.example.com", [CERTS])
    assert cfg.source == CERTS / "empty.example.com"
    assert [e.url for e in cfg.endpoints] == ["https://empty.example.com"]


def test_docker_style_certificates() -> None:
    """*.crt are CAs; X.cert pairs with X.key when it exists, else stands alone."""
    (ep,) = load_hosts_config("certsonly.example.com", [CERTS]).endpoints
    d = CERTS / "certsonly.example.com"
    assert ep.ca_files == (d / "ca.crt",)
    assert ep.client_certs == ((d / "client.cert", d / "client.key"), (d / "zz-other.cert", None))


def test_directories_named_crt_are_skipped(tmp_path: Path) -> None:
    """A subdirectory named like a certificate is not a CA file."""
    (tmp_path / "r.test" / "sub.crt").mkdir(parents=True)
    _write(tmp_path / "r.test" / "real.crt", "")
    (ep,) = load_hosts_config("r.test", [tmp_path]).endpoints
    assert ep.ca_files == (tmp_path / "r.test" / "real.crt",)


def test_server_only_file_modern_and_legacy() -> None:
    """A server-only hosts.toml is honoured (2.x) or ignored for certificates (1.6), with a warning."""
    modern = load_hosts_config("server-only.example.com", [CERTS])
    (ep,) = modern.endpoints
    assert (ep.url, ep.path, ep.skip_verify, ep.is_mirror) == (
        "https://mirror.example.net", "/v2/upstream", True, False)
    assert any("no [host" in w for w in modern.warnings)
    legacy = load_hosts_config("server-only.example.com", [CERTS], legacy=True)
    assert [e.url for e in legacy.endpoints] == ["https://server-only.example.com"]
    assert legacy.source == CERTS / "server-only.example.com"


def test_first_certs_dir_wins_even_with_default(tmp_path: Path) -> None:
    """Roots are searched in order; _default in the first beats the exact host in the second."""
    first, second = tmp_path / "a", tmp_path / "b"
    _write(first / "_default" / "hosts.toml", 'server = "https://first.test"\n')
    _write(second / "quay.io" / "hosts.toml", 'server = "https://second.test"\n')
    cfg = load_hosts_config("quay.io", [first, second])
    assert [e.url for e in cfg.endpoints] == ["https://first.test"]
    assert load_hosts_config("quay.io", [tmp_path / "none", second]).endpoints[0].url == (
        "https://second.test")


@pytest.mark.parametrize(("server", "override", "path"), [
    ("https://m.test", False, "/v2"),
    ("https://m.test", True, ""),
    ("https://m.test/v2", False, "/v2"),
    ("https://m.test/v2/", False, "/v2"),
    ("https://m.test/prefix", False, "/prefix/v2"),
    ("https://m.test/prefix", True, "/prefix"),
    ("https://m.test/", False, "//v2"),  # path.Clean("/") + "/v2", a containerd quirk
    ("m.test:5000/a/../b", False, "/b/v2"),
])
def test_server_path_rules(tmp_path: Path, server: str, override: bool, path: str) -> None:
    """The API path follows containerd: clean, then append /v2 unless present or overridden."""
    _write(tmp_path / "r.test" / "hosts.toml",
           f'server = "{server}"\noverride_path = {str(override).lower()}\n')
    assert load_hosts_config("r.test", [tmp_path]).endpoints[-1].path == path


def test_http_host_with_and_without_tls_settings(tmp_path: Path) -> None:
    """http:// with TLS settings is tried over HTTPS first; plain http:// stays HTTP."""
    _write(tmp_path / "r.test" / "hosts.toml",
           '[host."http://a.test:5000"]\n  ca = "ca.pem"\n'
           '[host."http://b.test:5000"]\n  capabilities = ["pull"]\n'
           '[host."http://c.test:80"]\n  skip_verify = false\n')
    a, b, c, _ = load_hosts_config("r.test", [tmp_path]).endpoints
    assert (a.url, a.http_fallback) == ("https://a.test:5000", True)
    assert (b.url, b.http_fallback) == ("http://b.test:5000", False)
    assert (c.url, c.http_fallback) == ("http://c.test:80", False)
    legacy = load_hosts_config("r.test", [tmp_path], legacy=True).endpoints[0]
    assert (legacy.url, legacy.http_fallback) == ("http://a.test:5000", False)


def test_host_order_follows_table_headers(tmp_path: Path) -> None:
    """Order is that of [host."…"] headers; inline-only hosts are ignored with a warning."""
    _write(tmp_path / "r.test" / "hosts.toml",
           'host."https://inline.test" = { capabilities = ["pull"] }\n'
           "[host.'https://b.test']\n"
           '[host."https://a.test".header]\n  x = "1"\n'
           '[host."https://a.test"]\n  capabilities = ["pull"]\n')
    cfg = load_hosts_config("r.test", [tmp_path])
    assert [e.url for e in cfg.endpoints] == ["https://b.test", "https://a.test", "https://r.test"]
    assert any("inline.test" in w and "ignores" in w for w in cfg.warnings)
    legacy = load_hosts_config("r.test", [tmp_path], legacy=True)
    assert "https://inline.test" in [e.url for e in legacy.endpoints]


def test_unknown_keys_are_warnings(tmp_path: Path) -> None:
    """Keys containerd ignores are reported, not fatal; capabilities are case-insensitive."""
    _write(tmp_path / "r.test" / "hosts.toml",
           'insecure = true\n[host."https://m.test"]\n  capabilities = ["PULL"]\n  mirror = 1\n'
           '  proxy = "http://p.test:3128"\n')
    cfg = load_hosts_config("r.test", [tmp_path])
    assert cfg.endpoints[0].capabilities == ("pull",)
    assert cfg.endpoints[0].proxy == "http://p.test:3128"
    assert sum("unknown key" in w for w in cfg.warnings) == 2


def test_empty_hosts_toml_means_certificates(tmp_path: Path) -> None:
    """An empty hosts.toml is treated as absent, as containerd does."""
    _write(tmp_path / "r.test" / "hosts.toml", "")
    _write(tmp_path / "r.test" / "ca.crt", "")
    cfg = load_hosts_config("r.test", [tmp_path])
    assert cfg.source == tmp_path / "r.test"
    assert cfg.endpoints[0].ca_files == (tmp_path / "r.test" / "ca.crt",)


def test_host_directory_that_is_a_file(tmp_path: Path) -> None:
    """A file where the host directory should be fails, as containerd fails the pull."""
    _write(tmp_path / "r.test", "not a dir")
    with pytest.raises(HostsConfigError, match="not a directory"):
        load_hosts_config("r.test", [tmp_path])


@pytest.mark.parametrize(("case", "key"), [
    ("bad-toml", "invalid TOML"),
    ("bad-capability", 'host."https://m.test".capabilities'),
    ("ca-wrong-type", 'host."https://m.test".ca'),
    ("client-pair-len", 'host."https://m.test".client'),
    ("skip-verify-string", "skip_verify"),
    ("header-wrong-type", 'host."https://m.test".header'),
    ("dial-timeout-bad", 'host."https://m.test".dial_timeout'),
    ("server-scheme", "server"),
    ("host-table-type", "host"),
    ("capabilities-not-list", 'host."https://m.test".capabilities'),
])
def test_invalid_fixtures_name_file_and_key(case: str, key: str) -> None:
    """Each invalid hosts.toml fixture raises HostsConfigError naming the file and the key."""
    with pytest.raises(HostsConfigError) as info:
        load_hosts_config(f"{case}.test", [INVALID])
    message = str(info.value)
    assert str(INVALID / f"{case}.test" / "hosts.toml") in message and key in message


def test_header_error_does_not_echo_values(tmp_path: Path) -> None:
    """A bad header names the header, never its value."""
    _write(tmp_path / "r.test" / "hosts.toml",
           '[host."https://m.test".header]\n  authorization = ["Bearer top-secret", 5]\n')
    with pytest.raises(HostsConfigError) as info:
        load_hosts_config("r.test", [tmp_path])
    assert "authorization" in str(info.value) and "top-secret" not in str(info.value)


# --------------------------------------------------------------------------- helpers


def test_host_dir_candidates() -> None:
    """containerd's lookup order: host_port_, host:port, _default."""
    root = Path("/etc/containerd/certs.d")
    assert host_dir_candidates(root, "r.test:5000") == [
        root / "r.test_5000_", root / "r.test:5000", root / "_default"]
    assert host_dir_candidates(root, "docker.io") == [root / "docker.io", root / "_default"]


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0.0), ("5s", 5.0), ("30s", 30.0), ("1478s", 1478.0), ("-5s", -5.0), ("+5s", 5.0),
    ("5.0s", 5.0), ("5.6s", 5.6), ("5.s", 5.0), (".5s", 0.5), ("1.0s", 1.0),
    ("1.00s", 1.0), ("1.004s", 1.004), ("100.00100s", 100.001), ("10ns", 1e-8),
    ("11us", 11e-6), ("12µs", 12e-6), ("12μs", 12e-6), ("13ms", 0.013), ("14s", 14.0),
    ("15m", 900.0), ("16h", 57600.0), ("3h30m", 12600.0), ("10.5s4m", 250.5),
    ("-2m3.4s", -123.4), ("1h2m3s4ms5us6ns", 3723.004005006),
])
def test_parse_go_duration_valid(text: str, seconds: float) -> None:
    """Durations parse like Go's time.ParseDuration (its test table)."""
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "3", "-", "s", ".", "-.", ".s", "+.s", "1d", "\x85\x85",
                                  "\xffff", "hello \xffff world", "5 s"])
def test_parse_go_duration_invalid(text: str) -> None:
    """Strings Go rejects raise ValueError."""
    with pytest.raises(ValueError):
        parse_go_duration(text)


@pytest.mark.parametrize(("path", "expected"), [  # Go path_test.go cleantests
    ("", "."), ("abc", "abc"), ("abc/def", "abc/def"), ("a/b/c", "a/b/c"), (".", "."),
    ("..", ".."), ("../..", "../.."), ("../../abc", "../../abc"), ("/abc", "/abc"), ("/", "/"),
    ("abc/", "abc"), ("abc/def/", "abc/def"), ("a/b/c/", "a/b/c"), ("./", "."), ("../", ".."),
    ("../../", "../.."), ("/abc/", "/abc"), ("abc//def//ghi", "abc/def/ghi"), ("//abc", "/abc"),
    ("///abc", "/abc"), ("//abc//", "/abc"), ("abc//", "abc"), ("abc/./def", "abc/def"),
    ("/./abc/def", "/abc/def"), ("abc/.", "abc"), ("abc/def/ghi/../jkl", "abc/def/jkl"),
    ("abc/def/../ghi/../jkl", "abc/jkl"), ("abc/def/..", "abc"), ("abc/def/../..", "."),
    ("/abc/def/../..", "/"), ("abc/def/../../..", ".."), ("/abc/def/../../..", "/"),
    ("abc/def/../../../ghi/jkl/../../../mno", "../../mno"), ("abc/./../def", "def"),
    ("abc//./../def", "def"), ("abc/../../././../def", "../../def"),
])
def test_go_path_clean(path: str, expected: str) -> None:
    """go_path_clean agrees with Go's path.Clean test table."""
    assert go_path_clean(path) == expected


# --------------------------------------------------------------------------- properties

_toml_lines = st.lists(st.sampled_from([
    'server = "https://s.test"', 'server = "http://s.test:5000/v2"', "server = 5",
    '[host."https://m.test"]', "[host.'http://n.test:5000']", "[host]", '[host."x".header]',
    'capabilities = ["pull"]', "capabilities = []", 'capabilities = ["nope"]', 'ca = "a.crt"',
    "ca = [1]", 'client = [["a", "b"]]', 'client = ["a"]', "client = [[1, 2]]",
    "skip_verify = true", 'skip_verify = "x"', "override_path = true", 'dial_timeout = "2s"',
    'dial_timeout = "soon"', 'x-a = "b"', "[header]", 'proxy = "http://p:1"', "garbage = [",
]), max_size=8)


@settings(max_examples=200, deadline=None)
@given(st.one_of(_toml_lines.map("\n".join), st.text(max_size=120)), st.booleans(),
       st.sampled_from(["r.test", "localhost:5000", "docker.io"]))
def test_loader_raises_only_its_own_error(content: str, legacy: bool, registry: str) -> None:
    """Arbitrary hosts.toml content gives endpoints or HostsConfigError, nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "_default" / "hosts.toml"
        file.parent.mkdir()
        file.write_text(content, encoding="utf-8", errors="surrogatepass")
        try:
            cfg = load_hosts_config(registry, [Path(tmp)], legacy=legacy)
        except HostsConfigError:
            return
    assert cfg.endpoints and not cfg.endpoints[-1].is_mirror
    assert all(e.url.startswith(("http://", "https://")) for e in cfg.endpoints)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20))
def test_duration_parser_total(text: str) -> None:
    """parse_go_duration returns a float or raises ValueError."""
    try:
        assert isinstance(parse_go_duration(text), float)
    except ValueError:
        pass
