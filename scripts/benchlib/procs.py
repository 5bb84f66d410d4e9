"""Processes: ports, CPU pinning, starting and stopping, CPU accounting."""

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PROCS = []


def die(msg):
    print(f"scripts/bench: {msg}", file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(p):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p))
            return True
        except OSError:
            return False


def free_cluster_port():
    """A port below 30000 whose cluster bus port (+10000) is free too."""
    while True:
        p = random.randint(20000, 29999)
        if port_is_free(p) and port_is_free(p + 10000):
            return p


def which(tool):
    """A program in PATH or in the sbin directories (Debian's daemons)."""
    found = shutil.which(tool)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        if os.access(f"{d}/{tool}", os.X_OK):
            return f"{d}/{tool}"
    return None


def wait_port(port, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    die(f"nothing listens on port {port}")


def cpus():
    """(load CPUs, proxy CPU): the proxy alone on the last CPU, the rest for the others."""
    n = os.cpu_count() or 1
    if n == 1:
        return None, None
    return f"0-{n - 2}", str(n - 1)


def pinned(cmd, cpu):
    if cpu is not None and shutil.which("taskset"):
        return ["taskset", "-c", cpu] + cmd
    return cmd


def spawn(cmd, cpu=None, env=None, log=None, cwd=None, user=None):
    out = open(log, "w") if log else subprocess.DEVNULL
    p = subprocess.Popen(pinned(cmd, cpu), env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                         start_new_session=True, user=user)
    PROCS.append(p)
    return p


def stop(p):
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    if p in PROCS:
        PROCS.remove(p)


def cleanup(*_):
    for p in list(PROCS):
        try:
            stop(p)
        except Exception:
            pass


def cpu_seconds(pid):
    """utime + stime of a process and its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proxy_pids(p, target):
    """The processes doing the work: nginx's workers, or the proxy itself."""
    if target == "nginx":
        out = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
        kids = [int(x) for x in out]
        # taskset execs nginx in place; its workers are the master's children.
        return kids or [p.pid]
    return [p.pid]


def total_cpu(pids):
    return sum(cpu_seconds(x) for x in pids)
