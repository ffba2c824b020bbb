"""The agent's configuration loads strictly: one fixture per invalid case, each named clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import AgentConfig, ConfigError, load_config, parse_config

DATA = Path(__file__).resolve().parents[1] / "data" / "config"

# fixture file -> the key path the error must name
INVALID = {
    "unknown-key.yaml": "intervall_seconds",
    "unknown-nested-key.yaml": "events.enable",
    "wrong-type.yaml": "interval_seconds",
    "out-of-range.yaml": "concurrency",
    "float-for-int.yaml": "concurrency",
    "bool-as-string.yaml": "events.enabled",
    "path-list-as-string.yaml": "certs_dirs",
    "bad-static-image.yaml": "static_targets[0].image",
    "static-both.yaml": "static_targets[0]",
    "static-neither.yaml": "static_targets[0]",
    "bad-listen.yaml": "listen_address",
    "not-yaml.yaml": "not valid YAML",
    "not-a-mapping.yaml": "mapping",
    "bool-for-number.yaml": "jitter",
}


def test_valid_file_loads_typed_values() -> None:
    """Every key of a valid file arrives typed."""
    config = load_config(DATA / "valid.yaml")
    assert (config.interval_seconds, config.concurrency, config.events.enabled) == (120.0, 2, False)
    assert config.certs_dirs == (Path("/etc/containerd/certs.d"),)
    assert [t.reference for t in config.static_targets] == [
        "registry.example.com/team/app:v1", "registry.example.com:5000"]
    assert config.static_targets[1].docker_config == Path("/etc/pulldoctor/docker.json")
    assert config.listen == ("127.0.0.1", 0)


def test_shipped_configmap_config_is_valid() -> None:
    """The config in deploy/ loads without error."""
    load_config(Path(__file__).resolve().parents[2] / "deploy" / "config.yaml")


@pytest.mark.parametrize(("name", "key"), sorted(INVALID.items()))
def test_invalid_file_names_file_and_key(name: str, key: str) -> None:
    """Each invalid case raises ConfigError naming the file and the offending key."""
    path = DATA / "invalid" / name
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and key in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A missing file is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_no_file_means_defaults() -> None:
    """Without a file the documented defaults apply."""
    assert load_config(None) == AgentConfig()


_JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                        | st.text(max_size=20),
                        lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
_KEYS = st.sampled_from(["interval_seconds", "jitter", "events", "static_targets", "certs_dirs",
                         "listen_address", "concurrency", "credential_provider_config", "x"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS, _JSONISH, max_size=5))
def test_loader_is_total(data: dict[str, object]) -> None:
    """Any document gives a config or a ConfigError, never another exception."""
    try:
        parse_config(data, "cfg.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("cfg.yaml")
