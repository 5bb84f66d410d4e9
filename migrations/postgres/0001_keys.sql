-- API keys, their change log for gateway sync, and the audit chain.

CREATE SEQUENCE key_change_seq;

CREATE TABLE api_keys (
    id             uuid PRIMARY KEY,
    key_hash       bytea NOT NULL UNIQUE,          -- HMAC-SHA256(hash_secret, key)
    prefix         text NOT NULL,
    hint           text NOT NULL,
    owner_id       text NOT NULL,
    name           text NOT NULL,
    scopes         jsonb NOT NULL DEFAULT '[]',
    allowed_cidrs  jsonb NOT NULL DEFAULT '[]',
    allowed_routes jsonb NOT NULL DEFAULT '[]',
    rate_limits    jsonb NOT NULL DEFAULT '{}',
    metadata       jsonb NOT NULL DEFAULT '{}',
    tags           jsonb NOT NULL DEFAULT '[]',
    enabled        boolean NOT NULL DEFAULT true,
    expires_at     timestamptz,
    revoked_at     timestamptz,
    revoked_reason text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    rotated_to     uuid,
    rotated_at     timestamptz,
    lineage_id     uuid NOT NULL,                  -- rate-limit identity across rotations
    change_seq     bigint NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_owner ON api_keys (owner_id);
CREATE INDEX api_keys_change_seq ON api_keys (change_seq);
CREATE INDEX api_keys_created ON api_keys (created_at, id);

-- Kept apart from api_keys so that usage updates never look like key changes.
CREATE TABLE api_key_usage (
    key_id       uuid PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
    use_count    bigint NOT NULL DEFAULT 0,
    last_used_at timestamptz
);

-- A deleted key leaves only its id, so every gateway can drop it.
CREATE TABLE api_key_tombstones (
    key_id     uuid PRIMARY KEY,
    change_seq bigint NOT NULL,
    deleted_at timestamptz NOT NULL
);
CREATE INDEX api_key_tombstones_seq ON api_key_tombstones (change_seq);

-- Every write to api_keys, from keygate or by hand, gets a change number and
-- wakes the gateways. The advisory lock serialises writers until commit, so
-- change numbers become visible in order and a reader's watermark never skips one.
CREATE FUNCTION keygate_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    seq bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7120250001);
    seq := nextval('key_change_seq');
    IF TG_OP = 'DELETE' THEN
        INSERT INTO api_key_tombstones (key_id, change_seq, deleted_at)
        VALUES (OLD.id, seq, now())
        ON CONFLICT (key_id) DO UPDATE SET change_seq = excluded.change_seq, deleted_at = excluded.deleted_at;
        PERFORM pg_notify('keygate_keys', seq::text);
        RETURN OLD;
    END IF;
    NEW.change_seq := seq;
    PERFORM pg_notify('keygate_keys', seq::text);
    RETURN NEW;
END
$$;
CREATE TRIGGER api_keys_write BEFORE INSERT OR UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION keygate_key_changed();
CREATE TRIGGER api_keys_delete AFTER DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION keygate_key_changed();

-- Tamper-evident: hash = HMAC(audit_key, prev_hash || record), audit_key derived
-- from the hash secret, which never enters the database.
CREATE TABLE audit_log (
    seq       bigint PRIMARY KEY,
    at        timestamptz NOT NULL,
    actor     text NOT NULL,
    action    text NOT NULL,
    key_id    uuid,
    changes   text NOT NULL,                       -- canonical JSON, hashed as stored
    prev_hash bytea NOT NULL,
    hash      bytea NOT NULL
);
