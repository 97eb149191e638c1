"""The ingress with one part of its webhook path replaced (tests/perf/ingress_stages.py).

    python tests/perf/ingress_variant.py VARIANT     # then as `python -m kopilka ingest`

Each part is replaced by a no-op or a stand-in (VARIANTS says which). Never used outside that
measurement: each variant answers 202 without doing something the ingress promises (storing the
body, checking the limit, validating it).
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's code

VARIANTS = {
    "full": "the ingress as deployed",
    "no_rate_limit": "the rate limit decided in this process, without Redis and the coalescer",
    "no_parse": "parse_webhook answers with an earlier body's result for the same customer",
    "no_publish": "nothing goes to Kafka: publish() returns at once, no ack is awaited",
    "no_order_routes": "no order route is remembered (no Redis call after the ack)",
    "answer_only": "the handler reads the body and answers 202: aiohttp and the app alone",
    "parse_and_kafka": "no_rate_limit and no_order_routes together: the tenant, the body, the"
    " parse and Kafka are left",
}


def patch(variant: str) -> None:
    if variant == "parse_and_kafka":
        patch("no_rate_limit")
        patch("no_order_routes")
        return
    from ingest import webhooks
    from ingest.order_routes import RedisOrderRoutes
    from ingest.ratelimit import Decision, Quota, RedisLimiter
    from ingest.responses import json_response

    if variant == "no_rate_limit":

        async def hit(self: RedisLimiter, tenant_id: str, quota: Quota) -> Decision:
            return await self._fallback.hit(tenant_id, quota)

        RedisLimiter.hit = hit
    elif variant == "no_parse":
        real, memo = webhooks.parse_webhook, {}

        def parse(body: bytes, content_type: str | None, *, phone_region: str = "RU") -> Any:
            # the result of an earlier body naming the same customer: the records keep their
            # keys, so they spread over the partitions and Kafka's batches stay as in `full`
            key = (_customer(body), content_type, phone_region)
            if key not in memo:
                memo[key] = real(body, content_type, phone_region=phone_region)
            return memo[key]

        webhooks.parse_webhook = parse
    elif variant == "no_publish":

        async def publish(*_args: Any, **_kwargs: Any) -> None:
            return None

        webhooks.publish = publish
    elif variant == "no_order_routes":

        async def remember(self: RedisOrderRoutes, *_args: Any) -> None:
            return None

        RedisOrderRoutes.remember = remember
    elif variant == "answer_only":
        answer = {"status": "accepted", "event_id": "00000000-0000-4000-8000-000000000000"}

        async def handle(request: Any) -> Any:
            await request.read()
            return json_response(answer, status=202)

        webhooks._handle = handle
    elif variant != "full":
        raise SystemExit(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")


def _customer(body: bytes) -> bytes:
    """The `"email":"..."` of a body of the load (tests/perf/loadgen.purchase_factory)."""
    start = body.find(b'"email"')
    return body[start : body.find(b",", start)] if start >= 0 else b""


def main() -> None:
    patch(sys.argv[1])
    sys.argv = ["kopilka", "ingest"]
    runpy.run_module("kopilka", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
