"""deploy/compose/docker-compose.yml and deploy/docker/Dockerfile: Debian's `docker-compose`
validates the file (`config` needs no Docker daemon), then the resolved file is checked for what
the deployment promises: the services, two of each scaled process, Prometheus and Grafana with
Kopilka's files mounted, every process's metrics port scraped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"
SECRETS = {"POSTGRES_PASSWORD": "pw", "KOPILKA_ADMIN_TOKEN": "adm", "GRAFANA_ADMIN_PASSWORD": "g"}
DOCKER_COMPOSE = shutil.which("docker-compose")


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [DOCKER_COMPOSE, "config"],
        cwd=COMPOSE,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def resolved() -> dict:
    if DOCKER_COMPOSE is None:
        pytest.skip("docker-compose is missing: run deploy/dev/system-deps.sh (as root)")
    result = compose_config(SECRETS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_services_of_the_deployment(resolved):
    assert set(resolved["services"]) == {
        "kafka", "postgres", "redis", "migrate",
        "ingress-1", "ingress-2", "worker-1", "worker-2", "dispatch",
        "prometheus", "grafana",
    }  # fmt: skip
    assert resolved["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert (
        resolved["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    )


def test_kopilka_processes_run_the_image_with_their_role(resolved):
    services = resolved["services"]
    roles = {
        name: s["command"]
        for name, s in services.items()
        if s.get("image", "").startswith("kopilka:")
    }
    assert roles == {
        "migrate": ["migrate"],
        "ingress-1": ["ingest"], "ingress-2": ["ingest"],
        "worker-1": ["worker"], "worker-2": ["worker"],
        "dispatch": ["dispatch"],
    }  # fmt: skip
    for name in set(roles) - {"migrate"}:
        assert (
            services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        )
    assert services["worker-1"]["volumes"] != services["worker-2"]["volumes"]  # own tables each


def test_secrets_are_required_not_defaulted():
    if DOCKER_COMPOSE is None:
        pytest.skip("docker-compose is missing")
    result = compose_config({})
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr or "KOPILKA_ADMIN_TOKEN" in result.stderr


def test_prometheus_scrapes_every_process_on_its_port(resolved):
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        job["job_name"]: {t for c in job["static_configs"] for t in c["targets"]}
        for job in scrape["scrape_configs"]
    }
    env = resolved["services"]["worker-1"]["environment"]
    assert targets["kopilka-ingress"] == {"ingress-1:8080", "ingress-2:8080"}
    port = env["KOPILKA_WORKER_METRICS_PORT"]
    assert targets["kopilka-worker"] == {f"worker-1:{port}", f"worker-2:{port}"}
    assert targets["kopilka-dispatch"] == {f"dispatch:{env['KOPILKA_DISPATCH_METRICS_PORT']}"}
    assert env["KOPILKA_METRICS_HOST"] == "0.0.0.0"  # noqa: S104 - reachable by Prometheus


def volumes(resolved: dict, service: str) -> list[tuple[str, str]]:
    """(source, target) of a service's volumes, in either of compose's syntaxes."""
    out = []
    for v in resolved["services"][service]["volumes"]:
        if isinstance(v, str):
            source, target = v.split(":")[:2]
        else:
            source, target = v["source"], v["target"]
        out.append((source, target))
    return out


def test_prometheus_and_grafana_get_kopilkas_files(resolved):
    def sources(service: str) -> set[str]:
        return {
            Path(source).relative_to(ROOT).as_posix()
            for source, _ in volumes(resolved, service)
            if source.startswith("/")
        }

    assert sources("prometheus") == {
        "deploy/prometheus/prometheus.yml",
        "deploy/prometheus/alerts.yml",
    }
    assert sources("grafana") == {"deploy/grafana/provisioning", "deploy/grafana/dashboards"}
    rules = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())["rule_files"]
    mounted = {target for _, target in volumes(resolved, "prometheus")}
    assert set(rules) <= mounted


def test_dockerfile_builds_every_package_and_runs_unprivileged():
    text = (ROOT / "deploy/docker/Dockerfile").read_text()
    packages = yaml.safe_load(  # pyproject's package list, the same in the image
        "x: " + (ROOT / "pyproject.toml").read_text().split("include = ", 1)[1].split("\n", 1)[0]
    )["x"]
    for pattern in packages:
        assert f"COPY {pattern.rstrip('*')} ./{pattern.rstrip('*')}" in text
    assert "\nUSER kopilka\n" in text
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "kopilka"]' in text
