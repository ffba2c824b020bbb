"""The ``pulldoctor`` command: ``probe`` (one-shot, no cluster), ``classify`` and ``agent``.

Each subcommand imports only what it needs, so ``pulldoctor probe`` starts fast
and never loads the Kubernetes client. Usage errors (a bad reference, an
unreadable or malformed docker config, an out-of-range ``--timeout``) exit 2
with a message that names the file and the problem and never a secret; an
unknown flag after a subcommand prints that subcommand's usage.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from probes import ProbeOptions, ProbeReport

__all__ = ["main"]

VERSION = "0.1.0"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: Longest ``--timeout`` accepted, in seconds: a probe never needs more, and a bigger
#: value (or inf/nan) would make the deadline arithmetic meaningless.
MAX_TIMEOUT = 600.0


class UsageError(Exception):
    """A problem with the command line or its input files; the message is shown as is."""


def _timeout(text: str) -> float:
    """``--timeout``: a finite number of seconds in (0, MAX_TIMEOUT]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(
            f"must be more than 0 and at most {MAX_TIMEOUT:g} seconds, got {text!r}")
    return value


def _dns_server(text: str) -> str:
    """``--dns-server``: an IP address, optionally with a port (``IP:PORT``, ``[IPv6]:PORT``)."""
    from probes._net import DnsSettings, is_ip

    try:
        address = DnsSettings(server=text).server_address()
    except ValueError:
        address = None
    if address is None or not is_ip(address[0]) or not 0 < address[1] < 65536:
        raise argparse.ArgumentTypeError(
            f"must be an IP address with an optional port (IP, IP:PORT or [IPv6]:PORT), "
            f"not a name: got {text!r}")
    return text


def _probe_parser(sub: Any) -> None:
    p = sub.add_parser("probe", help="probe one image or registry layer by layer",
                       description="Walk dns, tcp, proxy, tls, challenge, token and manifest "
                       "against REFERENCE (an image, or a bare host[:port]) as the node's "
                       "container runtime would, and diagnose the first failing layer.")
    p.add_argument("reference", metavar="REFERENCE")
    p.add_argument("--docker-config", metavar="PATH", action="append", default=[],
                   help="docker config JSON with credentials (.dockerconfigjson or .dockercfg "
                   "shape, or a whole Secret as `kubectl get secret -o json` prints it); may be "
                   "repeated")
    p.add_argument("--ca-file", metavar="PATH", action="append", default=[],
                   help="extra CA certificates (PEM) to trust; may be repeated")
    p.add_argument("--certs-dir", metavar="DIR", action="append", default=[],
                   help="containerd/docker certs.d root (default /etc/containerd/certs.d and "
                   "/etc/docker/certs.d); may be repeated")
    p.add_argument("--proxy", metavar="URL", help="HTTP proxy to use (default: HTTPS_PROXY / "
                   "HTTP_PROXY / NO_PROXY from the environment)")
    p.add_argument("--no-proxy", metavar="LIST", help="NO_PROXY list used with --proxy")
    p.add_argument("--dns-server", metavar="IP[:PORT]", type=_dns_server,
                   help="DNS server (an IP address, port 53 by default) instead of resolv.conf")
    p.add_argument("--resolv-conf", metavar="PATH", default="/etc/resolv.conf")
    p.add_argument("--hosts-file", metavar="PATH", default="/etc/hosts")
    p.add_argument("--plain-http", action="store_true", help="talk plain HTTP to the registry")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="platform the image must offer (default: this machine's)")
    p.add_argument("--timeout", metavar="SECONDS", type=_timeout, default=10.0,
                   help=f"deadline for the whole probe, more than 0 and at most "
                   f"{MAX_TIMEOUT:g} (default 10)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(subparser=p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pulldoctor", description="Diagnose container image "
                                     "pull failures the way the node's runtime sees them.")
    parser.add_argument("--version", action="version", version=f"pulldoctor {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)
    _probe_parser(sub)
    c = sub.add_parser("classify", help="classify kubelet/runtime pull error messages",
                       description="Classify MESSAGE, or each stdin line (plain text or JSON "
                       "{\"message\", \"reason\"}), printing one JSON object per line.")
    c.add_argument("message", nargs="?", metavar="MESSAGE")
    c.add_argument("--reason", help="the Event or waiting reason (Failed, BackOff, ...)")
    c.set_defaults(subparser=c)
    a = sub.add_parser("agent", help="run the node agent (DaemonSet)")
    a.add_argument("--config", metavar="PATH", help="agent configuration file (YAML)")
    a.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig (default: in-cluster)")
    a.add_argument("--node", metavar="NAME", default=os.environ.get("NODE_NAME"),
                   help="this node's name (default $NODE_NAME)")
    a.add_argument("--standalone", action="store_true",
                   help="no Kubernetes API: probe only the config's static targets")
    a.add_argument("--once", action="store_true", help="run one probe cycle, print, and exit")
    a.set_defaults(subparser=a)
    return parser


def _keyring(paths: list[str]) -> Any:
    from probes.credentials import DockerConfigError, Keyring, parse_docker_config

    rings = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read docker config {path}: {exc.strerror or exc}") from None
        try:
            data, fmt = _unwrap_secret(data, path)
            rings.append(parse_docker_config(data, source=path, format=fmt))
        except DockerConfigError as exc:
            raise UsageError(str(exc)) from None
    return Keyring.union(*rings) if rings else None


def _unwrap_secret(data: bytes, path: str) -> tuple[bytes, Any]:
    """A whole Secret (``kubectl get secret -o json``) becomes its decoded docker config.

    Anything else is returned unchanged for :func:`parse_docker_config`. Errors
    name the file and the Secret's shape, never its content.
    """
    import base64
    import binascii

    from probes.credentials import DockerConfigError

    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return data, "auto"  # parse_docker_config reports it
    if not isinstance(obj, dict) or obj.get("kind") != "Secret":
        return data, "auto"
    from agent.credentials import SECRET_FORMATS, SECRET_KEYS

    kind = obj.get("type")
    if kind not in SECRET_KEYS:
        raise DockerConfigError(f"{path}: a Secret of type {kind!r}, not "
                                "kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg")
    key = SECRET_KEYS[kind]
    encoded = (obj.get("data") or {}).get(key) if isinstance(obj.get("data"), dict) else None
    plain = obj.get("stringData", {}).get(key) if isinstance(obj.get("stringData"), dict) \
        else None
    if isinstance(plain, str):
        return plain.encode(), SECRET_FORMATS[kind]
    if not isinstance(encoded, str):
        raise DockerConfigError(f"{path}: the {kind} Secret has no data[{key!r}]")
    try:
        return base64.b64decode(encoded, validate=True), SECRET_FORMATS[kind]
    except (binascii.Error, ValueError):
        raise DockerConfigError(f"{path}: data[{key!r}] of the Secret is not valid "
                                "base64") from None


def _proxy_chooser(args: argparse.Namespace) -> tuple[Any, str]:
    from probes import proxyenv

    if args.proxy:
        config = proxyenv.ProxyConfig(http_proxy=args.proxy, https_proxy=args.proxy,
                                      no_proxy=args.no_proxy or "", source="--proxy")
        if config.problems():
            raise UsageError(config.problems()[0])
        return config.explicit_proxy_for, "--proxy"
    config = proxyenv.proxy_from_env(os.environ)
    if args.no_proxy is not None:
        config = proxyenv.ProxyConfig(http_proxy=config.http_proxy, https_proxy=config.https_proxy,
                                      no_proxy=args.no_proxy, source=config.source)
    return config.proxy_for, "HTTPS_PROXY/HTTP_PROXY/NO_PROXY of the environment"


def probe_options(args: argparse.Namespace) -> ProbeOptions:
    from probes import Platform, ProbeOptions
    from probes._net import DnsSettings
    from probes.state import DEFAULT_CERTS_DIRS

    try:
        platform = Platform.parse(args.platform) if args.platform else Platform.host()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    proxy_for, proxy_source = _proxy_chooser(args)
    return ProbeOptions(
        keyring=_keyring(args.docker_config),
        ca_files=tuple(Path(p) for p in args.ca_file),
        certs_dirs=tuple(Path(p) for p in args.certs_dir) or DEFAULT_CERTS_DIRS,
        proxy_for=proxy_for, proxy_source=proxy_source,
        dns=DnsSettings(resolv_conf=Path(args.resolv_conf),
                        hosts_file=Path(args.hosts_file) if args.hosts_file else None,
                        server=args.dns_server),
        plain_http=args.plain_http, platform=platform, timeout=args.timeout,
    )


def render_text(report: ProbeReport, out: TextIO) -> None:
    """A readable table of layers, then the diagnosis and its remediation."""
    out.write(f"pulldoctor probe {report.reference}\n")
    out.write(f"  registry {report.registry}  endpoint {report.endpoint}")
    out.write(f"  credentials {report.credential or 'none'}\n\n")
    out.write(f"  {'LAYER':<10} {'STATUS':<8} {'TIME':>8}  DETAIL\n")
    for layer in report.layers:
        ms = f"{layer.seconds * 1000:.1f}ms" if layer.status.value != "skipped" else "-"
        mark = f" [{layer.code.value}]" if layer.code else ""
        out.write(f"  {layer.name:<10} {layer.status.value:<8} {ms:>8}  {layer.detail}{mark}\n")
    diagnosis = report.diagnosis
    out.write("\n")
    if diagnosis is None:
        out.write(f"  OK: every layer passed in {report.seconds * 1000:.0f}ms; this node can pull "
                  f"{report.reference}.\n")
        return
    out.write(f"  DIAGNOSIS  {diagnosis.code.value} (at the {diagnosis.layer} layer)\n")
    out.write(f"  what       {diagnosis.summary}\n")
    layer = report.failed_layer
    if layer is not None:
        for key, value in _evidence_lines(layer.evidence):
            out.write(f"  evidence   {key}: {value}\n")
    out.write(f"  fix        {diagnosis.remediation}\n")


def _evidence_lines(evidence: dict[str, Any]) -> list[tuple[str, str]]:
    keep = ("verify_error", "subject", "issuer", "sans", "not_before", "not_after", "status",
            "registry_errors", "proxy", "reason", "name", "nameservers", "attempts", "platforms",
            "node_platform", "realm", "cause", "credential_keys", "rate_limit_remaining", "url")
    lines = []
    for key in keep:
        if key in evidence and evidence[key] not in (None, [], ""):
            value = evidence[key]
            text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
            lines.append((key, text[:240]))
    return lines


def cmd_probe(args: argparse.Namespace, out: TextIO) -> int:
    from probes import ReferenceError, parse_reference, probe

    try:
        reference = parse_reference(args.reference)
    except ReferenceError as exc:
        raise UsageError(f"invalid reference: {exc}") from None
    options = probe_options(args)
    try:
        report = probe(reference, options)
    except Exception as exc:  # noqa: BLE001 - node config problems are the user's to fix
        from probes.hostsconfig import HostsConfigError

        if isinstance(exc, HostsConfigError):
            raise UsageError(str(exc)) from None
        raise
    if args.format == "json":
        out.write(json.dumps(report.to_dict(), sort_keys=False) + "\n")
    else:
        render_text(report, out)
    return EXIT_OK if report.ok else EXIT_FAILED


def _skip_httpx_cli() -> None:
    """Keep httpx from importing its own command-line client (click, rich, pygments).

    ``import httpx`` tries ``httpx._main`` and loads those when they happen to be
    installed, which costs about a third of httpx's import time; pulldoctor never
    runs httpx's CLI. A ``None`` entry makes that import fail, which httpx handles.
    An already imported ``httpx._main`` is left alone.
    """
    sys.modules.setdefault("httpx._main", None)  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> int:
    _skip_httpx_cli()
    args, extra = build_parser().parse_known_args(argv)
    if extra:  # the subcommand's own usage, not the top level's
        args.subparser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "probe":
            return cmd_probe(args, sys.stdout)
        if args.command == "classify":
            from agent.classify import main as classify_main

            argv_ = [args.message] if args.message is not None else []
            argv_ += ["--reason", args.reason] if args.reason else []
            return classify_main(argv_, sys.stdin, sys.stdout)
        from agent.main import run_agent

        return run_agent(args)
    except UsageError as exc:
        print(f"pulldoctor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
