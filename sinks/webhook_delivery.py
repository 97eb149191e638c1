"""The webhook dispatcher: sends due deliveries to shops' endpoints, signed, and retries them.

Deliveries are rows in Postgres (`webhook_deliveries`, written by the stream fan-out in
`streams.outbound`), so nothing here can slow the pipeline, and nothing is lost when this
process stops: a claimed row carries a lease (its `next_attempt_at` moves past the request
timeout) and comes back by itself if the process dies mid-request.

Fencing: each claim stamps its rows with a fresh `lease_token`, and an outcome is written only
`WHERE id = $1 AND lease_token = $2`. A dispatcher that outlived its lease (a stall, a long
database outage) and whose rows were claimed again by another finds its token gone: its result
is dropped (logged as `dispatch_lease_lost`), and the new owner's attempt is the one recorded.

Isolation: the claim query takes at most `webhook_endpoint_concurrency` rows per endpoint and
skips endpoints that still have requests in flight here, so a slow or dead endpoint only ever
holds its own few slots (each at most `webhook_timeout_s`), never another tenant's. Rows are
claimed with FOR UPDATE SKIP LOCKED, so several dispatchers can share the work.

Outcomes (every attempt is a row in `webhook_attempts`):
  2xx          succeeded; if the endpoint had been failing, its backed-off deliveries are due
               again now (it is back, no need to wait hours for the schedule)
  410          the endpoint is disabled, its pending deliveries go to the dead-letter store,
               the tenant is told (Telegram)
  429, 503     retried after `Retry-After` when given, else by the schedule
  other/none   retried by the schedule; exhausted -> dead-letter store; an endpoint with no
               success for `webhook_disable_after_s` is disabled and the tenant told
  refused      the address is not public and not allowed (SSRF guard): dead at once
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import asyncpg
import orjson

from kopilka.core import standard_webhooks
from kopilka.core.db import CONNECTION_LOST, DATABASE_DOWN
from kopilka.core.logging import get_logger
from kopilka.core.settings import Settings
from kopilka.directory.subscriptions import disable_endpoint
from sinks.dispatch_metrics import DELIVERY_ATTEMPTS, DELIVERY_SECONDS, ENDPOINTS_DISABLED
from sinks.retry_schedule import RetrySchedule, parse_retry_after
from sinks.ssrf import AddressPolicy, AddressRefused, GuardedResolver, parse_networks
from sinks.telegram_notifier import enqueue_notice

log = get_logger(__name__)

USER_AGENT = "Kopilka-Webhooks/1"

_CLAIM = """
WITH due AS (
    SELECT d.id
      FROM webhook_endpoints e
      CROSS JOIN LATERAL (
          SELECT id FROM webhook_deliveries d
           WHERE d.endpoint_id = e.id AND d.status = 'pending' AND d.next_attempt_at <= now()
           ORDER BY d.next_attempt_at
           LIMIT $2
             FOR UPDATE SKIP LOCKED) d
     WHERE e.enabled AND NOT (e.id = ANY($1::uuid[]))
     LIMIT $3
)
UPDATE webhook_deliveries w
   SET next_attempt_at = now() + make_interval(secs => $4), lease_token = $5
  FROM due, webhook_endpoints e
 WHERE w.id = due.id AND e.id = w.endpoint_id
RETURNING w.id, w.endpoint_id, w.tenant_id, w.event_id, w.payload, w.round_attempts,
          w.lease_token, e.url, e.secret
"""


class LeaseLost(Exception):
    """The row was claimed again by someone else: this outcome must not be written."""


@dataclass(frozen=True)
class Attempt:
    outcome: str  # succeeded, failed, timeout, network, refused, gone
    code: int | None
    latency_ms: float
    at: datetime
    error: str | None = None
    retry_after: float | None = None


class WebhookDispatcher:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool, self.settings = pool, settings
        self.schedule = RetrySchedule(settings.webhook_retry_delays, settings.webhook_retry_jitter)
        self.policy = AddressPolicy(parse_networks(settings.webhook_allowed_networks))
        self.lease_s = settings.webhook_timeout_s + 30.0
        self.busy: dict[uuid.UUID, set[uuid.UUID]] = {}  # endpoint -> delivery ids in flight
        self.wake = asyncio.Event()
        self.session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------------ the loop
    async def run(self, stopping: asyncio.Event) -> None:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.policy),
            limit=self.settings.webhook_max_in_flight,
            ttl_dns_cache=60,
        )
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout_s),
            headers={"User-Agent": USER_AGENT},
        ) as self.session:
            tasks: set[asyncio.Task] = set()
            while not stopping.is_set():
                try:
                    for endpoint_id, rows in (await self.claim()).items():
                        task = asyncio.create_task(self._send_batch(endpoint_id, rows))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                except DATABASE_DOWN as exc:
                    log.warning("dispatch_claim_failed", error=type(exc).__name__)
                    await asyncio.sleep(1.0)
                self.wake.clear()
                waiter = asyncio.ensure_future(self.wake.wait())
                stopper = asyncio.ensure_future(stopping.wait())
                await asyncio.wait(
                    {waiter, stopper},
                    timeout=self.settings.dispatch_poll_interval_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiter.cancel()
                stopper.cancel()
            if tasks:  # finish what is in flight (each request is bounded by the timeout)
                await asyncio.wait(tasks, timeout=self.settings.webhook_timeout_s + 5)

    def on_notify(self, *_args) -> None:
        self.wake.set()

    async def claim(self) -> dict[uuid.UUID, list[asyncpg.Record]]:
        room = self.settings.webhook_max_in_flight - sum(len(v) for v in self.busy.values())
        if room <= 0:
            return {}
        rows = await self.pool.fetch(
            _CLAIM,
            list(self.busy),
            self.settings.webhook_endpoint_concurrency,
            room,
            self.lease_s,
            uuid.uuid4(),
        )
        batches: dict[uuid.UUID, list[asyncpg.Record]] = {}
        for row in rows:
            batches.setdefault(row["endpoint_id"], []).append(row)
        for endpoint_id, batch in batches.items():
            self.busy[endpoint_id] = {r["id"] for r in batch}
        return batches

    async def _send_batch(self, endpoint_id: uuid.UUID, rows: list[asyncpg.Record]) -> None:
        try:
            await asyncio.gather(*(self.deliver(row) for row in rows))
        finally:
            self.busy.pop(endpoint_id, None)
            self.wake.set()  # the endpoint is free: look for its next deliveries now

    # -------------------------------------------------------------------- one delivery
    async def deliver(self, row: asyncpg.Record) -> None:
        attempt = await self.post(row["url"], row["secret"], str(row["event_id"]), row["payload"])
        DELIVERY_ATTEMPTS.labels(attempt.outcome).inc()
        DELIVERY_SECONDS.labels(attempt.outcome).observe(attempt.latency_ms / 1000)
        log.info(
            "webhook_attempt",
            stage="outbound",
            request_id=_request_id(row["payload"]),
            event_id=str(row["event_id"]),  # also the webhook-id header the shop saw
            delivery_id=str(row["id"]),
            endpoint_id=str(row["endpoint_id"]),
            tenant_id=str(row["tenant_id"]),
            outcome=attempt.outcome,
            code=attempt.code,
            latency_ms=round(attempt.latency_ms, 1),
        )
        while True:  # the outcome must be recorded: wait for the database if it is away
            try:
                await self.record(row, attempt)
                return
            except CONNECTION_LOST as exc:
                log.warning("dispatch_record_failed", error=type(exc).__name__)
                await asyncio.sleep(1.0)

    async def post(self, url: str, secret: str, msg_id: str, payload: str) -> Attempt:
        body = payload.encode()
        headers = standard_webhooks.headers(secret, msg_id, int(time.time()), body)
        headers["Content-Type"] = "application/json"
        at, started = datetime.now(UTC), time.perf_counter()

        def done(outcome: str, code: int | None = None, error: str | None = None, ra=None):
            latency = (time.perf_counter() - started) * 1000
            return Attempt(outcome, code, latency, at, error and error[:500], ra)

        try:
            self.policy.check_url(url)
            async with self.session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                await resp.content.read(4096)  # drain a little; the body is not ours to keep
                code = resp.status
                retry_after = (
                    parse_retry_after(resp.headers.get("Retry-After"))
                    if code in (429, 503)
                    else None
                )
        except AddressRefused as exc:
            return done("refused", error=str(exc))
        except TimeoutError:
            return done("timeout", error=f"no answer within {self.settings.webhook_timeout_s}s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return done("network", error=f"{type(exc).__name__}: {exc}")
        if 200 <= code < 300:
            return done("succeeded", code)
        if code == 410:
            return done("gone", code, "the endpoint answered 410 Gone")
        return done("failed", code, f"HTTP {code}", retry_after)

    async def record(self, row: asyncpg.Record, a: Attempt) -> bool:
        """Write the attempt and its consequences; False (nothing written) if the lease was lost."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await self._record(conn, row, a)
        except LeaseLost:
            log.warning(
                "dispatch_lease_lost",
                delivery_id=str(row["id"]),
                endpoint_id=str(row["endpoint_id"]),
                outcome=a.outcome,
            )
            return False
        return True

    async def _record(self, conn: asyncpg.Connection, row: asyncpg.Record, a: Attempt) -> None:
        # the outcome first: it is the fenced write, and nothing else may happen without it
        if a.outcome == "succeeded":
            await self._succeeded(conn, row, a)
        elif a.outcome == "gone":
            await self._finish(conn, row, a, "dead", "the endpoint answered 410 Gone")
            await self._disable(conn, row, "it answered 410 Gone")
        elif a.outcome == "refused":
            await self._finish(conn, row, a, "dead", f"address refused: {a.error}")
        else:
            await self._failed(conn, row, a)
        await conn.execute(
            "INSERT INTO webhook_attempts (delivery_id, endpoint_id, tenant_id, attempted_at,"
            " outcome, response_code, latency_ms, error) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
            row["id"],
            row["endpoint_id"],
            row["tenant_id"],
            a.at,
            a.outcome,
            a.code,
            a.latency_ms,
            a.error,
        )

    @staticmethod
    async def _fenced(conn, sql: str, row, *args) -> None:
        """Run an UPDATE of this delivery `WHERE id = $1 AND lease_token = $2`, or LeaseLost."""
        if await conn.execute(sql, row["id"], row["lease_token"], *args) == "UPDATE 0":
            raise LeaseLost(row["id"])

    async def _finish(self, conn, row, a: Attempt, status: str, dead_reason=None) -> None:
        await self._fenced(
            conn,
            "UPDATE webhook_deliveries SET status = $3, attempts = attempts + 1,"
            " round_attempts = round_attempts + 1, last_status = $4, last_error = $5,"
            " dead_reason = $6, finished_at = now(), lease_token = NULL"
            " WHERE id = $1 AND lease_token = $2",
            row,
            status,
            a.code,
            a.error,
            dead_reason,
        )

    async def _succeeded(self, conn, row, a: Attempt) -> None:
        await self._finish(conn, row, a, "succeeded")
        was_failing = await conn.fetchval(
            "UPDATE webhook_endpoints e SET failing_since = NULL FROM webhook_endpoints old"
            " WHERE e.id = $1 AND old.id = e.id RETURNING old.failing_since IS NOT NULL",
            row["endpoint_id"],
        )
        if was_failing:  # it is back: what waits for a retry need not wait for the schedule
            # (not what is in flight, here or in another dispatcher: those are leased)
            await conn.execute(
                "UPDATE webhook_deliveries SET next_attempt_at = now()"
                " WHERE endpoint_id = $1 AND status = 'pending' AND round_attempts > 0"
                " AND next_attempt_at > now() AND lease_token IS NULL",
                row["endpoint_id"],
            )
            self.wake.set()

    async def _failed(self, conn, row, a: Attempt) -> None:
        made = row["round_attempts"] + 1
        delay = self.schedule.next_delay(made, a.retry_after)
        if delay is None:
            await self._finish(
                conn, row, a, "dead", f"retries exhausted after {made} attempts ({a.error})"
            )
        else:
            await self._fenced(
                conn,
                "UPDATE webhook_deliveries SET attempts = attempts + 1,"
                " round_attempts = round_attempts + 1, last_status = $3, last_error = $4,"
                " next_attempt_at = $5::timestamptz + make_interval(secs => $6),"
                " lease_token = NULL WHERE id = $1 AND lease_token = $2",
                row,
                a.code,
                a.error,
                a.at,
                delay,
            )
        since = await conn.fetchval(
            "UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, $2)"
            " WHERE id = $1 RETURNING failing_since",
            row["endpoint_id"],
            a.at,
        )
        if since and (a.at - since).total_seconds() > self.settings.webhook_disable_after_s:
            reason = f"no successful delivery since {since:%Y-%m-%d %H:%M:%S} UTC"
            await self._disable(conn, row, reason)

    async def _disable(self, conn, row, reason: str) -> None:
        if await disable_endpoint(conn, row["endpoint_id"], reason):
            ENDPOINTS_DISABLED.inc()
            log.warning(
                "endpoint_disabled",
                endpoint_id=str(row["endpoint_id"]),
                tenant_id=str(row["tenant_id"]),
                reason=reason,
            )
            await enqueue_notice(
                conn,
                row["tenant_id"],
                {"type": "endpoint_disabled", "url": row["url"], "reason": reason},
            )


def _request_id(payload: str) -> str | None:
    """The webhook that caused the event (its `request_id`), so one grep finds both."""
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return event.get("request_id") if isinstance(event, dict) else None
