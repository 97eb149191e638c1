"""deploy/k8s: every Kubernetes resource validates against the Kubernetes schemas (the
`kubernetes-validate` package ships them: no download), strictly (no unknown fields); the Strimzi
resources, whose CRDs it does not ship, are checked for the fields Strimzi requires; and the
manifests agree with Kopilka: the topics of kopilka/core/topics.py, workers <= partitions, the same
metrics ports as the settings.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from kopilka.core import topics

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"
STRIMZI = "kafka.strimzi.io/v1beta2"


def kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def resources() -> list[dict]:
    docs = []
    for name in kustomization()["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def by_kind(kind: str) -> list[dict]:
    return [d for d in resources() if d["kind"] == kind]


def one(kind: str, name: str) -> dict:
    [doc] = [d for d in by_kind(kind) if d["metadata"]["name"] == name]
    return doc


def test_kustomization_lists_every_manifest_and_nothing_missing():
    listed = set(kustomization()["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize(
    "doc",
    [d for d in resources() if d["apiVersion"] != STRIMZI],
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
def test_kubernetes_resources_match_the_schemas(doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_a_broken_resource():
    broken = copy.deepcopy(one("Deployment", "kopilka-ingress"))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    unknown = copy.deepcopy(one("Deployment", "kopilka-ingress"))
    unknown["spec"]["replicaz"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, KUBERNETES_VERSION, strict=True)


def test_strimzi_resources_have_what_strimzi_requires():
    [kafka] = by_kind("Kafka")
    assert kafka["apiVersion"] == STRIMZI
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
    listeners = kafka["spec"]["kafka"]["listeners"]
    assert all({"name", "port", "type", "tls"} <= set(lst) for lst in listeners)
    assert "topicOperator" in kafka["spec"]["entityOperator"]
    config = kafka["spec"]["kafka"]["config"]
    assert config["min.insync.replicas"] < config["default.replication.factor"]

    pools = by_kind("KafkaNodePool")
    assert pools
    for pool in pools:
        assert pool["apiVersion"] == STRIMZI
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert {"replicas", "roles", "storage"} <= set(pool["spec"])
        assert set(pool["spec"]["roles"]) <= {"controller", "broker"}
    assert sum(p["spec"]["replicas"] for p in pools) >= 3
    assert {"controller", "broker"} <= {r for p in pools for r in p["spec"]["roles"]}

    for topic in by_kind("KafkaTopic"):
        assert topic["apiVersion"] == STRIMZI
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert {"topicName", "partitions", "replicas", "config"} <= set(topic["spec"])


def test_topics_are_kopilkas_with_the_configured_partitions():
    config = one("ConfigMap", "kopilka-config")["data"]
    partitions = int(config["KOPILKA_TOPIC_PARTITIONS"])
    rf = int(config["KOPILKA_TOPIC_REPLICATION_FACTOR"])
    declared = {t["spec"]["topicName"]: t["spec"] for t in by_kind("KafkaTopic")}
    created = topics.created_up_front(config.get("KOPILKA_WORKER_ID", "kopilka"))
    assert set(declared) == {spec.name for spec in created}
    for spec in created:
        topic = declared[spec.name]
        assert (topic["partitions"], topic["replicas"]) == (spec.partitions or partitions, rf)
        assert (topic["config"].get("cleanup.policy") == "compact") == spec.compacted


def test_workers_do_not_outnumber_partitions_and_keep_their_tables():
    config = one("ConfigMap", "kopilka-config")["data"]
    [worker] = by_kind("StatefulSet")
    assert 1 <= worker["spec"]["replicas"] <= int(config["KOPILKA_TOPIC_PARTITIONS"])
    mounts = worker["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert config["KOPILKA_WORKER_DATA_DIR"] in {m["mountPath"] for m in mounts}


def test_ingress_scales_on_cpu():
    [hpa] = by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "kopilka-ingress"
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    ingress = one("Deployment", "kopilka-ingress")
    assert ingress["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]


@pytest.mark.parametrize(
    ("kind", "name", "port_setting"),
    [
        ("Deployment", "kopilka-ingress", "KOPILKA_HTTP_PORT"),
        ("StatefulSet", "kopilka-worker", "KOPILKA_WORKER_METRICS_PORT"),
        ("Deployment", "kopilka-dispatch", "KOPILKA_DISPATCH_METRICS_PORT"),
    ],
)
def test_every_process_is_scraped_on_its_metrics_port(kind, name, port_setting):
    config = one("ConfigMap", "kopilka-config")["data"]
    pod = one(kind, name)["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == config[port_setting]
    ports = {p["containerPort"] for c in pod["spec"]["containers"] for p in c["ports"]}
    assert int(config[port_setting]) in ports
    env = {
        ref.get("configMapRef", ref.get("secretRef"))["name"]
        for ref in pod["spec"]["containers"][0]["envFrom"]
    }
    assert env == {"kopilka-config", "kopilka-secrets"}


def test_kustomize_build_validates_when_kubectl_is_here():
    """The built output (namespace, labels, image set) as kubectl would apply it. kubectl is not
    one of Kopilka's dependencies: skipped where it is absent."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    built = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert built.returncode == 0, built.stderr
    docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    assert len(docs) == len(resources())
    for doc in docs:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kopilka"
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "kopilka", doc["metadata"]["name"]
        if doc["apiVersion"] != STRIMZI:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    images = {
        c["image"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
        for c in d["spec"]["template"]["spec"]["containers"]
        + d["spec"]["template"]["spec"].get("initContainers", [])
    }
    assert images == {"registry.example.com/kopilka:0.1.0"}
