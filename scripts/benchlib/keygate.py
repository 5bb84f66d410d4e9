"""keygate itself: which binaries, building them, writing its configs, creating keys and owners."""

import json
import os
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .procs import die

ROOT = Path(__file__).resolve().parent.parent.parent
HASH_SECRET = "bench-hash-secret-bench-hash-secret-0123"


@dataclass
class Bins:
    keygate: Path
    bare: Path


def target_dir():
    """$CARGO_TARGET_DIR (relative to the repository, where cargo runs), else target/."""
    d = os.environ.get("CARGO_TARGET_DIR")
    return ROOT / d if d else ROOT / "target"


def bins_in(bin_dir):
    """The binaries in a directory: a copy (keygate, bare_pingora side by side) or a
    cargo profile directory (bare_pingora under examples/)."""
    d = Path(bin_dir).resolve()
    bare = d / "bare_pingora"
    if not bare.exists():
        bare = d / "examples" / "bare_pingora"
    return Bins(d / "keygate", bare)


def binaries(args):
    """The binaries to measure; builds them unless --no-build or --bin-dir."""
    if args.bin_dir:
        bins = bins_in(args.bin_dir)
    else:
        if not args.no_build:
            subprocess.run(["cargo", "build", "--profile", args.profile, "--bin", "keygate", "--example", "bare_pingora"],
                           cwd=ROOT, check=True)
        # cargo's `dev` profile builds into debug/.
        bins = bins_in(target_dir() / ("debug" if args.profile == "dev" else args.profile))
    for b in (bins.keygate, bins.bare):
        if not os.access(b, os.X_OK):
            die(f"no binary {b} (build it, or see --bin-dir)")
    return bins


@dataclass
class Site:
    """What every keygate config of one run shares."""
    work: Path
    listen: int
    admin: int
    db_url: str
    up_port: int
    redis_port: int
    threads: int = 1
    stealing: bool = False
    # ratelimit.lease for the exact Redis rows; None: keygate's default.
    lease: int | None = None


def limits_section(site, redis, batched, cluster):
    text = '[ratelimit]\nbackend = "redis"\nurl = "redis://127.0.0.1:%d"\n' % site.redis_port if redis else ""
    if cluster:
        nodes = ", ".join(f'"redis://127.0.0.1:{p}"' for p in cluster)
        text = f'[ratelimit]\nbackend = "redis"\ntopology = "cluster"\nnodes = [{nodes}]\n'
    if batched:
        text += 'mode = "batched"\nbatch_interval = "20ms"\n'
    elif text and site.lease is not None:
        text += f"lease = {site.lease}\n"
    return text


ROUTES = """[[route]]
name = "public"
path_prefix = "/public"
upstream = "api"
auth = "public"
[[route]]
name = "api"
path_prefix = "/api"
upstream = "api"
scopes = ["orders:read"]
"""


def keygate_conf(site, name, usage=False, redis=False, batched=False, cluster=None, store_extra="", db_url=None):
    """Writes work/<name>.toml. Without redis the limits are keygate's default, memory."""
    text = f"""[gateway]
listen = "127.0.0.1:{site.listen}"
threads = {site.threads}
work_stealing = {str(site.stealing).lower()}
[admin]
listen = "127.0.0.1:{site.admin}"
[store]
url = "{db_url or site.db_url}"
{store_extra}[usage]
enabled = {str(usage).lower()}
spool_dir = "{site.work}/spool-{name}"
[log]
level = "warn"
{limits_section(site, redis, batched, cluster)}
[[upstream]]
name = "api"
servers = ["127.0.0.1:{site.up_port}"]
{ROUTES}"""
    path = site.work / f"{name}.toml"
    path.write_text(text)
    return path


def migrate(bins, site, env):
    conf = keygate_conf(Site(site.work, 1, 2, site.db_url, site.up_port, site.redis_port), "m")
    out = subprocess.run([str(bins.keygate), "--config", str(conf), "migrate"], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        die(f"migrate failed: {out.stderr}")


def create_owner(bins, config, env, owner, limits, credits):
    cmd = [str(bins.keygate), "--config", str(config), "owners", "create", owner, "--credits", str(credits), "--json"]
    for lim in limits:
        cmd += ["--limit", lim]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        die(f"owners create failed: {out.stderr}")


@dataclass
class Key:
    secret: str
    id: str
    owner: str
    scopes: list
    cidrs: list
    limits: list

    def header(self):
        return f"x-api-key: {self.secret}"


@dataclass
class KeyRing:
    """Keys a row's requests take in turn, one per request (wrk sets the header from a script)."""
    keys: list

    def lua(self):
        secrets = ", ".join(json.dumps(k.secret) for k in self.keys)
        return (f"local keys = {{{secrets}}}\nlocal turn = 0\n"
                "request = function()\n  turn = turn % #keys + 1\n"
                "  wrk.headers[\"x-api-key\"] = keys[turn]\n  return wrk.format()\nend\n")


def create_key(bins, config, env, limits, owner="bench", scopes=("orders:*",), cidrs=("127.0.0.0/8",)):
    cmd = [str(bins.keygate), "--config", str(config), "keys", "create", "--owner", owner, "--name", "bench", "--json"]
    for s in scopes:
        cmd += ["--scope", s]
    for c in cidrs:
        cmd += ["--cidr", c]
    for lim in limits:
        cmd += ["--limit", lim]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        die(f"keys create failed: {out.stderr}")
    created = json.loads(out.stdout)
    return Key(created["secret"], created["key"]["id"], owner, list(scopes), list(cidrs), list(limits))


def usage_counts(admin_port):
    """keygate's usage counters by result, from its /metrics."""
    counts = {}
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5).read().decode()
    except OSError:
        return counts
    for line in text.splitlines():
        if line.startswith('keygate_usage_events_total{result="'):
            result = line.split('"')[1]
            counts[result] = int(float(line.rsplit(" ", 1)[1]))
    return counts
