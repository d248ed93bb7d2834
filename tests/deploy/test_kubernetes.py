"""deploy/kubernetes: every manifest against the Kubernetes schemas (offline,
kubernetes-validate), the CRDs against small schemas of our own, and every
cross-reference against the configuration and the code: ports, labels and
selectors, ConfigMap keys and mounts, Secret keys, probe paths (GET on a
real edge and origin), termination timings."""

from __future__ import annotations

import copy
import importlib.machinery
import importlib.util
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import requests
import yaml

from conftest import DEPLOY, K8S, ROOT, Tiers, binary, load_all, manifests

# The oldest Kubernetes minor still maintained upstream when this was written, and the newest
# kubernetes-validate ships.
KUBERNETES_VERSIONS = ["1.31.0", "1.37.0"]
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("postgresql.cnpg.io/v1", "Cluster")}
POD_KINDS = {"Deployment", "Job"}

# Small schemas of the fields these manifests use (the CRDs are not in
# kubernetes-validate's schemas); unknown fields are refused like --strict.
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {
    "type": "object", "required": ["name"], "additionalProperties": False,
    "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                   "labels": _LABELS, "annotations": _LABELS, "namespace": {"type": "string"}},
}
CRD_SCHEMAS = {
    "ServiceMonitor": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"},
            "metadata": _META,
            "spec": {
                "type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
                "properties": {
                    "selector": {"type": "object", "additionalProperties": False,
                                 "properties": {"matchLabels": _LABELS}},
                    "endpoints": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "required": ["port"], "additionalProperties": False,
                        "properties": {"port": {"type": "string"}, "path": {"type": "string", "pattern": "^/"},
                                       "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                       "scheme": {"enum": ["http", "https"]}}}},
                },
            },
        },
    },
    "Cluster": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "postgresql.cnpg.io/v1"}, "kind": {"const": "Cluster"},
            "metadata": _META,
            "spec": {
                "type": "object", "required": ["instances", "storage"], "additionalProperties": False,
                "properties": {
                    "instances": {"type": "integer", "minimum": 1},
                    "postgresql": {"type": "object", "properties": {"parameters": _LABELS}, "additionalProperties": False},
                    "bootstrap": {"type": "object", "additionalProperties": False, "properties": {"initdb": {
                        "type": "object", "required": ["database", "owner"], "additionalProperties": False,
                        "properties": {"database": {"type": "string"}, "owner": {"type": "string"}}}}},
                    "storage": {"type": "object", "required": ["size"], "additionalProperties": False,
                                "properties": {"size": {"type": "string", "pattern": "^[0-9]+(Mi|Gi|Ti)$"},
                                               "storageClass": {"type": "string"}}},
                },
            },
        },
    },
}


def objects(kind: str | None = None) -> list[dict]:
    return [doc for _, doc in manifests() if kind is None or doc["kind"] == kind]


def named(kind: str, name: str) -> dict:
    found = [doc for doc in objects(kind) if doc["metadata"]["name"] == name]
    assert found, f"no {kind} {name}"
    return found[0]


def base_objects(kind: str) -> list[dict]:
    """Objects of the base (kustomization resources), not of optional/."""
    return [doc for path, doc in manifests() if doc["kind"] == kind and path.parent == K8S]


def pod_templates() -> list[tuple[dict, dict]]:
    return [(doc, doc["spec"]["template"]) for doc in base_objects("Deployment") + base_objects("Job")]


def all_containers(template: dict) -> list[dict]:
    spec = template["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def config_of(component: str) -> dict:
    """The tier's configuration as its pods read it: the ConfigMap's file,
    over the code's defaults (conf/<tier>.yaml documents them)."""
    cm = named("ConfigMap", f"floe-{component}-config")
    (text,) = cm["data"].values()
    defaults = yaml.safe_load((ROOT / f"conf/{component}.yaml").read_text())
    return merge(defaults, yaml.safe_load(text))


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def documented_secrets() -> dict[str, set[str]]:
    """The Secret table of deploy/README.md: name -> keys."""
    text = (DEPLOY / "README.md").read_text()
    section = text.split("## Secrets", 1)[1].split("\n## ", 1)[0]
    out: dict[str, set[str]] = {}
    for m in re.finditer(r"^\| `([a-z0-9-]+)` \| `([^`]+)` \|", section, re.M):
        out.setdefault(m[1], set()).add(m[2])
    assert out, "deploy/README.md has no Secrets table"
    return out


def component(template: dict) -> str:
    return template["metadata"]["labels"]["app.kubernetes.io/component"]


def main_container(template: dict) -> dict:
    (c,) = template["spec"]["containers"]
    return c


def named_port(container: dict, name_or_number) -> int:
    if isinstance(name_or_number, int):
        assert any(p["containerPort"] == name_or_number for p in container.get("ports", [])), name_or_number
        return name_or_number
    for p in container.get("ports", []):
        if p["name"] == name_or_number:
            return p["containerPort"]
    raise AssertionError(f"container {container['name']} has no port {name_or_number}")


# ---- schemas ---------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_kubernetes(version: str):
    checked = 0
    for path, doc in manifests():
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{path.relative_to(ROOT)}: {doc['kind']}/{doc['metadata']['name']}: {e.message} at {list(e.path)}")
        checked += 1
    assert checked >= 15


def test_the_validator_refuses_a_mistake():
    deployment = copy.deepcopy(named("Deployment", "floe-edge"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/health"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_custom_resources_match_their_schemas():
    seen = set()
    for path, doc in manifests():
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
            seen.add(doc["kind"])
    assert seen == {"ServiceMonitor", "Cluster"}
    bad = copy.deepcopy(named("ServiceMonitor", "floe-edge"))
    bad["spec"]["endpoints"][0]["prot"] = "metrics"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, CRD_SCHEMAS["ServiceMonitor"])


def test_kustomization_lists_every_base_manifest_and_the_image():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    base = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kust["resources"]) == base
    version = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    assert {"name": "floe", "newTag": version} in kust["images"]
    for _, template in pod_templates():
        for c in all_containers(template):
            assert c["image"] == f"floe:{version}", c["image"]


def test_no_database_of_our_own():
    for doc in objects():
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            for c in all_containers(doc["spec"]["template"]):
                assert "postgres" not in c["image"], f"{doc['metadata']['name']} runs a database"


# ---- ConfigMaps ------------------------------------------------------------


def _load_generator():
    loader = importlib.machinery.SourceFileLoader("k8s_generate", str(K8S / "generate"))
    spec = importlib.util.spec_from_loader("k8s_generate", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_configmaps_are_generated_from_conf():
    result = subprocess.run([str(K8S / "generate"), "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    for name, _, key, source in _load_generator().CONFIG_MAPS:
        cm = named("ConfigMap", name)
        assert cm["data"][key] == (ROOT / source).read_text()


def test_generator_check_fails_on_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    gen = _load_generator()
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "conf", root / "conf")
    out = root / "deploy" / "kubernetes"
    shutil.copytree(K8S, out)
    monkeypatch.setattr(gen, "ROOT", root)
    monkeypatch.setattr(gen, "OUT", out)
    monkeypatch.setattr("sys.argv", ["generate", "--check"])
    assert gen.main() == 0
    src = root / "conf/production/origin.yaml"
    src.write_text(src.read_text().replace("max_connections: 32", "max_connections: 33"))
    assert gen.main() == 1
    assert "max_connections: 33" in capsys.readouterr().out


def test_containers_read_the_configmap_keys_they_mount():
    for doc, template in pod_templates():
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        for c in all_containers(template):
            mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
            argv = c["command"]
            config = argv[argv.index("--config") + 1]
            assert config in mounts, f"{doc['metadata']['name']}/{c['name']}: --config {config} is not mounted"
            mount = mounts[config]
            source = volumes[mount["name"]]["configMap"]["name"]
            cm = named("ConfigMap", source)
            assert mount["subPath"] in cm["data"], f"{source} has no key {mount['subPath']}"
            assert mount["subPath"] == f"{component(template) if component(template) != 'migrate' else 'origin'}.yaml"
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes, m


def test_environment_overrides_name_real_configuration_keys():
    defaults = yaml.safe_load((ROOT / "conf/origin.yaml").read_text())
    for doc, template in pod_templates():
        for c in all_containers(template):
            for env in c.get("env", []):
                m = re.fullmatch(r"FLOE_([A-Z0-9_]+)", env["name"])
                assert m, env["name"]
                node = defaults
                for part in m[1].lower().split("__"):
                    assert isinstance(node, dict) and part in node, f"{env['name']}: no key {part} in conf/origin.yaml"
                    node = node[part]


def test_init_containers_check_the_configuration_the_tier_runs_with():
    for doc, template in pod_templates():
        if doc["kind"] != "Deployment":
            continue
        (init,) = template["spec"]["initContainers"]
        main = main_container(template)
        assert init["command"] == main["command"] + ["check-config"], init["command"]
        assert init.get("env") == main.get("env")
        assert init["volumeMounts"] == main["volumeMounts"]


# ---- Secrets ----------------------------------------------------------------


def test_secret_references_are_documented():
    documented = documented_secrets()
    used: set[tuple[str, str]] = set()
    for doc, template in pod_templates():
        for c in all_containers(template):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    used.add((ref["name"], ref["key"]))
        for v in template["spec"]["volumes"]:
            if "secret" in v:
                name = v["secret"]["secretName"]
                assert name in documented, f"Secret {name} not in deploy/README.md"
                for item in v["secret"].get("items", []):
                    used.add((name, item["key"]))
    for name, key in used:
        assert key in documented.get(name, set()), f"Secret {name} key {key} not in deploy/README.md"
    assert {n for n, _ in used} | {"floe-signing-key", "floe-verification-keys"} <= set(documented)


def test_key_and_certificate_files_are_where_the_configuration_looks():
    documented = documented_secrets()
    for comp in ("edge", "origin"):
        cfg = config_of(comp)
        deployment = named("Deployment", f"floe-{comp}")
        template = deployment["spec"]["template"]
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        mounts = main_container(template)["volumeMounts"]
        files = [cfg["auth"]["signing_key"]["path"]] + [k["path"] for k in cfg["auth"]["verification_keys"]]
        if comp == "edge":
            files += [cfg["tls"]["cert_path"], cfg["tls"]["key_path"]]
        for file in filter(None, files):
            mount = next((m for m in mounts if Path(file).parent == Path(m["mountPath"])), None)
            assert mount, f"{comp}: nothing mounted at {Path(file).parent} for {file}"
            secret = volumes[mount["name"]]["secret"]
            names = {i["path"] for i in secret["items"]} if "items" in secret else documented[secret["secretName"]]
            assert Path(file).name in names, f"{comp}: {file} not provided by Secret {secret['secretName']}"


# ---- ports, labels, selectors ---------------------------------------------------


def test_container_ports_are_the_configured_ones():
    edge, origin = config_of("edge"), config_of("origin")
    edge_c = main_container(named("Deployment", "floe-edge")["spec"]["template"])
    origin_c = main_container(named("Deployment", "floe-origin")["spec"]["template"])
    assert named_port(edge_c, "https") == port_of(edge["tls"]["listen"][0])
    assert named_port(edge_c, "metrics") == port_of(edge["metrics_listen"])
    assert edge["listen"] == [], "plain-text listener in production: expose it or turn it off"
    assert named_port(origin_c, "http") == port_of(origin["server"]["listen"])
    # The edge's --origin is the origin Service's port.
    argv = edge_c["command"]
    host, port = argv[argv.index("--origin") + 1].rsplit(":", 1)
    service = named("Service", host)
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]
    # The default the code falls back to for the edge's origins is the same port.
    assert {port_of(o) for o in yaml.safe_load((ROOT / "conf/edge.yaml").read_text())["origins"]} == {int(port)}


def test_services_select_pods_and_target_their_ports():
    templates = [t for _, t in pod_templates()]
    for service in base_objects("Service"):
        selected = [t for t in templates if matches(service["spec"]["selector"], t["metadata"]["labels"])]
        assert len(selected) == 1, f"Service {service['metadata']['name']} selects {len(selected)} pod templates"
        for p in service["spec"]["ports"]:
            named_port(main_container(selected[0]), p["targetPort"])


def test_disruption_budgets_autoscalers_and_monitors_point_at_real_things():
    templates = {d["metadata"]["name"]: d["spec"]["template"] for d in base_objects("Deployment")}
    for pdb in base_objects("PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        assert sum(matches(sel, t["metadata"]["labels"]) for t in templates.values()) == 1, pdb["metadata"]["name"]
    assert {p["metadata"]["name"] for p in base_objects("PodDisruptionBudget")} == set(templates)
    for hpa in objects("HorizontalPodAutoscaler"):
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["name"] in templates
        assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"])
    pods_metrics = [m["pods"]["metric"]["name"] for h in objects("HorizontalPodAutoscaler")
                    for m in h["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods_metrics == ["floe_edge_http_requests_per_second"]
    for d in base_objects("Deployment"):
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
    services = base_objects("Service")
    for sm in objects("ServiceMonitor"):
        (service,) = [s for s in services if matches(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        for ep in sm["spec"]["endpoints"]:
            assert ep["port"] in [p["name"] for p in service["spec"]["ports"]]


def test_network_policies_select_real_pods_and_ports():
    templates = [t for _, t in pod_templates()]
    cluster = named("Cluster", "floe-db")
    db_labels = {"cnpg.io/cluster": cluster["metadata"]["name"]}
    policies = {p["metadata"]["name"]: p for p in objects("NetworkPolicy")}

    def pods(selector: dict) -> list[dict]:
        return [t for t in templates if matches(selector, t["metadata"]["labels"])]

    for name, policy in policies.items():
        sel = policy["spec"]["podSelector"]["matchLabels"]
        own = pods(sel)
        assert own or sel == db_labels, f"NetworkPolicy {name} selects no pod"
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    peer_sel = peer["podSelector"]["matchLabels"]
                    assert pods(peer_sel) or peer_sel == db_labels, f"{name}: ingress from nothing {peer_sel}"
            for p in rule.get("ports", []):
                for t in own:
                    named_port(main_container(t), p["port"])
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    peer_sel = peer["podSelector"]["matchLabels"]
                    targets = pods(peer_sel)
                    assert targets or peer_sel == db_labels, f"{name}: egress to nothing {peer_sel}"
                    for p in rule.get("ports", []):
                        for t in targets:
                            named_port(main_container(t), p["port"])
    # Only edges (and Prometheus) reach origins; edges cannot reach PostgreSQL;
    # PostgreSQL admits origins and the migration Job only (besides its own
    # instances and operator).
    origin_in = [peer for r in policies["floe-origin"]["spec"]["ingress"] for peer in r["from"]]
    assert [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in origin_in
            if "namespaceSelector" not in p] == ["edge"]
    edge_out = [p for r in policies["floe-edge"]["spec"]["egress"] for p in r.get("ports", [])]
    assert 5432 not in [p["port"] for p in edge_out]
    db_in = [peer["podSelector"]["matchLabels"] for r in policies["floe-db"]["spec"]["ingress"]
             for peer in r["from"] if "podSelector" in peer]
    assert [s.get("app.kubernetes.io/component") for s in db_in if s != db_labels] == ["origin", "migrate"]


# ---- pods: security, termination, migration -------------------------------------


def test_pods_run_unprivileged_as_the_image_user():
    dockerfile = (DEPLOY / "container" / "Dockerfile").read_text()
    uid = int(re.findall(r"^USER (\d+)", dockerfile, re.M)[-1])
    for doc, template in pod_templates():
        pod = template["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == uid, doc["metadata"]["name"]
        assert template["spec"]["automountServiceAccountToken"] is False
        for c in all_containers(template):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]


def _pre_stop_seconds(container: dict) -> int:
    cmd = container["lifecycle"]["preStop"]["exec"]["command"]
    assert cmd[0] == "sleep"
    return int(cmd[1])


def test_termination_grace_covers_the_tiers_drain():
    edge = config_of("edge")["server"]
    t = named("Deployment", "floe-edge")["spec"]["template"]
    need = _pre_stop_seconds(main_container(t)) + edge["grace_period_seconds"] + edge["graceful_shutdown_timeout_seconds"]
    assert need <= t["spec"]["terminationGracePeriodSeconds"] <= need + 10
    origin = config_of("origin")["server"]
    t = named("Deployment", "floe-origin")["spec"]["template"]
    need = _pre_stop_seconds(main_container(t)) + origin["shutdown_grace_seconds"]
    assert need <= t["spec"]["terminationGracePeriodSeconds"] <= need + 10


def test_migration_job_runs_the_origins_migrate_command():
    job = named("Job", "floe-migrate")
    argv = main_container(job["spec"]["template"])["command"]
    assert argv[0] == "floe-origin" and argv[-1] == "migrate"
    help_text = subprocess.run([str(binary("floe-origin")), "--help"], capture_output=True, text=True,
                               timeout=30, check=True).stdout
    assert re.search(r"^\s+migrate\s", help_text, re.M), help_text
    origin_env = {e["name"]: e.get("value") for e in main_container(named("Deployment", "floe-origin")["spec"]["template"])["env"]}
    assert origin_env["FLOE_DATABASE__MIGRATE_ON_START"] == "false"


# ---- probes against the real processes ------------------------------------------


def probes() -> list[tuple[str, str, int, str]]:
    """(component, probe kind, container port, path) of every HTTP probe, and
    the ServiceMonitors' metrics paths."""
    out = []
    for d in base_objects("Deployment"):
        t = d["spec"]["template"]
        c = main_container(t)
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            if kind in c:
                get = c[kind]["httpGet"]
                out.append((component(t), kind, named_port(c, get["port"]), get["path"]))
    services = base_objects("Service")
    for sm in objects("ServiceMonitor"):
        (service,) = [s for s in services if matches(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        (t,) = [t for _, t in pod_templates() if matches(service["spec"]["selector"], t["metadata"]["labels"])]
        for ep in sm["spec"]["endpoints"]:
            target = next(p["targetPort"] for p in service["spec"]["ports"] if p["name"] == ep["port"])
            out.append((component(t), "metrics", named_port(main_container(t), target), ep["path"]))
    return out


def test_probe_paths_are_served_by_the_real_tiers(tiers: Tiers):
    edge, origin = config_of("edge"), config_of("origin")
    # Container port (from the production configuration) -> where the test's
    # process listens for the same role.
    local = {
        ("edge", port_of(edge["metrics_listen"])): tiers.edge_metrics_port,
        ("edge", port_of(edge["tls"]["listen"][0])): tiers.edge_port,
        ("origin", port_of(origin["server"]["listen"])): tiers.origin_port,
    }
    found = probes()
    assert {k for _, k, _, _ in found} >= {"livenessProbe", "readinessProbe", "metrics"}
    for comp, kind, port, path in found:
        url = f"http://127.0.0.1:{local[(comp, port)]}{path}"
        r = requests.get(url, timeout=5)
        assert r.status_code == 200, f"{comp} {kind} GET {path} on container port {port}: {r.status_code}"
        if kind == "metrics":
            assert f"floe_{comp}_http_requests_total" in r.text or f"# TYPE floe_{comp}_" in r.text
        # The same listener refuses a path it does not serve (the origin, with
        # authentication on, before routing): a 200 means the route exists.
        refused = requests.get(f"http://127.0.0.1:{local[(comp, port)]}/no-such-probe", timeout=5).status_code
        assert refused in (401, 404), refused
