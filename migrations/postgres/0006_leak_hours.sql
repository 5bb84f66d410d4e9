-- Allowed hours per key (a JSON object {tz, days, from, to}; NULL: any time),
-- and the mark secret scanning leaves on a key reported leaked when its
-- action is "flag" (the key keeps working).

ALTER TABLE api_keys ADD COLUMN allowed_hours jsonb;
ALTER TABLE api_keys ADD COLUMN flagged_at timestamptz;
ALTER TABLE api_keys ADD COLUMN flagged_reason text;
