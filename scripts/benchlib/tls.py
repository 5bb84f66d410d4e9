"""TLS rows: keygate's TLS listener (the auth route) beside nginx terminating TLS
with the same certificate, HTTP/1.1 with wrk and HTTP/2 with h2load (-m1, so
both load generators keep the same number of requests in flight)."""

import shutil
import subprocess
import time

from .load import h2load, wrk
from .procs import die, free_port, proxy_pids, spawn, stop, total_cpu, wait_port
from .rows import TLS_ROWS
from .services import PROXY_LOCATION, nginx_conf


def tls_files(work):
    cert, key = work / "tls.crt", work / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-days", "2", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def write_configs(ctx, cert, key, ngx_port, kg_tls):
    nginx_conf(
        ctx.work / "tls.conf",
        f"""upstream api {{ server 127.0.0.1:{ctx.site.up_port}; keepalive 256; }}
  server {{ listen 127.0.0.1:{ngx_port} ssl http2;
    ssl_certificate {cert}; ssl_certificate_key {key}; ssl_protocols TLSv1.2 TLSv1.3;
    {PROXY_LOCATION} }}""",
        ctx.args.threads,
    )
    config = ctx.work / "tls.toml"
    config.write_text(ctx.configs["plain"].read_text() + f"""
[gateway.tls]
listen = "127.0.0.1:{kg_tls}"
certs = [{{ cert = "{cert}", key = "{key}" }}]
http2 = true
""")
    return config


def start_row(ctx, target, port, config):
    if target == "nginx":
        p = spawn(["nginx", "-c", str(ctx.work / "tls.conf"), "-p", str(ctx.work)], cpu=ctx.proxy_cpu)
    else:
        p = spawn([str(ctx.bins.keygate), "--config", str(config), "serve"], cpu=ctx.proxy_cpu, env=ctx.env,
                  log=ctx.work / "keygate-tls.log")
        wait_port(ctx.site.listen)
    wait_port(port)
    time.sleep(0.5)
    return p


def run_row(ctx, row, config):
    target, port, path, key, tool = row
    p = start_row(ctx, target, port, config)
    headers = [key.header()] if key else []
    url = f"https://127.0.0.1:{port}{path}"
    tool(url, 2, ctx.args.connections, headers, ctx.load_cpu)  # warm-up
    pids = proxy_pids(p, target)
    cpu0 = total_cpu(pids)
    r = tool(url, ctx.args.duration, ctx.args.connections, headers, ctx.load_cpu)
    r["cpu_us_per_req"] = (total_cpu(pids) - cpu0) * 1e6 / max(r["requests"], 1)
    stop(p)
    return r


def measure_tls(ctx):
    """The selected TLS rows, each {runs, rps, cpu_us_per_req, ...} like the others."""
    names = [n for n in TLS_ROWS if n in ctx.rows]
    if not names:
        return None
    if not shutil.which("h2load"):
        die("`h2load` is not installed (Debian: apt-get install nghttp2-client)")
    cert, key = tls_files(ctx.work)
    ngx_port, kg_tls = free_port(), free_port()
    config = write_configs(ctx, cert, key, ngx_port, kg_tls)
    auth_key = ctx.keys["auth"]
    rows = {
        "nginx-tls-h1": ("nginx", ngx_port, "/x", None, wrk),
        "tls-h1": ("keygate", kg_tls, "/api/x", auth_key, wrk),
        "nginx-tls-h2": ("nginx", ngx_port, "/x", None, h2load),
        "tls-h2": ("keygate", kg_tls, "/api/x", auth_key, h2load),
    }
    results = {name: {"runs": []} for name in names}
    for _ in range(ctx.args.rounds):
        for name in names:
            results[name]["runs"].append(run_row(ctx, rows[name], config))
    for name in names:
        results[name].update(max(results[name]["runs"], key=lambda r: r["rps"]))
    return results
