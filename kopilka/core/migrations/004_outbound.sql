-- Outbound: signed webhooks to the shop's endpoints and Telegram notifications.
-- Both are durable outboxes in Postgres: the stream worker only inserts rows (idempotent on the
-- event id), and `kopilka dispatch` sends them, records every attempt and schedules retries.

-- A shop's callback URL. The signing secret (whsec_...) is kept as is: HMAC needs the key itself.
CREATE TABLE webhook_endpoints (
    id              uuid PRIMARY KEY,
    tenant_id       uuid        NOT NULL REFERENCES tenants (id),
    url             text        NOT NULL,
    secret          text        NOT NULL,
    event_types     text[]      NOT NULL DEFAULT '{}',  -- empty: every event type
    description     text,
    enabled         boolean     NOT NULL DEFAULT true,
    disabled_at     timestamptz,
    disabled_reason text,
    failing_since   timestamptz,  -- first failed attempt since the last success
    created_at      timestamptz NOT NULL DEFAULT now(),
    removed_at      timestamptz   -- removed endpoints keep their history
);
CREATE INDEX webhook_endpoints_tenant_idx ON webhook_endpoints (tenant_id) WHERE removed_at IS NULL;

-- One event for one endpoint. status: pending (due at next_attempt_at), succeeded, dead (the
-- dead-letter store: retries exhausted, the endpoint gone or disabled, or the address refused).
CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,
    endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints (id),
    tenant_id       uuid        NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    payload         text        NOT NULL,  -- the exact bytes that are signed and sent
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'succeeded', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,  -- every attempt ever
    round_attempts  integer     NOT NULL DEFAULT 0,  -- attempts since created or redelivered
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    dead_reason     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_tenant_idx ON webhook_deliveries (tenant_id, status, created_at);

-- Every HTTP attempt: outcome, response code, latency.
CREATE TABLE webhook_attempts (
    id            bigserial PRIMARY KEY,
    delivery_id   uuid        NOT NULL REFERENCES webhook_deliveries (id),
    endpoint_id   uuid        NOT NULL,
    tenant_id     uuid        NOT NULL,
    attempted_at  timestamptz NOT NULL,
    outcome       text        NOT NULL,  -- succeeded, failed, timeout, network, refused, gone
    response_code integer,
    latency_ms    double precision NOT NULL,
    error         text
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, attempted_at);

-- Telegram chats a tenant's notifications go to, and the event types each one opted into.
CREATE TABLE telegram_chats (
    tenant_id      uuid        NOT NULL REFERENCES tenants (id),
    chat_id        bigint      NOT NULL,
    event_types    text[]      NOT NULL DEFAULT '{}',  -- empty: every event type
    enabled        boolean     NOT NULL DEFAULT true,
    blocked_at     timestamptz,  -- the bot was blocked or removed (403 Forbidden)
    blocked_reason text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, chat_id)
);

-- A tenant's own wording for an event type (str.format fields, see sinks/telegram_templates.py).
CREATE TABLE telegram_templates (
    tenant_id  uuid        NOT NULL REFERENCES tenants (id),
    event_type text        NOT NULL,
    template   text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_type)
);

-- The Telegram outbox: one rendered message per (chat, event); status pending, sent, forbidden
-- (the bot was blocked: stopped and recorded), failed (Telegram refused it for good).
CREATE TABLE telegram_messages (
    id              uuid PRIMARY KEY,
    seq             bigint      GENERATED ALWAYS AS IDENTITY,  -- arrival order, sent in order
    tenant_id       uuid        NOT NULL,
    chat_id         bigint      NOT NULL,
    event_id        uuid,
    event_type      text        NOT NULL,
    text            text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'forbidden', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX telegram_messages_pending_idx ON telegram_messages (chat_id, seq)
    WHERE status = 'pending';
CREATE INDEX telegram_messages_tenant_idx ON telegram_messages (tenant_id, created_at);
