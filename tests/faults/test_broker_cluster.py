"""A three-broker local cluster (replication factor 3, min.insync.replicas 2) loses one broker
under load: a shop sends steadily, the broker that coordinates the workers' consumer group is
killed -9, and restarted a while later. Two in-sync replicas stay, so acks=all writes go on;
the workers' group moves to another coordinator. lost 0, doubled 0, drift 0 (harness, checker).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from harness import assert_clean, fast, run_scenario

from kopilka.core import topics

pytestmark = [pytest.mark.disruptive]

GROUP = "kopilka"  # the workers' consumer group (settings.worker_id)
BEFORE_S = 5.0


async def _admin(bootstrap: list[str]) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    return admin


async def durability(bootstrap: list[str]) -> dict[str, tuple[int, str]]:
    """Each Kopilka topic's replication factor and min.insync.replicas."""
    names = [t.name for t in topics.ALL]
    admin = await _admin(bootstrap)
    try:
        described = await admin.describe_topics(names)
        responses = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, name, {"min.insync.replicas": None})
                for name in names
            ]
        )
    finally:
        await admin.close()
    isr_config = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            entries = {c["config_names"]: c["config_value"] for c in resource["config_entries"]}
            isr_config[resource["resource_name"]] = entries.get("min.insync.replicas")
    return {
        t["topic"]: (min(len(p["replicas"]) for p in t["partitions"]), isr_config[t["topic"]])
        for t in described
    }


async def short_of_replicas(bootstrap: list[str], replicas: int) -> int:
    """Partitions (of every topic, Faust's and the offsets' included) with fewer in-sync
    replicas than `replicas`."""
    admin = await _admin(bootstrap)
    try:
        names = await admin.list_topics()
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return sum(1 for t in described for p in t["partitions"] if len(p["isr"]) < replicas)


async def coordinator(bootstrap: list[str], group: str) -> int:
    admin = await _admin(bootstrap)
    try:
        return await admin.find_coordinator(group)
    finally:
        await admin.close()


@pytest.mark.timeout(600)
async def test_one_broker_of_three_killed_under_load(cluster_fault_stack):
    fs = cluster_fault_stack
    brokers = len(fs.stack.kafka_cluster.ports)
    assert brokers == 3
    # what the scenario claims: every topic of Kopilka's on three replicas, two in sync needed
    assert {name: d for name, d in (await durability(fs.bootstrap)).items()} == {
        t.name: (3, "2") for t in topics.ALL
    }
    down_s = 15.0 if fast() else 30.0

    async def fault(fs, t):
        await asyncio.sleep(BEFORE_S)
        node = await coordinator(fs.bootstrap, GROUP)
        t.start = time.monotonic()
        await fs.kill_broker(node)
        t.note(f"kafka-{node} killed -9 (it coordinated the workers' group)")
        await asyncio.sleep(down_s)
        t.note(f"{await short_of_replicas(fs.bootstrap, brokers)} partitions short of a replica")
        await fs.restart_broker(node)
        t.end = time.monotonic()
        t.note(f"kafka-{node} up again")
        deadline = time.monotonic() + 60
        while await short_of_replicas(fs.bootstrap, brokers):
            assert time.monotonic() < deadline, f"kafka-{node} never caught up (ISR short)"
            await asyncio.sleep(1.0)
        t.note(f"every partition has {brokers} in-sync replicas again")

    name = f"1 of 3 brokers kill -9 {down_s:.0f}s (RF 3, min ISR 2)"
    assert_clean(await run_scenario(fs, name, fault, rate=10))
