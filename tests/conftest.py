"""Test session plumbing.

Unit tests need nothing. Tests marked `connected` (all of tests/e2e) share one real stack for the
session: a real Kafka broker, a real Postgres and a real Redis (started here unless
KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL / REDIS_URL point at external ones), the real ingress and
the real Faust worker as separate processes, all on loopback. Data starts empty every session.
"""

from __future__ import annotations

import os
import sys

import pytest

from kopilka.devstack import devservices
from kopilka.devstack.stack import Stack

ADMIN_TOKEN = "test-admin-token"  # a throwaway token for the test stack's admin API
TELEGRAM_TOKEN = "123456:kopilka-test-bot"  # the fake Bot API server accepts only this one
TELEGRAM_API_PORT = devservices.free_port()  # where tests/sinks fake Bot API server listens


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath) or "/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.connected)
    # tests that take a shared service down run last, so nothing else sees the outage; the audit
    # of the session's logs runs after everything, so it sees every line the run wrote
    items.sort(
        key=lambda item: (
            item.get_closest_marker("logs_audit") is not None,
            item.get_closest_marker("disruptive") is not None,
        )
    )


@pytest.fixture(scope="session")
def stack():
    env = {
        k: os.environ[k]
        for k in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL")
        if os.environ.get(k)
    }
    env.update(
        {
            "KOPILKA_HTTP_PORT": str(devservices.free_port()),
            # every stage's per-webhook line (tests/e2e/test_request_trace.py); libraries at INFO
            "KOPILKA_LOG_LEVEL": "DEBUG",
            "KOPILKA_TENANT_CACHE_TTL_S": "0.5",
            "KOPILKA_ADMIN_TOKEN": ADMIN_TOKEN,
            # the expiry test sweeps "as of" a later day instead of waiting for it
            "KOPILKA_ALLOW_FUTURE_SWEEPS": "1",
            # the settlement test ages an order and waits for the sweep
            "KOPILKA_ORDER_SETTLE_INTERVAL_S": "2",
            # a refund that overtakes its purchase waits this long (tests refund unknown orders)
            "KOPILKA_REFUND_ORDER_WAIT_S": "1",
            # Tests send many webhooks per shop; rate-limit tests set their shop's own limit.
            "KOPILKA_RATE_LIMIT_PER_MINUTE": "1000000",
            # Every test connects from 127.0.0.1: unknown secrets and wrong admin tokens are
            # throttled per IP, so only test_edge_throttling (its own ingress) sets a budget.
            "KOPILKA_UNKNOWN_SECRETS_PER_MINUTE": "1000000",
            "KOPILKA_ADMIN_FAILURES_PER_MINUTE": "1000000",
            # outbound: a compressed retry schedule, the loopback receiver allowed, a fake Bot API
            "KOPILKA_WEBHOOK_RETRY_SCHEDULE_S": "0,0.3,0.3,0.3",
            "KOPILKA_WEBHOOK_DISABLE_AFTER_S": "4",
            "KOPILKA_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            "KOPILKA_DISPATCH_POLL_INTERVAL_S": "0.5",
            "KOPILKA_TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
            "KOPILKA_TELEGRAM_API_URL": f"http://127.0.0.1:{TELEGRAM_API_PORT}",
            "KOPILKA_TELEGRAM_CHAT_INTERVAL_S": "0.2",
        }
    )
    s = Stack.fresh("test", env, durable=False, out=lambda msg: print(msg, file=sys.stderr))
    try:
        s.start_services()
        s.start_worker()
        s.start_ingest()
        s.start_dispatch()
    except BaseException:  # whatever stops the start-up, leave no process behind
        s.stop()
        raise
    yield s
    s.stop()
