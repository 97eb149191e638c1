"""Typed application keys: the resources an ingress process holds for its lifetime."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaProducer

from ingest.attempts import FailedAttempts
from ingest.order_routes import OrderRoutes
from ingest.outcomes import OutcomeWaiter
from ingest.ratelimit import Limiter
from ingest.replay import ReplayGuard
from kopilka.core.settings import Settings
from kopilka.directory.customers import CustomerDirectory
from kopilka.directory.tenants import TenantDirectory

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
PRODUCER = web.AppKey("producer", AIOKafkaProducer)
TENANTS = web.AppKey("tenants", TenantDirectory)
BACKGROUND = web.AppKey("background", set)
OUTCOMES = web.AppKey("outcomes", OutcomeWaiter)
CUSTOMERS = web.AppKey("customers", CustomerDirectory)
LIMITER = web.AppKey("limiter", Limiter)
REPLAY = web.AppKey("replay", ReplayGuard)
ORDER_ROUTES = web.AppKey("order_routes", OrderRoutes)
UNKNOWN_SECRETS = web.AppKey("unknown_secrets", FailedAttempts)
ADMIN_FAILURES = web.AppKey("admin_failures", FailedAttempts)
