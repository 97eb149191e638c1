"""Fewer, fuller produce requests: a broker that is sent to takes every batch it leads.

aiokafka lingers per partition: a produce request carries only the batches whose own
`linger_ms` has passed, and each of the others, expiring a moment later, makes a request of its
own. The worker writes to dozens of partitions of several topics at once (commands, events, the
ledger's changelog, outcomes), so its records went out in many small requests, and every request
is a socket write that wakes the broker: under load, `write()` to the brokers held the worker's
GIL for a fifth of its time (py-spy --native --gil), on a machine whose two cores the broker
shares. Kafka's Java producer drains by node instead: once one of a broker's batches is ready,
the request takes all of them. `fuller_requests(producer)` makes an aiokafka producer do the
same; nothing else of how it batches, retries or orders records changes (one request in flight
per broker, as before, so a partition's batches still go in order).
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import MessageAccumulator


class NodeDrainingAccumulator(MessageAccumulator):
    """aiokafka's accumulator, draining a broker's batches together once any of them is due."""

    def drain_by_nodes(self, ignore_nodes, muted_partitions=frozenset()):
        due: set[int] = set()
        heads = []
        for tp, batches in self._batches.items():
            if tp in muted_partitions or not batches:
                continue
            leader = self._cluster.leader_for_partition(tp)
            if leader is None or leader == -1 or (ignore_nodes and leader in ignore_nodes):
                continue
            heads.append((leader, batches[0]))
            if batches[0].remaining_linger() is None:  # lingered long enough, or full
                due.add(leader)
        for leader, batch in heads:
            if leader in due:
                batch._linger_time = 0  # goes with this request instead of making its own
        return super().drain_by_nodes(ignore_nodes, muted_partitions)


def fuller_requests(producer: AIOKafkaProducer) -> AIOKafkaProducer:
    """`producer`, draining by broker; call before it starts."""
    producer._message_accumulator.__class__ = NodeDrainingAccumulator
    return producer
