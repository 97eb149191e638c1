-- Dead letters: records a stream stage gave up on because of their data (schemas/dead_letters.py),
-- kept whole so that `kopilka dead-letters redrive` can feed the very same bytes back to the very
-- same topic. Written by the dead-letter agent (streams/dead_letters.py), idempotent on id.
CREATE TABLE dead_letters (
    id            uuid PRIMARY KEY,  -- derived from (stage, topic, partition, offset, item)
    stage         text        NOT NULL,
    source_topic  text        NOT NULL,
    partition     integer     NOT NULL,
    "offset"      bigint      NOT NULL,
    key           bytea,
    value         bytea       NOT NULL,
    tenant_id     text,       -- text, not uuid: a poison record may name no valid tenant
    request_id    text,
    code          text        NOT NULL,
    reason        text        NOT NULL,
    error         text,
    attempts      integer     NOT NULL DEFAULT 1,
    dead_at       timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    redriven_at   timestamptz,  -- the last redrive
    redrive_count integer     NOT NULL DEFAULT 0
);
-- Listing, newest first: by tenant, and over every tenant.
CREATE INDEX dead_letters_tenant_idx ON dead_letters (tenant_id, dead_at DESC, id DESC);
CREATE INDEX dead_letters_time_idx ON dead_letters (dead_at DESC, id DESC);
