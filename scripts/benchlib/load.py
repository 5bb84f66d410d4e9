"""Load generators: wrk (HTTP/1.1, closed loop or paced) and h2load (HTTP/2), and their output."""

import re
import subprocess
from pathlib import Path

from .procs import pinned

# Each connection waits a random 1..2*mean-1 ms between requests (mean: the
# target rate), so that connections do not fire in lockstep bursts.
PACE = """
local mean_ms = tonumber(os.getenv("BENCH_DELAY_MS"))
function init(args)
  math.randomseed(os.time() + os.clock() * 1000000)
end
function delay()
  return math.random(1, 2 * mean_ms - 1)
end
"""


def key_load(key, work, name, pace=None):
    """wrk's -H headers and -s script for a row's key: its header, or for a key ring a script
    taking its keys in turn (with the pacing script `pace`, when paced)."""
    if key is None or not hasattr(key, "lua"):
        return ([key.header()] if key else []), pace
    path = Path(work) / f"wrk-{name}{'-paced' if pace else ''}.lua"
    path.write_text(key.lua() + (Path(pace).read_text() if pace else ""))
    return [], str(path)


def empty_result():
    return {"p50": None, "p99": None, "rps": 0.0, "requests": 0, "errors": 0}


def wrk_duration(s):
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
    for u in ("us", "ms", "s", "m"):
        if s.endswith(u):
            return float(s[: -len(u)]) * units[u]
    return float(s)


def parse_wrk_line(res, line):
    parts = line.split()
    if not parts:
        return
    if parts[0] == "50%":
        res["p50"] = wrk_duration(parts[1])
    elif parts[0] == "99%":
        res["p99"] = wrk_duration(parts[1])
    elif parts[0] == "Requests/sec:":
        res["rps"] = float(parts[1])
    elif len(parts) > 3 and parts[1] == "requests" and parts[2] == "in":
        res["requests"] = int(parts[0])
    elif parts[0] == "Non-2xx":
        res["errors"] += int(parts[-1])
    elif parts[0] == "Socket" and "errors:" in line:
        res["errors"] += sum(int(x.rstrip(",")) for x in parts[3::2] if x.rstrip(",").isdigit())


def parse_wrk(text):
    res = empty_result()
    for line in text.splitlines():
        parse_wrk_line(res, line)
    return res


def wrk(url, seconds, connections, headers, cpu, script=None, env=None):
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", script]
    cmd.append(url)
    out = subprocess.run(pinned(cmd, cpu), capture_output=True, text=True, env=env).stdout
    return parse_wrk(out)


def count(pat, line):
    m = re.search(pat, line)
    return int(m.group(1)) if m else 0


def parse_h2load(text):
    res = empty_result()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("finished in"):
            res["rps"] = float(line.split(",")[1].split()[0])
        elif line.startswith("requests:"):
            res["requests"] = count(r"(\d+) succeeded", line)
            res["errors"] += sum(count(rf"(\d+) {w}", line) for w in ("failed", "errored", "timeout"))
        elif line.startswith("status codes:"):
            res["errors"] += sum(count(rf"(\d+) {c}", line) for c in ("3xx", "4xx", "5xx"))
    return res


def h2load(url, seconds, connections, headers, cpu):
    cmd = ["h2load", "-t1", f"-c{connections}", "-m1", "-D", str(seconds)]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    return parse_h2load(subprocess.run(pinned(cmd, cpu), capture_output=True, text=True).stdout)
