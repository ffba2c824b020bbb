"""The closed vocabulary of diagnoses: every root cause pulldoctor can name.

This module is the only source of ``code`` values anywhere (metrics labels, log
fields, JSON output, Events). Each code carries a one-line summary and a
remediation an SRE can act on. It refuses to grow silently: a test fails when a
code lacks documentation, and no other module may invent a code string.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Code", "PROBE_CODES", "AGENT_CODES"]


class Code(StrEnum):
    """A root-cause diagnosis code; the string value is the public contract."""

    OK = "ok"
    DNS_NXDOMAIN = "dns_nxdomain"
    DNS_TIMEOUT = "dns_timeout"
    DNS_FAILURE = "dns_failure"
    TCP_REFUSED = "tcp_refused"
    TCP_TIMEOUT = "tcp_timeout"
    NETWORK_UNREACHABLE = "network_unreachable"
    PROXY_UNREACHABLE = "proxy_unreachable"
    PROXY_AUTH_REQUIRED = "proxy_auth_required"
    PROXY_REFUSED = "proxy_refused"
    TLS_UNKNOWN_AUTHORITY = "tls_unknown_authority"
    TLS_EXPIRED = "tls_expired"
    TLS_NOT_YET_VALID = "tls_not_yet_valid"
    TLS_HOSTNAME_MISMATCH = "tls_hostname_mismatch"
    TLS_HANDSHAKE_TIMEOUT = "tls_handshake_timeout"
    TLS_PLAIN_HTTP = "tls_plain_http"
    TLS_OTHER = "tls_other"
    REGISTRY_NOT_V2 = "registry_not_v2"
    TOKEN_ENDPOINT_UNREACHABLE = "token_endpoint_unreachable"
    AUTH_MISSING = "auth_missing"
    AUTH_INVALID = "auth_invalid"
    AUTH_FAILED = "auth_failed"
    ACCESS_DENIED = "access_denied"
    IMAGE_NOT_FOUND = "image_not_found"
    RATE_LIMITED = "rate_limited"
    REGISTRY_SERVER_ERROR = "registry_server_error"
    PLATFORM_MISMATCH = "platform_mismatch"
    EOF_OR_RESET = "eof_or_reset"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"
    # Codes only the node agent produces (kubelet events, Secrets, node config).
    SECRET_NOT_FOUND = "secret_not_found"
    SECRET_MALFORMED = "secret_malformed"
    CREDENTIAL_PROVIDER = "credential_provider"
    IMAGE_NEVER_PULL = "image_never_pull"
    INVALID_IMAGE_NAME = "invalid_image_name"
    DISK_PRESSURE_OR_UNPACK = "disk_pressure_or_unpack"
    BACKOFF = "backoff"
    AMBIGUOUS_NOT_FOUND_OR_AUTH = "ambiguous_not_found_or_auth"
    REGISTRY_BLOCKED = "registry_blocked"

    @property
    def summary(self) -> str:
        """One line saying what is wrong."""
        return _DOCS[self][0]

    @property
    def remediation(self) -> str:
        """What the SRE should check or run to fix it."""
        return _DOCS[self][1]


_DOCS: dict[Code, tuple[str, str]] = {
    Code.OK: (
        "Every layer passed: the node can pull this image.",
        "Nothing to fix.",
    ),
    Code.DNS_NXDOMAIN: (
        "The registry host name does not exist in the node's DNS.",
        "Check the spelling of the registry in the image reference, the node's search domains, "
        "and that the name is published in the DNS the node uses (dig HOST @NAMESERVER).",
    ),
    Code.DNS_TIMEOUT: (
        "The node's DNS servers did not answer in time.",
        "Check that the nameservers in the node's /etc/resolv.conf are reachable (UDP/TCP 53) "
        "and healthy (dig +time=2 HOST @NAMESERVER).",
    ),
    Code.DNS_FAILURE: (
        "The node's DNS servers failed the lookup (SERVFAIL, REFUSED or no usable address).",
        "Check the DNS server's logs and its forwarding for this zone; a name with no A/AAAA "
        "record needs one.",
    ),
    Code.TCP_REFUSED: (
        "The registry address refused the TCP connection: nothing listens on that port.",
        "Check the registry port in the image reference and that the registry (or its load "
        "balancer) is running and listening on it.",
    ),
    Code.TCP_TIMEOUT: (
        "The TCP connection to the registry timed out: packets are dropped on the way.",
        "Check firewalls, security groups and network policies between the node and the "
        "registry; an egress proxy may be required (HTTPS_PROXY for the container runtime).",
    ),
    Code.NETWORK_UNREACHABLE: (
        "The node has no route to the registry address.",
        "Check the node's routes and IPv4/IPv6 connectivity to the registry address.",
    ),
    Code.PROXY_UNREACHABLE: (
        "The HTTP proxy the container runtime uses cannot be reached.",
        "Check the proxy address in the runtime's HTTPS_PROXY setting (systemd drop-in of "
        "containerd/crio) and that the proxy is running.",
    ),
    Code.PROXY_AUTH_REQUIRED: (
        "The HTTP proxy requires authentication, or rejected the credentials it was given.",
        "Put valid proxy credentials in the runtime's HTTPS_PROXY URL, or exempt the registry "
        "with NO_PROXY.",
    ),
    Code.PROXY_REFUSED: (
        "The HTTP proxy refused to open a tunnel (CONNECT) to the registry.",
        "Allow the registry host and port in the proxy's policy, or add the registry to the "
        "runtime's NO_PROXY.",
    ),
    Code.TLS_UNKNOWN_AUTHORITY: (
        "The registry's certificate is signed by an authority the node does not trust.",
        "Install the registry's CA on the node: containerd certs.d/HOST/hosts.toml 'ca', "
        "/etc/docker/certs.d/HOST/ca.crt, or the system CA store.",
    ),
    Code.TLS_EXPIRED: (
        "The registry's certificate has expired.",
        "Renew the registry's certificate (and any expired intermediate).",
    ),
    Code.TLS_NOT_YET_VALID: (
        "The registry's certificate is not valid yet.",
        "Check the node's clock (timedatectl, chrony) and the certificate's notBefore date.",
    ),
    Code.TLS_HOSTNAME_MISMATCH: (
        "The registry's certificate does not name the host the node connects to.",
        "Reissue the certificate with the registry's name (or IP) in its subjectAltName, or "
        "pull by a name the certificate covers.",
    ),
    Code.TLS_HANDSHAKE_TIMEOUT: (
        "The TLS handshake with the registry did not finish in time.",
        "Check for middleboxes that swallow TLS, an overloaded registry, or a port that is not "
        "a TLS endpoint.",
    ),
    Code.TLS_PLAIN_HTTP: (
        "The registry port answers plain HTTP to a TLS client.",
        "Configure the runtime for plain HTTP to this registry (hosts.toml server = "
        "\"http://...\" / insecure registry), or enable TLS on the registry.",
    ),
    Code.TLS_OTHER: (
        "The TLS handshake with the registry failed.",
        "Compare TLS versions and ciphers: openssl s_client -connect HOST:PORT -servername HOST.",
    ),
    Code.REGISTRY_NOT_V2: (
        "The endpoint does not behave like an OCI/Docker v2 registry.",
        "Check the registry host and port (a web server or load balancer may answer instead), "
        "and any mirror override_path.",
    ),
    Code.TOKEN_ENDPOINT_UNREACHABLE: (
        "The registry's token service (its auth realm) cannot be reached from the node.",
        "Check DNS, firewall, proxy and CA trust for the realm host named in the registry's "
        "WWW-Authenticate challenge.",
    ),
    Code.AUTH_MISSING: (
        "The registry requires credentials and none matched this registry.",
        "Add an imagePullSecret with a key for this registry host to the pod or its service "
        "account (kubectl create secret docker-registry ...).",
    ),
    Code.AUTH_INVALID: (
        "The registry rejected the credentials that were sent.",
        "Update the pull Secret with a valid username and password or token (check expiry of "
        "robot accounts and access tokens).",
    ),
    Code.AUTH_FAILED: (
        "The registry answered 401; the message does not say whether credentials were sent.",
        "Check that an imagePullSecret for this registry exists and is valid; run pulldoctor "
        "probe with the Secret's docker config to tell missing from invalid.",
    ),
    Code.ACCESS_DENIED: (
        "The credentials are valid but have no pull right on this repository.",
        "Grant the account pull (read) access to the repository, or use a Secret of an account "
        "that has it.",
    ),
    Code.IMAGE_NOT_FOUND: (
        "The repository or tag does not exist in the registry.",
        "Check the image name and tag (list tags: GET /v2/NAME/tags/list); the tag may have "
        "been deleted or not pushed yet.",
    ),
    Code.RATE_LIMITED: (
        "The registry is rate limiting pulls (HTTP 429).",
        "Authenticate pulls, use a pull-through cache or mirror, or wait for the limit window "
        "to reset.",
    ),
    Code.REGISTRY_SERVER_ERROR: (
        "The registry answered with a server error (5xx).",
        "Check the registry's health and logs, and its storage backend.",
    ),
    Code.PLATFORM_MISMATCH: (
        "The image index has no manifest for the node's platform.",
        "Build and push the image for this node's OS/architecture, or schedule the pod on "
        "nodes of a platform the image has (nodeSelector kubernetes.io/arch).",
    ),
    Code.EOF_OR_RESET: (
        "The connection was reset or closed in the middle of the exchange.",
        "Check load balancers, proxies and idle timeouts in front of the registry, and the "
        "registry's logs.",
    ),
    Code.TIMEOUT: (
        "The probe's deadline ran out before the registry answered.",
        "The registry or the path to it is slow; check its latency and load.",
    ),
    Code.UNKNOWN: (
        "The failure could not be classified.",
        "Read the evidence; please report the message so pulldoctor can learn it.",
    ),
    Code.SECRET_NOT_FOUND: (
        "An imagePullSecret named by the pod or its service account does not exist.",
        "Create the Secret in the pod's namespace, or fix its name in imagePullSecrets.",
    ),
    Code.SECRET_MALFORMED: (
        "An imagePullSecret is malformed (wrong type, bad JSON or base64, or missing key).",
        "Recreate it with kubectl create secret docker-registry, which writes a valid "
        ".dockerconfigjson.",
    ),
    Code.CREDENTIAL_PROVIDER: (
        "The kubelet gets credentials for this image from an exec credential provider.",
        "Check the provider binary and its CredentialProviderConfig on the node, and the "
        "kubelet's log for provider errors.",
    ),
    Code.IMAGE_NEVER_PULL: (
        "The image is not on the node and the pull policy is Never.",
        "Preload the image on the node, or change imagePullPolicy to IfNotPresent.",
    ),
    Code.INVALID_IMAGE_NAME: (
        "The image reference is not a valid reference.",
        "Fix the image field: lowercase repository, a valid tag (or @sha256 digest).",
    ),
    Code.DISK_PRESSURE_OR_UNPACK: (
        "The image was fetched but could not be stored or unpacked on the node.",
        "Check the node's free disk space (the runtime's root) and the runtime's log.",
    ),
    Code.BACKOFF: (
        "The kubelet is backing off after an earlier pull failure.",
        "Read the first pull failure for the root cause; the kubelet retries with growing "
        "delays up to 5 minutes.",
    ),
    Code.AMBIGUOUS_NOT_FOUND_OR_AUTH: (
        "The registry says the repository does not exist or needs authorization; it will not "
        "say which.",
        "Check the image name first, then the pull Secret; pulldoctor's probe tells the two "
        "apart when it can authenticate.",
    ),
    Code.REGISTRY_BLOCKED: (
        "The node's registry configuration blocks this registry.",
        "Remove the 'blocked = true' entry from the runtime's registries.conf if pulls from "
        "this registry are meant to work.",
    ),
}

#: Codes only the node agent produces (pull events, Secrets, node registry config).
AGENT_CODES: frozenset[Code] = frozenset({
    Code.SECRET_NOT_FOUND, Code.SECRET_MALFORMED, Code.CREDENTIAL_PROVIDER,
    Code.IMAGE_NEVER_PULL, Code.INVALID_IMAGE_NAME, Code.DISK_PRESSURE_OR_UNPACK,
    Code.BACKOFF, Code.AMBIGUOUS_NOT_FOUND_OR_AUTH, Code.REGISTRY_BLOCKED,
})
#: Codes a layered probe can produce (the contract of ``pulldoctor probe``).
PROBE_CODES: frozenset[Code] = frozenset(Code) - AGENT_CODES
