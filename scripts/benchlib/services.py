"""The services around the proxy under test: the upstream, nginx, Redis (one
server or a cluster), Postgres and PgBouncer."""

import os
import subprocess
from pathlib import Path
import time
from urllib.parse import unquote, urlsplit

from .procs import cpu_seconds, die, free_cluster_port, free_port, spawn, wait_port, which


def nginx_conf(path, body, workers):
    path.write_text(
        f"""worker_processes {workers};
daemon off;
pid {path}.pid;
error_log {path}.error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  {body}
}}
"""
    )


# nginx as a reverse proxy with upstream keep-alive (`upstream api` in the same conf).
PROXY_LOCATION = 'location / { proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection ""; }'


def write_nginx_confs(work, up_port, ngx_port, threads):
    """upstream.conf (the fast upstream, answering 200 "ok") and proxy.conf (nginx, the peer)."""
    nginx_conf(work / "upstream.conf", f'server {{ listen 127.0.0.1:{up_port}; location / {{ return 200 "ok\\n"; }} }}', 1)
    nginx_conf(
        work / "proxy.conf",
        f"""upstream api {{ server 127.0.0.1:{up_port}; keepalive 256; }}
  server {{ listen 127.0.0.1:{ngx_port};
    {PROXY_LOCATION} }}""",
        threads,
    )


def start_nginx(work, conf, cpu):
    return spawn(["nginx", "-c", str(work / conf), "-p", str(work)], cpu=cpu)


def start_redis(port, cpu):
    return spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                 cpu=cpu)


def cluster_ports():
    ports = []
    while len(ports) < 3:
        p = free_cluster_port()
        if p not in ports and p + 10000 not in ports and p - 10000 not in ports:
            ports.append(p)
    return ports


def wait_cluster_ok(ports):
    deadline = time.time() + 30
    while time.time() < deadline:
        infos = [subprocess.run(["redis-cli", "-p", str(p), "CLUSTER", "INFO"], capture_output=True, text=True).stdout
                 for p in ports]
        if all("cluster_state:ok" in i and "cluster_known_nodes:3" in i for i in infos):
            return
        time.sleep(0.1)
    die("the redis cluster is not ok after 30 s")


def start_cluster(work, cpu):
    """A 3-master Redis Cluster (no replicas); returns its ports."""
    ports = cluster_ports()
    for p in ports:
        d = work / f"cluster-{p}"
        d.mkdir()
        spawn(["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000",
               "--dir", str(d)], cpu=cpu)
    for p in ports:
        wait_port(p)
    nodes = [f"127.0.0.1:{p}" for p in ports]
    out = subprocess.run(["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                         capture_output=True, text=True)
    if "All 16384 slots covered" not in out.stdout:
        die(f"redis-cli --cluster create failed:\n{out.stdout}{out.stderr}")
    wait_cluster_ok(ports)
    return ports


def pgbouncer_ini(d, u, port):
    return f"""[databases]
* = host={u.hostname or "127.0.0.1"} port={u.port or 5432}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {d}/userlist.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
logfile = {d}/pgbouncer.log
pidfile = {d}/pgbouncer.pid
"""


def as_postgres_user(work, d):
    """When we are root, hand pgbouncer's directory to `postgres`; the user to run it as."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        die("running as root: pgbouncer runs as the `postgres` user, which does not exist")
    os.chmod(work, 0o755)
    for f in [d, *d.iterdir()]:
        os.chown(f, pw.pw_uid, pw.pw_gid)
    return "postgres"


def start_pgbouncer(work, db_admin, cpu):
    """PgBouncer in transaction pooling in front of db_admin's server, run as
    the postgres user when we are root; returns (port, netloc userinfo)."""
    u = urlsplit(db_admin)
    user, password = unquote(u.username or "postgres"), unquote(u.password or "")
    d = work / "pgbouncer"
    d.mkdir()
    port = free_port()
    (d / "userlist.txt").write_text(f'"{user}" "{password}"\n')
    (d / "pgbouncer.ini").write_text(pgbouncer_ini(d, u, port))
    run_as = as_postgres_user(work, d)
    spawn([which("pgbouncer"), str(d / "pgbouncer.ini")], cpu=cpu, user=run_as)
    wait_port(port)
    userinfo = u.netloc.rsplit("@", 1)[0] + "@" if "@" in u.netloc else ""
    return port, userinfo


def db_admin_url():
    return os.environ.get("KEYGATE_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def create_database(db_admin, db_name):
    if subprocess.run(["psql", db_admin, "-qc", f"CREATE DATABASE {db_name}"], capture_output=True).returncode != 0:
        die(f"cannot create a database at {db_admin} (set KEYGATE_BENCH_DATABASE_URL to a Postgres admin URL)")
    return db_admin.rsplit("/", 1)[0] + "/" + db_name


def drop_database(db_admin, db_name):
    subprocess.run(["psql", db_admin, "-qc", f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"], capture_output=True)


def postmaster_pid(db_admin):
    """The local Postgres server's main process, or None (a remote one, or no /proc).
    Found as the checkpointer's parent: psql's own backend may have exited
    before its /proc entry is read."""
    sql = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"
    out = subprocess.run(["psql", db_admin, "-tAc", sql], capture_output=True, text=True)
    try:
        stat = Path(f"/proc/{int(out.stdout.strip())}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (ValueError, OSError, IndexError):
        return None


def postgres_cpu_seconds(postmaster):
    """CPU time so far of the server and its processes (backends, WAL writer,
    checkpointer, ...); those that exited since the last call are not counted."""
    if postmaster is None:
        return 0.0
    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = (d / "stat").read_text().rsplit(")", 1)[1].split()[1]
            if int(d.name) == postmaster or ppid == str(postmaster):
                total += cpu_seconds(int(d.name))
        except (OSError, IndexError):
            continue
    return total


def redis_cpu_seconds(port):
    """The Redis server's own CPU time so far (user + system, from INFO cpu)."""
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "cpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return float(fields.get("used_cpu_user", 0)) + float(fields.get("used_cpu_sys", 0))


def redis_top_level_calls(port):
    """Commands clients sent (EVALSHA counts once, not the commands its script runs)."""
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "commandstats"], capture_output=True, text=True).stdout
    inner = {"mget", "incr", "pexpire", "hmget", "hset", "hincrby"}
    total = 0
    for line in out.splitlines():
        if not line.startswith("cmdstat_"):
            continue
        name = line[len("cmdstat_"):].split(":")[0]
        if name in inner or name.startswith(("info", "config")):
            continue
        total += int(line.split("calls=")[1].split(",")[0])
    return total
