#!/usr/bin/python3
"""Abuse battery, HTTP/2 layer: Rapid Reset, CONTINUATION flood, HPACK
bombs, SETTINGS / PING / WINDOW_UPDATE abuse, malformed-request floods and
the concurrent-stream limit. Expected behaviour of each: docs/abuse.md.

Every attack runs while a well-behaved client (Companion) keeps getting 200s
on another connection, and the server's RSS is measured before and after
(`# rss ...`) and bounded.

Run: /usr/bin/python3 tests/abuse/test_h2.py [NAME-SUBSTRING...]
"""

import os
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from abuselib import (  # noqa: E402
    RSS_BOUND_KB, check_still_serves, err, gateway, goaway_str, header_frames,
    hp_indexed, hp_literal, hp_request, hp_table_size, response_error_code,
    settle,
)
from harness import (  # noqa: E402
    CANCEL, COMPRESSION_ERROR, CONTINUATION, ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR, HEADERS, PING, PROTOCOL_ERROR, REFUSED_STREAM,
    SETTINGS_MAX_CONCURRENT_STREAMS, Companion, RawH2, check, frame, note,
    request_headers, rss_report, run, settings_frame, window_update_frame,
)


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


def test_rapid_reset():
    """HEADERS + RST_STREAM as fast as possible, from one connection after
    another for 1.5 s: each gets GOAWAY ENHANCE_YOUR_CALM once its score
    passes abuse_budget; the companion is served throughout."""
    with gateway() as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        g0 = gw.metric("noordpoort_goaway_sent_total", reason="enhance_your_calm")
        c = _rapid_reset(gw)
        note(f"rapid reset: 10000 HEADERS+RST_STREAM queued; {goaway_str(c.goaway)}, "
             f"eof={c.eof}, unsent={len(c.out)} bytes")
        check(c.goaway is not None, f"no GOAWAY received (eof={c.eof}, "
              f"error={c.error!r}, frames seen={len(c.frames)})")
        check(c.goaway[1] == ENHANCE_YOUR_CALM,
              f"GOAWAY {err(c.goaway[1])}, expected ENHANCE_YOUR_CALM(0xb)")
        check(c.eof, "server did not close the connection after GOAWAY")
        t0 = time.monotonic()
        floods, codes = 1, [c.goaway[1]]
        while time.monotonic() - t0 < 1.5 and floods < 200:
            cc = _rapid_reset(gw, 3000)
            floods += 1
            codes.append(cc.goaway[1] if cc.goaway else None)
        t1 = time.monotonic()
        settle(gw)
        rss_report(gw, "rapid_reset", rss0, RSS_BOUND_KB)
        note(f"{floods} rapid-reset connections; GOAWAY codes "
             f"{sorted(set(map(str, codes)))}")
        comp.stop()
        comp.check_healthy(t0, t1, "the rapid-reset floods", min_during=5)
        check(all(x == ENHANCE_YOUR_CALM for x in codes),
              f"GOAWAY codes {codes[:10]}..., expected ENHANCE_YOUR_CALM each time")
        gw.wait_metric("noordpoort_goaway_sent_total", g0 + floods,
                       reason="enhance_your_calm")
        r = gw.curl("/v1/whoami")
        check(r.status == 200, f"new connection after the floods: {r!r}")


def test_rapid_reset_with_bodies():
    """Rapid Reset with a DATA frame on every stream (the body buffer is
    allocated, then the stream is cancelled): memory must not run away."""
    with gateway() as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        codes = []
        t0 = time.monotonic()
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
        t1 = time.monotonic()
        settle(gw)
        rss_report(gw, "rapid_reset_with_bodies", rss0, RSS_BOUND_KB)
        comp.stop()
        comp.check_healthy(t0, t1, "rapid reset with bodies")
        check(all(x == ENHANCE_YOUR_CALM for x in codes),
              f"GOAWAY codes {codes}, expected ENHANCE_YOUR_CALM(11) each time")


# --------------------------------------------------------------------------
# CONTINUATION flood (CVE-2024-27316 style)
# --------------------------------------------------------------------------

def test_continuation_flood():
    """A header block that never ends (HEADERS + endless CONTINUATION, ~50 MB
    offered) is not buffered: nghttp2's limit of 8 CONTINUATION frames ends
    the connection at once (GOAWAY)."""
    with gateway() as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        c = RawH2(gw).handshake()
        block = c.encode(request_headers(gw, "GET", "/v1/whoami"))
        c.raw(frame(HEADERS, 0, 1, block))   # no END_HEADERS
        filler = c.encode([(f"x-fill-{i}", "y" * 100) for i in range(20)])
        for _ in range(20000):
            c.raw(frame(CONTINUATION, 0, 1, filler))
        t0 = time.monotonic()
        c.pump(lambda c: c.eof, timeout=15)
        t1 = time.monotonic()
        settle(gw)
        rss_report(gw, "continuation_flood", rss0, RSS_BOUND_KB)
        comp.stop()
        note(f"CONTINUATION flood: closed={c.eof} after {t1 - t0:.2f}s, "
             f"{goaway_str(c.goaway)}, unsent {len(c.out)} bytes")
        check(c.eof, f"connection still open {t1 - t0:.1f}s into a "
              f"CONTINUATION flood")
        check(c.status(1) is None, f"the endless header block was answered "
              f"({c.status(1)})")
        comp.check_healthy(t0, t1, "the CONTINUATION flood")


# --------------------------------------------------------------------------
# HPACK bombs
# --------------------------------------------------------------------------

def test_hpack_huge_header_431():
    """One 40 KiB header value (over max_header_list_bytes, 16 KiB, under
    nghttp2's 64 KiB field limit), 100 times on one connection: 431
    headers_too_large each time, nothing kept, the connection stays usable."""
    with gateway() as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        c = RawH2(gw).handshake()
        big = hp_literal("x-big", "a" * (40 * 1024))
        t0 = time.monotonic()
        sids = []
        for i in range(100):
            sid = 1 + 2 * i
            c.raw(header_frames(sid, hp_request(gw, "GET", "/v1/whoami", big)))
            sids.append(sid)
            if i % 20 == 19:
                c.pump(lambda c: all(c.responses.get(s, {}).get("ended") for s in sids)
                       or c.eof, timeout=10)
        c.next_sid = 1 + 2 * len(sids)
        c.pump(lambda c: all(c.responses.get(s, {}).get("ended") for s in sids)
               or c.eof, timeout=10)
        t1 = time.monotonic()
        statuses = [c.status(s) for s in sids]
        codes = {response_error_code(c, s) for s in sids}
        note(f"100 x 40 KiB header: statuses {sorted(set(map(str, statuses)))}, "
             f"codes {codes}, {goaway_str(c.goaway)}")
        check(all(s == 431 for s in statuses),
              f"statuses {sorted(set(map(str, statuses)))}, expected 431 each")
        check(codes == {"headers_too_large"}, f"error codes {codes}")
        check(c.goaway is None, f"{goaway_str(c.goaway)} for 431s")
        check_still_serves(c, "after 100 oversized headers")
        c.close()
        settle(gw)
        rss_report(gw, "hpack_huge_header_431", rss0, RSS_BOUND_KB)
        comp.stop()
        comp.check_healthy(t0, t1, "the oversized headers")


def test_hpack_field_over_64k():
    """One 70 KiB header value: beyond nghttp2's 64 KiB limit for a single
    field, a connection error (GOAWAY COMPRESSION_ERROR), no answer."""
    with gateway() as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        c = RawH2(gw).handshake()
        big = hp_literal("x-big", "a" * (70 * 1024))
        t0 = time.monotonic()
        c.raw(header_frames(1, hp_request(gw, "GET", "/v1/whoami", big)))
        c.pump(lambda c: c.eof, timeout=10)
        t1 = time.monotonic()
        settle(gw)
        rss_report(gw, "hpack_field_over_64k", rss0, RSS_BOUND_KB)
        comp.stop()
        note(f"70 KiB field: {goaway_str(c.goaway)}, status {c.status(1)}, "
             f"rst {c.rst.get(1)}, eof {c.eof}")
        check(c.status(1) is None, f"answered {c.status(1)}")
        check(c.goaway is not None and c.goaway[1] == COMPRESSION_ERROR,
              f"{goaway_str(c.goaway)}, expected COMPRESSION_ERROR(0x9)")
        check(c.eof, "connection not closed")
        comp.check_healthy(t0, t1, "the 70 KiB header field")


def test_hpack_many_small_headers():
    """5000 small header fields in one request (max_header_fields 100): 431,
    and 20 such requests keep nothing."""
    with gateway() as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        c = RawH2(gw).handshake()
        many = b"".join(hp_literal(f"x-{i}", "v") for i in range(5000))
        t0 = time.monotonic()
        sids = []
        for i in range(20):
            sid = 1 + 2 * i
            c.raw(header_frames(sid, hp_request(gw, "GET", "/v1/whoami", many)))
            sids.append(sid)
        c.next_sid = 1 + 2 * len(sids)
        c.pump(lambda c: all(c.responses.get(s, {}).get("ended") for s in sids)
               or c.eof, timeout=15)
        t1 = time.monotonic()
        statuses = [c.status(s) for s in sids]
        note(f"20 x 5000 headers ({len(many)} bytes a block): statuses "
             f"{sorted(set(map(str, statuses)))}, {goaway_str(c.goaway)}")
        check(all(s == 431 for s in statuses),
              f"statuses {sorted(set(map(str, statuses)))}, expected 431 each")
        check_still_serves(c, "after 20 requests of 5000 headers")
        c.close()
        settle(gw)
        rss_report(gw, "hpack_many_small_headers", rss0, RSS_BOUND_KB)
        comp.stop()
        comp.check_healthy(t0, t1, "thousands of small headers")


def test_hpack_dynamic_table_bomb():
    """The HPACK bomb proper: one 4 KiB header inserted into the dynamic
    table, then referenced by one-byte indexes, 16 000 times per block (64 MiB
    of decoded headers from 16 KiB on the wire), 10 blocks. Each is 431
    without the decoded bytes being stored; the table itself stays at the
    announced 4096 bytes."""
    with gateway() as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        c = RawH2(gw).handshake()
        t0 = time.monotonic()
        sids = []
        for i in range(10):
            sid = 1 + 2 * i
            # (re)insert: the entry is 4000 + 6 + 32 bytes, under 4096
            block = hp_request(gw, "GET", "/v1/whoami",
                               hp_literal("x-bomb", "b" * 4000, indexing=True) +
                               hp_indexed(62) * 16000)
            c.raw(header_frames(sid, block))
            sids.append(sid)
            c.pump(lambda c: c.responses.get(sid, {}).get("ended") or c.eof,
                   timeout=10)
        c.next_sid = 1 + 2 * len(sids)
        t1 = time.monotonic()
        statuses = [c.status(s) for s in sids]
        note(f"10 x (4 KiB entry x 16000 references): statuses "
             f"{sorted(set(map(str, statuses)))}, {goaway_str(c.goaway)}, "
             f"{t1 - t0:.2f}s")
        check(all(s == 431 for s in statuses),
              f"statuses {sorted(set(map(str, statuses)))}, expected 431 each")
        # many insertions: 3000 distinct indexed entries (continuous eviction)
        sid = c.next_sid
        c.next_sid += 2
        # (about 40 KiB: three frames, under the 8-CONTINUATION limit)
        ins = b"".join(hp_literal(f"x-i{i}", "z" * 4, indexing=True)
                       for i in range(3000))
        c.raw(header_frames(sid, hp_request(gw, "GET", "/v1/whoami", ins)))
        c.pump(lambda c: c.responses.get(sid, {}).get("ended") or c.eof, timeout=10)
        note(f"3000 indexed insertions: status {c.status(sid)}, {goaway_str(c.goaway)}")
        check(c.status(sid) == 431, f"3000 insertions: status {c.status(sid)}, "
              f"expected 431")
        check_still_serves(c, "after the HPACK bombs")
        c.close()
        settle(gw)
        rss_report(gw, "hpack_dynamic_table_bomb", rss0, RSS_BOUND_KB)
        comp.stop()
        comp.check_healthy(t0, t1, "the HPACK bomb")


def test_hpack_table_size_updates():
    """Dynamic table size updates: 5000 at the start of one block (allowed
    by RFC 7541 4.2, harmless: the request is answered), then one above the
    announced SETTINGS_HEADER_TABLE_SIZE (4096) - a COMPRESSION_ERROR."""
    with gateway() as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        c = RawH2(gw).handshake()
        t0 = time.monotonic()
        ups = (hp_table_size(0) + hp_table_size(4096)) * 2500
        c.raw(header_frames(1, ups + hp_request(gw, "GET", "/v1/whoami")))
        c.pump(lambda c: c.responses.get(1, {}).get("ended") or c.eof, timeout=10)
        st1, g1 = c.status(1), c.goaway
        note(f"5000 table size updates: status {st1}, rst {err(c.rst.get(1))}, "
             f"{goaway_str(g1)}")
        d = RawH2(gw).handshake()
        d.raw(header_frames(1, hp_table_size(1 << 30) + hp_request(gw, "GET", "/v1/whoami")))
        d.pump(lambda d: d.eof, timeout=10)
        t1 = time.monotonic()
        note(f"table size update to 1 GiB: status {d.status(1)}, {goaway_str(d.goaway)}")
        d.close()
        c.close()
        settle(gw)
        rss_report(gw, "hpack_table_size_updates", rss0, RSS_BOUND_KB)
        comp.stop()
        comp.check_healthy(t0, t1, "table size updates")
        check(st1 == 200 or (g1 is not None and g1[1] == COMPRESSION_ERROR),
              f"5000 table size updates: status {st1}, {goaway_str(g1)}; expected "
              f"200 or GOAWAY COMPRESSION_ERROR")
        check(d.status(1) is None and d.goaway is not None and
              d.goaway[1] == COMPRESSION_ERROR,
              f"size update past 4096: status {d.status(1)}, {goaway_str(d.goaway)}; "
              f"expected GOAWAY COMPRESSION_ERROR(0x9)")


# --------------------------------------------------------------------------
# SETTINGS and PING floods (control frames whose ACKs are never read)
# --------------------------------------------------------------------------

def _control_flood(gw, unit, per_write, max_writes=200, what="flood"):
    """Writes |unit| x |per_write| per sendall without ever reading, until
    the server closes (at most |max_writes| writes, 10 s). Returns
    (frames sent, closed, seconds)."""
    c = RawH2(gw).handshake()
    s = c.sock
    s.settimeout(5)
    sent, t0 = 0, time.monotonic()
    try:
        for _ in range(max_writes):
            if time.monotonic() - t0 > 10:
                break
            s.sendall(unit * per_write)
            sent += per_write
    except (OSError, ssl.SSLError) as e:
        note(f"{what}: send stopped after {sent} frames: {type(e).__name__}")
    closed = False
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            if not s.recv(65536):
                closed = True
                break
    except (OSError, ssl.SSLError):
        closed = True
    secs = time.monotonic() - t0
    c.close()
    return sent, closed, secs


def test_settings_flood():
    """SETTINGS frames by the thousand, ACKs never read: nghttp2's limit on
    queued ACKs (1000) ends the connection; nothing piles up."""
    with gateway() as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        t0 = time.monotonic()
        unit = settings_frame([(0x4, 65535)])   # INITIAL_WINDOW_SIZE
        sent, closed, secs = _control_flood(gw, unit, 2000, what="SETTINGS flood")
        # and a SETTINGS frame with 100 entries (nghttp2 takes at most 32)
        c = RawH2(gw).handshake()
        c.raw(settings_frame([(0x4, 65535)] * 100))
        c.pump(lambda c: c.eof, timeout=10)
        t1 = time.monotonic()
        settle(gw)
        rss_report(gw, "settings_flood", rss0, RSS_BOUND_KB)
        comp.stop()
        note(f"SETTINGS flood: {sent} frames written; closed={closed} after "
             f"{secs:.2f}s")
        note(f"SETTINGS with 100 entries: {goaway_str(c.goaway)}, eof {c.eof}")
        check(closed, f"connection still open after {sent} SETTINGS frames "
              f"without reads")
        check(c.eof and c.goaway is not None and c.goaway[1] == ENHANCE_YOUR_CALM,
              f"SETTINGS with 100 entries: {goaway_str(c.goaway)}, eof {c.eof}; "
              f"expected GOAWAY ENHANCE_YOUR_CALM and close")
        comp.check_healthy(t0, t1, "the SETTINGS flood")
        c.close()


def test_ping_flood():
    """PINGs by the thousand, ACKs never read: the outbound queue stays
    bounded (1000 ACKs) and the connection is closed."""
    with gateway() as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        t0 = time.monotonic()
        sent, closed, secs = _control_flood(gw, frame(PING, 0, 0, b"12345678"),
                                            2000, 100, "PING flood")
        t1 = time.monotonic()
        settle(gw)
        rss_report(gw, "ping_flood", rss0, RSS_BOUND_KB)
        comp.stop()
        note(f"PING flood: {sent} PINGs written; closed={closed} after {secs:.2f}s")
        check(closed, "connection still open after a PING flood without reads")
        comp.check_healthy(t0, t1, "the PING flood")
        r = gw.curl("/v1/whoami")
        check(r.status == 200, f"new connection after the PING flood: {r!r}")


# --------------------------------------------------------------------------
# WINDOW_UPDATE abuse
# --------------------------------------------------------------------------

def test_window_update_overflow():
    """Increments that push a flow-control window past 2^31-1 (RFC 9113
    6.9.1): on the connection, GOAWAY FLOW_CONTROL_ERROR; on a stream,
    RST_STREAM FLOW_CONTROL_ERROR and the connection lives on; overflowing
    stream after stream spends the abuse budget (ENHANCE_YOUR_CALM)."""
    with gateway(config={"limits": {"abuse_budget": 50}}) as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        t0 = time.monotonic()
        # connection window: RawH2 already gave 2^30; 2^31-1 more overflows
        c = RawH2(gw).handshake()
        c.raw(window_update_frame(0, 0x7FFFFFFF))
        c.pump(lambda c: c.eof, timeout=10)
        note(f"connection window overflow: {goaway_str(c.goaway)}, eof {c.eof}")
        check(c.goaway is not None and c.goaway[1] == FLOW_CONTROL_ERROR and c.eof,
              f"connection window overflow: {goaway_str(c.goaway)}, eof {c.eof}; "
              f"expected GOAWAY FLOW_CONTROL_ERROR(0x3) and close")
        c.close()
        # a stream's window: an open stream (no END_STREAM), 2^31-1 on it
        d = RawH2(gw).handshake()
        hdrs = request_headers(gw, "POST", "/v1/aggregate",
                               [("content-type", "application/json")])
        sid = d.headers(hdrs, end_stream=False)
        d.raw(window_update_frame(sid, 0x7FFFFFFF))
        d.pump(lambda d: sid in d.rst or d.eof, timeout=10)
        note(f"stream window overflow: rst {err(d.rst.get(sid))}, {goaway_str(d.goaway)}")
        check(d.rst.get(sid) == FLOW_CONTROL_ERROR and d.goaway is None,
              f"stream window overflow: rst {err(d.rst.get(sid))}, "
              f"{goaway_str(d.goaway)}; expected RST_STREAM FLOW_CONTROL_ERROR only")
        check_still_serves(d, "after a stream window overflow")
        # stream after stream: the resets spend the budget (50)
        n = 0
        while d.goaway is None and not d.eof and n < 400:
            for _ in range(20):
                s = d.headers(hdrs, end_stream=False)
                d.raw(window_update_frame(s, 0x7FFFFFFF))
                n += 1
            d.sync(timeout=10)
        d.pump(lambda d: d.eof, timeout=10)
        t1 = time.monotonic()
        note(f"{n} stream overflows: {len(d.rst)} resets, {goaway_str(d.goaway)}")
        check(d.goaway is not None and d.goaway[1] == ENHANCE_YOUR_CALM,
              f"{n} stream window overflows: {goaway_str(d.goaway)}, expected "
              f"ENHANCE_YOUR_CALM")
        d.close()
        settle(gw)
        rss_report(gw, "window_update_overflow", rss0, RSS_BOUND_KB)
        comp.stop()
        comp.check_healthy(t0, t1, "WINDOW_UPDATE overflows")


def test_window_update_tiny_and_zero():
    """100 000 WINDOW_UPDATEs of 1 byte (connection and stream): legal, they
    cost CPU only; the connection keeps being served. A zero increment is a
    PROTOCOL_ERROR (GOAWAY)."""
    with gateway() as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        c = RawH2(gw).handshake()
        hdrs = request_headers(gw, "POST", "/v1/aggregate",
                               [("content-type", "application/json")])
        sid = c.headers(hdrs, end_stream=False)
        tiny = window_update_frame(0, 1) + window_update_frame(sid, 1)
        t0 = time.monotonic()
        for _ in range(10):
            c.raw(tiny * 5000)
            c.pump(timeout=10)
        ok = c.sync(timeout=15)
        t1 = time.monotonic()
        note(f"100000 tiny WINDOW_UPDATEs in {t1 - t0:.2f}s: ping ack {ok}, "
             f"{goaway_str(c.goaway)}, rst {err(c.rst.get(sid))}")
        check(ok and c.goaway is None, f"tiny WINDOW_UPDATEs: ping ack {ok}, "
              f"{goaway_str(c.goaway)}")
        c.data(sid, b"{}", end_stream=True)
        c.pump(lambda c: c.responses.get(sid, {}).get("ended") or c.eof, timeout=10)
        check(c.status(sid) == 501, f"the stream after tiny updates: status "
              f"{c.status(sid)} (parse-only /v1/aggregate answers 501)")
        check_still_serves(c, "after 100000 tiny WINDOW_UPDATEs")
        c.raw(window_update_frame(0, 0))
        c.pump(lambda c: c.eof, timeout=10)
        note(f"zero increment: {goaway_str(c.goaway)}, eof {c.eof}")
        check(c.goaway is not None and c.goaway[1] == PROTOCOL_ERROR and c.eof,
              f"zero WINDOW_UPDATE: {goaway_str(c.goaway)}; expected PROTOCOL_ERROR")
        c.close()
        settle(gw)
        rss_report(gw, "window_update_tiny_and_zero", rss0, RSS_BOUND_KB)
        comp.stop()
        comp.check_healthy(t0, t1, "tiny WINDOW_UPDATEs")


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
          f"{ {s: err(v) for s, v in list(bad.items())[:4]} }")


def test_malformed_below_then_past_budget():
    """20 malformed requests with abuse_budget 50: each reset
    PROTOCOL_ERROR, the connection still serves; 500 more: GOAWAY
    ENHANCE_YOUR_CALM after about the budget."""
    with gateway(config={"limits": {"abuse_budget": 50}}) as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        g0 = gw.metric("noordpoort_goaway_sent_total", reason="enhance_your_calm")
        t0 = time.monotonic()
        c = RawH2(gw).handshake()
        sids = [c.headers(_malformed(gw, i)) for i in range(20)]
        c.pump(lambda c: all(s in c.rst for s in sids), timeout=10)
        _check_rst_protocol_error(c, sids, "below budget")
        check(c.goaway is None, f"{goaway_str(c.goaway)} below abuse_budget "
              f"(20 malformed requests, budget 50)")
        check_still_serves(c, "after 20 malformed requests")
        for i in range(500):
            c.headers(_malformed(gw, i))
        c.pump(lambda c: c.eof, timeout=15)
        t1 = time.monotonic()
        check(c.goaway is not None, f"no GOAWAY past abuse_budget (eof={c.eof}, "
              f"resets={len(c.rst)})")
        check(c.goaway[1] == ENHANCE_YOUR_CALM,
              f"GOAWAY {err(c.goaway[1])}, expected ENHANCE_YOUR_CALM(0xb)")
        check(c.eof, "connection not closed after GOAWAY")
        note(f"server reset {len(c.rst)} streams before GOAWAY (budget 50)")
        check(len(c.rst) <= 60, f"server reset {len(c.rst)} streams, more than "
              f"abuse_budget 50 (+ slack) before GOAWAY")
        gw.wait_metric("noordpoort_goaway_sent_total", g0 + 1,
                       reason="enhance_your_calm")
        c.close()
        settle(gw)
        rss_report(gw, "malformed_below_then_past_budget", rss0, RSS_BOUND_KB)
        comp.stop()
        comp.check_healthy(t0, t1, "the malformed requests")


def test_malformed_flood():
    """Malformed requests in batches of 40 (each batch reset before the
    next, so the 100-stream limit never interferes) until the default budget
    of 200 is spent: GOAWAY ENHANCE_YOUR_CALM."""
    with gateway() as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
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
        c.close()
        settle(gw)
        rss_report(gw, "malformed_flood", rss0, RSS_BOUND_KB)
        comp.stop()
        comp.check_healthy(t0, t1, "the malformed-request flood")
        note(f"{i} malformed requests sent; server reset {len(c.rst)} streams "
             f"before {goaway_str(c.goaway)} (budget 200)")
        check(c.goaway is not None, f"no GOAWAY after {i} malformed requests")
        check(c.goaway[1] == ENHANCE_YOUR_CALM,
              f"{goaway_str(c.goaway)}, expected ENHANCE_YOUR_CALM(0xb)")
        check(len(c.rst) <= 220, f"{len(c.rst)} resets before GOAWAY, budget 200")
        check(c.eof, "connection not closed after GOAWAY")
        gw.wait_metric("noordpoort_goaway_sent_total", g0 + 1,
                       reason="enhance_your_calm")


def test_malformed_flood_pipelined():
    """2000 malformed requests in one go. libnghttp2 keeps a stream open until
    its RST_STREAM is written, so the 101st pipelined request may hit the
    concurrency limit (GOAWAY PROTOCOL_ERROR) before the budget
    (ENHANCE_YOUR_CALM); either ends the connection."""
    with gateway() as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        c = RawH2(gw).handshake()
        for i in range(2000):
            c.headers(_malformed(gw, i))
        t0 = time.monotonic()
        c.pump(lambda c: c.eof, timeout=15)
        t1 = time.monotonic()
        c.close()
        settle(gw)
        rss_report(gw, "malformed_flood_pipelined", rss0, RSS_BOUND_KB)
        comp.stop()
        comp.check_healthy(t0, t1, "the pipelined malformed-request flood")
        note(f"pipelined flood: {goaway_str(c.goaway)}, {len(c.rst)} resets")
        check(c.goaway is not None and c.goaway[1] in (ENHANCE_YOUR_CALM,
                                                       PROTOCOL_ERROR),
              f"{goaway_str(c.goaway)}, expected ENHANCE_YOUR_CALM or PROTOCOL_ERROR")
        check(c.eof, "connection not closed after GOAWAY")


def test_invalid_data_flood():
    """DATA longer than the announced content-length is a malformed message
    (RFC 9113 8.1.1): a stream error each time, counted against the budget."""
    with gateway(config={"limits": {"abuse_budget": 50}}) as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        g0 = gw.metric("noordpoort_goaway_sent_total", reason="enhance_your_calm")
        c = RawH2(gw).handshake()
        hdrs = request_headers(gw, "POST", "/v1/lookup",
                               [("content-type", "application/json"),
                                ("content-length", "2")])
        t0 = time.monotonic()
        n = 0
        while c.goaway is None and not c.eof and n < 400:
            for _ in range(20):
                sid = c.headers(hdrs, end_stream=False)
                c.data(sid, b'{"a": 1, "b": 2}', end_stream=True)
                n += 1
            c.sync(timeout=10)
        c.pump(lambda c: c.eof, timeout=10)
        t1 = time.monotonic()
        c.close()
        settle(gw)
        rss_report(gw, "invalid_data_flood", rss0, RSS_BOUND_KB)
        comp.stop()
        comp.check_healthy(t0, t1, "the bad-length bodies")
        note(f"{n} bad-length bodies sent; {len(c.rst)} resets "
             f"(codes {sorted(set(c.rst.values()))}); {goaway_str(c.goaway)}")
        answered = [s for s in c.responses if c.status(s) is not None]
        check(not answered, f"{len(answered)} bad-length requests were answered "
              f"(e.g. status {c.status(answered[0]) if answered else None}) "
              f"instead of reset")
        check(c.goaway is not None and c.goaway[1] == ENHANCE_YOUR_CALM,
              f"{goaway_str(c.goaway)}, expected ENHANCE_YOUR_CALM(0xb); "
              f"{len(c.rst)} streams reset, eof={c.eof}")
        check(c.eof, "connection not closed after GOAWAY")
        gw.wait_metric("noordpoort_goaway_sent_total", g0 + 1,
                       reason="enhance_your_calm")


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
          f"({goaway_str(c.goaway)}, eof {c.eof})")
    early = [s for s in sids if s in c.rst or c.status(s) is not None]
    check(not early and c.goaway is None,
          f"{len(early)} of the first {limit} streams were answered or reset "
          f"before their body was sent: "
          f"{[(s, c.rst.get(s), c.status(s)) for s in early[:3]]}; {goaway_str(c.goaway)}")
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
        note(f"stream #{limit + 1}: connection error {goaway_str(c.goaway)} "
             f"instead of a stream error; the {limit} admitted streams die "
             f"with the connection")
        check(c.goaway[1] == PROTOCOL_ERROR,
              f"GOAWAY {err(c.goaway[1])}, expected PROTOCOL_ERROR")
        check(c.goaway[0] < extra, f"GOAWAY last_stream_id {c.goaway[0]} "
              f"includes the refused stream {extra}")
        c.close()
        gw.wait_metric("noordpoort_goaway_sent_total", 1, reason="protocol_error")
        r = gw.curl("/v1/whoami")
        check(r.status == 200, f"new connection afterwards: {r!r}")
        return
    check(extra in c.rst, f"stream #{limit + 1} (id {extra}) was not refused")
    check(c.rst[extra] in (REFUSED_STREAM, PROTOCOL_ERROR),
          f"stream #{limit + 1} reset with {err(c.rst[extra])}, expected "
          f"REFUSED_STREAM or PROTOCOL_ERROR")
    for s in sids:
        c.data(s, b"{}", end_stream=True)
    c.pump(lambda c: all(c.responses.get(s, {}).get("ended") for s in sids),
           timeout=15)
    statuses = [c.status(s) for s in sids]
    check(all(s == 501 for s in statuses),
          f"the {limit} admitted streams: statuses {sorted(set(map(str, statuses)))}"
          f", expected 501 each; resets {dict(list(c.rst.items())[:3])}")
    check(c.goaway is None, f"{goaway_str(c.goaway)} after a single refused stream")
    check_still_serves(c, "after the streams closed")
    c.close()


def test_concurrent_streams_over_100():
    """101 open streams with the default limit (100): the 101st is refused
    and nothing of it answered."""
    with gateway() as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        t0 = time.monotonic()
        _concurrency(gw, 100)
        t1 = time.monotonic()
        settle(gw)
        rss_report(gw, "concurrent_streams_over_100", rss0, RSS_BOUND_KB)
        comp.stop()
        comp.check_healthy(t0, t1, "101 concurrent streams")


def test_concurrent_streams_configured_limit():
    with gateway(config={"limits": {"max_concurrent_streams": 10}}) as gw:
        _concurrency(gw, 10)


if __name__ == "__main__":
    run(globals(), label="abuse")
