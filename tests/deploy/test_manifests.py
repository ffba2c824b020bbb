"""Tests for deploy/: the rendered kustomization is schema-valid and least-privilege.

No kustomize binary is installable from Debian's archive, so ``render()`` below
implements the few kustomize features deploy/kustomization.yaml uses (resources,
namespace, labels without selectors, configMapGenerator without name hash) and
refuses any other key, so the two cannot drift apart silently.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
#: Oldest and newest Kubernetes minor versions the manifests must validate against.
K8S_VERSIONS = ("1.29", "1.32", kubernetes_validate.latest_version())
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
CRD_KINDS = {"PodMonitor", "PrometheusRule"}
_KUSTOMIZE_KEYS = {"apiVersion", "kind", "namespace", "labels", "resources",
                   "generatorOptions", "configMapGenerator"}

#: The agent's config file, exactly as the agent's loader expects it.
CONFIG_SCHEMA: dict[str, Any] = {
    "endpoint_interval_seconds": 900,
    "interval_seconds": 3600,
    "jitter": 0.2,
    "startup_spread_seconds": 30,
    "failure_probe_min_interval_seconds": 30,
    "probe_timeout_seconds": 10,
    "concurrency": 4,
    "max_registries": 200,
    "listen_address": "0.0.0.0:9797",
    "events": {"enabled": True, "min_interval_seconds": 600},
    "host_root": "/host",
    "resolv_conf": "/host/etc/resolv.conf",
    "hosts_file": "/host/etc/hosts",
    "certs_dirs": ["/host/etc/containerd/certs.d", "/host/etc/docker/certs.d"],
    "crio_registries_conf": "/host/etc/containers/registries.conf",
    "crio_registries_dir": "/host/etc/containers/registries.conf.d",
    "proxy_dropin_dirs": ["/host/etc/systemd/system/containerd.service.d",
                          "/host/etc/systemd/system/crio.service.d"],
    "node_docker_configs": ["/host/var/lib/kubelet/config.json", "/host/root/.docker/config.json",
                            "/host/.docker/config.json"],
    "credential_provider_config": "/host/etc/kubernetes/credential-provider-config.yaml",
    "static_targets": [],
}


# --- the renderer -------------------------------------------------------------------------

def _load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _add_labels(obj: dict[str, Any], labels: dict[str, str]) -> None:
    obj.setdefault("metadata", {}).setdefault("labels", {}).update(labels)


def _generate_configmaps(kz: dict[str, Any], base: Path) -> list[dict[str, Any]]:
    if kz.get("generatorOptions") != {"disableNameSuffixHash": True}:
        raise ValueError("renderer only implements generatorOptions.disableNameSuffixHash")
    out = []
    for gen in kz.get("configMapGenerator", []):
        unknown = set(gen) - {"name", "files", "options"}
        if unknown or set(gen.get("options", {})) - {"labels"}:
            raise ValueError(f"unsupported configMapGenerator keys in {gen['name']}")
        data = {Path(f).name: (base / f).read_text() for f in gen["files"]}
        cm: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": gen["name"]}, "data": data}
        if gen.get("options", {}).get("labels"):
            _add_labels(cm, gen["options"]["labels"])
        out.append(cm)
    return out


def render(base: Path = DEPLOY) -> list[dict[str, Any]]:
    """Build the kustomization at ``base`` like ``kustomize build`` does for these features."""
    kz = yaml.safe_load((base / "kustomization.yaml").read_text())
    unknown = set(kz) - _KUSTOMIZE_KEYS
    if unknown:
        raise ValueError(f"renderer does not implement kustomization keys {sorted(unknown)}")
    objs = [doc for res in kz["resources"] for doc in _load_all(base / res)]
    objs += _generate_configmaps(kz, base)
    for obj in objs:
        if obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = kz["namespace"]
        for entry in kz.get("labels", []):
            if entry.get("includeSelectors") or entry.get("includeTemplates"):
                raise ValueError("renderer only implements labels without selectors/templates")
            _add_labels(obj, entry["pairs"])
    return objs


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return render()


def one(objects: list[dict[str, Any]], kind: str, name: str = "pulldoctor") -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(objects, "DaemonSet")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


# --- the set of objects and schema validity ----------------------------------------------

def test_kustomization_renders_the_expected_objects(objects: list[dict[str, Any]]) -> None:
    """The kustomization yields exactly the agent's objects, each once."""
    names = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert names == sorted([
        ("Namespace", "pulldoctor"), ("ServiceAccount", "pulldoctor"),
        ("ClusterRole", "pulldoctor"), ("ClusterRoleBinding", "pulldoctor"),
        ("ConfigMap", "pulldoctor-config"), ("ConfigMap", "pulldoctor-dashboard"),
        ("DaemonSet", "pulldoctor"), ("Service", "pulldoctor"),
        ("PodMonitor", "pulldoctor"), ("PrometheusRule", "pulldoctor"),
    ])


def test_renderer_refuses_kustomize_features_it_does_not_implement(tmp_path: Path) -> None:
    """A kustomization using an unimplemented key (images:) makes the renderer fail loudly."""
    (tmp_path / "kustomization.yaml").write_text(
        "resources: []\nimages: [{name: x, newTag: y}]\n")
    with pytest.raises(ValueError, match="images"):
        render(tmp_path)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_objects_validate_against_kubernetes_schemas(
        objects: list[dict[str, Any]], version: str) -> None:
    """Every non-CRD object validates strictly (no unknown fields) against the Kubernetes
    OpenAPI schemas of each supported version."""
    core = [o for o in objects if o["kind"] not in CRD_KINDS]
    assert len(core) == 8
    for obj in core:
        kubernetes_validate.validate(obj, version, strict=True)


def test_schema_validation_catches_a_misspelled_field(objects: list[dict[str, Any]]) -> None:
    """The strict validation used above really rejects an unknown field."""
    ds = json.loads(json.dumps(one(objects, "DaemonSet")))
    ds["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, "1.32", strict=True)


def test_namespaced_objects_live_in_pulldoctor(objects: list[dict[str, Any]]) -> None:
    """Every namespaced object is in the pulldoctor namespace; cluster objects have none."""
    for obj in objects:
        expected = None if obj["kind"] in CLUSTER_SCOPED else "pulldoctor"
        assert obj["metadata"].get("namespace") == expected, obj["kind"]


def test_every_object_carries_the_part_of_label(objects: list[dict[str, Any]]) -> None:
    """The kustomization's common label reaches every object."""
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "pulldoctor"


# --- RBAC --------------------------------------------------------------------------------

def test_cluster_role_is_least_privilege(objects: list[dict[str, Any]]) -> None:
    """The ClusterRole grants exactly pods list/watch, events list/create, secrets get and
    serviceaccounts get in the core group, and nothing else."""
    granted = set()
    for rule in one(objects, "ClusterRole")["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((group, resource, verb))
    assert granted == {
        ("", "pods", "list"), ("", "pods", "watch"),
        ("", "events", "list"), ("", "events", "create"),
        ("", "secrets", "get"), ("", "serviceaccounts", "get"),
    }


def test_binding_gives_the_role_to_the_agents_service_account(
        objects: list[dict[str, Any]]) -> None:
    """The ClusterRoleBinding binds that role to the DaemonSet's service account only."""
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": "pulldoctor"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pulldoctor",
                                    "namespace": "pulldoctor"}]
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "pulldoctor"


# --- DaemonSet ---------------------------------------------------------------------------

def test_daemonset_runs_on_every_node_with_the_nodes_network(
        objects: list[dict[str, Any]]) -> None:
    """hostNetwork with ClusterFirstWithHostNet, every taint tolerated, 10 % rolling updates."""
    ds = one(objects, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxUnavailable": "10%"}}
    selector = ds["spec"]["selector"]["matchLabels"]
    assert selector.items() <= ds["spec"]["template"]["metadata"]["labels"].items()


def test_agent_container_is_locked_down(objects: list[dict[str, Any]]) -> None:
    """Non-root 65532, read-only root, no capabilities, RuntimeDefault seccomp, no escalation."""
    sc = container(objects)["securityContext"]
    assert sc["runAsUser"] == 65532 and sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in sc
    pod_sc = one(objects, "DaemonSet")["spec"]["template"]["spec"]["securityContext"]
    assert pod_sc["runAsUser"] == 65532 and pod_sc["seccompProfile"]["type"] == "RuntimeDefault"


def _mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0}
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity)
    assert match, quantity
    return int(match.group(1)) * units[match.group(2)]


def test_resources_are_guaranteed_and_fit_the_rss_target(objects: list[dict[str, Any]]) -> None:
    """requests equal limits (Guaranteed QoS) and the memory limit leaves room above 80 MiB."""
    resources = container(objects)["resources"]
    assert resources["requests"] == resources["limits"]
    assert set(resources["limits"]) == {"cpu", "memory"}
    assert 80 < _mebibytes(resources["limits"]["memory"]) <= 128


def test_agent_command_env_port_and_probes(objects: list[dict[str, Any]]) -> None:
    """Args, NODE_NAME from the downward API, port 9797 named metrics, health probes."""
    c = container(objects)
    assert c["args"] == ["agent", "--config", "/etc/pulldoctor/config.yaml"]
    assert {"name": "NODE_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in c["env"]
    assert c["ports"] == [{"name": "metrics", "containerPort": 9797, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    # The server gives a callback 2 s (agent.http.CALLBACK_TIMEOUT_SECONDS) before a 500.
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["timeoutSeconds"] > 2


def _host_mounts(objects: list[dict[str, Any]]) -> dict[str, tuple[str, dict[str, Any]]]:
    """hostPath volume name -> (host path, its volumeMount)."""
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in container(objects)["volumeMounts"]}
    return {v["name"]: (v["hostPath"]["path"], mounts[v["name"]])
            for v in pod["volumes"] if "hostPath" in v}


def test_host_mounts_are_read_only_under_host_and_only_what_is_needed(
        objects: list[dict[str, Any]]) -> None:
    """Each node path is mounted read-only at /host/<path>; /var/lib/kubelet (pod volumes)
    and broader paths are never mounted."""
    mounts = _host_mounts(objects)
    assert sorted(path for path, _ in mounts.values()) == sorted([
        "/etc/resolv.conf", "/etc/hosts", "/etc/ssl/certs", "/etc/pki", "/etc/containerd",
        "/etc/docker/certs.d", "/etc/containers", "/etc/kubernetes", "/etc/systemd/system",
    ])
    for path, mount in mounts.values():
        assert mount["readOnly"] is True, path
        assert mount["mountPath"] == "/host" + path
        assert "mountPropagation" not in mount and "subPath" not in mount


def test_config_paths_are_mounted(objects: list[dict[str, Any]]) -> None:
    """Every node path the config reads lies under a read-only host mount (node docker
    configs excepted: documented as opt-in because of /var/lib/kubelet)."""
    config = yaml.safe_load(one(objects, "ConfigMap", "pulldoctor-config")["data"]["config.yaml"])
    paths = [config["resolv_conf"], config["hosts_file"], config["crio_registries_conf"],
             config["crio_registries_dir"], config["credential_provider_config"],
             *config["certs_dirs"], *config["proxy_dropin_dirs"]]
    mount_points = [m["mountPath"] for _, m in _host_mounts(objects).values()]
    for path in paths:
        assert any(path == mp or path.startswith(mp + "/") for mp in mount_points), path


def test_agent_loads_the_shipped_config_and_every_node_path_is_mounted(
        objects: list[dict[str, Any]], tmp_path: Path) -> None:
    """agent.config accepts the ConfigMap's file, and every node path of the resulting
    config (defaults included, node docker configs excepted) lies under a host mount."""
    from agent.config import load_config

    path = tmp_path / "config.yaml"
    path.write_text(one(objects, "ConfigMap", "pulldoctor-config")["data"]["config.yaml"])
    config = load_config(path)
    mount_points = [m["mountPath"] for _, m in _host_mounts(objects).values()]
    node_paths = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        values = value if isinstance(value, tuple) else (value,)
        if f.name not in ("host_root", "node_docker_configs"):
            node_paths += [str(v) for v in values if isinstance(v, Path)]
    assert len(node_paths) >= 8
    for node_path in node_paths:
        assert any(node_path == mp or node_path.startswith(mp + "/") for mp in mount_points), (
            node_path)


def test_config_file_has_exactly_the_agent_schema(objects: list[dict[str, Any]]) -> None:
    """The shipped config.yaml has exactly the keys and defaults the agent's loader reads,
    and is mounted where the args point."""
    cm = one(objects, "ConfigMap", "pulldoctor-config")
    assert set(cm["data"]) == {"config.yaml"}
    assert yaml.safe_load(cm["data"]["config.yaml"]) == CONFIG_SCHEMA
    mounts = {m["name"]: m["mountPath"] for m in container(objects)["volumeMounts"]}
    volumes = one(objects, "DaemonSet")["spec"]["template"]["spec"]["volumes"]
    config_volume = next(v for v in volumes if v.get("configMap", {}).get("name")
                         == "pulldoctor-config")
    assert mounts[config_volume["name"]] + "/config.yaml" == "/etc/pulldoctor/config.yaml"


def test_config_listen_port_is_the_container_port(objects: list[dict[str, Any]]) -> None:
    """The configured listen port is the one the probes, Service and PodMonitor use."""
    config = yaml.safe_load(one(objects, "ConfigMap", "pulldoctor-config")["data"]["config.yaml"])
    port = int(config["listen_address"].rsplit(":", 1)[1])
    assert container(objects)["ports"][0]["containerPort"] == port


def test_image_tag_is_the_project_version(objects: list[dict[str, Any]]) -> None:
    """The DaemonSet runs the image of the version in pyproject.toml."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert container(objects)["image"].rsplit(":", 1)[1] == version


def test_namespace_allows_host_network_pods(objects: list[dict[str, Any]]) -> None:
    """The namespace's Pod Security level admits hostNetwork and hostPath."""
    labels = one(objects, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


# --- Service, PodMonitor, PrometheusRule, dashboard ConfigMap -------------------------------

def test_headless_service_selects_the_agents(objects: list[dict[str, Any]]) -> None:
    """The Service is headless and its selector and port name match the pods."""
    svc = one(objects, "Service")
    assert svc["spec"]["clusterIP"] == "None"
    pod_labels = one(objects, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["ports"][0]["name"] == "metrics"
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"


_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {"type": "object", "required": ["name", "namespace"],
             "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                            "labels": _STR_MAP, "annotations": _STR_MAP},
             "additionalProperties": False}
_RELABEL = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "action": {"enum": ["replace", "keep", "drop", "hashmod", "labelmap", "labeldrop",
                            "labelkeep", "lowercase", "uppercase", "keepequal", "dropequal"]},
        "sourceLabels": {"type": "array", "items": {"type": "string",
                                                    "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"}},
        "separator": {"type": "string"}, "targetLabel": {"type": "string"},
        "regex": {"type": "string"}, "modulus": {"type": "integer"},
        "replacement": {"type": "string"},
    },
}
#: The subset of the Prometheus Operator's monitoring.coreos.com/v1 CRD schemas we use,
#: with unknown fields forbidden so a typo fails here rather than being pruned silently.
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "PodMonitor": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PodMonitor"},
            "metadata": _METADATA,
            "spec": {
                "type": "object", "required": ["selector", "podMetricsEndpoints"],
                "additionalProperties": False,
                "properties": {
                    "jobLabel": {"type": "string"},
                    "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                    "selector": {"type": "object", "additionalProperties": False, "properties": {
                        "matchLabels": _STR_MAP, "matchExpressions": {"type": "array"}}},
                    "namespaceSelector": {"type": "object", "additionalProperties": False,
                                          "properties": {"any": {"type": "boolean"},
                                                         "matchNames": {"type": "array"}}},
                    "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"}, "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": _DURATION, "scrapeTimeout": _DURATION,
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array", "items": _RELABEL},
                            "metricRelabelings": {"type": "array", "items": _RELABEL},
                        }}},
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "PrometheusRule"}, "metadata": _METADATA,
            "spec": {"type": "object", "required": ["groups"], "additionalProperties": False,
                     "properties": {"groups": {"type": "array", "minItems": 1, "items": {
                         "type": "object", "required": ["name", "rules"],
                         "additionalProperties": False,
                         "properties": {
                             "name": {"type": "string", "minLength": 1}, "interval": _DURATION,
                             "limit": {"type": "integer"},
                             "rules": {"type": "array", "minItems": 1, "items": {
                                 "type": "object", "required": ["expr"],
                                 "additionalProperties": False,
                                 "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                 "properties": {
                                     "alert": {"type": "string"}, "record": {"type": "string"},
                                     "expr": {"type": "string"}, "for": _DURATION,
                                     "keep_firing_for": _DURATION,
                                     "labels": _STR_MAP, "annotations": _STR_MAP,
                                 }}},
                         }}}}},
        },
    },
}


@pytest.mark.parametrize("kind", sorted(CRD_KINDS))
def test_custom_resources_match_the_operator_schema(
        objects: list[dict[str, Any]], kind: str) -> None:
    """PodMonitor and PrometheusRule match the operator's v1 schema for the fields used."""
    jsonschema.validate(one(objects, kind), CRD_SCHEMAS[kind])


def test_crd_schema_rejects_a_misspelled_field(objects: list[dict[str, Any]]) -> None:
    """The hand-written CRD schema really rejects an unknown field."""
    pm = json.loads(json.dumps(one(objects, "PodMonitor")))
    pm["spec"]["podMetricsEndpoints"][0]["relabellings"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(pm, CRD_SCHEMAS["PodMonitor"])


def test_podmonitor_scrapes_the_agents_and_adds_the_node(objects: list[dict[str, Any]]) -> None:
    """The PodMonitor selects the pods by label, scrapes the named port, sets job=pulldoctor
    and copies the pod's node name into a `node` label."""
    pm = one(objects, "PodMonitor")
    pod_labels = one(objects, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert pm["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pod_labels[pm["spec"]["jobLabel"]] == "pulldoctor"
    endpoint = pm["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == container(objects)["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert {"action": "replace", "sourceLabels": ["__meta_kubernetes_pod_node_name"],
            "targetLabel": "node"} in endpoint["relabelings"]


def test_dashboard_configmap_is_generated_from_the_json_file(
        objects: list[dict[str, Any]]) -> None:
    """The dashboard ConfigMap carries grafana_dashboard=1 and the JSON file verbatim."""
    cm = one(objects, "ConfigMap", "pulldoctor-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    path = DEPLOY / "grafana" / "pulldoctor-dashboard.json"
    assert cm["data"] == {"pulldoctor-dashboard.json": path.read_text()}
    # kubectl apply keeps a copy in an annotation limited to 256 KiB.
    assert len(path.read_bytes()) < 200 * 1024


# --- Dockerfile ---------------------------------------------------------------------------

def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            pairs.append((instruction.upper(), args.strip()))
    return pairs


def test_dockerfile_is_multi_stage_and_runs_non_root() -> None:
    """Builder and final stage on python:3.11-slim; the final stage copies only the venv,
    runs as 65532 and starts `pulldoctor agent`."""
    pairs = _dockerfile()
    froms = [args for ins, args in pairs if ins == "FROM"]
    assert len(froms) == 2
    assert all(f.split()[0] == "python:3.11-slim" for f in froms)
    final = pairs[max(i for i, (ins, _) in enumerate(pairs) if ins == "FROM"):]
    copies = [args for ins, args in final if ins == "COPY"]
    assert copies and all(c.startswith("--from=") for c in copies)
    assert ("USER", "65532:65532") in final
    assert ("ENTRYPOINT", '["pulldoctor"]') in final
    assert ("CMD", '["agent"]') in final
    assert [args for ins, args in pairs if ins == "USER"][-1] == "65532:65532"


def test_dockerignore_keeps_the_build_context_small() -> None:
    """The build context leaves out git history, tests, caches and virtualenvs."""
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", "tests", "**/__pycache__", ".venv"} <= ignored
