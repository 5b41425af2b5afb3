#!/usr/bin/python3
"""Integration tests: HTTP/2 abuse (Rapid Reset, malformed floods, stream limits).

Run: /usr/bin/python3 tests/integration/test_abuse_h2.py [NAME-SUBSTRING...]
"""

import os
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (  # noqa: E402
    CANCEL, CONTINUATION, ENHANCE_YOUR_CALM, HEADERS, PING, PROTOCOL_ERROR,
    REFUSED_STREAM, frame,
    SETTINGS_MAX_CONCURRENT_STREAMS, Gateway, H2Client, RawH2, check, fail,
    note, request_headers, run,
)

ERR_NAMES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR",
             3: "FLOW_CONTROL_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL",
             9: "COMPRESSION_ERROR", 11: "ENHANCE_YOUR_CALM"}


def _err(code):
    return f"{ERR_NAMES.get(code, '?')}(0x{code:x})"


class Companion:
    """A well-behaved h2 connection asking whoami in a loop, in a thread."""

    def __init__(self, gw, org="provincie-fryslan"):
        self.client = H2Client(gw, org)
        self.results = []     # (monotonic time, status)
        self.error = None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            try:
                st, _, body = self.client.request("GET", "/v1/whoami")
                self.results.append((time.monotonic(), st))
            except BaseException as e:  # noqa: B902
                self.error = e
                return
            time.sleep(0.01)

    def start(self):
        st, _, body = self.client.request("GET", "/v1/whoami")
        check(st == 200, f"companion's first whoami: {st} {body[:200]!r}")
        self._t.start()
        return self

    def stop(self):
        # Let the companion finish at least one request after the attack
        # ended, so "served after" never depends on thread timing.
        t, deadline = time.monotonic(), time.monotonic() + 5
        while (self.error is None and self._t.is_alive() and
               not any(rt > t for rt, _ in self.results) and
               time.monotonic() < deadline):
            time.sleep(0.005)
        self._stop.set()
        self._t.join(15)
        check(not self._t.is_alive(), "companion thread did not stop")
        self.client.close()

    def check_healthy(self, t_from, t_to, what):
        if self.error is not None:
            fail(f"well-behaved connection failed during {what}: {self.error}")
        bad = [s for _, s in self.results if s != 200]
        check(not bad, f"well-behaved connection got non-200 during {what}: {bad[:5]}")
        during = [s for t, s in self.results if t_from <= t <= t_to]
        after = [s for t, s in self.results if t > t_to]
        note(f"companion: {len(during)} whoami 200s during {what} "
             f"({t_to - t_from:.2f}s), {len(after)} after")
        check(during or after, f"well-behaved connection completed no request "
              f"during or after {what}")


# --------------------------------------------------------------------------
# Rapid Reset (CVE-2023-44487)
# --------------------------------------------------------------------------

def _rapid_reset(gw, n=10000):
    c = RawH2(gw).handshake()
    hdrs = request_headers(gw, "GET", "/v1/whoami")
    for _ in range(n):
        sid = c.headers(hdrs)
        c.rst_stream(sid, CANCEL)
    c.pump(lambda c: c.eof, timeout=20)
    c.close()
    return c


def test_rapid_reset_goaway_enhance_your_calm():
    with Gateway() as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        g0 = gw.metric("noordpoort_goaway_sent_total", reason="enhance_your_calm")
        c = _rapid_reset(gw)
        note(f"rapid reset: 10000 HEADERS+RST_STREAM queued; GOAWAY {c.goaway}, "
             f"eof={c.eof}, send error={c.error!r}, unsent={len(c.out)} bytes")
        check(c.goaway is not None, f"no GOAWAY received (eof={c.eof}, "
              f"error={c.error!r}, frames seen={len(c.frames)})")
        check(c.goaway[1] == ENHANCE_YOUR_CALM,
              f"GOAWAY error {_err(c.goaway[1])}, expected ENHANCE_YOUR_CALM(0xb)")
        check(c.eof, "server did not close the connection after GOAWAY")
        # keep flooding from new connections for ~1.5 s while the companion runs
        t0 = time.monotonic()
        floods, codes = 1, [c.goaway[1]]
        while time.monotonic() - t0 < 1.5:
            cc = _rapid_reset(gw, 3000)
            floods += 1
            codes.append(cc.goaway[1] if cc.goaway else None)
        t1 = time.monotonic()
        rss1 = gw.rss_kb()
        note(f"{floods} rapid-reset connections; GOAWAY codes {sorted(set(map(str, codes)))}")
        note(f"rss before={rss0} kB after={rss1} kB (delta {rss1 - rss0:+d} kB)")
        time.sleep(0.2)
        comp.stop()
        comp.check_healthy(t0, t1, "the rapid-reset floods")
        during = [s for t, s in comp.results if t0 <= t <= t1]
        check(len(during) >= 5, f"only {len(during)} whoami answered on the "
              f"well-behaved connection during 1.5 s of floods")
        check(all(x == ENHANCE_YOUR_CALM for x in codes),
              f"GOAWAY codes {codes[:10]}..., expected ENHANCE_YOUR_CALM each time")
        gw.wait_metric("noordpoort_goaway_sent_total", g0 + floods,
                       reason="enhance_your_calm")
        r = gw.curl("/v1/whoami")
        check(r.status == 200, f"new connection after the floods: {r!r}")


def test_rapid_reset_many_connections_rss():
    """Several rapid-reset connections in a row; memory must not run away."""
    with Gateway() as gw:
        rss0 = gw.rss_kb()
        codes = []
        for _ in range(5):
            c = RawH2(gw).handshake()
            hdrs = request_headers(gw, "POST", "/v1/lookup",
                                   [("content-type", "application/json")])
            for _ in range(3000):
                sid = c.headers(hdrs, end_stream=False)
                c.data(sid, b'{"q":1}')
                c.rst_stream(sid, CANCEL)
            c.pump(lambda c: c.eof, timeout=10)
            codes.append(c.goaway[1] if c.goaway else None)
            c.close()
        time.sleep(0.5)
        rss1 = gw.rss_kb()
        note(f"rss before={rss0} kB after 5 floods={rss1} kB "
             f"(delta {rss1 - rss0:+d} kB); GOAWAY codes {codes}")
        check(all(x == ENHANCE_YOUR_CALM for x in codes),
              f"GOAWAY codes {codes}, expected ENHANCE_YOUR_CALM(11) each time")
        check(rss1 - rss0 < 200 * 1024, f"RSS grew by {rss1 - rss0} kB")
        r = gw.curl("/v1/whoami")
        check(r.status == 200, f"after floods: {r!r}")


# --------------------------------------------------------------------------
# Malformed requests / invalid frames past abuse_budget
# --------------------------------------------------------------------------

def _malformed(gw, i):
    base = request_headers(gw, "GET", "/v1/whoami")
    kind = i % 4
    if kind == 0:   # missing :path
        return [h for h in base if h[0] != ":path"]
    if kind == 1:   # unknown pseudo-header
        return base + [(":bogus", "1")]
    if kind == 2:   # upper-case field name
        return base + [("X-Upper", "1")]
    # connection-specific header field (RFC 9113 8.2.2)
    return base + [("connection", "keep-alive")]


def _check_rst_protocol_error(c, sids, what):
    missing = [s for s in sids if s not in c.rst]
    responded = [(s, c.status(s)) for s in missing if c.status(s) is not None]
    check(not missing, f"{what}: {len(missing)} malformed streams not reset "
          f"(e.g. {missing[:3]}; answered instead: {responded[:3]})")
    bad = {s: c.rst[s] for s in sids if c.rst[s] != PROTOCOL_ERROR}
    check(not bad, f"{what}: RST_STREAM codes other than PROTOCOL_ERROR: "
          f"{ {s: _err(v) for s, v in list(bad.items())[:4]} }")


def test_malformed_below_budget_then_past_budget():
    with Gateway(config={"limits": {"abuse_budget": 50}}) as gw:
        g0 = gw.metric("noordpoort_goaway_sent_total", reason="enhance_your_calm")
        c = RawH2(gw).handshake()
        # 20 malformed requests: at most 40 budget units even if both the
        # invalid frame and the server's RST_STREAM count -> no GOAWAY yet
        sids = [c.headers(_malformed(gw, i)) for i in range(20)]
        c.pump(lambda c: all(s in c.rst for s in sids), timeout=10)
        _check_rst_protocol_error(c, sids, "below budget")
        check(c.goaway is None, f"GOAWAY {c.goaway} below abuse_budget "
              f"(20 malformed requests, budget 50)")
        ok = c.request("GET", "/v1/whoami")
        c.pump(lambda c: c.responses.get(ok, {}).get("ended"), timeout=10)
        check(c.status(ok) == 200, f"valid request after 20 malformed: "
              f"{c.status(ok)} rst={c.rst.get(ok)}")
        # now go past the budget
        for i in range(500):
            c.headers(_malformed(gw, i))
        c.pump(lambda c: c.eof, timeout=15)
        check(c.goaway is not None, f"no GOAWAY past abuse_budget (eof={c.eof}, "
              f"resets={len(c.rst)})")
        check(c.goaway[1] == ENHANCE_YOUR_CALM,
              f"GOAWAY error {_err(c.goaway[1])}, expected ENHANCE_YOUR_CALM(0xb)")
        check(c.eof, "connection not closed after GOAWAY")
        note(f"server reset {len(c.rst)} streams before GOAWAY (budget 50)")
        check(len(c.rst) <= 60, f"server reset {len(c.rst)} streams, more than "
              f"abuse_budget 50 (+ slack) before GOAWAY")
        gw.wait_metric("noordpoort_goaway_sent_total", g0 + 1,
                       reason="enhance_your_calm")


def test_malformed_flood_default_budget():
    """Malformed requests in batches of 40 (each batch reset before the next,
    so the 100-stream limit never interferes) until the default budget of
    200 is spent."""
    with Gateway() as gw:
        comp = Companion(gw).start()
        g0 = gw.metric("noordpoort_goaway_sent_total", reason="enhance_your_calm")
        c = RawH2(gw).handshake()
        t0 = time.monotonic()
        i = 0
        while c.goaway is None and not c.eof and i < 2000:
            for _ in range(40):
                c.headers(_malformed(gw, i))
                i += 1
            c.sync(timeout=10)
        c.pump(lambda c: c.eof, timeout=10)
        t1 = time.monotonic()
        comp.stop()
        comp.check_healthy(t0, t1, "the malformed-request flood")
        note(f"{i} malformed requests sent; server reset {len(c.rst)} streams "
             f"before GOAWAY {c.goaway} (budget 200)")
        check(c.goaway is not None, f"no GOAWAY after {i} malformed requests")
        check(c.goaway[1] == ENHANCE_YOUR_CALM,
              f"GOAWAY {_err(c.goaway[1])} {c.goaway[2]!r}, expected "
              f"ENHANCE_YOUR_CALM(0xb)")
        check(len(c.rst) <= 220, f"{len(c.rst)} resets before GOAWAY, budget 200")
        check(c.eof, "connection not closed after GOAWAY")
        gw.wait_metric("noordpoort_goaway_sent_total", g0 + 1,
                       reason="enhance_your_calm")


def test_malformed_flood_pipelined():
    """2000 malformed requests in one go. libnghttp2 keeps a stream open until
    its RST_STREAM is written, so the 101st pipelined request may hit the
    concurrency limit (GOAWAY PROTOCOL_ERROR) before the budget
    (ENHANCE_YOUR_CALM); either ends the connection. A well-behaved
    connection is unaffected."""
    with Gateway() as gw:
        comp = Companion(gw).start()
        c = RawH2(gw).handshake()
        for i in range(2000):
            c.headers(_malformed(gw, i))
        t0 = time.monotonic()
        c.pump(lambda c: c.eof, timeout=15)
        t1 = time.monotonic()
        comp.stop()
        comp.check_healthy(t0, t1, "the pipelined malformed-request flood")
        note(f"pipelined flood: GOAWAY {c.goaway}, {len(c.rst)} resets")
        check(c.goaway is not None and c.goaway[1] in (ENHANCE_YOUR_CALM,
                                                       PROTOCOL_ERROR),
              f"GOAWAY {c.goaway}, expected ENHANCE_YOUR_CALM or PROTOCOL_ERROR")
        check(c.eof, "connection not closed after GOAWAY")


def test_invalid_data_flood():
    """DATA longer than the announced content-length is a malformed message
    (RFC 9113 8.1.1): a stream error each time, counted against the budget."""
    with Gateway(config={"limits": {"abuse_budget": 50}}) as gw:
        g0 = gw.metric("noordpoort_goaway_sent_total", reason="enhance_your_calm")
        c = RawH2(gw).handshake()
        hdrs = request_headers(gw, "POST", "/v1/lookup",
                               [("content-type", "application/json"),
                                ("content-length", "2")])
        n = 0
        while c.goaway is None and not c.eof and n < 400:
            for _ in range(20):
                sid = c.headers(hdrs, end_stream=False)
                c.data(sid, b'{"a": 1, "b": 2}', end_stream=True)
                n += 1
            c.sync(timeout=10)
        c.pump(lambda c: c.eof, timeout=10)
        note(f"{n} bad-length bodies sent; {len(c.rst)} resets "
             f"(codes {sorted(set(c.rst.values()))}); GOAWAY {c.goaway}")
        answered = [s for s in c.responses if c.status(s) is not None]
        check(not answered, f"{len(answered)} bad-length requests were answered "
              f"(e.g. status {c.status(answered[0]) if answered else None}) "
              f"instead of reset")
        check(c.goaway is not None and c.goaway[1] == ENHANCE_YOUR_CALM,
              f"GOAWAY {c.goaway}, expected ENHANCE_YOUR_CALM(0xb); "
              f"{len(c.rst)} streams reset, eof={c.eof}")
        check(c.eof, "connection not closed after GOAWAY")
        gw.wait_metric("noordpoort_goaway_sent_total", g0 + 1,
                       reason="enhance_your_calm")


# --------------------------------------------------------------------------
# CONTINUATION and PING floods (CVE-2024-27316 style, control-frame floods)
# --------------------------------------------------------------------------

def test_continuation_flood_closed():
    """A header block that never ends (HEADERS + endless CONTINUATION) must
    not be buffered without bound: the connection is closed quickly."""
    with Gateway() as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        c = RawH2(gw).handshake()
        block = c.encode(request_headers(gw, "GET", "/v1/whoami"))
        c.raw(frame(HEADERS, 0, 1, block))   # no END_HEADERS
        filler = c.encode([(f"x-fill-{i}", "y" * 100) for i in range(20)])
        for _ in range(20000):                 # ~50 MB if all were accepted
            c.raw(frame(CONTINUATION, 0, 1, filler))
        t0 = time.monotonic()
        c.pump(lambda c: c.eof, timeout=15)
        t1 = time.monotonic()
        rss1 = gw.rss_kb()
        comp.stop()
        note(f"CONTINUATION flood: closed={c.eof} after {t1 - t0:.2f}s, "
             f"GOAWAY {c.goaway}, unsent {len(c.out)} bytes; rss {rss0} -> "
             f"{rss1} kB")
        check(c.eof, f"connection still open {t1 - t0:.1f}s into a "
              f"CONTINUATION flood")
        check(c.status(1) is None, f"the endless header block was answered "
              f"({c.status(1)})")
        check(rss1 - rss0 < 64 * 1024, f"RSS grew by {rss1 - rss0} kB")
        comp.check_healthy(t0, t1, "the CONTINUATION flood")


def test_ping_flood_not_reading_closed():
    """PINGs sent by a client that never reads the ACKs: the server's
    outbound queue must stay bounded and the connection closed."""
    with Gateway() as gw:
        rss0 = gw.rss_kb()
        c = RawH2(gw).handshake()
        s = c.sock
        s.settimeout(5)
        ping = frame(PING, 0, 0, b"12345678")
        sent, t0 = 0, time.monotonic()
        try:
            for _ in range(100):
                s.sendall(ping * 2000)        # 34 KB a go, 3.4 MB in all
                sent += 2000
        except (OSError, ssl.SSLError) as e:
            note(f"PING flood: send stopped after {sent} PINGs: {e!r}")
        closed = False
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                if not s.recv(65536):
                    closed = True
                    break
        except (OSError, ssl.SSLError):
            closed = True
        rss1 = gw.rss_kb()
        note(f"PING flood: {sent} PINGs written; closed={closed} after "
             f"{time.monotonic() - t0:.2f}s; rss {rss0} -> {rss1} kB")
        check(closed, "connection still open after a PING flood without reads")
        check(rss1 - rss0 < 64 * 1024, f"RSS grew by {rss1 - rss0} kB")
        r = gw.curl("/v1/whoami")
        check(r.status == 200, f"new connection after the PING flood: {r!r}")


# --------------------------------------------------------------------------
# Concurrent streams
# --------------------------------------------------------------------------

def _concurrency(gw, limit):
    c = RawH2(gw).handshake()
    got = c.server_settings.get(SETTINGS_MAX_CONCURRENT_STREAMS)
    check(got == limit, f"server SETTINGS_MAX_CONCURRENT_STREAMS = {got}, "
          f"expected {limit}")
    hdrs = request_headers(gw, "POST", "/v1/lookup",
                           [("content-type", "application/json")])
    sids = [c.headers(hdrs, end_stream=False) for _ in range(limit)]
    check(c.sync(), f"no PING ACK after opening {limit} streams "
          f"(goaway {c.goaway}, eof {c.eof})")
    early = [s for s in sids if s in c.rst or c.status(s) is not None]
    check(not early and c.goaway is None,
          f"{len(early)} of the first {limit} streams were answered or reset "
          f"before their body was sent: "
          f"{[(s, c.rst.get(s), c.status(s)) for s in early[:3]]}; goaway {c.goaway}")
    active = gw.metric("noordpoort_streams_active")
    check(active >= limit, f"noordpoort_streams_active = {active} with {limit} "
          f"open streams")
    extra = c.headers(hdrs, end_stream=False)
    c.pump(lambda c: extra in c.rst or c.goaway is not None or
           c.status(extra) is not None, timeout=10)
    check(c.status(extra) is None, f"stream #{limit + 1} was answered with "
          f"{c.status(extra)}")
    if c.goaway is not None:
        # libnghttp2 treats this as a connection error (RFC 9113 5.1.2 asks
        # for a stream error); accepted, but reported.
        note(f"stream #{limit + 1}: connection error GOAWAY {_err(c.goaway[1])} "
             f"{c.goaway[2]!r} instead of a stream error; the {limit} admitted "
             f"streams die with the connection")
        check(c.goaway[1] == PROTOCOL_ERROR,
              f"GOAWAY {_err(c.goaway[1])}, expected PROTOCOL_ERROR")
        check(c.goaway[0] < extra, f"GOAWAY last_stream_id {c.goaway[0]} "
              f"includes the refused stream {extra}")
        c.close()
        gw.wait_metric("noordpoort_goaway_sent_total", 1, reason="protocol_error")
        r = gw.curl("/v1/whoami")
        check(r.status == 200, f"new connection afterwards: {r!r}")
        return
    check(extra in c.rst, f"stream #{limit + 1} (id {extra}) was not refused")
    check(c.rst[extra] in (REFUSED_STREAM, PROTOCOL_ERROR),
          f"stream #{limit + 1} reset with {_err(c.rst[extra])}, expected "
          f"REFUSED_STREAM or PROTOCOL_ERROR")
    for s in sids:
        c.data(s, b"{}", end_stream=True)
    c.pump(lambda c: all(c.responses.get(s, {}).get("ended") for s in sids),
           timeout=15)
    statuses = [c.status(s) for s in sids]
    check(all(s == 501 for s in statuses),
          f"the {limit} admitted streams: statuses {sorted(set(map(str, statuses)))}"
          f", expected 501 each; resets {dict(list(c.rst.items())[:3])}")
    check(c.goaway is None, f"GOAWAY {c.goaway} after a single refused stream")
    ok = c.request("GET", "/v1/whoami")
    c.pump(lambda c: c.responses.get(ok, {}).get("ended"), timeout=10)
    check(c.status(ok) == 200, f"whoami after the streams closed: {c.status(ok)}")
    c.close()


def test_concurrent_streams_above_100_refused():
    with Gateway() as gw:
        _concurrency(gw, 100)


def test_concurrent_streams_configured_limit():
    with Gateway(config={"limits": {"max_concurrent_streams": 10}}) as gw:
        _concurrency(gw, 10)


if __name__ == "__main__":
    run(globals())
