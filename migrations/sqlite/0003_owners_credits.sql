-- Owners, per-route cap overrides and the credits ledger (see the Postgres
-- migration 0004). Owner writes bump the same change counter as keys.

CREATE TABLE owners (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL DEFAULT '',
    metadata     TEXT NOT NULL DEFAULT '{}',
    enabled      INTEGER NOT NULL DEFAULT 1,
    rate_limits  TEXT NOT NULL DEFAULT '{}',
    route_limits TEXT NOT NULL DEFAULT '{}',
    credits      TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    change_seq   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX owners_change_seq ON owners (change_seq);

CREATE TABLE owner_tombstones (
    owner_id   TEXT PRIMARY KEY,
    change_seq INTEGER NOT NULL,
    deleted_at INTEGER NOT NULL
);
CREATE INDEX owner_tombstones_seq ON owner_tombstones (change_seq);

CREATE TRIGGER owners_insert AFTER INSERT ON owners BEGIN
    UPDATE key_change_seq SET seq = seq + 1 WHERE id = 1;
    UPDATE owners SET change_seq = (SELECT seq FROM key_change_seq WHERE id = 1) WHERE id = NEW.id;
END;
CREATE TRIGGER owners_update AFTER UPDATE OF name, metadata, enabled, rate_limits, route_limits, credits,
    updated_at ON owners BEGIN
    UPDATE key_change_seq SET seq = seq + 1 WHERE id = 1;
    UPDATE owners SET change_seq = (SELECT seq FROM key_change_seq WHERE id = 1) WHERE id = NEW.id;
END;
CREATE TRIGGER owners_delete AFTER DELETE ON owners BEGIN
    UPDATE key_change_seq SET seq = seq + 1 WHERE id = 1;
    INSERT OR REPLACE INTO owner_tombstones (owner_id, change_seq, deleted_at)
    VALUES (OLD.id, (SELECT seq FROM key_change_seq WHERE id = 1),
            CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER));
END;

INSERT INTO owners (id, created_at, updated_at)
SELECT owner_id, min(created_at), min(created_at) FROM api_keys GROUP BY owner_id;

ALTER TABLE api_keys ADD COLUMN route_limits TEXT NOT NULL DEFAULT '{}';
ALTER TABLE api_keys ADD COLUMN credits TEXT;

DROP TRIGGER api_keys_update;
CREATE TRIGGER api_keys_update AFTER UPDATE OF key_hash, prefix, hint, owner_id, name, scopes, allowed_cidrs,
    allowed_routes, rate_limits, route_limits, metadata, tags, enabled, expires_at, revoked_at, revoked_reason,
    updated_at, rotated_to, rotated_at, lineage_id, credits ON api_keys BEGIN
    UPDATE key_change_seq SET seq = seq + 1 WHERE id = 1;
    UPDATE api_keys SET change_seq = (SELECT seq FROM key_change_seq WHERE id = 1) WHERE id = NEW.id;
END;

CREATE TABLE credit_ledger (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    key_lineage BLOB,
    owner_id    TEXT,
    kind        TEXT NOT NULL,
    amount      INTEGER NOT NULL,
    actor       TEXT NOT NULL
);
CREATE INDEX credit_ledger_key ON credit_ledger (key_lineage, at);
CREATE INDEX credit_ledger_owner ON credit_ledger (owner_id, at);

CREATE TABLE credit_spent_keys (
    lineage_id BLOB PRIMARY KEY,
    epoch      INTEGER NOT NULL,
    spent      INTEGER NOT NULL
);
CREATE TABLE credit_spent_owners (
    owner_id TEXT PRIMARY KEY,
    epoch    INTEGER NOT NULL,
    spent    INTEGER NOT NULL
);

ALTER TABLE usage_events ADD COLUMN credits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN credits INTEGER NOT NULL DEFAULT 0;
