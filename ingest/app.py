"""The ingress application factory and its entry point (`kopilka ingest`)."""

from __future__ import annotations

import asyncio
import os

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from ingest import admin_api, admin_outbound, dashboard, openapi
from ingest.api_models import CustomerView, Health, Readiness
from ingest.context import BACKGROUND, CUSTOMERS, OUTCOMES, POOL, PRODUCER, SETTINGS, TENANTS
from ingest.event_stream import stream_events
from ingest.limits import server_options
from ingest.openapi import Param, Resp, document, documented, errors
from ingest.outcomes import OutcomeWaiter
from ingest.read_api import get_customer
from ingest.responses import database_unavailable, json_errors, json_response
from ingest.shared_state import edge_state
from ingest.stream_hub import end_streams, event_hub
from ingest.webhooks import receive_webhook
from kopilka.core import db, fetch_sessions
from kopilka.core.db import DATABASE_DOWN
from kopilka.core.heap import freeze_started
from kopilka.core.kafka import ensure_topics, make_producer
from kopilka.core.logging import get_logger
from kopilka.core.settings import Settings
from kopilka.directory.customers import CustomerDirectory
from kopilka.directory.tenants import TenantDirectory

log = get_logger(__name__)


async def _database(app: web.Application):
    settings = app[SETTINGS]
    pool = await db.create_pool(settings.database_url.get_secret_value(), min_size=2, max_size=20)
    app[POOL] = pool
    app[TENANTS] = TenantDirectory(
        pool,
        ttl_s=settings.tenant_cache_ttl_s,
        stale_s=settings.tenant_stale_s,
        negative_ttl_s=settings.tenant_negative_ttl_s,
        negative_maxsize=settings.tenant_negative_maxsize,
        timeout_s=settings.edge_db_timeout_s,
    )
    app[CUSTOMERS] = CustomerDirectory(pool)
    yield
    await pool.close()


async def _kafka(app: web.Application):
    settings = app[SETTINGS]
    await ensure_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    app[PRODUCER] = producer
    app[BACKGROUND] = set()
    waiter = OutcomeWaiter(settings)
    await waiter.start()
    app[OUTCOMES] = waiter
    yield
    await waiter.stop()
    if app[BACKGROUND]:
        await asyncio.wait(app[BACKGROUND], timeout=5)
    await producer.stop()


@documented("Liveness", tags=["service"], responses={200: Resp("alive", Health)})
async def healthz(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@documented(
    "Readiness: Postgres and Kafka reachable",
    tags=["service"],
    responses={200: Resp("ready", Readiness), 503: Resp("not ready", Readiness)},
)
async def readyz(request: web.Request) -> web.Response:
    checks = {}
    try:
        async with asyncio.timeout(2):
            await request.app[POOL].fetchval("SELECT 1")
        checks["postgres"] = "ok"
    except DATABASE_DOWN as exc:
        checks["postgres"] = type(exc).__name__
    try:
        async with asyncio.timeout(2):
            ok = await request.app[PRODUCER].client.force_metadata_update()
        checks["kafka"] = "ok" if ok else "no metadata"
    except Exception as exc:
        checks["kafka"] = type(exc).__name__
    ready = all(v == "ok" for v in checks.values())
    return json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks}, 200 if ready else 503
    )


@documented(
    "Prometheus metrics",
    tags=["service"],
    responses={200: Resp("text exposition format", None, media="text/plain")},
)
async def metrics(_request: web.Request) -> web.Response:
    registry = None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # several ingress processes: their sum
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    body = generate_latest(registry) if registry is not None else generate_latest()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


document(
    get_customer,
    "A customer's balance and ledger",
    tags=["read"],
    description="One of email or phone identifies the customer, within the API key's shop.",
    parameters=[
        Param(
            "email", "query", "the customer's email", schema={"type": "string", "format": "email"}
        ),
        Param("phone", "query", "the customer's phone, any common notation"),
        Param(
            "limit",
            "query",
            "ledger entries, newest first (default 100)",
            schema={"type": "integer", "minimum": 1, "maximum": 1000},
        ),
    ],
    responses={
        200: Resp("the customer", CustomerView),
        **errors(400, 404),
        **errors(401, headers={"WWW-Authenticate": True}),
    },
    security="apiKey",
)


async def _freeze_heap(app: web.Application) -> None:
    log.info("heap_frozen", objects=freeze_started())  # kopilka.core.heap


def init_app(settings: Settings) -> web.Application:
    fetch_sessions.install(settings)
    app = web.Application(
        client_max_size=settings.max_body_bytes, middlewares=[json_errors, database_unavailable]
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.extend([_database, _kafka, edge_state, event_hub])
    app.on_startup.append(_freeze_heap)  # after cleanup_ctx's starts: aiohttp runs them first
    app.on_shutdown.append(end_streams)
    app.router.add_post("/api/webhook/{secret}", receive_webhook)
    app.router.add_get("/api/v1/customers", get_customer)
    app.router.add_get("/api/v1/events/stream", stream_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    admin_api.add_routes(app)
    openapi.add_routes(app)
    admin_outbound.add_routes(app)
    dashboard.add_routes(app)
    return app


def run(settings: Settings, *, reuse_port: bool = False) -> None:
    """Serve until SIGTERM / SIGINT; `reuse_port`: one of several processes on this port."""
    log.info("ingest_starting", host=settings.http_host, port=settings.http_port, pid=os.getpid())
    web.run_app(
        init_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        access_log=None,
        print=None,
        shutdown_timeout=10,
        reuse_port=reuse_port or None,
        **server_options(settings),
    )
