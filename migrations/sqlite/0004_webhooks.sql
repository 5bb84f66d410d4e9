-- Webhooks: the outbox (see the Postgres migration 0005). Claims run in
-- BEGIN IMMEDIATE transactions, which SQLite serialises.

CREATE TABLE webhook_deliveries (
    id           BLOB PRIMARY KEY,
    event_id     TEXT NOT NULL,
    endpoint     TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    since        INTEGER NOT NULL,
    lease_until  INTEGER,
    last_status  INTEGER,
    last_error   TEXT,
    delivered_at INTEGER,
    UNIQUE (event_id, endpoint)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_status ON webhook_deliveries (status, id);
