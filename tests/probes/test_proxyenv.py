"""Tests for probes.proxyenv: Go's proxy selection and systemd Environment= parsing.

The proxy tables are golang.org/x/net/http/httpproxy proxy_test.go ported as data
(the CGI cases are left out: runtimes are not CGI programs).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.proxyenv import ProxyConfig, proxy_from_env, proxy_from_systemd, redact_url

SYSTEMD = Path(__file__).resolve().parent.parent / "data" / "nodeconfig" / "systemd"


def _cfg(http: str = "", https: str = "", no_proxy: str = "") -> ProxyConfig:
    return proxy_from_env({"HTTP_PROXY": http, "HTTPS_PROXY": https, "NO_PROXY": no_proxy})


EXAMPLE = ("http", "example.com", None)

PROXY_FOR_URL = [  # proxy_test.go proxyForURLTests: (http, https, no_proxy), request, want
    (("127.0.0.1:8080", "", ""), EXAMPLE, "http://127.0.0.1:8080"),
    (("cache.corp.example.com:1234", "", ""), EXAMPLE, "http://cache.corp.example.com:1234"),
    (("cache.corp.example.com", "", ""), EXAMPLE, "http://cache.corp.example.com"),
    (("localhost", "", ""), EXAMPLE, "http://localhost"),
    (("https://cache.corp.example.com", "", ""), EXAMPLE, "https://cache.corp.example.com"),
    (("http://127.0.0.1:8080", "", ""), EXAMPLE, "http://127.0.0.1:8080"),
    (("https://127.0.0.1:8080", "", ""), EXAMPLE, "https://127.0.0.1:8080"),
    (("socks5://127.0.0.1", "", ""), EXAMPLE, "socks5://127.0.0.1"),
    (("foo://host", "", ""), EXAMPLE, "foo://host"),
    (("http.proxy.tld", "secure.proxy.tld", ""), ("http", "insecure.tld", None),
     "http://http.proxy.tld"),
    (("http.proxy.tld", "secure.proxy.tld", ""), ("https", "secure.tld", None),
     "http://secure.proxy.tld"),
    (("http.proxy.tld", "https://secure.proxy.tld", ""), ("https", "secure.tld", None),
     "https://secure.proxy.tld"),
    (("http.proxy.tld", "", ""), ("https", "secure.tld", None), None),
    (("http.proxy.tld", "", ""), ("ftp", "insecure.tld", None), None),
    (("", "", ""), EXAMPLE, None),
    (("proxy", "", "example.com"), EXAMPLE, None),
    (("proxy", "", ".example.com"), EXAMPLE, "http://proxy"),
    (("proxy", "", "ample.com"), EXAMPLE, "http://proxy"),
    (("proxy", "", "example.com"), ("http", "foo.example.com", None), None),
    (("proxy", "", ".foo.com"), EXAMPLE, "http://proxy"),
    (("proxy", "", ".示例.com"), ("http", "www.示例.com", None), None),
    (("proxy", "", "xn--fsq092h.com"), ("http", "www.示例.com", None), None),
    (("proxy", "", "示例.com"), ("http", "www.xn--fsq092h.com", None), None),
    (("proxy", "", "example.com"), ("http", "1000::%.example.com", 123), "http://proxy"),
]


@pytest.mark.parametrize(("env", "request_", "want"), PROXY_FOR_URL)
def test_proxy_for_go_cases(env: tuple[str, str, str], request_: tuple[str, str, int | None],
                            want: str | None) -> None:
    """proxy_for returns what Go's ProxyFunc returns for the same settings and request."""
    assert _cfg(*env).proxy_for(*request_) == want


NO_PROXY = ("foobar.com, .barbaz.net, *.wildcard.io, 192.168.1.1, 192.168.1.2:81, "
            "192.168.1.3:80, 10.0.0.0/30, 2001:db8::52:0:1, [2001:db8::52:0:2]:443, "
            "[2001:db8::52:0:3]:80, 2002:db8:a::45/64")

USE_PROXY = [  # proxy_test.go UseProxyTests: host (port 80), proxied?
    ("localhost", False), ("127.0.0.1", False), ("127.0.0.2", False), ("[::1]", False),
    ("[::2]", True),
    ("192.168.1.1", False), ("192.168.1.2", True), ("192.168.1.3", False),
    ("192.168.1.4", True), ("10.0.0.2", False), ("[2001:db8::52:0:1]", False),
    ("[2001:db8::52:0:2]", True), ("[2001:db8::52:0:3]", False), ("[2002:db8:a::123]", False),
    ("[fe80::424b:c8be:1643:a1b6]", True),
    ("barbaz.net", True), ("www.barbaz.net", False), ("foobar.com", False),
    ("www.foobar.com", False), ("foofoobar.com", True), ("baz.com", True),
    ("localhost.net", True), ("local.localhost", True), ("barbarbaz.net", True),
    ("wildcard.io", True), ("nested.wildcard.io", False), ("awildcard.io", True),
]


@pytest.mark.parametrize(("host", "proxied"), USE_PROXY)
def test_no_proxy_go_cases(host: str, proxied: bool) -> None:
    """NO_PROXY entries match hosts as in Go's TestUseProxy."""
    cfg = _cfg(http="http://proxy.example:3128", no_proxy=NO_PROXY)
    assert (cfg.proxy_for("http", host, 80) is not None) is proxied


@pytest.mark.parametrize(("host", "_proxied"), USE_PROXY)
def test_no_proxy_star_disables_everything(host: str, _proxied: bool) -> None:
    """NO_PROXY=* means no request is proxied (TestAllNoProxy)."""
    assert _cfg(http="http://proxy:1", no_proxy="*").proxy_for("http", host, 80) is None


def test_invalid_no_proxy_entry_is_ignored() -> None:
    """A malformed NO_PROXY entry such as ':1' is skipped, not fatal (TestInvalidNoProxy)."""
    assert _cfg(http="http://proxy:1", no_proxy=":1").proxy_for("http", "example.com", 80)


@pytest.mark.parametrize(("no_proxy", "host", "port", "proxied"), [
    ("registry.internal:5000", "registry.internal", 5000, False),
    ("registry.internal:5000", "registry.internal", 443, True),
    ("*.example.com", "example.com", 443, True),
    ("*.example.com", "a.b.example.com", 443, False),
    ("10.0.0.0/8", "10.20.30.40", 443, False),
    ("10.0.0.0/8", "11.0.0.1", 443, True),
    ("10.0.0.0/8", "::ffff:10.1.2.3", 443, False),  # IPv4-mapped IPv6 is the IPv4 address
    ("EXAMPLE.COM", "Registry.Example.Com", 443, False),
    ("*.example.com", "::1%.example.com", 443, False),  # loopback, zone ignored
    ("*.example.com", "fe80::1%.example.com", 443, True),  # CVE-2025-22870
])
def test_no_proxy_extra_cases(no_proxy: str, host: str, port: int, proxied: bool) -> None:
    """Ports, wildcards, CIDRs, case and IPv6 zones behave as in current Go."""
    cfg = _cfg(https="http://proxy:3128", no_proxy=no_proxy)
    assert (cfg.proxy_for("https", host, port) is not None) is proxied


def test_default_port_comes_from_scheme() -> None:
    """Without a port, https requests count as port 443 for NO_PROXY host:port entries."""
    cfg = _cfg(https="http://proxy:3128", no_proxy="r.example:443")
    assert cfg.proxy_for("https", "r.example", None) is None
    assert cfg.proxy_for("https", "[::1]", None) is None


def test_explicit_proxy_applies_to_loopback() -> None:
    """An explicitly named proxy is used for loopback targets too; NO_PROXY still exempts."""
    cfg = _cfg(http="http://127.0.0.1:8888", https="http://127.0.0.1:8888", no_proxy="skip.test")
    assert cfg.proxy_for("https", "127.0.0.1", 5000) is None
    assert cfg.explicit_proxy_for("https", "127.0.0.1", 5000) == "http://127.0.0.1:8888"
    assert cfg.explicit_proxy_for("http", "localhost", 80) == "http://127.0.0.1:8888"
    assert cfg.explicit_proxy_for("https", "skip.test", 443) is None
    assert cfg.explicit_proxy_for("ftp", "localhost", 21) is None


@pytest.mark.parametrize(("environ", "expected"), [
    ({"HTTP_PROXY": "httpproxy", "HTTPS_PROXY": "httpsproxy", "NO_PROXY": "noproxy"},
     ("httpproxy", "httpsproxy", "noproxy")),
    ({"http_proxy": "httpproxy", "https_proxy": "httpsproxy", "no_proxy": "noproxy"},
     ("httpproxy", "httpsproxy", "noproxy")),
    ({"HTTPS_PROXY": "upper", "https_proxy": "lower"}, (None, "upper", "")),
    ({"HTTPS_PROXY": "", "https_proxy": "lower"}, (None, "lower", "")),
    ({}, (None, None, "")),
])
def test_from_environment(environ: dict[str, str], expected: tuple[str | None, ...]) -> None:
    """Upper-case variables win when non-empty, as in Go's FromEnvironment."""
    cfg = proxy_from_env(environ)
    assert (cfg.http_proxy, cfg.https_proxy, cfg.no_proxy) == expected


def test_unparseable_proxy_means_direct() -> None:
    """A proxy value Go cannot parse is ignored (direct connection) and reported without secrets."""
    cfg = _cfg(https="http://user:hunter2@proxy:3128/%zz")
    assert cfg.proxy_for("https", "registry.example", 443) is None
    problems = cfg.problems()
    assert len(problems) == 1 and "HTTPS_PROXY" in problems[0]
    assert "hunter2" not in problems[0]


def test_half_broken_proxy_is_used_as_go_reparses_it() -> None:
    """Go retries with http:// prepended; a value with a bad host parses that way and is used."""
    cfg = _cfg(https="http://user:pw@bad host:3128")
    assert cfg.proxy_for("https", "registry.example", 443) == "http://http://user:pw@bad host:3128"
    problems = cfg.problems()
    assert len(problems) == 1 and "'http:'" in problems[0] and "pw@" not in problems[0]


@pytest.mark.parametrize(("url", "expected"), [
    ("http://user:secret@proxy:3128", "http://user:***@proxy:3128"),
    ("http://token@proxy:3128", "http://***@proxy:3128"),
    ("user:p@ss@proxy:3128", "user:***@proxy:3128"),
    ("http://proxy:3128", "http://proxy:3128"),
    ("http://u:pa/ss@proxy", "http://u:***@proxy"),
])
def test_redact_url(url: str, expected: str) -> None:
    """Passwords (and lone users, which may be tokens) are masked."""
    assert redact_url(url) == expected


def test_repr_hides_proxy_password() -> None:
    """ProxyConfig's repr shows the proxy host but never the password."""
    cfg = _cfg(http="http://u:hunter2@proxy:1", https="http://u:hunter2@proxy:2")
    assert "hunter2" not in repr(cfg) and "proxy:2" in repr(cfg)


# --------------------------------------------------------------------------- systemd


def test_systemd_dropin_with_quotes_and_escaped_percent() -> None:
    """Quoted multi-assignment lines parse; %% is a literal % (a URL-escaped @ in the password)."""
    cfg = proxy_from_systemd([SYSTEMD / "etc" / "containerd.service.d"])
    assert cfg is not None
    assert cfg.https_proxy == "http://proxyuser:pr%40xy-pass@proxy.corp.example:3128"
    assert cfg.proxy_for("https", "registry-1.docker.io", 443) == cfg.https_proxy
    for host in ("10.1.2.3", "kube-dns.kube-system.svc", "localhost"):
        assert cfg.proxy_for("https", host, 443) is None
    assert cfg.proxy_for("https", "registry.internal", 5000) is None
    assert cfg.proxy_for("https", "registry.internal", 443) is not None
    assert "http-proxy.conf" in cfg.source and "pr%40xy-pass" not in repr(cfg)


def test_systemd_etc_masks_same_named_dropin_and_orders_by_name() -> None:
    """A drop-in in /etc masks the same file name in /usr/lib; other drop-ins still apply."""
    cfg = proxy_from_systemd([SYSTEMD / "etc" / "containerd.service.d",
                              SYSTEMD / "usr" / "containerd.service.d"])
    assert cfg is not None
    assert cfg.https_proxy is not None and "masked-by-etc" not in cfg.https_proxy
    assert "not-a-service-section" not in (cfg.https_proxy or "")


def test_systemd_bad_specifier_reset_and_syntax_error() -> None:
    """A bare % drops the word, bad quoting drops the rest of the line, Environment= resets."""
    cfg = proxy_from_systemd([SYSTEMD / "crio.service.d"])
    assert cfg is not None
    assert cfg.http_proxy == "http://second.example:8080"
    assert cfg.https_proxy is None and cfg.no_proxy == ""
    text = " ".join(cfg.warnings)
    assert "HTTPS_PROXY: unknown % specifier" in text
    assert "unterminated quote" in text
    assert "p%40ss" not in text and "user:p" not in text


def test_systemd_continuation_escapes_and_env_file(tmp_path: Path) -> None:
    """Continued lines, C escapes and EnvironmentFile= (which overrides Environment=) work."""
    env_file = tmp_path / "proxy.env"
    env_file.write_text('# comment\nexport NO_PROXY="a.example, b.example"\n'
                        "HTTPS_PROXY='http://from-file:3128'\n")
    unit = tmp_path / "containerd.service"
    unit.write_text("[Service]\n"
                    'Environment=HTTPS_PROXY=http://from-unit:1 \\\n'
                    '  "HTTP_PROXY=http://h\\x41st:80"\n'
                    f"EnvironmentFile=-{env_file}\n"
                    "EnvironmentFile=-/nonexistent/optional\n")
    cfg = proxy_from_systemd([unit])
    assert cfg is not None
    assert cfg.http_proxy == "http://hAst:80"
    assert cfg.https_proxy == "http://from-file:3128"
    assert cfg.no_proxy == "a.example, b.example"
    assert str(env_file) in cfg.source


def test_systemd_without_proxy_is_none(tmp_path: Path) -> None:
    """Units that set no proxy variable give None."""
    (tmp_path / "x.conf").write_text("[Service]\nEnvironment=FOO=1\n")
    assert proxy_from_systemd([tmp_path, tmp_path / "missing.d"]) is None


# --------------------------------------------------------------------------- properties


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40), st.text(max_size=60),
       st.sampled_from(["http", "https", "ftp", "HTTPS"]), st.text(max_size=40),
       st.none() | st.integers(min_value=0, max_value=70000))
def test_proxy_for_total(http: str, https: str, no_proxy: str, scheme: str, host: str,
                         port: int | None) -> None:
    """Arbitrary settings and requests never raise."""
    cfg = _cfg(http, https, no_proxy)
    cfg.proxy_for(scheme, host, port)
    cfg.problems()
    repr(cfg)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300))
def test_systemd_parser_total(content: str) -> None:
    """Arbitrary unit file content never raises."""
    with tempfile.TemporaryDirectory() as tmp:
        unit = Path(tmp) / "x.conf"
        unit.write_text("[Service]\nEnvironment=" + content, encoding="utf-8")
        proxy_from_systemd([unit])


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=%", min_size=4,
               max_size=20))
def test_password_never_in_repr(password: str) -> None:
    """Whatever the password, repr and problems never show it."""
    secret = "PW" + password
    cfg = _cfg(http=f"http://user:{secret}@proxy:3128", https=f"user:{secret}@proxy:3128")
    assert secret not in repr(cfg)
    assert all(secret not in p for p in cfg.problems())
