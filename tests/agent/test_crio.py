"""Tests for agent.crio: containers-image registries.conf resolution for CRI-O."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.crio import (
    RegistriesConf,
    RegistriesConfError,
    crio_view,
    ref_matching_prefix,
)

CONTAINERS = Path(__file__).resolve().parent.parent / "data" / "nodeconfig" / "containers"
CERTS = (CONTAINERS / "certs.d", CONTAINERS / "docker-certs.d")
DIGEST = "sha256:" + "a" * 64


@pytest.fixture(scope="module")
def conf() -> RegistriesConf:
    return RegistriesConf.load(CONTAINERS / "registries.conf",
                               [CONTAINERS / "registries.conf.d"], certs_dirs=CERTS)


# --------------------------------------------------------------------------- prefix matching

REF_MATCHING_PREFIX = [  # system_registries_v2_test.go TestRefMatchingPrefix
    ("docker.io", "docker.io", 9), ("docker.io", "example.com", -1),
    ("example.com:5000", "example.com:5000", 16), ("example.com:50000", "example.com:5000", -1),
    ("example.com:5000", "example.com", 11),  # a documented containers-image quirk
    ("example.com/foo", "example.com", 11), ("example.com/foo/bar", "example.com", 11),
    ("example.com/foo/bar:baz", "example.com", 11),
    (f"example.com/foo/bar@{DIGEST}", "example.com", 11),
    ("docker.io", "docker.io/library", -1), ("docker.io/library", "docker.io/library", 17),
    ("example.com/library", "docker.io/library", -1), ("docker.io/libraryy", "docker.io/library", -1),
    ("docker.io/library/busybox", "docker.io/library", 17),
    ("docker.io", "docker.io/library/busybox", -1),
    ("docker.io/library/busybox", "docker.io/library/busybox", 25),
    ("example.com/library/busybox", "docker.io/library/busybox", -1),
    ("docker.io/library/busybox2", "docker.io/library/busybox", -1),
    ("example.com", "example.com/foo:bar", -1), ("example.com/foo", "example.com/foo:bar", -1),
    ("example.com/foo:bar", "example.com/foo:bar", 19),
    ("example.com/foo:bar2", "example.com/foo:bar", -1),
    ("example.com", f"example.com/foo@{DIGEST}", -1),
    ("example.com/foo", f"example.com/foo@{DIGEST}", -1),
    (f"example.com/foo@{DIGEST}", f"example.com/foo@{DIGEST}", len(f"example.com/foo@{DIGEST}")),
    ("example.com/foo@sha256:" + "b" * 64, f"example.com/foo@{DIGEST}", -1),
    ("example.com/foo", "*", -1),
    # TestRefMatchingSubdomainPrefix
    ("docker.io", "*.io", 9), ("docker.io/foo", "*.com", -1), ("example.com/foo", "*.co", -1),
    ("example.com/foo", "*.example.com", -1), ("example.com/foo", "*.com", 11),
    ("example.com/foo:bar", "*.com", 11), ("example.com/foo/bar:baz", "*.com", 11),
    ("yet.another.example.com/foo", "**.example.com", -1),
    ("yet.another.example.com/foo", "***.another.example.com", -1),
    ("yet.another.example.com/foo/bar", "*.another.example.com", 23),
    ("another.example.com/namespace.com/foo/bar/bbq:baz", "*.example.com", 19),
    ("example.net/namespace-ends-in.com/foo/bar/bbq:baz", "*.com", -1),
    ("another.example.com/namespace.com/foo/bar/bbq:baz", "*.namespace.com", -1),
    ("sub.example.com/foo/bar", "*.com", 15), ("sub.example.com/foo/bar", "*.example.com", 15),
    ("another.sub.example.com/foo/bar/bbq:baz", "*.example.com", 23),
    ("another.sub.example.com/foo/bar/bbq:baz", "*.sub.example.com", 23),
    (f"yet.another.example.com/foo/bar@{DIGEST}", "*.example.com", 23),
]


@pytest.mark.parametrize(("ref", "prefix", "expected"), REF_MATCHING_PREFIX)
def test_ref_matching_prefix(ref: str, prefix: str, expected: int) -> None:
    """Prefix matching agrees with containers-image's own test tables."""
    assert ref_matching_prefix(ref, prefix) == expected


# --------------------------------------------------------------------------- the fixture config


def test_docker_hub_mirrors_by_tag(conf: RegistriesConf) -> None:
    """A tag pull skips digest-only mirrors; the primary comes last with docker.io's API host."""
    view = conf.view("docker.io/library/nginx:1.25")
    assert view is not None and view.prefix == "docker.io"
    assert [s.reference for s in view.sources] == [
        "mirror.corp.example:5000/dockerhub/library/nginx:1.25",
        "tag-only.corp.example/hub/library/nginx:1.25",
        "docker.io/library/nginx:1.25"]
    first, tag_only, primary = view.endpoints
    assert first.url == "https://mirror.corp.example:5000" and first.is_mirror
    assert first.ca_files == (CERTS[0] / "mirror.corp.example:5000" / "ca.crt",)
    d = CERTS[0] / "mirror.corp.example:5000"
    assert first.client_certs == ((d / "client.cert", d / "client.key"),)
    assert (tag_only.skip_verify, tag_only.http_fallback) == (True, True)
    assert primary.url == "https://registry-1.docker.io" and not primary.is_mirror


def test_docker_hub_mirrors_by_digest(conf: RegistriesConf) -> None:
    """A digest pull skips tag-only mirrors and uses digest-only ones."""
    view = conf.view(f"docker.io/library/nginx@{DIGEST}")
    assert view is not None
    assert [e.host for e in view.endpoints] == [
        "mirror.corp.example:5000", "digest-only.corp.example", "registry-1.docker.io"]


def test_mirror_by_digest_only_and_first_prefix_wins(conf: RegistriesConf) -> None:
    """mirror-by-digest-only hides mirrors from tag pulls; the first quay.io entry of the file wins."""
    by_tag = conf.view("quay.io/coreos/etcd:v3")
    by_digest = conf.view(f"quay.io/coreos/etcd@{DIGEST}")
    assert by_tag is not None and by_digest is not None
    assert [e.host for e in by_tag.endpoints] == ["quay.io"]
    assert [e.host for e in by_digest.endpoints] == ["quay-mirror.corp.example", "quay.io"]
    forced = conf.view("quay.io/x:1", digested=True)
    assert forced is not None and forced.endpoints[0].host == "quay-mirror.corp.example"
    assert by_tag.entry.mirror_by_digest_only


def test_dropin_overrides_and_longest_prefix(conf: RegistriesConf) -> None:
    """A drop-in replaces the same prefix; the longest prefix wins; location rewrites the name."""
    view = conf.view("example.com/foo/app:v1")
    assert view is not None
    assert (view.location, view.insecure) == ("override.example.com/baz", True)
    assert view.sources[-1].reference == "override.example.com/baz/app:v1"
    assert view.entry.source == CONTAINERS / "registries.conf.d" / "10-override.conf"
    special = conf.view("example.com/foo/special/tool")
    assert special is not None and special.sources[-1].reference == "special.example.com/tool"


def test_wildcard_prefixes(conf: RegistriesConf) -> None:
    """*.host matches any subdomain depth; blocked is reported; empty location keeps the name."""
    blocked = conf.view("a.b.blocked.example/app:1")
    assert blocked is not None and blocked.blocked
    assert [s.reference for s in blocked.sources] == ["a.b.blocked.example/app:1"]
    corp = conf.view("git.corp.example/team/app:2")
    assert corp is not None
    assert [s.reference for s in corp.sources] == ["cache.corp.example/team/app:2",
                                                    "git.corp.example/team/app:2"]
    assert conf.view("corp.example/app") is None
    assert conf.view("ghcr.io/acme/app") is None


def test_certs_dir_first_existing_root_wins(conf: RegistriesConf) -> None:
    """/etc/containers/certs.d/<host> wins over /etc/docker/certs.d/<host>; docker's is a fallback."""
    quay = conf.view("quay.io/a/b")
    assert quay is not None
    assert quay.ca_dir == CERTS[1] / "quay.io"
    assert quay.endpoints[-1].ca_files == (CERTS[1] / "quay.io" / "docker-ca.crt",)
    assert any("orphan.key" in w and "fails the pull" in w for w in quay.warnings)
    hub = conf.view("docker.io/library/busybox")
    assert hub is not None and hub.ca_dir == CERTS[1] / "docker.io"


def test_internal_location_uses_containers_certs() -> None:
    """The rewritten location's host picks the certificate directory."""
    ring = RegistriesConf.load(CONTAINERS / "registries.conf", [], certs_dirs=CERTS)
    view = ring.view("example.com/foo/app")
    assert view is not None and view.location == "internal.example.com/bar"
    assert view.ca_dir == CERTS[0] / "internal.example.com"
    assert view.endpoints[-1].ca_files == (CERTS[0] / "internal.example.com" / "ca.crt",)


def test_v1_format_is_converted() -> None:
    """The deprecated v1 lists become entries with insecure and blocked merged per location."""
    conf = RegistriesConf.load(CONTAINERS / "v1.conf", [])
    view = conf.view("registry-b.com/bar/foo/barfoo:latest")
    assert view is not None and view.insecure and view.blocked
    a = conf.view("registry-a.com/x")
    assert a is not None and not a.insecure and not a.blocked


def test_missing_files_mean_empty(tmp_path: Path) -> None:
    """No registries.conf and no drop-in directory: nothing matches."""
    assert crio_view("docker.io/library/nginx", conf=tmp_path / "none.conf",
                     dropin_dirs=[tmp_path / "none.d"], certs_dirs=[tmp_path]) is None


def test_dropin_must_be_v2(tmp_path: Path) -> None:
    """A v1 drop-in is rejected, naming the file."""
    dropins = tmp_path / "registries.conf.d"
    dropins.mkdir()
    (dropins / "50-v1.conf").write_text('[registries.search]\nregistries = ["a.com"]\n')
    with pytest.raises(RegistriesConfError, match="50-v1.conf"):
        RegistriesConf.load(tmp_path / "none.conf", [dropins])


@pytest.mark.parametrize(("name", "key"), [
    ("location-scheme", "registry[0].location"),
    ("no-location-no-prefix", "registry[0]"),
    ("prefix-without-location", "registry[0].location"),
    ("wildcard-with-path", "registry[0].prefix"),
    ("mirror-no-location", "registry[0].mirror[0].location"),
    ("pull-from-mirror-value", "registry[0].mirror[0].pull-from-mirror"),
    ("digest-only-and-pull-from", "registry[0].mirror[0].pull-from-mirror"),
    ("pull-from-mirror-primary", "registry[0].pull-from-mirror"),
    ("insecure-conflicts", "conflicting 'insecure'"),
    ("blocked-conflicts", "conflicting 'blocked'"),
    ("mixing-v1-v2", "mixing the v1 and v2 formats"),
    ("insecure-type", "registry[0].insecure"),
    ("proxy-scheme", "registry[0].proxy"),
    ("bad-toml", "invalid TOML"),
    ("registry-not-array", "registry"),
    ("v1-not-list", "registries.block.registries"),
])
def test_invalid_fixtures(name: str, key: str) -> None:
    """Each invalid registries.conf raises RegistriesConfError naming the file and the key."""
    path = CONTAINERS / "invalid" / f"{name}.conf"
    with pytest.raises(RegistriesConfError) as info:
        RegistriesConf.load(path, [])
    assert str(path) in str(info.value) and key in str(info.value)


def test_unknown_keys_are_warnings(tmp_path: Path) -> None:
    """Keys containers-image ignores are reported as warnings."""
    path = tmp_path / "r.conf"
    path.write_text('[[registry]]\nlocation = "r.com"\nmirrors = []\n')
    conf = RegistriesConf.load(path, [])
    assert any("'mirrors'" in w for w in conf.warnings)


def test_proxy_is_kept_but_hidden(tmp_path: Path) -> None:
    """A per-registry proxy reaches the endpoint and stays out of the repr."""
    path = tmp_path / "r.conf"
    path.write_text('[[registry]]\nlocation = "r.com"\nproxy = "http://u:hunter2@p:3128"\n')
    view = RegistriesConf.load(path, []).view("r.com/app")
    assert view is not None and view.endpoints[0].proxy == "http://u:hunter2@p:3128"
    assert "hunter2" not in repr(view)


# --------------------------------------------------------------------------- properties

_lines = st.lists(st.sampled_from([
    "[[registry]]", "[[registry.mirror]]", 'prefix = "docker.io"', 'prefix = "*.example.com"',
    'prefix = "*.x/y"', 'location = "r.com/ns"', 'location = "https://r.com"', 'location = ""',
    "insecure = true", "insecure = 1", "blocked = true", "mirror-by-digest-only = true",
    'pull-from-mirror = "digest-only"', 'pull-from-mirror = "x"', 'proxy = "socks5://p:1"',
    "[registries.search]", 'registries = ["a.com"]', 'unqualified-search-registries = ["a"]',
    "bogus = [",
]), max_size=10)


@settings(max_examples=200, deadline=None)
@given(st.one_of(_lines.map("\n".join), st.text(max_size=100)),
       st.sampled_from(["docker.io/library/nginx:1", "a.example.com/x@" + DIGEST, "r.com/ns/app"]))
def test_loader_raises_only_its_own_error(content: str, image: str) -> None:
    """Arbitrary registries.conf content gives a view or RegistriesConfError, nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "registries.conf"
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
        try:
            conf = RegistriesConf.load(path, [], certs_dirs=[Path(tmp)])
        except RegistriesConfError:
            return
        view = conf.view(image)
    if view is not None:
        assert view.sources and not view.sources[-1].endpoint.is_mirror


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30), st.text(max_size=15))
def test_ref_matching_prefix_total(ref: str, prefix: str) -> None:
    """ref_matching_prefix returns -1 or a length within ref."""
    result = ref_matching_prefix(ref, prefix)
    assert result == -1 or 0 <= result <= len(ref)
