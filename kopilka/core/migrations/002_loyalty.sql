-- Kopilka schema, version 2: tenant rules as one document, referrals, order ownership, lots.

-- The tenant's loyalty rules (schemas/tenant_rules.py), the source of truth; every change bumps
-- `revision` and is published to the compacted topic tenants.rules for the workers.
CREATE TABLE tenant_rules (
    tenant_id  uuid PRIMARY KEY REFERENCES tenants (id),
    rules      jsonb       NOT NULL,
    revision   bigint      NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tenant_rules (tenant_id, rules)
SELECT id, jsonb_build_object('base_percent', base_percent::text, 'bonus_ttl_days', bonus_ttl_days,
                              'rounding', rounding, 'phone_region', phone_region)
FROM tenants;
ALTER TABLE tenants DROP COLUMN base_percent, DROP COLUMN bonus_ttl_days, DROP COLUMN rounding,
                    DROP COLUMN phone_region;

ALTER TABLE customers ADD COLUMN referral_code text, ADD COLUMN referrer_id uuid REFERENCES customers (id);
CREATE UNIQUE INDEX customers_referral_code_idx ON customers (tenant_id, referral_code);

-- Which customer an order belongs to: the first action naming it claims it. A purchase or spend
-- of the same orderId under another customer is refused; a refund finds its customer here.
CREATE TABLE order_claims (
    tenant_id   uuid        NOT NULL,
    order_id    text        NOT NULL,
    customer_id uuid        NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, order_id)
);

-- One row per lot (an award), with what is left of it; what the read API splits into active,
-- pending and expiring-soon, and what the expiry sweep looks for.
CREATE TABLE lots (
    lot_id       uuid PRIMARY KEY,
    tenant_id    uuid        NOT NULL,
    customer_id  uuid        NOT NULL,
    order_id     text,
    points       bigint      NOT NULL,
    remaining    bigint      NOT NULL CHECK (remaining >= 0),
    available_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX lots_customer_idx ON lots (tenant_id, customer_id);
CREATE INDEX lots_open_expiry_idx ON lots (expires_at) WHERE remaining > 0;

ALTER TABLE balances ADD COLUMN level text;
ALTER TABLE ledger_entries ADD COLUMN delta bigint NOT NULL DEFAULT 0, ADD COLUMN reason text;
-- One award per (tenant, order): the ledger guarantees it, this makes any slip loud.
CREATE UNIQUE INDEX ledger_entries_one_award_idx ON ledger_entries (tenant_id, order_id)
    WHERE type = 'bonus_awarded';

-- When a request's email and phone belong to two different customers, the earlier-created one
-- is used (kopilka/directory/customers.py) and the conflict is recorded here for support to resolve.
CREATE TABLE identity_conflicts (
    tenant_id   uuid        NOT NULL,
    chosen_id   uuid        NOT NULL,
    other_id    uuid        NOT NULL,
    email       text,
    phone       text,
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, chosen_id, other_id)
);
