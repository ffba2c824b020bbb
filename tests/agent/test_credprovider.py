"""Tests for agent.credprovider: kubelet CredentialProviderConfig parsing and matchImages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.credprovider import (
    CredentialProviderConfigError,
    kubelet_provider_flags,
    load_credential_provider_config,
    parse_credential_provider_config,
    split_cmdline,
)

PROVIDERS = Path(__file__).resolve().parent.parent / "data" / "nodeconfig" / "credprovider"


@pytest.mark.parametrize(("image", "provider"), [
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/app", "ecr-credential-provider"),
    ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app", "ecr-credential-provider"),
    ("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/app", "ecr-credential-provider"),
    ("public.ecr.aws/nginx/nginx", None),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com:443/app", None),  # ports must be equal
    ("a.b.dkr.ecr.us-east-1.amazonaws.com/app", None),  # one label per *
    ("docker.io/library/nginx", None),
])
def test_ecr_match_images(image: str, provider: str | None) -> None:
    """The EKS provider config covers ECR hosts only, one DNS label per *."""
    config = load_credential_provider_config(PROVIDERS / "ecr.yaml")
    assert config.matching_provider(image) == provider


@pytest.mark.parametrize(("image", "provider"), [
    ("myregistry.azurecr.io/team/app", "acr-credential-provider"),
    ("myregistry.azurecr.cn/app", "acr-credential-provider"),
    ("azurecr.io/app", None),
    ("gcr.io/project/app", "gcp-credential-provider"),
    ("eu.gcr.io/project/app", "gcp-credential-provider"),
    ("us-docker.pkg.dev/project/repo/app", "gcp-credential-provider"),
    ("a.b.pkg.dev/project/app", None),
    ("container.cloud.google.com/x", "gcp-credential-provider"),
    ("ghcr.io/acme/app", None),
])
def test_cloud_match_images(image: str, provider: str | None) -> None:
    """ACR and GCP patterns from a JSON v1beta1 config match like the kubelet."""
    config = load_credential_provider_config(PROVIDERS / "multi.json")
    assert config.matching_provider(image) == provider


@pytest.mark.parametrize(("pattern", "image", "matches"), [  # kubelet plugin_test.go and docs
    ("test.registry.io", "test.registry.io/foo/bar", True),
    ("test.registry.io/foo/bar", "test.registry.io/foo/bar", True),
    ("test.registry.io", "test.registry.io", True),
    ("*.registry.io:8080", "test.registry.io:8080/foo", True),
    ("*.*.registry.io", "foo.bar.registry.io/foo/bar", True),
    ("*.registry.io", "test.registry.io", True),
    ("*.k8s.io", "abc.k8s.io", True),
    ("k8s.*.io", "k8s.abc.io", True),
    ("k8s.*", "k8s.io", True),
    ("app*.k8s.io", "app-1.k8s.io", True),
    ("*.io", "abc.k8s.io", False),
    ("*.registry.io:8080", "test.registry.io/foo", False),
    ("test.registry.io/foo", "test.registry.io/bar", False),
])
def test_match_images_rules(pattern: str, image: str, matches: bool) -> None:
    """matchImages follow the kubelet's documented glob, port and path-prefix rules."""
    doc = ("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"
           f"  - name: p\n    matchImages: [{pattern!r}]\n    defaultCacheDuration: 1h\n"
           "    apiVersion: credentialprovider.kubelet.k8s.io/v1\n")
    config = parse_credential_provider_config(doc, "inline")
    assert (config.matching_provider(image) == "p") is matches


def test_fields_are_parsed() -> None:
    """Durations, args, env and the source file are kept; env values stay out of repr."""
    config = load_credential_provider_config(PROVIDERS / "multi.json")
    acr, gcp = config.providers
    assert acr.default_cache_duration == 600.0 and gcp.default_cache_duration == 90.0
    assert gcp.args == ("get-credentials", "--v=3")
    assert acr.api_version == "credentialprovider.kubelet.k8s.io/v1beta1"
    assert acr.source == PROVIDERS / "multi.json"
    ecr = load_credential_provider_config(PROVIDERS / "ecr.yaml").providers[0]
    assert ecr.env == {"AWS_SECRET_ACCESS_KEY": "super-secret-value"}
    assert "super-secret-value" not in repr(ecr)


def test_directory_is_merged_in_lexical_order() -> None:
    """A directory of configs merges *.json/*.yaml/*.yml in name order, other files ignored."""
    config = load_credential_provider_config(PROVIDERS / "dir")
    assert [p.name for p in config.providers] == ["internal", "catch-all-internal"]
    assert config.matching_provider("registry.internal.example:5000/team/app") == "internal"
    both = config.matching_providers("registry.internal.example:5000/team/app")
    assert [p.name for p in both] == ["internal", "catch-all-internal"]
    assert config.matching_provider("registry.internal.example:5000/other") == (
        "catch-all-internal")
    assert config.matching_provider("registry.internal.example/team/app") is None


def test_empty_directory_is_an_error() -> None:
    """A directory without config files is rejected, as the kubelet rejects it."""
    with pytest.raises(CredentialProviderConfigError, match="no configuration files"):
        load_credential_provider_config(PROVIDERS / "emptydir")


@pytest.mark.parametrize(("name", "field"), [
    ("wrong-kind", "kind"),
    ("wrong-apiversion", "apiVersion"),
    ("unknown-field", "plugins"),
    ("provider-unknown-field", "providers[0].matchImage"),
    ("missing-cache-duration", "providers[0].defaultCacheDuration"),
    ("negative-duration", "providers[0].defaultCacheDuration"),
    ("bad-duration", "providers[0].defaultCacheDuration"),
    ("duration-not-string", "providers[0].defaultCacheDuration"),
    ("name-slash", "providers[0].name"),
    ("duplicate-name", "duplicate provider name"),
    ("empty-match-images", "providers[0].matchImages"),
    ("bad-match-image", "providers[0].matchImages"),
    ("provider-apiversion", "providers[0].apiVersion"),
    ("no-providers", "providers"),
    ("env-value-type", "providers[0].env[0]"),
    ("not-yaml", "not valid YAML"),
    ("token-attributes-v1beta1", "providers[0].tokenAttributes"),
])
def test_invalid_fixtures_name_file_and_field(name: str, field: str) -> None:
    """Each invalid config raises CredentialProviderConfigError naming the file and the field."""
    path = PROVIDERS / "invalid" / f"{name}.yaml"
    with pytest.raises(CredentialProviderConfigError) as info:
        load_credential_provider_config(path)
    assert str(path) in str(info.value) and field in str(info.value)


def test_env_value_never_in_error() -> None:
    """An env entry with a bad name names the field, not the secret value."""
    doc = ("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"
           "  - name: p\n    matchImages: [a.io]\n    defaultCacheDuration: 1h\n"
           "    apiVersion: credentialprovider.kubelet.k8s.io/v1\n"
           "    env: [{name: '', value: hunter2-secret}]\n")
    with pytest.raises(CredentialProviderConfigError) as info:
        parse_credential_provider_config(doc, "inline")
    assert "env[0]" in str(info.value) and "hunter2-secret" not in str(info.value)


@pytest.mark.parametrize(("argv", "config", "bin_dir"), [
    (["/usr/bin/kubelet", "--image-credential-provider-config=/etc/eks/config.yaml",
      "--image-credential-provider-bin-dir", "/etc/eks/bin"], "/etc/eks/config.yaml",
     "/etc/eks/bin"),
    (["kubelet", "--image_credential_provider_config", "/a.yaml",
      "--image-credential-provider-config=/b.yaml"], "/b.yaml", None),
    (["kubelet", "--v=2", "--config=/var/lib/kubelet/config.yaml"], None, None),
    (["kubelet", "--image-credential-provider-config"], None, None),
    (["kubelet", "--", "--image-credential-provider-config=/x"], None, None),
])
def test_kubelet_flags(argv: list[str], config: str | None, bin_dir: str | None) -> None:
    """Provider flags are read from a kubelet command line as pflag reads them."""
    flags = kubelet_provider_flags(argv)
    assert flags.config_path == (Path(config) if config else None)
    assert flags.bin_dir == (Path(bin_dir) if bin_dir else None)


def test_split_cmdline() -> None:
    """/proc/PID/cmdline content splits on NUL bytes."""
    raw = b"/usr/bin/kubelet\x00--image-credential-provider-config=/c.yaml\x00"
    assert kubelet_provider_flags(split_cmdline(raw)).config_path == Path("/c.yaml")


# --------------------------------------------------------------------------- properties

_KEYS = st.sampled_from(["apiVersion", "kind", "providers", "name", "matchImages", "env",
                         "defaultCacheDuration", "args", "value", "x"])


def _nest(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=4))


_docs = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12), _nest,
                     max_leaves=12)


_provider = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["p", "", "a/b", ".."]) | st.integers(),
    "matchImages": st.lists(st.sampled_from(["*.a.io", "a.io:5000/x", "bad host", "[::1]"]),
                            max_size=3) | _docs,
    "defaultCacheDuration": st.sampled_from(["1h", "-1s", "soon", "0"]) | _docs,
    "apiVersion": st.sampled_from(["credentialprovider.kubelet.k8s.io/v1",
                                   "credentialprovider.kubelet.k8s.io/v1alpha1", "x"]),
    "args": _docs, "env": _docs, "tokenAttributes": _docs,
})
_configs = st.fixed_dictionaries({
    "apiVersion": st.sampled_from(["kubelet.config.k8s.io/v1", "kubelet.config.k8s.io/v1beta1"]),
    "kind": st.just("CredentialProviderConfig"),
    "providers": st.lists(_provider, max_size=3),
})


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=120), st.binary(max_size=80), _docs.map(json.dumps),
                 _configs.map(json.dumps)),
       st.text(max_size=40))
def test_parser_raises_only_its_own_error(data: str | bytes, image: str) -> None:
    """Arbitrary documents give a config or CredentialProviderConfigError, nothing else."""
    try:
        config = parse_credential_provider_config(data, "fuzz")
    except CredentialProviderConfigError:
        return
    config.matching_provider(image)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=20), max_size=8))
def test_flag_parser_total(argv: list[str]) -> None:
    """Any argument list gives a result without raising."""
    kubelet_provider_flags(argv)
