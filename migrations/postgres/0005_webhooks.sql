-- Webhooks: the outbox. One row per (event, endpoint): written in the same
-- transaction as the change it reports, claimed by one instance at a time
-- (FOR UPDATE SKIP LOCKED, then a lease), delivered at least once.

CREATE TABLE webhook_deliveries (
    id          UUID PRIMARY KEY,
    -- The Standard Webhooks message id (`webhook-id`): the same for every
    -- endpoint and every attempt, so a receiver can dedupe.
    event_id    TEXT NOT NULL,
    endpoint    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    -- The body exactly as signed and sent.
    payload     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    -- pending | delivered | dead
    status      TEXT NOT NULL DEFAULT 'pending',
    attempts    BIGINT NOT NULL DEFAULT 0,
    next_at     TIMESTAMPTZ NOT NULL,
    -- Where the retry period (webhooks.max_age) started: creation or the last manual retry.
    since       TIMESTAMPTZ NOT NULL,
    lease_until TIMESTAMPTZ,
    last_status BIGINT,
    last_error  TEXT,
    delivered_at TIMESTAMPTZ,
    UNIQUE (event_id, endpoint)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_status ON webhook_deliveries (status, id);
