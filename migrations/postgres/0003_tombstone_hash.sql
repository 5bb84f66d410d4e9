-- Tombstones carry the deleted key's hash, so gateways can drop it from their
-- table without keeping an id -> hash map for every key.
ALTER TABLE api_key_tombstones ADD COLUMN key_hash bytea;

CREATE OR REPLACE FUNCTION keygate_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    seq bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7120250001);
    seq := nextval('key_change_seq');
    IF TG_OP = 'DELETE' THEN
        INSERT INTO api_key_tombstones (key_id, key_hash, change_seq, deleted_at)
        VALUES (OLD.id, OLD.key_hash, seq, now())
        ON CONFLICT (key_id) DO UPDATE
            SET key_hash = excluded.key_hash, change_seq = excluded.change_seq, deleted_at = excluded.deleted_at;
        PERFORM pg_notify('keygate_keys', seq::text);
        RETURN OLD;
    END IF;
    NEW.change_seq := seq;
    PERFORM pg_notify('keygate_keys', seq::text);
    RETURN NEW;
END
$$;
