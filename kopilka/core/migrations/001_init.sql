-- Kopilka schema, version 1: tenants, the identity directory, the ledger and the webhook audit log.

CREATE TABLE tenants (
    id                  uuid PRIMARY KEY,
    name                text        NOT NULL,
    active              boolean     NOT NULL DEFAULT true,
    webhook_secret_hash bytea       NOT NULL UNIQUE,
    api_key_hash        bytea       NOT NULL UNIQUE,
    base_percent        numeric     NOT NULL DEFAULT 5 CHECK (base_percent >= 0 AND base_percent <= 100),
    bonus_ttl_days      integer     NOT NULL DEFAULT 365 CHECK (bonus_ttl_days > 0),
    rounding            text        NOT NULL DEFAULT 'floor' CHECK (rounding IN ('floor', 'half_up')),
    phone_region        text        NOT NULL DEFAULT 'RU',
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE customers (
    id         uuid PRIMARY KEY,
    tenant_id  uuid        NOT NULL REFERENCES tenants (id),
    email      text,
    phone      text,
    name       text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customers_tenant_idx ON customers (tenant_id);

-- Every email and phone a customer is known by; the unique key is what makes find-or-create race-free.
CREATE TABLE customer_identities (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    kind        text NOT NULL CHECK (kind IN ('email', 'phone')),
    value       text NOT NULL,
    customer_id uuid NOT NULL REFERENCES customers (id),
    PRIMARY KEY (tenant_id, kind, value)
);

CREATE TABLE ledger_entries (
    event_id      uuid PRIMARY KEY,
    tenant_id     uuid        NOT NULL,
    customer_id   uuid        NOT NULL,
    type          text        NOT NULL,
    order_id      text,
    amount        numeric,
    points        bigint      NOT NULL,
    balance_after bigint      NOT NULL,
    expires_at    timestamptz,
    occurred_at   timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    event         jsonb       NOT NULL
);
CREATE INDEX ledger_entries_customer_idx ON ledger_entries (tenant_id, customer_id, occurred_at);

-- Balances as of the newest event applied (seq is the ledger's per-customer sequence number),
-- so applying events twice or out of order never moves a balance backwards.
CREATE TABLE balances (
    tenant_id      uuid        NOT NULL,
    customer_id    uuid        NOT NULL,
    balance        bigint      NOT NULL,
    lifetime_spend numeric     NOT NULL,
    seq            bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer_id)
);

CREATE TABLE webhook_audit (
    event_id     uuid PRIMARY KEY,
    tenant_id    uuid,
    received_at  timestamptz NOT NULL,
    status       text        NOT NULL CHECK (status IN ('accepted', 'rejected', 'dead')),
    http_status  integer,
    code         text,
    field        text,
    reason       text,
    content_type text,
    body_bytes   integer,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_audit_tenant_idx ON webhook_audit (tenant_id, received_at);
