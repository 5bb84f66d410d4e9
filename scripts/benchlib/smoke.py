"""Before timing: does each auth row enforce the policy? A missing and an
unknown key (401), a key without the route's scope and one from outside its
CIDRs (403), the measured key (200), and a key limited to 3 per hour (3 × 200,
then 429)."""

import urllib.error
import urllib.request

from .procs import die, stop
from .scenarios import start

SMOKE_ROWS = ("auth-memory", "haproxy-auth")
UNKNOWN_KEY = "kg_" + "A" * 32 + "000000"
LIMIT_CALLS = 5
LIMIT_WANT = [200, 200, 200, 429, 429]


def status(url, key):
    headers = {"x-api-key": key} if key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def checks(keys):
    """(label, key secret or None, expected status)."""
    return [
        ("no key", None, 401),
        ("unknown key", UNKNOWN_KEY, 401),
        ("key without the scope", keys["scope"].secret, 403),
        ("key from outside its CIDRs", keys["cidr"].secret, 403),
        ("the measured key", keys["full"].secret, 200),
    ]


def smoke_row(ctx, s):
    """Runs the checks against one row; returns (report line, all passed)."""
    p = start(ctx, s)
    url = f"http://127.0.0.1:{s.port}{s.path}"
    try:
        got = [(label, want, status(url, key)) for label, key, want in checks(ctx.keys)]
        limit = [status(url, ctx.keys["tiny"].secret) for _ in range(LIMIT_CALLS)]
    finally:
        stop(p)
    ok = all(want == st for _, want, st in got) and limit == LIMIT_WANT
    parts = [f"{label} {st}" + ("" if st == want else f" (want {want})") for label, want, st in got]
    parts.append(f"hour=3 key x{LIMIT_CALLS}: {' '.join(map(str, limit))}")
    return f"smoke {s.name}: {'; '.join(parts)} -> {'ok' if ok else 'FAILED'}", ok


def smoke(ctx, scenarios):
    """The checks for the selected auth rows; stops the run if one does not enforce."""
    lines = []
    for s in (s for s in scenarios if s.name in SMOKE_ROWS):
        line, ok = smoke_row(ctx, s)
        print(line, flush=True)
        lines.append(line)
        if not ok:
            die(f"{s.name} does not enforce the policy; see {ctx.work} (kept only while running)")
    return lines
