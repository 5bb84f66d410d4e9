"""The plain-HTTP rows: what each one runs, starting its proxy, its configs and keys."""

import time
from collections import namedtuple

from . import haproxy
from .keygate import KeyRing, create_key, create_owner, keygate_conf
from .procs import die, spawn, wait_port
from .rows import RUN_ORDER

# name, target, port, path, key (keygate.Key or None), keygate config
Scenario = namedtuple("Scenario", "name target port path key config")

# full-keys: this many keys with full's limits, each request the next one's.
# full-hot: the same keys, with one hot key taking every other request.
RING = 64

FULL_LIMITS = ["second=100000000", "minute=10000000000", "hour=100000000000", "day=1000000000000"]


def make_configs(ctx):
    """The keygate configs the selected rows need (plain is always needed, for keys and TLS)."""
    site, b = ctx.site, ctx.backends
    confs = {"plain": keygate_conf(site, "plain")}
    if any(r.startswith("full") for r in ctx.rows):
        confs["full"] = keygate_conf(site, "full", usage=True, redis=True)
    if "full-batched" in ctx.rows:
        confs["fullb"] = keygate_conf(site, "fullb", usage=True, redis=True, batched=True)
    if "full-cluster" in ctx.rows:
        confs["fullc"] = keygate_conf(site, "fullc", usage=True, redis=True, cluster=b["cluster"])
    if "full-pgbouncer" in ctx.rows:
        pooled = f'pooler = "transaction"\nlisten_url = "{site.db_url}"\n'
        confs["fullp"] = keygate_conf(site, "fullp", usage=True, redis=True, store_extra=pooled,
                                      db_url=b["pgbouncer_url"])
    return confs


def needs_smoke(rows):
    return "haproxy-auth" in rows or "auth-memory" in rows


def make_keys(ctx):
    """The keys the rows use; with haproxy-auth/auth-memory also the smoke check's keys."""
    plain, mk = ctx.configs["plain"], lambda limits, **kw: create_key(ctx.bins, plain, ctx.env, limits, **kw)
    keys = {"auth": mk([]), "full": mk(FULL_LIMITS)}
    if "full-keys" in ctx.rows or "full-hot" in ctx.rows:
        keys["ring"] = KeyRing([mk(FULL_LIMITS) for _ in range(RING)])
        keys["hot"] = KeyRing([k for cold in keys["ring"].keys for k in (keys["full"], cold)])
    if "full-credits" in ctx.rows:
        create_owner(ctx.bins, plain, ctx.env, "bench-credits", ["minute=10000000000"], 10**15)
        keys["credits"] = mk(FULL_LIMITS, owner="bench-credits")
    if needs_smoke(ctx.rows):
        keys["scope"] = mk([], scopes=("billing:read",))
        keys["cidr"] = mk([], cidrs=("10.0.0.0/8",))
        keys["tiny"] = mk(["hour=3"])
    return keys


def scenarios(ctx):
    p, c, k = ctx.ports, ctx.configs, ctx.keys
    kg = p["keygate"]
    table = {
        "direct": ("upstream", p["upstream"], "/x", None, None),
        "nginx": ("nginx", p["nginx"], "/x", None, None),
        "pingora": ("pingora", p["bare"], "/x", None, None),
        "public": ("keygate", kg, "/public/x", None, c["plain"]),
        "auth": ("keygate", kg, "/api/x", k["auth"], c["plain"]),
        "auth-memory": ("keygate", kg, "/api/x", k["full"], c["plain"]),
        "haproxy-auth": ("haproxy", p["haproxy"], "/api/x", k["full"], None),
        "full": ("keygate", kg, "/api/x", k["full"], c.get("full")),
        "full-keys": ("keygate", kg, "/api/x", k.get("ring"), c.get("full")),
        "full-hot": ("keygate", kg, "/api/x", k.get("hot"), c.get("full")),
        "full-batched": ("keygate", kg, "/api/x", k["full"], c.get("fullb")),
        "full-cluster": ("keygate", kg, "/api/x", k["full"], c.get("fullc")),
        "full-pgbouncer": ("keygate", kg, "/api/x", k["full"], c.get("fullp")),
        "full-credits": ("keygate", kg, "/api/x", k.get("credits"), c.get("full")),
    }
    return [Scenario(n, *table[n]) for n in RUN_ORDER if n in ctx.rows]


def write_haproxy(ctx):
    if "haproxy-auth" in ctx.rows:
        ctx.haproxy_cfg = haproxy.write_config(ctx.work, ctx.ports["haproxy"], ctx.ports["upstream"],
                                               [k for k in ctx.keys.values() if not isinstance(k, KeyRing)],
                                               ctx.args.threads)


def start(ctx, s):
    """Starts a row's proxy (none for direct); returns the process."""
    a, p = ctx.args, ctx.ports
    if s.target == "nginx":
        proc = spawn(["nginx", "-c", str(ctx.work / "proxy.conf"), "-p", str(ctx.work)], cpu=ctx.proxy_cpu)
    elif s.target == "pingora":
        proc = spawn([str(ctx.bins.bare), f"127.0.0.1:{p['bare']}", f"127.0.0.1:{p['upstream']}", str(a.threads)],
                     cpu=ctx.proxy_cpu)
    elif s.target == "keygate":
        proc = spawn([str(ctx.bins.keygate), "--config", str(s.config), "serve"], cpu=ctx.proxy_cpu, env=ctx.env,
                     log=ctx.work / "keygate.log")
    elif s.target == "haproxy":
        proc = spawn(["haproxy", "-db", "-f", str(ctx.haproxy_cfg)], cpu=ctx.proxy_cpu, log=ctx.work / "haproxy.log")
    else:
        return None
    wait_port(s.port)
    time.sleep(0.5)
    if proc.poll() is not None:
        die(f"{s.name}: its proxy exited at start (code {proc.returncode}); see the logs in {ctx.work}")
    return proc
