"""The diagnosis vocabulary is closed, documented and matches the public contract."""

from __future__ import annotations

import pytest

from probes.codes import AGENT_CODES, PROBE_CODES, Code

CONTRACT = (
    "ok, dns_nxdomain, dns_timeout, dns_failure, tcp_refused, tcp_timeout, network_unreachable, "
    "proxy_unreachable, proxy_auth_required, proxy_refused, tls_unknown_authority, tls_expired, "
    "tls_not_yet_valid, tls_hostname_mismatch, tls_handshake_timeout, tls_plain_http, tls_other, "
    "registry_not_v2, token_endpoint_unreachable, auth_missing, auth_invalid, auth_failed, "
    "access_denied, image_not_found, rate_limited, registry_server_error, platform_mismatch, "
    "eof_or_reset, timeout, unknown"
)
AGENT_CONTRACT = (
    "secret_not_found, secret_malformed, credential_provider, image_never_pull, "
    "invalid_image_name, disk_pressure_or_unpack, backoff, ambiguous_not_found_or_auth"
)


def test_probe_codes_are_exactly_the_contract() -> None:
    """The probe vocabulary is the exact list the CLI contract publishes."""
    assert {c.value for c in PROBE_CODES} == set(CONTRACT.split(", "))


def test_agent_codes_include_the_issue_vocabulary() -> None:
    """Every agent-only code the node agent contract names exists."""
    assert set(AGENT_CONTRACT.split(", ")) <= {c.value for c in AGENT_CODES}


@pytest.mark.parametrize("code", list(Code))
def test_every_code_is_documented(code: Code) -> None:
    """Each code has a one-line summary and a remediation an SRE can act on."""
    assert code.summary.endswith(".") and "\n" not in code.summary
    assert len(code.remediation) > 10


@pytest.mark.parametrize("code", list(Code))
def test_code_values_are_bounded_label_values(code: Code) -> None:
    """Code values are snake_case so they are safe, bounded Prometheus label values."""
    assert code.value.replace("_", "").isalnum() and code.value.islower()
