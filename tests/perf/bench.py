"""One benchmark, one stack, one table (`make bench`; `make bench ARGS="--help"` for the knobs).

A fresh stack in .data/bench-stack (Kafka, durable Postgres, Redis, the ingress; own data dir,
free ports), then, in this order:
 1. a bare aiohttp POST handler (tests/perf/bare_server.py, 1 process) and the ingress take
    turns under the same wrk-like load (tests/perf/loadgen.py: standard purchases, C keep-alive
    connections; a warm-up each, then 3 turns of S/3 seconds each), with no worker running:
    req/s, the ratio and CPU per request (medians of the turns'); then the worker's baseline, a
    naive Faust worker (tests/perf/naive_worker.py) on a backlog;
 2. the first worker starts and catches up the backlog step 1 left (figure: purchases/s);
 3. end to end with 1 worker, then with 2 workers, one shop each time: E purchases as fast as
    the ingress takes them, until every award is in Postgres; worker CPU per purchase (summed
    over the workers). E is about 45 s of step 2's rate (2,000 to 30,000) unless --e2e says;
 4. the second worker stops; `Prefer: wait` spends (p50/p99 of 500 sequential) and a 10,000-item
    batch_purchase until it is all in Postgres (tests/perf/loyalty_bench.py);
 5. optionally (--preload N) N more orders as 10,000-item batches, to have more state;
 6. the worker is restarted (SIGTERM, start again) and one purchase of a known customer sent at
    once: seconds until it is awarded, with N = every order the steps above put in its state;
    RSS of the empty worker and of the restarted one with that state;
 7. the read model is rebuilt from every event the steps above put on loyalty.events
    (`kopilka replay events --into postgres`, tests/perf/events_replay_bench.py): events/s;
 8. the live event stream: 200 streams over 20 shops, 1,000 paced purchases, every event on every
    stream of its shop; latency webhook -> stream event p50/p99, ingress CPU (stream_bench.py);
 9. every record the steps above put on webhooks.raw is replayed (`kopilka replay raw`, a real
    re-feed, tests/perf/raw_replay_bench.py): records/s. Last, because the worker then
    processes the duplicates it fed (after the timing), which would disturb any later step.
Prints the table and writes it, with every raw figure, to .data/bench/last.json. Figures are
measured, never asserted; the machine is shared, so read them as one sample, not a verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import events_replay_bench
import http_bench
import loyalty_bench
import naive_bench
import raw_replay_bench
import stream_bench
import worker_bench as wb
from benchkit import (
    Shop,
    new_shop,
    size_mb,
    start_stack,
    start_worker,
    stop,
    store_memory_mb,
    tables_dir,
    workers,
)
from loadgen import run
from procstat import rss_mb

from kopilka.core.settings import PROJECT_ROOT

OUT = PROJECT_ROOT / ".data" / "bench"
SETTLE_TIMEOUT_S = 120.0


FIRST = "worker"  # the worker started in step 2 and restarted in step 6 (Stack.start_worker)


def first_worker_rss(stack) -> tuple[float, float]:
    """(RSS now, peak RSS) of the first worker alone, MiB: the process whose orders and
    tables the RSS row relates (not every worker alive then)."""
    leader = [stack.process(FIRST).proc.pid]
    return round(rss_mb(leader), 1), round(rss_mb(leader, "VmHWM"), 1)


def settle(shop: Shop, base: tuple[str, int], label: str) -> float | None:
    """A probe purchase after workers came or went: processing resumed when it is awarded."""
    t0 = time.perf_counter()
    done = run(wb.probe(shop, base, f"SETTLE-{label}", SETTLE_TIMEOUT_S))
    return round(done - t0, 2) if done else None


def e2e_size(catch_up_per_s: float | None) -> int:
    """Purchases per end-to-end run when not given: about 45 s of what one worker managed in
    step 2, so the run is long enough to be sustained and short enough on a slow machine."""
    return int(min(30_000, max(2_000, round(45 * (catch_up_per_s or 0), -3))))


def measure(args: argparse.Namespace, stack, log, f: dict) -> None:
    settings = stack.settings()
    dsn = settings.database_url.get_secret_value()
    base = (settings.http_host, settings.http_port)
    names = ("Bench ingress", "Bench 1 worker", "Bench 2 workers", "Bench loyalty")
    shop_in, shop_1w, shop_2w, loyal = (run(new_shop(dsn, name)) for name in names)
    f["machine"] = {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}

    log(
        f"1. bare aiohttp and the ingress, {http_bench.TURNS} turns each:"
        f" {args.seconds:.0f}s a side, {args.concurrency} conns"
    )
    bare, bare_port = http_bench.start_bare(stack)
    f["bare"], f["ingress"], backlog = run(
        http_bench.bare_vs_ingress(
            stack, bare_port, bare.proc.pid, shop_in, args.seconds, args.concurrency
        )
    )
    stop(stack, bare)

    naive_n = max(5_000, backlog)
    log(f"   the worker baseline: a naive Faust worker on {naive_n} purchases, same broker")
    f["naive"] = run(
        naive_bench.naive_worker(
            settings.bootstrap_list[0], dsn, stack.data_dir, naive_n, args.timeout
        )
    )

    log(f"2. worker 1 starts and catches up {backlog} purchases")
    stack.start_worker()
    started = time.perf_counter()
    f["worker_rss_empty_mb"] = first_worker_rss(stack)[0]
    f["catch_up"] = run(wb.catch_up(stack, shop_in, backlog, started, args.timeout))
    f["worker_store_after_catch_up_mb"] = store_memory_mb(stack.process(FIRST))

    e2e = args.e2e or e2e_size(f["catch_up"].get("catch_up_per_s"))
    for n, shop in ((1, shop_1w), (2, shop_2w)):
        if n == 2:
            log("   worker 2 starts")
            start_worker(stack, "worker-2")
            f["settle_after_worker_2_s"] = settle(shop_1w, base, "w2")
        log(f"3. end to end, {n} worker(s), one shop: {e2e} purchases until all are in Postgres")
        f[f"e2e_{n}w"] = run(
            wb.end_to_end(
                stack,
                shop,
                base,
                prefix=f"E{n}",
                count=e2e,
                concurrency=args.concurrency,
                timeout_s=args.timeout,
            )
        )
    stop(stack, workers(stack)[-1])
    f["settle_after_worker_2_stopped_s"] = settle(shop_1w, base, "w1")

    log(f"4. Prefer: wait, {args.spends} purchases then {args.spends} spends; a batch")
    url = f"http://{base[0]}:{base[1]}{loyal.path}"
    f["wait"], f["batch"] = {}, {}
    run(loyalty_bench.spends(url, args.spends, f["wait"]))
    run(loyalty_bench.batch(url, dsn, loyal.tenant_id, args.batch, f["batch"], args.timeout))

    if args.preload:
        log(f"5. pre-load: {args.preload} orders as batches")
        state_shop = run(new_shop(dsn, "Bench state"))
        f["preload"] = run(wb.preload(state_shop, base, args.preload, args.timeout * 4))

    # a restart behind a backlog would time the backlog, not the restart: let it drain first
    t0, expected = time.perf_counter(), args.spends + args.batch
    awarded, done = run(loyal.wait_for_awards(expected, args.timeout, poll_s=0.5))
    f["drained_before_restart"] = {"left": expected - awarded, "waited_s": round(done - t0, 1)}
    orders = run(wb.orders_in_state(dsn))
    f["worker_rss_before_restart_mb"], f["worker_rss_peak_mb"] = first_worker_rss(stack)
    f["worker_store_before_restart_mb"] = store_memory_mb(stack.process(FIRST))
    log(f"6. restart with {orders} orders of state")
    f["restart"] = {"orders": orders, **run(wb.restart_to_processing(stack, shop_1w, base, 300))}
    f["worker_rss_restarted_mb"] = first_worker_rss(stack)[0]
    tables = tables_dir(stack.process(FIRST))  # its RocksDB folder: workers/worker/ (stack.py)
    inside = tables.is_relative_to(stack.data_dir)
    f["worker_tables_dir"] = str(tables.relative_to(stack.data_dir) if inside else tables)
    f["worker_tables_on_disk_mb"] = size_mb(tables)
    grown = f["worker_rss_restarted_mb"] - f["worker_rss_empty_mb"]
    f["worker_rss_mb_per_100k_orders"] = round(grown * 100_000 / orders, 1) if orders else None
    log("7. the read model rebuilt from loyalty.events")
    f["events_rebuild"] = events_replay_bench.rebuild_rate(stack)
    log("8. live event stream: 200 streams, 1,000 purchases")
    f["stream"] = run(stream_bench.measure(stack))
    log("9. every raw webhook replayed (kopilka replay raw)")
    f["raw_replay"] = raw_replay_bench.refeed_rate(stack)
    f["machine"]["loadavg_end"] = os.getloadavg()


def _n(value, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.1f}" if a and b else "n/a"


def _e2e_note(e: dict) -> str:
    if not e["all_awarded"]:
        return f"TIMEOUT: {e['awarded']:,} of {e['accepted']:,} awarded in {e['e2e_s']} s"
    return f"{e['accepted']:,} purchases in {e['e2e_s']} s"


def _store(mb: dict) -> str:
    """RocksDB's part of a worker's RSS (benchkit.store_memory_mb), for a note."""
    if not mb:
        return "not sampled"
    return f"memtables {mb.get('memtables')} + block cache {mb.get('block_cache')} MB"


def _turns(values: list) -> str:
    return " / ".join(str(v) for v in values)


def table(f: dict, args: argparse.Namespace) -> list[tuple[str, str, str]]:
    b, i, c, w, nv = f["bare"], f["ingress"], f["catch_up"], f["wait"], f["naive"]
    e1, e2, r, batch = f["e2e_1w"], f["e2e_2w"], f["restart"], f["batch"]
    load = f"{args.concurrency} conns, {args.seconds:.0f} s"
    split = "/".join(map(str, e2["worker_cpu_share_pct"]))
    drained = f["drained_before_restart"]
    rows = [
        (
            "bare aiohttp POST handler, 1 process (req/s)",
            _n(b["rps"]),
            f"{load}, p99 {b['p99_ms']} ms",
        ),
        (
            "Kopilka ingress, standard purchases (req/s)",
            _n(i["rps"]),
            f"{i['pct_of_bare']} % of bare (turns: {_turns(i['pct_of_bare_turns'])}),"
            f" p99 {i['p99_ms']} ms",
        ),
        (
            "ingress CPU per accepted webhook (ms)",
            _n(i["server_cpu_ms_per_req"], 3),
            f"turns: {_turns(i['server_cpu_ms_per_req_turns'])}; bare:"
            f" {b['server_cpu_ms_per_req']} ms",
        ),
        (
            "naive Faust worker, the baseline (records/s)",
            _n(nv["records_per_s"]),
            f"{nv['done']:,} records, {nv['cpu_ms_per_record']} ms CPU each",
        ),
        (
            "1 worker catching up a backlog (purchases/s)",
            _n(c["catch_up_per_s"]),
            f"{c['backlog']:,} from step 1, nothing else running"
            + ("" if c["catch_up_per_s"] else f"; TIMEOUT: {c['awarded']:,} awarded"),
        ),
        (
            "end to end, 1 worker (purchases/s)",
            _n(e1["e2e_per_s"]),
            _e2e_note(e1),
        ),
        (
            "end to end, 2 workers, one shop (purchases/s)",
            _n(e2["e2e_per_s"]),
            f"{_e2e_note(e2)}; worker CPU split {split} %",
        ),
        (
            "worker CPU per purchase, 1 worker (ms)",
            _n(e1["worker_cpu_ms_per_purchase"], 3),
            f"catching up: {c['worker_cpu_ms_per_purchase']} ms = "
            f"{_ratio(c['worker_cpu_ms_per_purchase'], nv['cpu_ms_per_record'])} x the baseline",
        ),
        (
            "worker CPU per purchase, 2 workers (ms)",
            _n(e2["worker_cpu_ms_per_purchase"], 3),
            "summed over both",
        ),
        (
            f"{batch['batch_items']:,}-item batch_purchase fully in Postgres (s)",
            _n(batch["batch_reflected_s"], 1)
            if batch["batch_awards_ok"]
            else f"> {batch['batch_reflected_s']:.0f}",
            f"every award and balance exact: {batch['batch_awards_ok']}"
            if batch["batch_awards_ok"]
            else f"TIMEOUT: {batch['batch_awarded']:,} awarded by then",
        ),
        (
            "Prefer: wait spend p50 / p99 (ms)",
            f"{_n(w['wait_spend_p50_ms'], 1)} / {_n(w['wait_spend_p99_ms'], 1)}",
            f"{w['wait_spend_requests']} sequential",
        ),
        (
            "worker RSS per 100,000 orders (MB)",
            # with the state on disk (RocksDB) a restarted worker's RSS does not grow with its
            # orders, and the difference is allocator noise, sometimes below zero: say so
            _n(f["worker_rss_mb_per_100k_orders"], 1)
            if f["worker_rss_mb_per_100k_orders"] >= 0.5
            else "≈ 0",
            f"disk {_n(f['worker_tables_on_disk_mb'] * 100_000 / max(1, r['orders']), 1)} MB per"
            f" 100,000 orders; empty {f['worker_rss_empty_mb']} MB, restarted with"
            f" {r['orders']:,} orders "
            f"{f['worker_rss_restarted_mb']} MB (before the restart"
            f" {f['worker_rss_before_restart_mb']} MB, RocksDB's part"
            f" {_store(f['worker_store_before_restart_mb'])}; peak {f['worker_rss_peak_mb']} MB;"
            f" RocksDB's after catching up {_store(f['worker_store_after_catch_up_mb'])});"
            " tables on disk"
            f" {f['worker_tables_on_disk_mb']} MB in {f['worker_tables_dir']}/",
        ),
        (
            f"restart to processing, {r['orders']:,} orders of state (s)",
            _n(r["awarded_s"], 1),
            f"N = orders of steps 1-5; 'Ready' after {r['ready_s']} s"
            + (f"; {left:,} awards still pending before it" if (left := drained["left"]) else ""),
        ),
        (
            "read model rebuilt from loyalty.events (events/s)",
            _n(f["events_rebuild"]["events_per_s"]),
            f"{f['events_rebuild']['read']:,} events in {f['events_rebuild']['seconds']} s,"
            f" CPU/event: replay {f['events_rebuild']['replay_cpu_us_per_event']} us,"
            f" Postgres {f['events_rebuild']['postgres_cpu_us_per_event']} us",
        ),
        (
            "raw webhooks replayed, read and fed again (records/s)",
            _n(f["raw_replay"]["records_per_s"]),
            f"{f['raw_replay']['scanned']:,} records in {f['raw_replay']['seconds']} s"
            f" (step 9, after the stream step),"
            f" CPU/record {f['raw_replay']['cpu_us_per_record']} us",
        ),
    ]
    return rows + stream_bench.rows(f["stream"])


def render(rows: list[tuple[str, str, str]]) -> str:
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    lines = [f"{'figure':<{w0}}  {'value':>{w1}}  note", f"{'-' * w0}  {'-' * w1}  ----"]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="step 1: seconds per side")
    p.add_argument("--concurrency", type=int, default=64, help="connections, steps 1 and 3")
    p.add_argument(
        "--e2e",
        type=int,
        default=0,
        help="step 3: purchases per run (default: ~45 s of step 2's rate, 2,000 to 30,000)",
    )
    p.add_argument("--spends", type=int, default=500, help="step 4: sequential spends")
    p.add_argument("--batch", type=int, default=10_000, help="step 4: batch_purchase items")
    p.add_argument("--preload", type=int, default=0, help="step 5: more orders before restart")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for awards")
    p.add_argument("--json", type=Path, default=OUT / "last.json", help="where the JSON goes")
    args = p.parse_args()

    def on_sigterm(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {msg}", flush=True)

    stack, figures = None, {}
    try:
        stack = start_stack("bench-stack", worker=False)
        measure(args, stack, log, figures)
    except BaseException as exc:
        # what was measured before the failure is still worth seeing
        print(
            f"\n{'interrupted' if isinstance(exc, KeyboardInterrupt) else 'failed'}; "
            f"figures so far:\n{json.dumps(figures, indent=2, default=str)}",
            file=sys.stderr,
        )
        if isinstance(exc, KeyboardInterrupt):
            return 130
        raise
    finally:
        if stack:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan it
            log("stopping the stack")
            stack.stop()
    rows = table(figures, args)
    text = render(rows)
    print(f"\n{text}\n(whole run {time.perf_counter() - started:.0f} s)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": {k: str(v) for k, v in vars(args).items()},
        "table": [{"figure": a, "value": b, "note": c} for a, b, c in rows],
        "figures": figures,
    }
    args.json.write_text(json.dumps(report, indent=2, default=str))
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
