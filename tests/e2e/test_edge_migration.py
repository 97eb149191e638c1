"""Migration 003 on a database that already has shops: their credentials keep working."""

from __future__ import annotations

import uuid
from importlib import resources

import asyncpg

from kopilka.core import db
from kopilka.directory.tenants import digest, new_token, tenant_by_api_key, tenant_by_secret


async def test_existing_tenants_credentials_move_into_tenant_credentials(dsn):
    name = f"mig_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    other = dsn.rsplit("/", 1)[0] + "/" + name
    try:
        conn = await asyncpg.connect(other)
        try:  # the schema as the skeleton left it, with one shop
            init = (resources.files("kopilka.core") / "migrations" / "001_init.sql").read_text()
            await conn.execute(init)
            await conn.execute(
                "CREATE TABLE schema_migrations (version text PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now());"
                "INSERT INTO schema_migrations (version) VALUES ('001_init')"
            )
            secret, key = new_token("whk_"), new_token("kpk_")
            await conn.execute(
                "INSERT INTO tenants (id, name, webhook_secret_hash, api_key_hash)"
                " VALUES ($1, 'Old shop', $2, $3)",
                uuid.uuid4(),
                digest(secret),
                digest(key),
            )
        finally:
            await conn.close()
        assert "003_edge" in await db.migrate(other)
        conn = await asyncpg.connect(other)
        try:
            by_secret, by_key = (
                await tenant_by_secret(conn, secret),
                await tenant_by_api_key(conn, key),
            )
            assert by_secret is not None and by_secret == by_key
            assert by_secret.signature_mode == "off" and by_secret.signing_secrets == ()
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
