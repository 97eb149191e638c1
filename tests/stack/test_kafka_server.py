"""Pure parts of kopilka.devstack.kafka_server: cluster ids and the rendered broker properties."""

from __future__ import annotations

import uuid

from kopilka.devstack import kafka_server


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch):
    ids = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" + bytes(15))])
    monkeypatch.setattr(kafka_server.uuid, "uuid4", lambda: next(ids))
    cluster_id = kafka_server._new_cluster_id()
    assert cluster_id == "AQAAAAAAAAAAAAAAAAAAAA"  # the second one: the first began with '-'


def test_cluster_overrides_replace_the_template_keys_and_add_new_ones(tmp_path):
    props = tmp_path / "server.properties"
    kafka_server._write_properties(
        props,
        port=19092,
        controller_port=19093,
        partitions=8,
        overrides={
            "node.id": 2,
            "min.insync.replicas": 2,
            "unclean.leader.election.enable": "false",
        },
    )
    lines = [line for line in props.read_text().splitlines() if not line.startswith("#")]
    values = dict(line.split("=", 1) for line in lines if line)
    assert values["node.id"] == "2" and values["min.insync.replicas"] == "2"
    assert values["unclean.leader.election.enable"] == "false"
    assert values["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert values["log.dirs"] == str(tmp_path / "data")
    assert sum(line.startswith("node.id=") for line in lines) == 1
