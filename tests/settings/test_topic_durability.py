"""Replication factor and min.insync.replicas: derived defaults, refusals, what topics get."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kopilka.core import topics
from kopilka.core.kafka import _topic_configs, durability
from kopilka.core.settings import Settings


def settings(**env) -> Settings:
    return Settings(_env_file=None, **env)


@pytest.mark.parametrize(
    ("rf", "expected"),
    [(1, 1), (2, 1), (3, 2), (5, 2)],
)
def test_min_isr_defaults_to_two_from_three_replicas_else_one(rf, expected):
    assert settings(topic_replication_factor=rf).min_insync_replicas == expected


def test_an_explicit_min_isr_wins():
    s = settings(topic_replication_factor=5, topic_min_insync_replicas=3)
    assert s.min_insync_replicas == 3
    assert durability(s) == {"replication_factor": 5, "min_insync_replicas": 3}


def test_a_min_isr_above_the_replication_factor_is_refused_at_start():
    with pytest.raises(ValidationError, match="exceeds KOPILKA_TOPIC_REPLICATION_FACTOR=1"):
        settings(topic_min_insync_replicas=2)


def test_the_environment_names_are_the_documented_ones(monkeypatch):
    monkeypatch.setenv("KOPILKA_TOPIC_REPLICATION_FACTOR", "3")
    s = settings()
    assert (s.topic_replication_factor, s.min_insync_replicas) == (3, 2)
    monkeypatch.setenv("KOPILKA_TOPIC_MIN_INSYNC_REPLICAS", "4")
    with pytest.raises(ValidationError):
        settings()


@pytest.mark.parametrize("spec", topics.ALL, ids=lambda s: s.name)
def test_every_topic_is_created_with_the_min_isr(spec):
    configs = _topic_configs(spec, settings(topic_replication_factor=3))
    assert configs["min.insync.replicas"] == "2"
    assert (configs.get("cleanup.policy") == "compact") == spec.compacted
