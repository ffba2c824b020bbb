"""Start a loopback fleet of real registries with real faults and let pulldoctor diagnose each.

Run with ``./scripts/demo``. Every fleet member is a real server (the Debian
Distribution registry with TLS, htpasswd or token auth, a CONNECT proxy, a DNS
server, small Python servers for rate limits) or a real network fault (a closed
port, a black-holed port). For each member the demo runs the real
``pulldoctor probe`` command, exactly as an SRE would on a node, and prints one
line: the member, what pulldoctor diagnosed, and at which layer. It then runs
the node agent once in standalone mode over the same fleet and shows its
structured report lines and metrics. Nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.fleet import ALICE, BOB, PROXY_PASSWORD, PROXY_USER, Fleet

PULLDOCTOR = [sys.executable, "-m", "agent.cli"]


@dataclass
class Member:
    name: str
    reference: str
    expect: str
    args: list[str] = field(default_factory=list)


def members(fleet: Fleet, configs: dict[str, Path]) -> list[Member]:
    r = {name: reg.host for name, reg in fleet.registries.items()}
    q = {name: srv.host for name, srv in fleet.quirky.items()}
    tls_port = fleet.registries["tls"].port
    proxy = fleet.proxies["auth"].port
    return [
        Member("healthy (token auth, good Secret)", f"{r['token']}/test/hello:v1", "ok",
               ["--docker-config", str(configs["good"])]),
        Member("healthy by DNS name, multi-arch index", f"registry.test:{tls_port}/test/multi:v1",
               "ok"),
        Member("short name via DNS search list", f"registry:{tls_port}/test/hello:v1",
               "tls_hostname_mismatch", ["--ca-file", str(fleet.ca_file)]),
        Member("wrong password in the Secret", f"{r['token']}/test/hello:v1", "auth_invalid",
               ["--docker-config", str(configs["wrong"])]),
        Member("no Secret for the registry", f"{r['basic']}/test/hello:v1", "auth_missing"),
        Member("Secret without pull right", f"{r['token']}/test/hello:v1", "access_denied",
               ["--docker-config", str(configs["bob"])]),
        Member("missing tag", f"{r['token']}/test/hello:v9", "image_not_found",
               ["--docker-config", str(configs["good"])]),
        Member("untrusted CA", f"{r['untrusted']}/test/hello:v1", "tls_unknown_authority"),
        Member("expired certificate", f"{r['expired']}/test/hello:v1", "tls_expired"),
        Member("certificate for another host", f"{r['mismatch']}/test/hello:v1",
               "tls_hostname_mismatch"),
        Member("dead port", f"127.0.0.1:{fleet.closed_port}/test/hello:v1", "tcp_refused"),
        Member("black-holed port", f"127.0.0.1:{fleet.blackhole_port}/test/hello:v1",
               "tcp_timeout", ["--timeout", "2"]),
        Member("NXDOMAIN name", f"registry.nx.test:{tls_port}/test/hello:v1", "dns_nxdomain"),
        Member("index without this platform", f"{r['tls']}/test/otherarch:v1",
               "platform_mismatch"),
        Member("proxy wants credentials", f"{r['tls']}/test/hello:v1", "proxy_auth_required",
               ["--proxy", f"http://127.0.0.1:{proxy}"]),
        Member("healthy through the proxy", f"{r['tls']}/test/hello:v1", "ok",
               ["--proxy", f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy}"]),
        Member("rate limited (429)", f"{q['ratelimit']}/test/hello:v1", "rate_limited",
               ["--plain-http"]),
        Member("web page instead of a registry", f"{q['html']}/test/hello:v1",
               "registry_not_v2", ["--plain-http"]),
    ]


def probe(fleet: Fleet, member: Member) -> dict[str, object]:
    cmd = [*PULLDOCTOR, "probe", member.reference, "--format", "json",
           "--certs-dir", str(fleet.certs_dir), "--resolv-conf", str(fleet.resolv_conf),
           "--hosts-file", str(fleet.hosts_file), *member.args]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, check=False)
    if done.returncode not in (0, 1):
        return {"ok": False, "diagnosis": {"code": "error", "layer": "-",
                                           "detail": done.stderr.strip()[-200:]}}
    return json.loads(done.stdout)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pulldoctor-demo-") as tmp:
        print("pulldoctor demo: starting a loopback fleet of real registries with real faults…")
        began = time.monotonic()
        with Fleet.start(Path(tmp)) as fleet:
            print(f"fleet up in {time.monotonic() - began:.1f}s "
                  f"({len(fleet.registries)} Distribution registries, token server, DNS server, "
                  f"2 tinyproxy, {len(fleet.quirky)} quirky servers)\n")
            token = fleet.registries["token"].host
            configs = {"good": fleet.docker_config({token: ALICE}),
                       "wrong": fleet.docker_config({token: (ALICE[0], "not-the-password")}),
                       "bob": fleet.docker_config({token: BOB})}
            wrong = 0
            print(f"{'FLEET MEMBER':<40} {'DIAGNOSIS':<24} {'LAYER':<10} DETAIL")
            for member in members(fleet, configs):
                report = probe(fleet, member)
                diagnosis = report.get("diagnosis") or {}
                code = str(diagnosis.get("code", "ok"))
                layer = str(diagnosis.get("layer", "-"))
                detail = str(diagnosis.get("detail", f"all layers passed in "
                                           f"{float(report.get('seconds', 0)) * 1000:.0f}ms"))
                mark = "" if code == member.expect else f"   << expected {member.expect}"
                wrong += bool(mark)
                print(f"{member.name:<40} {code:<24} {layer:<10} {detail[:90]}{mark}")
            from demo.agent_run import run_agent_once

            wrong += run_agent_once(fleet, configs)
        print(f"\n{'all diagnoses as expected' if not wrong else f'{wrong} unexpected'}")
        return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
