#!/usr/bin/python3
"""Integration tests: HTTP/2 abuse (Rapid Reset, malformed floods, stream limits).

Run: /usr/bin/python3 tests/integration/test_abuse_h2.py [NAME-SUBSTRING...]
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (  # noqa: E402
    CANCEL, ENHANCE_YOUR_CALM, PROTOCOL_ERROR, REFUSED_STREAM,
    SETTINGS_MAX_CONCURRENT_STREAMS, Gateway, H2Client, RawH2, check, fail,
    note, request_headers, run, window_update_frame,
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

def test_rapid_reset_goaway_enhance_your_calm():
    with Gateway() as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        g0 = gw.metric("noordpoort_goaway_sent_total", reason="enhance_your_calm")
        c = RawH2(gw).handshake()
        hdrs = request_headers(gw, "GET", "/v1/whoami")
        n = 10000
        for _ in range(n):
            sid = c.headers(hdrs)
            c.rst_stream(sid, CANCEL)
        t0 = time.monotonic()
        c.pump(lambda c: c.eof, timeout=20)
        t1 = time.monotonic()
        sent_frac = 1.0 if not c.out else None
        rss1 = gw.rss_kb()
        note(f"rapid reset: {n} HEADERS+RST_STREAM queued, goaway={c.goaway}, "
             f"eof={c.eof} after {t1 - t0:.2f}s, send error={c.error!r}, "
             f"unsent={len(c.out)} bytes ({'all sent' if sent_frac else 'partly'})")
        note(f"rss before={rss0} kB after={rss1} kB (delta {rss1 - rss0:+d} kB)")
        time.sleep(0.3)
        comp.stop()
        comp.check_healthy(t0, t1, "the rapid-reset flood")
        check(c.goaway is not None, f"no GOAWAY received (eof={c.eof}, "
              f"error={c.error!r}, frames seen={len(c.frames)})")
        check(c.goaway[1] == ENHANCE_YOUR_CALM,
              f"GOAWAY error {_err(c.goaway[1])}, expected ENHANCE_YOUR_CALM(0xb)")
        check(c.eof, "server did not close the connection after GOAWAY")
        gw.wait_metric("noordpoort_goaway_sent_total", g0 + 1,
                       reason="enhance_your_calm")
        r = gw.curl("/v1/whoami")
        check(r.status == 200, f"new connection after the flood: {r!r}")


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
    with Gateway() as gw:
        comp = Companion(gw).start()
        c = RawH2(gw).handshake()
        for i in range(2000):
            c.headers(_malformed(gw, i))
        t0 = time.monotonic()
        c.pump(lambda c: c.eof, timeout=15)
        t1 = time.monotonic()
        comp.stop()
        comp.check_healthy(t0, t1, "the malformed-request flood")
        check(c.goaway is not None and c.goaway[1] == ENHANCE_YOUR_CALM,
              f"GOAWAY {c.goaway}, expected ENHANCE_YOUR_CALM(0xb)")
        note(f"server reset {len(c.rst)} streams before GOAWAY (budget 200)")
        check(len(c.rst) <= 220, f"{len(c.rst)} resets before GOAWAY, budget 200")
        check(c.eof, "connection not closed after GOAWAY")


def test_invalid_frames_flood_window_update_zero():
    """WINDOW_UPDATE with increment 0 on a stream is a stream error
    (RFC 9113 6.9); a flood of them must exhaust the abuse budget."""
    with Gateway(config={"limits": {"abuse_budget": 50}}) as gw:
        c = RawH2(gw).handshake()
        hdrs = request_headers(gw, "POST", "/v1/lookup",
                               [("content-type", "application/json")])
        for _ in range(300):
            sid = c.headers(hdrs, end_stream=False)
            c.raw(window_update_frame(sid, 0))
        c.pump(lambda c: c.eof, timeout=15)
        check(c.goaway is not None and c.goaway[1] == ENHANCE_YOUR_CALM,
              f"GOAWAY {c.goaway}, expected ENHANCE_YOUR_CALM(0xb); "
              f"{len(c.rst)} streams reset, eof={c.eof}")


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
    extra = c.headers(hdrs, end_stream=False)
    c.pump(lambda c: extra in c.rst, timeout=10)
    check(extra in c.rst, f"stream #{limit + 1} (id {extra}) was not refused "
          f"(status {c.status(extra)}, goaway {c.goaway})")
    check(c.rst[extra] in (REFUSED_STREAM, PROTOCOL_ERROR),
          f"stream #{limit + 1} reset with {_err(c.rst[extra])}, expected "
          f"REFUSED_STREAM or PROTOCOL_ERROR")
    early = [s for s in sids if s in c.rst or c.status(s) is not None]
    check(not early, f"{len(early)} of the first {limit} streams were answered or "
          f"reset before their body was sent: {[(s, c.rst.get(s), c.status(s)) for s in early[:3]]}")
    active = gw.metric("noordpoort_streams_active")
    check(active >= limit, f"noordpoort_streams_active = {active} with {limit} "
          f"open streams")
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
