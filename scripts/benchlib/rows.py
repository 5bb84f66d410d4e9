"""The rows, and which rows a selection (`--only`, `--perf`) needs."""

# Measured in this order (the table lists them in MAIN_ROWS order).
RUN_ORDER = ("direct", "nginx", "pingora", "public", "auth", "auth-memory", "haproxy-auth", "full", "full-keys",
             "full-hot", "full-batched",
             "full-cluster", "full-pgbouncer", "full-credits")
MAIN_ROWS = ("direct", "nginx", "pingora", "public", "auth", "auth-memory", "haproxy-auth", "full", "full-keys",
             "full-hot", "full-batched",
             "full-credits", "full-cluster", "full-pgbouncer")
TLS_ROWS = ("nginx-tls-h1", "tls-h1", "nginx-tls-h2", "tls-h2")
ALL_ROWS = RUN_ORDER + TLS_ROWS

# Every run has these: the paced rate is half of nginx's maximum, ratios are to nginx and
# public, added p99 is over direct.
BASE = ("direct", "nginx", "public")
# The rows a row is compared with.
PEERS = {
    "auth-memory": ("haproxy-auth",),
    "haproxy-auth": ("auth-memory",),
    "full-keys": ("full",),
    "full-hot": ("full",),
    "full-batched": ("full",),
    "full-cluster": ("full",),
    "full-pgbouncer": ("full",),
    "full-credits": ("full",),
    "tls-h1": ("nginx-tls-h1",),
    "tls-h2": ("nginx-tls-h2",),
}


def parse_rows(text):
    rows = [r.strip() for r in text.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ALL_ROWS]
    if unknown:
        raise ValueError(f"unknown row(s) {', '.join(unknown)}; rows: {', '.join(ALL_ROWS)}")
    return rows


def selected(only, perf):
    """The rows to run, in run order: all without --only, else --only's, --perf's, their peers and BASE."""
    if only is None:
        return list(ALL_ROWS)
    want = set(only) | set(BASE) | ({perf} if perf else set())
    want |= {p for r in list(want) for p in PEERS.get(r, ())}
    return [r for r in ALL_ROWS if r in want]
