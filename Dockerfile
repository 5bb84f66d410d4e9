# syntax=docker/dockerfile:1
# Multi-stage build: a release binary in a slim, non-root runtime image.
#   docker build -t keygate .
#   docker run -p 8080:8080 -p 8081:8081 \
#     -v $PWD/config/keygate.toml:/etc/keygate/keygate.toml:ro \
#     -e KEYGATE_HASH_SECRET=... keygate

FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
RUN cargo build --release --locked --bin keygate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/keygate --create-home keygate
COPY --from=build /src/target/release/keygate /usr/local/bin/keygate
USER keygate
WORKDIR /var/lib/keygate
ENV KEYGATE_CONFIG=/etc/keygate/keygate.toml KEYGATE_LOG_FORMAT=json
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/keygate"]
CMD ["serve"]
