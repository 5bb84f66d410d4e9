-- The embedded store: the same tables as Postgres. Times are Unix microseconds
-- (INTEGER), ids 16-byte BLOBs (time-ordered UUIDv7 compare in time order),
-- lists and objects JSON text.

CREATE TABLE api_keys (
    id             BLOB PRIMARY KEY,
    key_hash       BLOB NOT NULL UNIQUE,
    prefix         TEXT NOT NULL,
    hint           TEXT NOT NULL,
    owner_id       TEXT NOT NULL,
    name           TEXT NOT NULL,
    scopes         TEXT NOT NULL DEFAULT '[]',
    allowed_cidrs  TEXT NOT NULL DEFAULT '[]',
    allowed_routes TEXT NOT NULL DEFAULT '[]',
    rate_limits    TEXT NOT NULL DEFAULT '{}',
    metadata       TEXT NOT NULL DEFAULT '{}',
    tags           TEXT NOT NULL DEFAULT '[]',
    enabled        INTEGER NOT NULL DEFAULT 1,
    expires_at     INTEGER,
    revoked_at     INTEGER,
    revoked_reason TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    rotated_to     BLOB,
    rotated_at     INTEGER,
    lineage_id     BLOB NOT NULL,
    change_seq     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_owner ON api_keys (owner_id);
CREATE INDEX api_keys_change_seq ON api_keys (change_seq);

CREATE TABLE api_key_usage (
    key_id       BLOB PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
    use_count    INTEGER NOT NULL DEFAULT 0,
    last_used_at INTEGER
);

CREATE TABLE api_key_tombstones (
    key_id     BLOB PRIMARY KEY,
    change_seq INTEGER NOT NULL,
    deleted_at INTEGER NOT NULL
);
CREATE INDEX api_key_tombstones_seq ON api_key_tombstones (change_seq);

-- Every write to api_keys gets the next change number (SQLite has one writer
-- at a time, so numbers commit in order), as the Postgres trigger does.
CREATE TABLE key_change_seq (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
INSERT INTO key_change_seq (id, seq) VALUES (1, 0);

CREATE TRIGGER api_keys_insert AFTER INSERT ON api_keys BEGIN
    UPDATE key_change_seq SET seq = seq + 1 WHERE id = 1;
    UPDATE api_keys SET change_seq = (SELECT seq FROM key_change_seq WHERE id = 1) WHERE id = NEW.id;
END;
CREATE TRIGGER api_keys_update AFTER UPDATE OF key_hash, prefix, hint, owner_id, name, scopes, allowed_cidrs,
    allowed_routes, rate_limits, metadata, tags, enabled, expires_at, revoked_at, revoked_reason, updated_at,
    rotated_to, rotated_at, lineage_id ON api_keys BEGIN
    UPDATE key_change_seq SET seq = seq + 1 WHERE id = 1;
    UPDATE api_keys SET change_seq = (SELECT seq FROM key_change_seq WHERE id = 1) WHERE id = NEW.id;
END;
CREATE TRIGGER api_keys_delete AFTER DELETE ON api_keys BEGIN
    UPDATE key_change_seq SET seq = seq + 1 WHERE id = 1;
    INSERT OR REPLACE INTO api_key_tombstones (key_id, change_seq, deleted_at)
    VALUES (OLD.id, (SELECT seq FROM key_change_seq WHERE id = 1),
            CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER));
END;

CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    key_id    BLOB,
    changes   TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash      BLOB NOT NULL
);

CREATE TABLE usage_events (
    id                  BLOB PRIMARY KEY,
    request_id          TEXT NOT NULL,
    ts                  INTEGER NOT NULL,
    key_id              BLOB,
    owner_id            TEXT,
    route               TEXT,
    method              TEXT NOT NULL,
    status              INTEGER NOT NULL,
    outcome             TEXT NOT NULL,
    latency_us          INTEGER NOT NULL,
    upstream_latency_us INTEGER,
    bytes_in            INTEGER NOT NULL,
    bytes_out           INTEGER NOT NULL,
    client_ip           TEXT,
    deprecated_key      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX usage_events_key_ts ON usage_events (key_id, ts);
CREATE INDEX usage_events_ts ON usage_events (ts);
CREATE INDEX usage_events_request_id ON usage_events (request_id);

CREATE TABLE usage_hourly (
    key_id         BLOB NOT NULL,
    hour           INTEGER NOT NULL,
    route          TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    requests       INTEGER NOT NULL,
    latency_us_sum INTEGER NOT NULL,
    latency_us_max INTEGER NOT NULL,
    bytes_in       INTEGER NOT NULL,
    bytes_out      INTEGER NOT NULL,
    PRIMARY KEY (key_id, hour, route, outcome)
);
CREATE INDEX usage_hourly_hour ON usage_hourly (hour);
