"""`--perf ROW`: the row once more at full load under `perf record`, folded
stacks, a flamegraph (inferno) and the top functions by inclusive and self time."""

import os
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

from .load import key_load, wrk
from .procs import die, pinned, proxy_pids, stop
from .scenarios import start

TOP = 25


def inferno(tool):
    found = shutil.which(tool) or str(Path.home() / ".cargo" / "bin" / tool)
    return found if os.access(found, os.X_OK) else None


def check_tools():
    """Before a long run: are perf and inferno there?"""
    if not shutil.which("perf"):
        die("`perf` is not installed (Debian: apt-get install linux-perf)")
    for tool in ("inferno-collapse-perf", "inferno-flamegraph"):
        if not inferno(tool):
            die(f"`{tool}` is not installed (cargo install inferno)")


def record(ctx, s, data):
    """perf record on the row's proxy while wrk keeps it at full load."""
    p = start(ctx, s)
    headers, script = key_load(s.key, ctx.work, s.name)
    url = f"http://127.0.0.1:{s.port}{s.path}"
    d = ctx.args.duration
    try:
        wrk(url, 2, ctx.args.connections, headers, ctx.load_cpu, script=script)  # warm-up
        pids = ",".join(str(x) for x in proxy_pids(p, s.target))
        perf = subprocess.Popen(pinned(["perf", "record", "-g", "--call-graph", "dwarf", "-F", "499", "-p", pids,
                                        "-o", str(data), "--", "sleep", str(d)], ctx.load_cpu),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.2)
        r = wrk(url, d + 1, ctx.args.connections, headers, ctx.load_cpu, script=script)
        _, err = perf.communicate(timeout=60)
    finally:
        stop(p)
    if perf.returncode != 0:
        die(f"perf record failed: {err.strip()}")
    return r


def fold(data, folded, svg):
    script = subprocess.Popen(["perf", "script", "-i", str(data)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    with open(folded, "w") as out:
        subprocess.run([inferno("inferno-collapse-perf")], stdin=script.stdout, stdout=out, check=True)
    script.wait()
    with open(folded) as src, open(svg, "w") as out:
        subprocess.run([inferno("inferno-flamegraph")], stdin=src, stdout=out, check=True)


def tops(folded):
    """(total weight, inclusive Counter, self Counter) by function, from folded stacks (weight:
    the sampled event's period, as inferno counts; the first frame, the thread's name, and
    frames perf could not name are left out of the inclusive table)."""
    incl, own, total = Counter(), Counter(), 0
    for line in Path(folded).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames, n = stack.split(";"), int(n)
        total += n
        own[frames[-1]] += n
        for f in set(frames[1:]) - {"[unknown]"}:
            incl[f] += n
    return total, incl, own


def top_table(title, counts, total):
    lines = [title, "", "| % | function |", "|---:|---|"]
    for f, n in counts.most_common(TOP):
        lines.append(f"| {100 * n / max(total, 1):.1f} | {f[:160]} |")
    return lines


def profile(ctx, s, stamp):
    """Profiles row s; writes perf-<stamp>-<row>.{folded,svg,txt} next to the results; returns report lines."""
    out = Path(ctx.args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"perf-{stamp}-{s.name}"
    data = ctx.work / f"{s.name}.perf.data"
    r = record(ctx, s, data)
    fold(data, base.with_suffix(".folded"), base.with_suffix(".svg"))
    total, incl, own = tops(base.with_suffix(".folded"))
    text = [f"perf: {s.name} at full load, {r['rps']:.0f} req/s "
            f"(perf record -g --call-graph dwarf -F 499 -p <proxy>, {ctx.args.duration} s); % of the proxy's cycles", ""]
    text += top_table(f"top {TOP} functions, inclusive", incl, total) + [""]
    text += top_table(f"top {TOP} functions, self", own, total)
    base.with_suffix(".txt").write_text("\n".join(text) + "\n")
    return ["", f"profile of {s.name} ({r['rps']:.0f} req/s under perf): {base}.svg, {base}.folded, {base}.txt"]
