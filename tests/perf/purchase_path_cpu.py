"""CPU of our own Python per purchase on the worker's path, without Kafka or Postgres.

What each stage does to one standard purchase, in-process and in order: the normaliser (read
the raw envelope, parse the body, build the command and the audit record, encode both), the
ledger (read the command, load the customer and order entries, apply the rules, store the
entries, encode the events and, when someone waits, the outcome), the ledger sink (read each
event into its rows), the outbound fan-out (read each event) and the audit sink (read the
audit record). Broker, Faust and Postgres costs are not in it: `worker_cpu.py` measures the
whole worker. The machine is shared, so this is the figure that stays put between runs.

    .venv/bin/python tests/perf/purchase_path_cpu.py [--n 20000] [--customers 2000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import purchase_factory

import streams.ledger as ledger_mod
import streams.normalize as normalize_mod
import streams.normalizer as normalizer_mod
import streams.request_records as request_records
from kopilka.core.ids import derived_id, new_event_id
from schemas.inbound import parse_webhook
from schemas.messages import CustomerRef, RawEnvelope
from schemas.rules.state import CustomerState
from schemas.tenant_rules import TenantRules
from sinks.postgres import AuditSink, ReadModelSink
from streams.outbound import read_event

TENANT = "0b6f3d52-31c9-4d7e-9d55-6c3f1f0a9b10"


def raw_records(n: int, prefix: str) -> list[bytes]:
    """Purchases received a millisecond apart: each award is its own lot, as in production
    (awards at one instant share a lot, and a customer's entry would stay one lot long)."""
    make = purchase_factory(prefix)
    now = datetime.now(UTC)
    return [
        RawEnvelope.wrap(
            make(i),
            event_id=new_event_id(),
            tenant_id=TENANT,
            received_at=now + timedelta(milliseconds=i),
            content_type="application/json",
        ).to_bytes()
        for i in range(n)
    ]


class Path_:
    """One purchase through every stage; the table is a dict."""

    def __init__(self) -> None:
        self.table: dict[str, bytes] = {}
        ledger_mod.state_table = self.table  # step() reads and writes it
        self.rules = TenantRules()
        self.read_model_sink, self.audit_sink = ReadModelSink(), AuditSink()
        self.stages: dict[str, float] = dict.fromkeys(
            ("normalize", "ledger", "ledger sink", "outbound", "audit sink"), 0.0
        )

    def normalize(self, value: bytes) -> tuple[list[bytes], bytes]:
        env = normalize_mod._envelope(b"", value)
        parsed = parse_webhook(env.raw_body(), env.content_type, phone_region="RU")
        cmds = []
        for p in parsed.purchases:
            customer = CustomerRef(id=derived_id(env.tenant_id, "customer", "email", p.email))
            cmd = normalizer_mod.purchase_command(env, self.rules, p, customer)
            cmds.append((cmd.key, cmd.to_bytes()))
        audit = request_records.accepted(env, len(cmds), 0).to_bytes()
        return cmds, audit

    def ledger(self, key: bytes, value: bytes) -> list[bytes]:
        cmd = ledger_mod.parse_command(value)
        result = ledger_mod.step(key.decode(), cmd)
        return [e.encode() for e in result.events]

    def one(self, value: bytes) -> None:
        t, clock = self.stages, time.process_time
        t0 = clock()
        cmds, audit = self.normalize(value)
        t1 = clock()
        t["normalize"] += t1 - t0
        for key, cmd in cmds:
            events = self.ledger(key, cmd)
            t2 = clock()
            t["ledger"] += t2 - t1
            for event in events:
                self.read_model_sink.add(event)
            t3 = clock()
            t["ledger sink"] += t3 - t2
            for event in events:
                read_event(event)
            t1 = clock()
            t["outbound"] += t1 - t3
        self.audit_sink.add(audit)
        t["audit sink"] += clock() - t1

    def run(self, values: list[bytes], batch: int = 1000) -> None:
        for i, value in enumerate(values):
            self.one(value)
            if i % batch == batch - 1:
                self.read_model_sink.clear()
                self.audit_sink.clear()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    values = raw_records(args.n, "R0")
    path = Path_()
    path.run(raw_records(2000, "WARM"))  # warm-up: every customer's first award
    best = None
    for r in range(3):
        path.stages = dict.fromkeys(path.stages, 0.0)
        cpu0 = time.process_time()
        path.run(values)
        cpu = time.process_time() - cpu0
        if best is None or cpu < best:
            best, stages = cpu, dict(path.stages)
        values = raw_records(args.n, f"R{r + 1}")  # fresh event ids: new orders, as in production
    print(f"our Python per purchase: {1e6 * best / args.n:.1f} us (best of 3, n={args.n})")
    for name, cpu in stages.items():
        print(f"  {name:<12} {1e6 * cpu / args.n:6.1f} us")
    entries = [CustomerState.from_bytes(v) for k, v in path.table.items() if k.startswith("c|")]
    lots = sum(len(e.lots) for e in entries) / max(len(entries), 1)
    print(f"  customers' entries at the end: {len(entries)}, {lots:.0f} lots each on average")
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(path.run, values)
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
