"""CPU per request of `schemas.inbound.parse_webhook`, the ingress's parse and validate step.

Standard purchases as `make bench` sends them (loadgen.purchase_factory), Tilda's default form
body (tests/schemas/test_inbound.py's TILDA_FORM with a fresh order id each), Tilda's JSON
object, and one 10,000-item batch. Best of `--repeat` rounds, process CPU time.

    .venv/bin/python tests/perf/inbound_parse_cpu.py [--n 20000] [--tilda 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import purchase_factory

from schemas.inbound import parse_webhook

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
TILDA_FORM = (
    "Name=Ivan&Phone=%2B7+(999)+111-22-33&Email=Ivan@Example.com"
    "&payment[orderid]={n}&payment[amount]=24450"
    "&payment[products][0][name]=Chair&payment[products][0][quantity]=1"
    "&payment[products][0][price]=4500&formid=form42581206&formname=Cart"
)


def tilda_json(n: int) -> bytes:
    return json.dumps(
        {
            "Name": "Ivan",
            "Phone": "+7 (999) 111-22-33",
            "Email": "Ivan@Example.com",
            "payment": {
                "orderid": n,
                "amount": 24450,
                "products": [{"name": "Chair", "quantity": 1, "price": 4500}],
            },
            "formid": "form42581206",
        }
    ).encode()


def batch(n: int) -> bytes:
    items = [
        {"email": f"u{i}@example.com", "amount": i % 5000, "orderId": f"O-{i}"} for i in range(n)
    ]
    return json.dumps({"action": "batch_purchase", "payload": {"purchases": items}}).encode()


def per_request(bodies: list[bytes], content_type: str, repeat: int) -> float:
    """Best round's CPU microseconds per body."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for body in bodies:
            parse_webhook(body, content_type)
        best = min(best, time.process_time() - start)
    return best / len(bodies) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--tilda", type=int, default=5_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    make = purchase_factory("bench")
    cases: list[tuple[str, Callable[[], list[bytes]], str]] = [
        ("standard purchase", lambda: [make(i) for i in range(args.n)], JSON),
        ("tilda form", lambda: [TILDA_FORM.format(n=i).encode() for i in range(args.tilda)], FORM),
        ("tilda json", lambda: [tilda_json(i) for i in range(args.tilda)], JSON),
        ("batch of 10,000 (per item)", lambda: [batch(10_000)], JSON),
    ]
    for name, bodies, content_type in cases:
        made = bodies()
        us = per_request(made, content_type, args.repeat)
        if name.startswith("batch"):
            us /= 10_000
        print(f"{name:28s} {us:8.1f} µs CPU")


if __name__ == "__main__":
    main()
