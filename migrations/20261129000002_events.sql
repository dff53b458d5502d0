-- Substring search over title and description uses a trigram index.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- One row per Idempotency-Key a user sent: the key is unique per user, and the fingerprint of
-- the request that claimed it tells a retry (same body) from a conflicting reuse (other body).
CREATE TABLE idempotency_keys (
    user_id             uuid        NOT NULL REFERENCES users (id),
    key                 text        NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    request_fingerprint bytea       NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

CREATE TABLE events (
    -- UUID v7, made by the application: time-ordered, so batch order survives in id order.
    id                  uuid        PRIMARY KEY,
    title               text        NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    description         text        NOT NULL DEFAULT '' CHECK (char_length(description) <= 10000),
    status              text        NOT NULL CHECK (status IN ('success', 'info', 'warning', 'error')),
    source              text        CHECK (char_length(source) BETWEEN 1 AND 100),
    occurred_at         timestamptz,
    received_at         timestamptz NOT NULL DEFAULT now(),
    -- The 16 KiB bound is enforced on the request's compact JSON; jsonb's own text form differs.
    attributes          jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(attributes) = 'object'),
    user_id             uuid        NOT NULL REFERENCES users (id),
    pipeline_state      text        NOT NULL DEFAULT 'received'
                                    CHECK (pipeline_state IN ('received', 'dispatched', 'processed')),
    pipeline_updated_at timestamptz NOT NULL DEFAULT now(),
    idempotency_key     text,
    FOREIGN KEY (user_id, idempotency_key) REFERENCES idempotency_keys (user_id, key)
);

-- Newest-first keyset pagination, unfiltered and by status or source.
CREATE INDEX events_received_at_idx ON events (received_at DESC, id DESC);
-- Also serves per-status time series (status + received_at).
CREATE INDEX events_status_received_at_idx ON events (status, received_at DESC, id DESC);
CREATE INDEX events_source_received_at_idx ON events (source, received_at DESC, id DESC) WHERE source IS NOT NULL;
-- The outbox sweep looks for events left before routing.
CREATE INDEX events_undispatched_idx ON events (received_at) WHERE pipeline_state = 'received';
CREATE INDEX events_text_search_idx ON events USING gin ((title || ' ' || description) gin_trgm_ops);
CREATE INDEX events_idempotency_key_idx ON events (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
