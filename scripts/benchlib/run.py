"""One benchmark run: services up, keys and configs, the smoke check, the rows
at full load and at the paced rate, TLS, the report, and a profile if asked."""

import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import keygate, services
from .keygate import HASH_SECRET, Site, binaries, migrate, usage_counts
from .load import PACE, key_load, wrk
from .perf import check_tools, profile
from .report import report
from .procs import cleanup, cpus, die, free_port, proxy_pids, stop, total_cpu, wait_port, which
from .rows import selected
from .scenarios import make_configs, make_keys, scenarios, start, write_haproxy
from .smoke import smoke
from .tls import measure_tls


@dataclass
class Ctx:
    args: object
    work: Path
    load_cpu: str
    proxy_cpu: str
    bins: keygate.Bins
    rows: list
    ports: dict = field(default_factory=dict)
    backends: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    site: Site = None
    configs: dict = field(default_factory=dict)
    keys: dict = field(default_factory=dict)
    haproxy_cfg: Path = None
    postmaster: int = None


def check_tools_installed(ctx):
    needed = ["wrk", "nginx", "redis-server", "redis-cli"]
    needed += ["pgbouncer"] if "full-pgbouncer" in ctx.rows else []
    needed += ["haproxy"] if "haproxy-auth" in ctx.rows else []
    for tool in needed:
        if not which(tool):
            die(f"`{tool}` is not installed (Debian: apt-get install wrk nginx-light redis-server pgbouncer haproxy)")
    if ctx.args.perf:
        check_tools()


def start_services(ctx):
    """The upstream and Redis; the cluster and PgBouncer when their rows run."""
    p = ctx.ports
    names = ("upstream", "nginx", "redis", "keygate", "admin", "bare", "haproxy")
    # Distinct ports: two free_port() calls may name the same one, and a proxy that could
    # not bind would leave another server answering on its port.
    while len(set(p[n] for n in names if n in p)) < len(names):
        for name in names:
            p[name] = free_port()
    services.write_nginx_confs(ctx.work, p["upstream"], p["nginx"], ctx.args.threads)
    services.start_nginx(ctx.work, "upstream.conf", ctx.load_cpu)
    services.start_redis(p["redis"], ctx.load_cpu)
    wait_port(p["upstream"])
    wait_port(p["redis"])


def start_backends(ctx, db_admin, db_name):
    if "full-cluster" in ctx.rows:
        ctx.backends["cluster"] = services.start_cluster(ctx.work, ctx.load_cpu)
    if "full-pgbouncer" in ctx.rows:
        pgb_port, userinfo = services.start_pgbouncer(ctx.work, db_admin, ctx.load_cpu)
        ctx.backends["pgbouncer_url"] = f"postgres://{userinfo}127.0.0.1:{pgb_port}/{db_name}"


def prepare(ctx, db_url):
    p = ctx.ports
    ctx.env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_")}
    ctx.env["KEYGATE_HASH_SECRET"] = HASH_SECRET
    ctx.site = Site(ctx.work, p["keygate"], p["admin"], db_url, p["upstream"], p["redis"], ctx.args.threads,
                    ctx.args.work_stealing, ctx.args.lease)
    migrate(ctx.bins, ctx.site, ctx.env)
    ctx.configs = make_configs(ctx)
    ctx.keys = make_keys(ctx)
    write_haproxy(ctx)


def redis_ports(ctx, name):
    """Where a full row's rate-limit commands go."""
    return ctx.backends["cluster"] if name == "full-cluster" else [ctx.ports["redis"]]


def redis_total(ctx, name):
    return sum(services.redis_top_level_calls(p) for p in redis_ports(ctx, name))


def redis_cpu(ctx, name):
    return sum(services.redis_cpu_seconds(p) for p in redis_ports(ctx, name))


def measure_max(ctx, s):
    """One closed-loop run of a row at full load."""
    p = start(ctx, s)
    headers, script = key_load(s.key, ctx.work, s.name)
    url = f"http://127.0.0.1:{s.port}{s.path}"
    wrk(url, 2, ctx.args.connections, headers, ctx.load_cpu, script=script)  # warm-up: connections, pools, caches
    pids = proxy_pids(p, s.target) if p else []
    full = s.name.startswith("full")
    cpu0, redis0 = total_cpu(pids), redis_total(ctx, s.name) if full else 0
    redis_cpu0 = redis_cpu(ctx, s.name) if full else 0
    pg_cpu0 = services.postgres_cpu_seconds(ctx.postmaster) if full else 0
    r = wrk(url, ctx.args.duration, ctx.args.connections, headers, ctx.load_cpu, script=script)
    cpu1 = total_cpu(pids)
    if full:
        r["redis_per_req"] = (redis_total(ctx, s.name) - redis0) / max(r["requests"], 1)
        r["redis_cpu_us_per_req"] = (redis_cpu(ctx, s.name) - redis_cpu0) * 1e6 / max(r["requests"], 1)
        if ctx.postmaster is not None:
            r["pg_cpu_us_per_req"] = (services.postgres_cpu_seconds(ctx.postmaster) - pg_cpu0) * 1e6 / max(r["requests"], 1)
        time.sleep(0.3)  # the last usage batch
        r["usage"] = usage_counts(ctx.ports["admin"])
    if pids:
        r["cpu_us_per_req"] = (cpu1 - cpu0) * 1e6 / max(r["requests"], 1)
    if p:
        stop(p)
    return r


def measure_paced(ctx, s, rate, pace):
    """The row at a constant rate: each connection waits 10 ms on average between requests."""
    delay_ms = 10
    conns = max(1, rate * delay_ms // 1000)
    p = start(ctx, s)
    headers, script = key_load(s.key, ctx.work, s.name, str(pace))
    url = f"http://127.0.0.1:{s.port}{s.path}"
    env = dict(os.environ, BENCH_DELAY_MS=str(delay_ms))
    wrk(url, 2, conns, headers, ctx.load_cpu, script=script, env=env)
    r = wrk(url, ctx.args.duration, conns, headers, ctx.load_cpu, script=script, env=env)
    if p:
        stop(p)
    return r


def measure(ctx):
    rows = scenarios(ctx)
    checked = smoke(ctx, rows)
    results = {s.name: {"runs": []} for s in rows}
    for _ in range(ctx.args.rounds):
        for s in rows:
            results[s.name]["runs"].append(measure_max(ctx, s))
    for name in results:
        results[name].update(max(results[name]["runs"], key=lambda r: r["rps"]))
    # Constant rate: half of nginx's maximum, the same for every scenario.
    rate = int(results["nginx"]["rps"] / 2)
    pace = ctx.work / "pace.lua"
    pace.write_text(PACE)
    for s in rows:
        results[s.name]["paced"] = measure_paced(ctx, s, rate, pace)
    # Equal relative load: each proxy row at half of its own maximum (a proxy
    # slower than half of nginx is overloaded at `rate`, and its p99 there is
    # its queue, not its latency).
    for s in rows:
        if s.name != "direct":
            own = int(results[s.name]["rps"] / 2)
            results[s.name]["paced_own"] = dict(measure_paced(ctx, s, own, pace), rate=own)
    tls = measure_tls(ctx)
    if tls:
        results["tls"] = tls
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    extra = ["", "Enforcement checks (before timing):", ""] + checked if checked else []
    if ctx.args.perf:
        extra += profile(ctx, next(s for s in rows if s.name == ctx.args.perf), stamp)
    report(ctx.args, results, rate, stamp, extra)


def run(ctx):
    start_services(ctx)
    db_admin = services.db_admin_url()
    db_name = f"keygate_bench_{os.getpid()}"
    db_url = services.create_database(db_admin, db_name)
    ctx.postmaster = services.postmaster_pid(db_admin)
    try:
        start_backends(ctx, db_admin, db_name)
        prepare(ctx, db_url)
        measure(ctx)
    finally:
        cleanup()
        services.drop_database(db_admin, db_name)


def main(args):
    rows = selected(args.only, args.perf)
    signal.signal(signal.SIGTERM, cleanup)
    signal.signal(signal.SIGINT, cleanup)
    load_cpu, proxy_cpu = cpus()
    ctx = Ctx(args, None, load_cpu, proxy_cpu, None, rows)
    check_tools_installed(ctx)
    ctx.bins = binaries(args)
    ctx.work = Path(tempfile.mkdtemp(prefix="keygate-bench-"))
    try:
        run(ctx)
    finally:
        cleanup()
        shutil.rmtree(ctx.work, ignore_errors=True)
