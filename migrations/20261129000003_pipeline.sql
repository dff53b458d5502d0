-- Routing: where dispatch sends each event, by rules a person can change without a deploy.
-- The first enabled rule (lowest priority) whose status matches and whose source pattern (SQL LIKE;
-- NULL matches every source) matches decides; no rule means the event is done once dispatched.
CREATE TABLE routing_rules (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status         text        NOT NULL CHECK (status IN ('success', 'info', 'warning', 'error')),
    source_pattern text        CHECK (char_length(source_pattern) BETWEEN 1 AND 100),
    -- NULL: the rule finishes the event without handing it to a handler.
    target_queue   text        CHECK (target_queue IN ('warning', 'error')),
    priority       integer     NOT NULL DEFAULT 100,
    enabled        boolean     NOT NULL DEFAULT true,
    description    text        NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX routing_rules_status_idx ON routing_rules (status, priority) WHERE enabled;

-- The original worker's behaviour: warnings to the warning handler, errors to the error handler.
INSERT INTO routing_rules (status, target_queue, description) VALUES
    ('warning', 'warning', 'every warning goes to the warning handler'),
    ('error', 'error', 'every error goes to the error handler');

-- What dispatch decided for each event. Its presence makes a redelivered message a no-op.
CREATE TABLE event_routings (
    event_id     uuid        PRIMARY KEY REFERENCES events (id),
    target_queue text        CHECK (target_queue IN ('warning', 'error')),
    rule_id      bigint      REFERENCES routing_rules (id) ON DELETE SET NULL,
    routed_at    timestamptz NOT NULL DEFAULT now()
);

-- Messages no consumer could read, parked for a person to look at rather than retried forever.
CREATE TABLE dead_letters (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    origin      text        NOT NULL,
    body        text        NOT NULL,
    error       text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- The warning handler's record of each warning (the original worker stored one per warning).
CREATE TABLE processed_warnings (
    event_id     uuid        PRIMARY KEY REFERENCES events (id),
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- The error handler's record of each error event.
CREATE TABLE error_records (
    event_id    uuid        PRIMARY KEY REFERENCES events (id),
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- One email per error event, however often the event is delivered: the key is unique, and the
-- state is written before sending (sending) and after (sent, or failed with the reason).
CREATE TABLE notifications (
    event_id   uuid        NOT NULL REFERENCES events (id),
    channel    text        NOT NULL CHECK (channel IN ('email')),
    recipients text[]      NOT NULL,
    state      text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending', 'sent', 'failed')),
    attempts   integer     NOT NULL DEFAULT 0,
    last_error text,
    claimed_at timestamptz,
    sent_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, channel)
);
CREATE INDEX notifications_state_idx ON notifications (state) WHERE state <> 'sent';
