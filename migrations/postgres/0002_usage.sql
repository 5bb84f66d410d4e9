-- Usage records: one row per proxied or rejected request, plus hourly rollups
-- for the questions operators ask (requests per key per hour/day by outcome,
-- latency, bytes). Raw rows can be pruned (`keygate usage prune`); rollups stay.

CREATE TABLE usage_events (
    id                  uuid PRIMARY KEY,          -- server-generated, time-ordered; the idempotency key
    request_id          text NOT NULL,
    ts                  timestamptz NOT NULL,
    key_id              uuid,
    owner_id            text,
    route               text,
    method              text NOT NULL,
    status              smallint NOT NULL,
    outcome             text NOT NULL,
    latency_us          bigint NOT NULL,
    upstream_latency_us bigint,
    bytes_in            bigint NOT NULL,
    bytes_out           bigint NOT NULL,
    client_ip           text,
    deprecated_key      boolean NOT NULL DEFAULT false
);
CREATE INDEX usage_events_key_ts ON usage_events (key_id, ts);
CREATE INDEX usage_events_ts ON usage_events (ts);
CREATE INDEX usage_events_request_id ON usage_events (request_id);

-- key_id is the nil UUID for requests without a known key.
CREATE TABLE usage_hourly (
    key_id         uuid NOT NULL,
    hour           timestamptz NOT NULL,
    route          text NOT NULL,
    outcome        text NOT NULL,
    requests       bigint NOT NULL,
    latency_us_sum bigint NOT NULL,
    latency_us_max bigint NOT NULL,
    bytes_in       bigint NOT NULL,
    bytes_out      bigint NOT NULL,
    PRIMARY KEY (key_id, hour, route, outcome)
);
CREATE INDEX usage_hourly_hour ON usage_hourly (hour);
