#!/usr/bin/python3
"""Abuse battery, parse stalls (issue 10, section 2): one request body must
not hold a worker's event loop. Eight worst-case bodies (120 000 distinct
keys, the same one level down, a duplicate after 100 000 keys, a thousand
long keys sharing their first 990 bytes, nine objects of a thousand long
keys, half a million small values, chains nested 1000 deep, a 1 MiB string
of escapes) are in flight at once while another connection's
GET /v1/whoami must be answered in under 100 ms, every time. On the hub,
eight 120 000-key bodies from a member without the coordinator role are
refused before they are parsed, while the coordinator's whoami is answered
in under 100 ms. Expected behaviour: docs/abuse.md.

Before the fix the duplicate-key check compared every pair of keys: one
120 000-key body took 33 s (release build), and every other connection on
that worker waited as long.

Run: /usr/bin/python3 tests/abuse/test_parse_stall.py [NAME-SUBSTRING...]
"""

import json
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from abuselib import ASAN, gateway, server_env  # noqa: E402
from harness import (  # noqa: E402
    CERTS, Gateway, H2Client, NodeFiles, REPO, check, fail, note, run, run_cli,
)

# The bound on the probe's answers (issue 10): 100 ms. Under ASan every
# malloc is several times dearer and cJSON allocates per value, so the worst
# accepted body costs ~45 ms instead of ~8 (bench/parse): the bound is 500 ms
# there, still two orders of magnitude below the stall this test guards
# against. On a loaded machine one round can be slow for reasons that are
# not ours: up to ATTEMPTS rounds, one must keep every answer under the bound.
LIMIT_MS = 500 if ASAN else 100
ATTEMPTS = 3
STALL_S = 3             # a probe answer this late is a stall: stop there
SENDER_TIMEOUT = 60
MAX_BODY = 1048576      # harness default limits.max_body_bytes

ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def short_keys(n):
    """n distinct keys of 1 to 3 characters."""
    out = []
    for k in range(n):
        s = ""
        while True:
            s = ALPHABET[k % 62] + s
            k //= 62
            if k == 0:
                break
            k -= 1
        out.append(s)
    return out


def obj(keys, value="0"):
    return "{" + ",".join(f'"{k}":{value}' for k in keys) + "}"


def worst_bodies():
    """(name, body bytes, acceptable (status, code) pairs)."""
    limit = ("json_limit",)
    keys = short_keys(120000)
    prefix = "p" * 990
    long_keys = [f"{prefix}{i:04d}" for i in range(1000)]
    mid = "q" * 100
    nine = ",".join(obj([f"{mid}{i:04d}" for i in range(1000)]) for _ in range(9))
    chain = "[" * 998 + "]" * 998
    bodies = [
        ("120 000 distinct keys", obj(keys), limit),
        ("120 000 keys one level down", '{"a":[' + obj(keys[:119000]) + "]}", limit),
        ("a duplicate after 100 000 keys", obj(keys[:100000] + keys[:1]), limit),
        ("1000 keys sharing 990 bytes", obj(long_keys), ("not_implemented",)),
        ("nine objects of 1000 long keys", '{"a":[' + nine + "]}", ("not_implemented",)),
        ("half a million small values", '{"a":[' + ",".join(["0"] * 500000) + "]}", limit),
        ("chains nested 1000 deep", '{"a":[' + ",".join([chain] * 500) + "]}", limit),
        ("a 1 MiB string of escapes",
         '{"a":"' + "\\u00e9" * ((MAX_BODY - 16) // 6) + '"}', ("not_implemented",)),
    ]
    out = []
    for name, text, codes in bodies:
        b = text.encode()
        check(len(b) <= MAX_BODY, f"{name}: {len(b)} bytes, over the body limit")
        out.append((name, b, codes))
    return out


def _send(gw, org, path, name, body, q, ready, go):
    """Sends all of |body| but its last byte, says |ready|, waits for |go|,
    sends the last byte with END_STREAM and reports the answer. So the
    eight bodies are complete at the server at once, and what the probe
    measures is their parsing, not this machine sending 8 MiB of TLS."""
    import h2.events  # noqa: F401
    from harness import request_headers
    try:
        c = H2Client(gw, org, timeout=SENDER_TIMEOUT)
        sid = c.conn.get_next_available_stream_id()
        hdrs = request_headers(gw, "POST", path, [("content-type", "application/json")])
        hdrs.append(("content-length", str(len(body))))
        st = {"headers": None, "body": b"", "done": False, "reset": None}
        c._streams[sid] = st
        c.conn.send_headers(sid, hdrs, end_stream=False)
        off, head = 0, len(body) - 1
        deadline = time.monotonic() + SENDER_TIMEOUT
        while off < head:
            room = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size,
                       head - off)
            if room > 0:
                c.conn.send_data(sid, body[off:off + room])
                off += room
                continue
            c._flush()
            check(time.monotonic() < deadline and not st["done"],
                  f"{off} of {len(body)} bytes sent; answered early: {st['done']}")
            for ev in c.conn.receive_data(c.sock.recv(65536)):
                c._handle(ev)
        c._flush()
        ready.release()
        go.wait(SENDER_TIMEOUT)
        t = time.monotonic()
        c.conn.send_data(sid, body[head:], end_stream=True)
        c._flush()
        while not st["done"]:
            check(time.monotonic() < deadline, "no answer in time")
            data = c.sock.recv(65536)
            check(data, "connection closed")
            for ev in c.conn.receive_data(data):
                c._handle(ev)
            c._flush()
        dt = time.monotonic() - t
        status = int(st["headers"].get(":status", "0")) if st["headers"] else 0
        try:
            code = json.loads(st["body"].decode())["error"]["code"]
        except Exception:  # noqa: BLE001
            code = None
        q.put((name, status, code, dt, None))
        c.close()
    except BaseException as e:  # noqa: B902
        ready.release()
        q.put((name, None, None, None, str(e)[:200]))


def stall_check(gw, sends, probe_org, what):
    """stall_check_once() up to ATTEMPTS times; a stall (the old bug) fails
    at once."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return stall_check_once(gw, sends, probe_org, f"{what} (round {attempt})")
        except AssertionError as e:
            if attempt == ATTEMPTS or "slowest whoami" not in str(e) or \
                    gw.proc.poll() is not None:
                raise
            note(f"round {attempt}: {e}; again")


def stall_check_once(gw, sends, probe_org, what):
    """Starts |sends| [(org, path, name, body, codes)] at once, each in its
    own process and connection, and asks GET /v1/whoami as |probe_org| on
    another connection until all are answered. Fails when a probe answer
    takes LIMIT_MS or longer, or a body's answer is not one of its codes."""
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    probe = H2Client(gw, probe_org, timeout=STALL_S)
    st, _, _ = probe.request("GET", "/v1/whoami")
    check(st == 200, f"probe's first whoami: {st}")
    ready, go = ctx.Semaphore(0), ctx.Event()
    procs = [ctx.Process(target=_send, args=(gw, org, path, name, body, q, ready, go),
                         daemon=True)
             for org, path, name, body, _ in sends]
    results, lat, stalled = {}, [], None
    for p in procs:
        p.start()
    for _ in procs:
        check(ready.acquire(timeout=SENDER_TIMEOUT), "a sender never got its body out")
    time.sleep(0.2)   # the server has read what was sent
    st, _, _ = probe.request("GET", "/v1/whoami")
    t0 = time.monotonic()
    go.set()
    while len(results) < len(sends):
        while not q.empty():
            r = q.get()
            results[r[0]] = r
        if len(results) == len(sends):
            break
        if time.monotonic() - t0 > SENDER_TIMEOUT:
            stalled = f"bodies still unanswered after {SENDER_TIMEOUT}s"
            break
        t = time.monotonic()
        try:
            st, _, _ = probe.request("GET", "/v1/whoami")
        except (AssertionError, OSError) as e:  # OSError: the socket's timeout
            stalled = f"a whoami took over {STALL_S}s ({e})"
            break
        lat.append((time.monotonic() - t) * 1000)
        check(st == 200, f"probe whoami: {st}")
        time.sleep(0.002)
    t1 = time.monotonic()
    if stalled:
        gw.proc.kill()  # a stuck worker would hold up SIGTERM's drain
    for p in procs:
        p.join(5 if not stalled else 1)
        if p.is_alive():
            p.terminate()
            p.join(2)
    while not q.empty():
        r = q.get()
        results[r[0]] = r
    probe.close()
    lat.sort()
    med = lat[len(lat) // 2] if lat else float("nan")
    note(f"{what}: {len(lat)} whoami answers in {t1 - t0:.2f}s while the bodies were "
         f"in flight: median {med:.1f} ms, max {lat[-1] if lat else float('nan'):.1f} ms")
    problems = []
    if stalled:
        problems.append(stalled)
    for org, path, name, body, codes in sends:
        r = results.get(name)
        if not r:
            problems.append(f"{name}: no answer")
            continue
        if r[4]:
            problems.append(f"{name}: {r[4]}")
            continue
        note(f"  {name} ({len(body)} bytes): {r[1]} {r[2]} in {r[3] * 1000:.0f} ms")
        if r[2] not in codes:
            problems.append(f"{name}: {r[1]} {r[2]}, expected one of {codes}")
    if lat and lat[-1] >= LIMIT_MS:
        problems.append(f"slowest whoami {lat[-1]:.0f} ms (>= {LIMIT_MS} ms); "
                        f"slowest five {[round(x) for x in lat[-5:]]}")
    # Fewer than three probes is no measurement, unless every body was
    # answered within the limit itself: then no whoami can have waited
    # longer (a fast, quiet machine gets through all eight in ~80 ms).
    if not stalled and len(lat) < 3 and (t1 - t0) * 1000 >= LIMIT_MS:
        problems.append(f"only {len(lat)} whoami answers while the bodies were in flight "
                        f"({(t1 - t0) * 1000:.0f} ms)")
    if problems:
        fail("; ".join(problems))


def test_parse_stall_worst_case_bodies():
    """Eight worst-case bodies to POST /v1/lookup (parsed, then 501 on a
    gateway without the node role) while provincie-fryslan's whoami is
    answered in under 100 ms."""
    bodies = worst_bodies()
    with gateway() as gw:
        stall_check(gw, [("provincie-groningen", "/v1/lookup", n, b, c) for n, b, c in bodies],
                    "provincie-fryslan", "eight worst-case bodies")


def _hub_config(nf):
    r = run_cli("keygen", "--box", "--out", nf.dir / "hubbox")
    check(r.returncode == 0, f"keygen --box: {r.stderr}")
    return {"roles": ["hub"], "catalog": str(nf.catalog),
            "policies": [str(REPO / "tests" / "integration" / "data" / "node" / "lookup.yaml")],
            "hub": {"box_key": str(nf.dir / "hubbox.sec"),
                    "client_certificate": str(CERTS / "hub.crt"),
                    "client_key": str(CERTS / "hub.key"),
                    "ledger": str(nf.dir / "ledger.sqlite")},
            "audit": {"path": str(nf.dir / "hub-audit.log")},
            "require_signed_policies": False}


def test_parse_stall_non_coordinator_on_hub():
    """Eight 120 000-key bodies to the hub's POST /v1/aggregate from members
    without the coordinator role: each refused 403 not_a_coordinator before
    its body is parsed; the coordinator's whoami answered in under 100 ms."""
    body = obj(short_keys(120000)).encode()
    orgs = ["provincie-groningen", "provincie-fryslan", "gemeente-groningen", "uwv"] * 2
    with NodeFiles() as nf:
        with Gateway(config=_hub_config(nf), env=server_env()) as gw:
            stall_check(gw, [(o, "/v1/aggregate", f"{o} #{i}", body, ("not_a_coordinator",))
                             for i, o in enumerate(orgs)],
                        "arbeidsmarkttafel", "eight non-coordinator bodies on the hub")


if __name__ == "__main__":
    run(globals(), label="abuse")
