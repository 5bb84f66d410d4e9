# syntax=docker/dockerfile:1
# Multi-stage build: a release binary in a slim, non-root runtime image.
# Commands (the same with podman): README, section "Docker".
#   docker build -t keygate .
#   docker run -d --name keygate -p 8080:8080 -p 127.0.0.1:8081:8081 \
#     -v $PWD/deploy/keygate.toml:/etc/keygate/keygate.toml:ro \
#     -v keygate-data:/var/lib/keygate/data keygate

FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what `cargo build --bin keygate` reads: Cargo.toml names the [[bench]],
# so benches/ must be present; examples/ is discovered only if it exists.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
# pingora-proxy, patched (Cargo.toml [patch.crates-io]).
COPY vendor ./vendor
RUN cargo build --release --locked --bin keygate

FROM debian:bookworm-slim
# data/ exists and belongs to keygate so that a volume mounted there
# (-v keygate-data:/var/lib/keygate/data) is writable by it.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/keygate --create-home keygate \
 && install -d -o keygate -g keygate -m 0700 /var/lib/keygate/data
COPY --from=build /src/target/release/keygate /usr/local/bin/keygate
# The container config (0.0.0.0 listeners, state under /var/lib/keygate/data);
# mount another file over it to change it.
COPY deploy/keygate.toml /etc/keygate/keygate.toml
USER keygate
WORKDIR /var/lib/keygate
ENV KEYGATE_CONFIG=/etc/keygate/keygate.toml KEYGATE_LOG_FORMAT=json
EXPOSE 8080 8081
# No HEALTHCHECK: the slim image has no HTTP client; probe /healthz on 8081
# from the orchestrator instead.
ENTRYPOINT ["/usr/local/bin/keygate"]
CMD ["serve"]
