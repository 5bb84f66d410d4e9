-- Owners as records (shared limits, metadata, enable/disable, credits), per-route
-- cap overrides, and the credits ledger. Owner writes share the key change log:
-- the same advisory lock, sequence and NOTIFY channel, so one watermark covers both.

CREATE TABLE owners (
    id           text PRIMARY KEY,
    name         text NOT NULL DEFAULT '',
    metadata     jsonb NOT NULL DEFAULT '{}',
    enabled      boolean NOT NULL DEFAULT true,
    rate_limits  jsonb NOT NULL DEFAULT '{}',
    route_limits jsonb NOT NULL DEFAULT '{}',
    credits      jsonb,                              -- the grant (see src/credits); NULL: none
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    change_seq   bigint NOT NULL DEFAULT 0
);
CREATE INDEX owners_change_seq ON owners (change_seq);

CREATE TABLE owner_tombstones (
    owner_id   text PRIMARY KEY,
    change_seq bigint NOT NULL,
    deleted_at timestamptz NOT NULL
);
CREATE INDEX owner_tombstones_seq ON owner_tombstones (change_seq);

CREATE FUNCTION keygate_owner_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    seq bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7120250001);
    seq := nextval('key_change_seq');
    IF TG_OP = 'DELETE' THEN
        INSERT INTO owner_tombstones (owner_id, change_seq, deleted_at)
        VALUES (OLD.id, seq, now())
        ON CONFLICT (owner_id) DO UPDATE SET change_seq = excluded.change_seq, deleted_at = excluded.deleted_at;
        PERFORM pg_notify('keygate_keys', seq::text);
        RETURN OLD;
    END IF;
    NEW.change_seq := seq;
    PERFORM pg_notify('keygate_keys', seq::text);
    RETURN NEW;
END
$$;
CREATE TRIGGER owners_write BEFORE INSERT OR UPDATE ON owners
    FOR EACH ROW EXECUTE FUNCTION keygate_owner_changed();
CREATE TRIGGER owners_delete AFTER DELETE ON owners
    FOR EACH ROW EXECUTE FUNCTION keygate_owner_changed();

-- Every existing owner_id becomes an owner (the first key creates one from now on).
INSERT INTO owners (id, created_at, updated_at)
SELECT owner_id, min(created_at), min(created_at) FROM api_keys GROUP BY owner_id;

ALTER TABLE api_keys ADD COLUMN route_limits jsonb NOT NULL DEFAULT '{}';
ALTER TABLE api_keys ADD COLUMN credits jsonb;

-- Top-ups and sets (audited); the debits are the usage records' `credits`.
CREATE TABLE credit_ledger (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,
    key_lineage uuid,                                -- a key's credits (shared by its rotations)
    owner_id    text,                                -- or an owner's
    kind        text NOT NULL,                       -- 'set' | 'add'
    amount      bigint NOT NULL,
    actor       text NOT NULL
);
CREATE INDEX credit_ledger_key ON credit_ledger (key_lineage, at);
CREATE INDEX credit_ledger_owner ON credit_ledger (owner_id, at);

-- Debits recorded so far in each account's current epoch (see src/credits):
-- the ledger side of a balance, which rebuilds it when Redis lost it.
CREATE TABLE credit_spent_keys (
    lineage_id uuid PRIMARY KEY,
    epoch      bigint NOT NULL,
    spent      bigint NOT NULL
);
CREATE TABLE credit_spent_owners (
    owner_id text PRIMARY KEY,
    epoch    bigint NOT NULL,
    spent    bigint NOT NULL
);

ALTER TABLE usage_events ADD COLUMN credits bigint NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN credits bigint NOT NULL DEFAULT 0;
