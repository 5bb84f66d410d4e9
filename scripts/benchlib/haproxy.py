"""HAProxy 2.6 (Debian `haproxy`, one thread) enforcing keygate's auth policy
for one route with maps, ACL files and stick tables: the `haproxy-auth` row.

What keygate does for an authenticated request, and the HAProxy equivalent:
  key -> HMAC-SHA256(hash secret) -> key id    hmac(sha256,<secret b64>),hex,map(keys.map)
  unknown or missing key: 401                  deny 401 unless the map found an id
  CIDR allowlist: 403                          "<id>/<src masked to /L>" in cidrs.lst, one ACL per
                                               prefix length in use; ids without CIDRs in cidr_any.lst
  route scopes: 403                            "<id>:<scope>" exact (scopes.lst) or by prefix for
                                               wildcards (scopes_wild.lst: "<id>:orders:")
  windows second/minute/hour/day: 429          stick tables keyed by id: http_req_rate(1s), (1m),
                                               and one table with http_req_rate(1h) + gpc0_rate(1d)
                                               (Debian's build has 3 stick counters, sc0-sc2); the
                                               key's limits from maps (map_str_int)
  x-keygate-* in, x-api-key out, key/owner/scopes/request id/forwarded headers to the upstream,
  X-RateLimit-* / RateLimit-Policy / RateLimit / x-request-id back (for the second window)
"""

import base64
import hashlib
import hmac
import ipaddress

from .keygate import HASH_SECRET

WINDOWS = {"second": "1s", "minute": "1m", "hour": "1h", "day": "1d"}
UNLIMITED = 10**15


def key_hash_hex(secret):
    """keygate's lookup hash of a key (src/auth/hash.rs), as HAProxy's `hex` prints it."""
    return hmac.new(HASH_SECRET.encode(), secret.encode(), hashlib.sha256).hexdigest().upper()


def limit_of(key, window):
    for lim in key.limits:
        name, _, n = lim.partition("=")
        if name == window:
            return int(n)
    return None


def policy_header(key):
    parts = [f'"{w}";q={limit_of(key, w)};w={secs}' for w, secs in
             (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400)) if limit_of(key, w)]
    return ", ".join(parts) or "-"


def cidr_entries(key):
    """(prefix family and length, "<id>/<network>") for each of the key's CIDRs."""
    for c in key.cidrs:
        net = ipaddress.ip_network(c, strict=False)
        yield (net.version, net.prefixlen), f"{key.id}/{net.network_address}"


def scope_entries(key):
    """(exact, wildcard-prefix) entries of the key's scopes."""
    exact, wild = [], []
    for s in key.scopes:
        if s == "*":
            wild.append(f"{key.id}:")
        elif s.endswith(":*"):
            wild.append(f"{key.id}:{s[:-1]}")
        else:
            exact.append(f"{key.id}:{s}")
    return exact, wild


def write_lines(path, lines):
    # An ACL/map file may be empty, but HAProxy wants it to exist.
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def write_maps(d, keys):
    """The map and ACL files for the keys; returns the CIDR prefix lengths in use."""
    d.mkdir(exist_ok=True)
    write_lines(d / "keys.map", [f"{key_hash_hex(k.secret)} {k.id}" for k in keys])
    write_lines(d / "owners.map", [f"{k.id} {k.owner}" for k in keys])
    write_lines(d / "scopes_hdr.map", [f"{k.id} {' '.join(k.scopes)}" for k in keys])
    write_lines(d / "policy.map", [f"{k.id} {policy_header(k)}" for k in keys])
    for w in WINDOWS:
        write_lines(d / f"lim_{w}.map", [f"{k.id} {limit_of(k, w)}" for k in keys if limit_of(k, w)])
    cidrs = [e for k in keys for e in cidr_entries(k)]
    write_lines(d / "cidrs.lst", sorted({e for _, e in cidrs}))
    write_lines(d / "cidr_any.lst", [k.id for k in keys if not k.cidrs])
    exact = [e for k in keys for e in scope_entries(k)[0]]
    wild = [e for k in keys for e in scope_entries(k)[1]]
    write_lines(d / "scopes.lst", exact)
    write_lines(d / "scopes_wild.lst", wild)
    return sorted({fam_len for fam_len, _ in cidrs})


def cidr_rules(d, lengths):
    """One masked-source variable and ACL per prefix length in use."""
    rules, names = [], ["cidr_any"]
    for version, n in lengths:
        mask = f"{n}" if version == 4 else f"32,{n}"
        name = f"cidr_v{version}_{n}"
        rules.append(f"  http-request set-var(txn.{name}) src,ipmask({mask})")
        rules.append(f"  acl {name} var(txn.kid),concat(/,txn.{name}) -m str -f {d}/cidrs.lst")
        names.append(name)
    rules.insert(0, f"  acl cidr_any var(txn.kid) -m str -f {d}/cidr_any.lst")
    rules.append(f"  http-request deny deny_status 403 unless {' or '.join(names)}")
    return rules


def scope_rules(d, route_scopes):
    rules = []
    for i, s in enumerate(route_scopes):
        rules += [
            f"  http-request set-var(txn.scope{i}) var(txn.kid),concat(:{s})",
            f"  acl scope{i}_exact var(txn.scope{i}) -m str -f {d}/scopes.lst",
            f"  acl scope{i}_wild var(txn.scope{i}) -m beg -f {d}/scopes_wild.lst",
            f"  http-request deny deny_status 403 unless scope{i}_exact or scope{i}_wild",
        ]
    return rules


def limit_rules(d):
    rules = [
        "  http-request track-sc0 var(txn.kid) table st_second",
        "  http-request track-sc1 var(txn.kid) table st_minute",
        "  http-request track-sc2 var(txn.kid) table st_hourday",
        "  http-request sc-inc-gpc0(2)",
    ]
    rules += [f"  http-request set-var(txn.lim_{w}) var(txn.kid),map_str_int({d}/lim_{w}.map,{UNLIMITED})"
              for w in WINDOWS]
    rules += [
        "  http-request set-var(txn.rate_second) sc_http_req_rate(0)",
        "  http-request deny deny_status 429 if { var(txn.rate_second),sub(txn.lim_second) gt 0 }",
        "  http-request deny deny_status 429 if { sc_http_req_rate(1),sub(txn.lim_minute) gt 0 }",
        "  http-request deny deny_status 429 if { sc_http_req_rate(2),sub(txn.lim_hour) gt 0 }",
        "  http-request deny deny_status 429 if { sc_gpc0_rate(2),sub(txn.lim_day) gt 0 }",
    ]
    return rules


def header_rules(d):
    return [
        "  http-request del-header x-api-key",
        "  http-request set-var(txn.rid) uuid",
        "  http-request set-header x-request-id %[var(txn.rid)]",
        "  http-request set-header x-keygate-key-id %[var(txn.kid)]",
        f"  http-request set-header x-keygate-owner-id %[var(txn.kid),map({d}/owners.map)]",
        f"  http-request set-header x-keygate-scopes %[var(txn.kid),map({d}/scopes_hdr.map)]",
        "  http-request set-header x-forwarded-proto http",
        "  http-response set-header x-request-id %[var(txn.rid)]",
        "  http-response set-header x-ratelimit-limit %[var(txn.lim_second)]",
        "  http-response set-header x-ratelimit-remaining %[var(txn.lim_second),sub(txn.rate_second)]",
        "  http-response set-header x-ratelimit-reset 1",
        f"  http-response set-header ratelimit-policy %[var(txn.kid),map({d}/policy.map)]",
        '  http-response set-header ratelimit "\\"second\\";r=%[var(txn.lim_second),sub(txn.rate_second)];t=1"',
    ]


TABLES = """backend st_second
  stick-table type string len 36 size 100k expire 2s store http_req_rate(1s)
backend st_minute
  stick-table type string len 36 size 100k expire 2m store http_req_rate(1m)
backend st_hourday
  stick-table type string len 36 size 100k expire 2d store http_req_rate(1h),gpc0_rate(1d)
"""


def config(d, port, up_port, threads, route_prefix, route_scopes, lengths):
    secret_b64 = base64.b64encode(HASH_SECRET.encode()).decode()
    front = [
        f"  bind 127.0.0.1:{port}",
        "  option forwardfor",
        f"  http-request deny deny_status 404 unless {{ path_beg {route_prefix} }}",
        "  http-request del-header ^x-keygate- -m reg",
        f"  http-request set-var(txn.kid) req.fhdr(x-api-key),hmac(sha256,{secret_b64}),hex,map({d}/keys.map)",
        "  http-request deny deny_status 401 unless { var(txn.kid) -m found }",
    ]
    front += cidr_rules(d, lengths) + scope_rules(d, route_scopes) + limit_rules(d) + header_rules(d)
    return f"""global
  nbthread {threads}
  maxconn 4096
defaults
  mode http
  option http-keep-alive
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 30s
frontend api
{chr(10).join(front)}
  default_backend upstream
backend upstream
  http-reuse always
  server up 127.0.0.1:{up_port}
{TABLES}"""


def write_config(work, port, up_port, keys, threads=1, route_prefix="/api", route_scopes=("orders:read",)):
    d = work / "haproxy"
    lengths = write_maps(d, keys)
    path = d / "haproxy.cfg"
    path.write_text(config(d, port, up_port, threads, route_prefix, route_scopes, lengths))
    return path

