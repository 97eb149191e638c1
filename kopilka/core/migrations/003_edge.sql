-- The hardened edge: credentials with expiry (rotation with a grace period), signing secrets,
-- and per-tenant edge settings (signature mode, rate limit, body cap).

-- Every webhook secret and API key a tenant holds, stored as SHA-256 digests. The current one has
-- no expiry; a rotated-out one keeps working until expires_at. Look-ups go through this table;
-- tenants.webhook_secret_hash / api_key_hash keep the current digest for older readers.
CREATE TABLE tenant_credentials (
    digest     bytea PRIMARY KEY,
    tenant_id  uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind       text        NOT NULL CHECK (kind IN ('webhook_secret', 'api_key')),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz
);
CREATE INDEX tenant_credentials_tenant_idx ON tenant_credentials (tenant_id, kind);

INSERT INTO tenant_credentials (digest, tenant_id, kind)
SELECT webhook_secret_hash, id, 'webhook_secret' FROM tenants
UNION ALL
SELECT api_key_hash, id, 'api_key' FROM tenants;

-- Signing secrets (Standard Webhooks `whsec_...`, also the key of `X-Signature`). HMAC needs the
-- key itself, so these are stored as they are (never logged, shown once); rotation keeps the old
-- one valid until expires_at, like the credentials above.
CREATE TABLE tenant_signing_secrets (
    id         bigserial PRIMARY KEY,
    tenant_id  uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    secret     bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz
);
CREATE INDEX tenant_signing_secrets_tenant_idx ON tenant_signing_secrets (tenant_id);

-- Edge settings; NULL means the deployment's default (settings: rate_limit_per_minute, ...).
ALTER TABLE tenants
    ADD COLUMN signature_mode text NOT NULL DEFAULT 'off'
        CHECK (signature_mode IN ('off', 'optional', 'required')),
    ADD COLUMN rate_limit_per_minute integer CHECK (rate_limit_per_minute > 0),
    ADD COLUMN rate_limit_burst integer CHECK (rate_limit_burst > 0),
    ADD COLUMN max_body_bytes integer CHECK (max_body_bytes > 0);
