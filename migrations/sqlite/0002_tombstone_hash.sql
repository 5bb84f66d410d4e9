-- Tombstones carry the deleted key's hash (see the Postgres migration 0003).
ALTER TABLE api_key_tombstones ADD COLUMN key_hash BLOB;

DROP TRIGGER api_keys_delete;
CREATE TRIGGER api_keys_delete AFTER DELETE ON api_keys BEGIN
    UPDATE key_change_seq SET seq = seq + 1 WHERE id = 1;
    INSERT OR REPLACE INTO api_key_tombstones (key_id, key_hash, change_seq, deleted_at)
    VALUES (OLD.id, OLD.key_hash, (SELECT seq FROM key_change_seq WHERE id = 1),
            CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER));
END;
