"""The alert rules, their unit tests, the scrape config and the dashboard's queries, checked by
Prometheus's own promtool (Debian's `prometheus` package; deploy/dev/system-deps.sh installs it).

`promtool test rules` runs deploy/prometheus/tests/alerts_test.yml: every alert fires in its case
and stays quiet in the case next to it. The dashboard's PromQL is checked by promtool too, as
recording rules in a scratch file (promtool parses every expression of a rules file).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "kopilka.json"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is missing: run deploy/dev/system-deps.sh (as root)"
)

# the alert list, by name
ALERTS = {
    "KopilkaConsumerLagGrowing",
    "KopilkaDeadLettersIncreasing",
    "KopilkaIngress5xx",
    "KopilkaIngress503Rate",
    "KopilkaEndpointDisabled",
    "KopilkaDeliveryFailureRate",
    "KopilkaWorkerDown",
    "KopilkaNoWorkers",
    "KopilkaDispatcherDown",
    "KopilkaOutboxLate",
}


def promtool(*args: str, cwd: Path = PROM) -> str:
    result = subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_exprs() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


@needs_promtool
def test_rules_are_valid():
    out = promtool("check", "rules", "alerts.yml")
    assert f"SUCCESS: {len(alert_rules())} rules found" in out


@needs_promtool
def test_every_alert_passes_its_unit_tests():
    assert "SUCCESS" in promtool("test", "rules", "tests/alerts_test.yml")


def test_every_alert_has_a_unit_test_that_expects_it_to_fire():
    tests = yaml.safe_load((PROM / "tests" / "alerts_test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    names = {rule["alert"] for rule in alert_rules()}
    assert names == ALERTS
    assert fired == names


@needs_promtool
def test_scrape_config_is_valid():
    promtool("check", "config", "--syntax-only", "prometheus.yml")
    jobs = {
        j["job_name"]
        for j in yaml.safe_load((PROM / "prometheus.yml").read_text())["scrape_configs"]
    }
    assert {"kopilka-ingress", "kopilka-worker", "kopilka-dispatch"} <= jobs


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path):
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:panel_{i}", "expr": expr}
                    for i, (_, expr) in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    promtool("check", "rules", str(path), cwd=tmp_path)


def test_dashboard_uses_only_metrics_kopilka_exports():
    """Every metric a panel queries is one the code defines (or Prometheus's own `up`)."""
    defined = set()
    for source in (
        "ingest/webhooks.py",
        "streams/metrics.py",
        "sinks/dispatch_metrics.py",
        "kopilka/cli/progress.py",
        "kopilka/core/retry.py",
    ):
        defined |= set(re.findall(r'"(kopilka_[a-z0-9_]+)"', (ROOT / source).read_text()))
    suffixes = ("_total", "_bucket", "_count", "_sum")
    for title, expr in dashboard_exprs():
        for name in re.findall(r"\b(kopilka_[a-z0-9_]+)", expr):
            base = next((name[: -len(s)] for s in suffixes if name.endswith(s)), name)
            assert name in defined or base in defined, (title, name)


def test_dashboard_provisioning_points_at_the_dashboard_and_datasource():
    dash = json.loads(DASHBOARD.read_text())
    datasource = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    uids = {p["datasource"]["uid"] for p in dash["panels"] if p.get("type") != "row"}
    assert uids == {datasource["uid"]}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_readme_lists_every_metric():
    readme = (ROOT / "README.md").read_text()
    defined = set()
    for source in (
        "ingest/webhooks.py",
        "streams/metrics.py",
        "sinks/dispatch_metrics.py",
        "kopilka/cli/progress.py",
        "kopilka/core/retry.py",
    ):
        defined |= set(re.findall(r'"(kopilka_[a-z0-9_]+)"', (ROOT / source).read_text()))
    listed = set(re.findall(r"`(kopilka_[a-z0-9_]+)`", readme))
    missing = {n for n in defined if n not in listed and f"{n}_total" not in listed}
    assert not missing, missing
    assert listed <= defined | {f"{n}_total" for n in defined}, listed - defined


def _k8s_scrape_jobs() -> list[dict]:
    manifest = yaml.safe_load((ROOT / "deploy" / "k8s" / "prometheus-scrape.yaml").read_text())
    return yaml.safe_load(manifest["data"]["kopilka-scrape.yml"])


def test_every_job_an_alert_names_is_scraped_under_that_name_locally_and_on_kubernetes():
    named = {job for rule in alert_rules() for job in re.findall(r'job="([^"]+)"', rule["expr"])}
    assert named  # the worker and dispatcher alerts name their jobs
    local = {
        j["job_name"]
        for j in yaml.safe_load((PROM / "prometheus.yml").read_text())["scrape_configs"]
    }
    assert named <= local
    assert named <= {j["job_name"] for j in _k8s_scrape_jobs()}


def test_each_kubernetes_job_keeps_only_its_own_pods():
    """(promtool cannot check it: Debian builds it without Kubernetes discovery.)"""
    for job in _k8s_scrape_jobs():
        assert [sd["role"] for sd in job["kubernetes_sd_configs"]] == ["pod"]
        keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
        assert [r["regex"] for r in keep] == [job["job_name"]]
