-- Allowed hours per key and the secret-scanning flag (see the Postgres
-- migration 0006). The update trigger lists its columns: recreated with them.

ALTER TABLE api_keys ADD COLUMN allowed_hours TEXT;
ALTER TABLE api_keys ADD COLUMN flagged_at INTEGER;
ALTER TABLE api_keys ADD COLUMN flagged_reason TEXT;

DROP TRIGGER api_keys_update;
CREATE TRIGGER api_keys_update AFTER UPDATE OF key_hash, prefix, hint, owner_id, name, scopes, allowed_cidrs,
    allowed_routes, rate_limits, route_limits, metadata, tags, enabled, expires_at, revoked_at, revoked_reason,
    updated_at, rotated_to, rotated_at, lineage_id, credits, allowed_hours, flagged_at, flagged_reason
    ON api_keys BEGIN
    UPDATE key_change_seq SET seq = seq + 1 WHERE id = 1;
    UPDATE api_keys SET change_seq = (SELECT seq FROM key_change_seq WHERE id = 1) WHERE id = NEW.id;
END;
