#!/usr/bin/python3
"""Abuse battery, connections and time: slowloris at the TLS handshake and
at the HTTP/2 preface, thousands of idle connections against
max_connections and against the file-descriptor limit, and a request body
sent one byte per second. Expected behaviour of each: docs/abuse.md.

Run: /usr/bin/python3 tests/abuse/test_conn.py [NAME-SUBSTRING...]
"""

import os
import resource
import select
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from abuselib import (  # noqa: E402
    RSS_BOUND_KB, check_still_serves, gateway, goaway_str, settle,
)
from harness import (  # noqa: E402
    PREFACE, Companion, H2Client, RawH2, check, client_hello, fail, note,
    parse_metrics, mget, proc_cpu_seconds, proc_fd_count, request_headers,
    rss_report, run, tls_connect,
)


def _raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _metrics_on(client):
    """Metrics over an existing H2Client (a new connection may be refused)."""
    st, _, body = client.request("GET", "/metrics")
    check(st == 200, f"GET /metrics on an old connection: {st}")
    return parse_metrics(body.decode("utf-8", "replace"))


def _closed(sock):
    """True when the peer closed (EOF or reset); never blocks."""
    try:
        p = select.poll()
        p.register(sock, select.POLLIN)
        if not p.poll(0):
            return False
        return sock.recv(4096, socket.MSG_PEEK) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def _tcp(port, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setblocking(False)
    return s


def _close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# Slowloris at the TLS handshake
# --------------------------------------------------------------------------

def test_slowloris_tls_handshake():
    """200 TCP connections that trickle a ClientHello (5 bytes, then one
    byte every 0.2 s): every one is closed at timeouts.handshake (1 s),
    counted as handshake failure reason "timeout"; a partner with a finished
    handshake is served throughout."""
    n = 200
    _raise_nofile(n + 200)
    with gateway(config={"timeouts": {"handshake": "1s"}}) as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        m0 = gw.metric("noordpoort_tls_handshake_failures_total", reason="timeout")
        hello = client_hello()
        socks, opened, closed_at, sent = [], [], {}, []
        t0 = time.monotonic()
        try:
            for i in range(n):
                s = _tcp(gw.port)
                s.send(hello[:5])
                socks.append(s)
                opened.append(time.monotonic())
                sent.append(5)
            deadline = t0 + 5
            while time.monotonic() < deadline and len(closed_at) < n:
                for i, s in enumerate(socks):
                    if i in closed_at:
                        continue
                    if _closed(s):
                        closed_at[i] = time.monotonic()
                        continue
                    if sent[i] < len(hello) - 1 and \
                            time.monotonic() - opened[i] >= 0.2 * (sent[i] - 4):
                        try:
                            s.send(hello[sent[i]:sent[i] + 1])
                            sent[i] += 1
                        except OSError:
                            closed_at[i] = time.monotonic()
                time.sleep(0.02)
            t1 = time.monotonic()
        finally:
            _close_all(socks)
        lifetimes = sorted(closed_at[i] - opened[i] for i in closed_at)
        settle(gw)
        rss_report(gw, "slowloris_tls_handshake", rss0, RSS_BOUND_KB)
        comp.stop()
        note(f"{n} slow ClientHellos: {len(closed_at)} closed; lifetime min "
             f"{lifetimes[0] if lifetimes else -1:.2f}s, max "
             f"{lifetimes[-1] if lifetimes else -1:.2f}s; bytes sent per "
             f"connection up to {max(sent)}")
        check(len(closed_at) == n, f"{n - len(closed_at)} of {n} slow handshakes "
              f"still open after {t1 - t0:.1f}s (handshake timeout 1s)")
        check(lifetimes[0] >= 0.7, f"a slow handshake was closed after "
              f"{lifetimes[0]:.2f}s, before the 1 s timeout")
        check(lifetimes[-1] <= 2.5, f"a slow handshake lived {lifetimes[-1]:.2f}s "
              f"(handshake timeout 1s)")
        comp.check_healthy(t0, t1, "the slow handshakes", min_during=5)
        gw.wait_metric("noordpoort_tls_handshake_failures_total", m0 + n,
                       reason="timeout")


# --------------------------------------------------------------------------
# Slowloris at the HTTP/2 preface
# --------------------------------------------------------------------------

def test_slowloris_h2_preface():
    """TLS finished, then the 24-byte connection preface one byte every
    0.4 s. The handshake timeout ends at the TLS handshake; the idle timeout
    counts bytes, not progress. Expected: a connection that has not
    completed its preface within timeouts.handshake (1 s) after TLS, or
    within timeouts.idle (1 s) at the latest, is closed (by 2.5 s, slack
    included). A connection that finishes TLS and sends nothing at all is
    closed by the idle timeout (the control case)."""
    cfg = {"timeouts": {"handshake": "1s", "idle": "1s"}}
    with gateway(config=cfg) as gw:
        comp = Companion(gw, interval=0.3).start()
        rss0 = gw.rss_kb()
        t0 = time.monotonic()
        # control: TLS, then silence
        quiet = tls_connect(gw)
        quiet.setblocking(False)
        slow = []
        for _ in range(20):
            s = tls_connect(gw)
            s.setblocking(False)
            slow.append([s, time.monotonic(), 0, None])   # sock, t, sent, closed
        quiet_t, quiet_closed = time.monotonic(), None
        deadline = t0 + 4.5
        try:
            while time.monotonic() < deadline:
                now = time.monotonic()
                if quiet_closed is None and _ssl_closed(quiet):
                    quiet_closed = now - quiet_t
                for st in slow:
                    s, ts, sent, cl = st
                    if cl is not None:
                        continue
                    if _ssl_closed(s):
                        st[3] = now - ts
                        continue
                    if sent < len(PREFACE) and now - ts >= 0.4 * sent:
                        try:
                            s.send(PREFACE[sent:sent + 1])
                            st[2] += 1
                        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                            pass
                        except OSError:
                            st[3] = now - ts
                if quiet_closed is not None and all(x[3] is not None for x in slow):
                    break
                time.sleep(0.05)
            t1 = time.monotonic()
        finally:
            _close_all([quiet] + [x[0] for x in slow])
        settle(gw)
        rss_report(gw, "slowloris_h2_preface", rss0, RSS_BOUND_KB)
        comp.stop()
        comp.check_healthy(t0, t1, "the slow prefaces")
        lives = [x[3] for x in slow]
        open_ = [x for x in slow if x[3] is None]
        note(f"silent TLS connection: closed after "
             f"{quiet_closed if quiet_closed is None else round(quiet_closed, 2)}s "
             f"(idle 1s)")
        note(f"20 slow prefaces (1 byte / 0.4 s): {len(open_)} still open after "
             f"{t1 - t0:.1f}s with up to {max(x[2] for x in slow)} of 24 bytes "
             f"sent; closed after {sorted(round(x, 2) for x in lives if x is not None)[:5]}")
        check(quiet_closed is not None and quiet_closed <= 2.5,
              f"a TLS connection that sent nothing was not closed by the idle "
              f"timeout (1s) within 2.5 s (closed after {quiet_closed})")
        check(not open_, f"{len(open_)} of 20 connections trickling the HTTP/2 "
              f"preface (one byte per 0.4 s) still open {t1 - t0:.1f}s after TLS "
              f"with handshake and idle timeouts of 1 s: every byte resets the "
              f"idle timer and the handshake timer stops at the TLS handshake, "
              f"so nothing bounds the time to a complete preface")
        check(max(lives) <= 2.5, f"a slow preface lived {max(lives):.2f}s")


def _ssl_closed(s):
    try:
        data = s.recv(65536)
        return data == b""
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return False
    except (OSError, ssl.SSLError):
        return True


# --------------------------------------------------------------------------
# Thousands of idle connections
# --------------------------------------------------------------------------

def _hold_idle(gw, n, stop_after=20.0):
    """Opens up to |n| TCP connections that send nothing; returns the list
    (bounded by count and |stop_after| seconds)."""
    socks, t0 = [], time.monotonic()
    for _ in range(n):
        if time.monotonic() - t0 > stop_after:
            break
        try:
            socks.append(_tcp(gw.port))
        except OSError as e:
            note(f"connect #{len(socks) + 1} failed: {e}")
            break
    return socks


PROBES = 5


def _cpu_at_limit(gw, seconds=1.5, probes=PROBES):
    """Server CPU seconds over about |seconds| while |probes| new
    connections are tried; returns (cpu, wall, probes closed by the server
    within 1 s = refused)."""
    c0, t0 = proc_cpu_seconds(gw.pid), time.monotonic()
    refused = 0
    for _ in range(probes):
        try:
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=1)
            s.settimeout(1)
            try:
                if s.recv(1) == b"":
                    refused += 1
            except ConnectionResetError:
                refused += 1
            except socket.timeout:
                pass                  # neither accepted nor refused: hanging
            s.close()
        except OSError:
            refused += 1
        time.sleep(seconds / probes)
    return proc_cpu_seconds(gw.pid) - c0, time.monotonic() - t0, refused


def _check_all(problems):
    if problems:
        fail("; ".join(problems))


def _devnull_fds(pid):
    n = 0
    for f in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{f}") == "/dev/null":
                n += 1
        except OSError:
            pass
    return n


def test_idle_connections_max_connections():
    """max_connections 200 (100 per worker): 2000 idle TCP connections.
    About 200 are held (in the handshake, timeout 30 s), the rest accepted
    and closed at once and counted in noordpoort_connections_refused_total;
    the established partner connections keep being served; at the limit the
    server does not spin. Then the idle connections go away and new ones are
    served again."""
    n = 2000
    _raise_nofile(n + 300)
    cfg = {"limits": {"max_connections": 200}, "timeouts": {"handshake": "30s"}}
    with gateway(config=cfg) as gw:
        comp = Companion(gw).start()
        old = [H2Client(gw, "provincie-groningen") for _ in range(4)]
        socks = []
        try:
            m0 = _metrics_on(old[0])
            r0 = mget(m0, "noordpoort_connections_refused_total")
            rss0 = gw.rss_kb()
            t0 = time.monotonic()
            socks = _hold_idle(gw, n)
            # refusals arrive as EOF on the client side
            time.sleep(0.5)
            held = [s for s in socks if not _closed(s)]
            m1 = _metrics_on(old[0])
            refused = mget(m1, "noordpoort_connections_refused_total") - r0
            active = mget(m1, "noordpoort_connections_active")
            cpu, wall, probes_refused = _cpu_at_limit(gw)
            problems = []
            for i, c in enumerate(old):
                st, _, _ = c.request("GET", "/v1/whoami")
                if st != 200:
                    problems.append(f"old connection #{i} at the limit: {st}")
            t1 = time.monotonic()
            note(f"{len(socks)} idle connections opened in {t1 - t0:.1f}s: "
                 f"{len(held)} held, refused +{refused:.0f}, active {active:.0f}; "
                 f"at the limit: server CPU {cpu:.2f}s in {wall:.1f}s, "
                 f"{probes_refused}/{PROBES} probes refused")
            if len(socks) != n:
                problems.append(f"only {len(socks)} of {n} TCP connections opened")
            if not 100 <= len(held) <= 200:
                problems.append(f"{len(held)} idle connections held with "
                                f"max_connections 200 (expected 100..200)")
            if not n - 200 <= refused <= n - len(held):
                problems.append(f"noordpoort_connections_refused_total "
                                f"+{refused:.0f}, expected {n - len(held)} (the "
                                f"connections closed at accept)")
            if probes_refused != PROBES:
                problems.append(f"only {probes_refused}/{PROBES} new connections "
                                f"refused within 1 s at the limit")
            if cpu > 0.35 * wall:
                problems.append(f"server used {cpu:.2f}s CPU in {wall:.1f}s at "
                                f"the connection limit (busy loop?)")
            rss_report(gw, "idle_connections_max_connections", rss0, RSS_BOUND_KB)
            _check_all(problems)
            # lower: the idle connections go; new connections are served again
            _close_all(socks)
            socks = []
            ok, r = False, None
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not ok:
                time.sleep(0.2)
                r = gw.curl("/v1/whoami", timeout=3)
                ok = r.status == 200
            check(ok, f"no new connection served after the idle ones closed: {r!r}")
            comp.stop()
            comp.check_healthy(t0, t1, "2000 idle connections", min_during=5)
        finally:
            _close_all(socks)
            for c in old:
                c.close()


def test_idle_connections_fd_limit():
    """The server under RLIMIT_NOFILE 128 (soft and hard, as `prlimit
    --nofile=128:128` would set), max_connections 4096: 1200 idle TCP
    connections. The descriptors run out; each further connection is
    accepted with the spare descriptor and closed at once (counted in
    noordpoort_connections_refused_total), the accept loop does not spin,
    established connections keep being served, and once the idle
    connections go new ones are served again."""
    n = 1200
    _raise_nofile(n + 300)
    cfg = {"timeouts": {"handshake": "30s"}}
    with gateway(config=cfg, rlimits={resource.RLIMIT_NOFILE: (128, 128)}) as gw:
        comp = Companion(gw).start()
        old = [H2Client(gw, "provincie-groningen") for _ in range(2)]
        socks = []
        try:
            capped = [o for o in gw.log_json() if o.get("event") == "max_connections_capped"]
            if capped:
                note(f"server log: max_connections_capped to "
                     f"{capped[0].get('max_connections')} for open_files_limit "
                     f"{capped[0].get('open_files_limit')}")
            fds0 = proc_fd_count(gw.pid)
            m0 = _metrics_on(old[0])
            r0 = mget(m0, "noordpoort_connections_refused_total")
            rss0 = gw.rss_kb()
            t0 = time.monotonic()
            socks = _hold_idle(gw, n)
            time.sleep(0.5)
            held = [s for s in socks if not _closed(s)]
            fds1 = proc_fd_count(gw.pid)
            m1 = _metrics_on(old[0])
            refused = mget(m1, "noordpoort_connections_refused_total") - r0
            cpu, wall, probes_refused = _cpu_at_limit(gw)
            spares = _devnull_fds(gw.pid)
            problems = []
            for i, c in enumerate(old):
                st, _, _ = c.request("GET", "/v1/whoami")
                if st != 200:
                    problems.append(f"old connection #{i} at the fd limit: {st}")
            t1 = time.monotonic()
            note(f"RLIMIT_NOFILE 128: server fds {fds0} -> {fds1}; "
                 f"{len(socks)} idle connections: {len(held)} not closed by the "
                 f"server (held or left in the listen queue), refused "
                 f"+{refused:.0f}; at the limit: server CPU {cpu:.2f}s in "
                 f"{wall:.1f}s, {probes_refused}/{PROBES} probes refused, "
                 f"{spares} descriptors on /dev/null (stdin + one spare per "
                 f"worker = 3)")
            if len(held) >= 128:
                problems.append(f"{len(held)} of {n} connections neither served "
                                f"nor refused under RLIMIT_NOFILE 128 (expected "
                                f"< 128; the rest refused at once)")
            if refused < n - 128:
                problems.append(f"noordpoort_connections_refused_total "
                                f"+{refused:.0f}, expected >= {n - 128}")
            if refused > (n - len(held)) * 1.1 + 10:
                problems.append(f"noordpoort_connections_refused_total "
                                f"+{refused:.0f} for {n - len(held)} connections "
                                f"actually closed: refusals counted that did not "
                                f"happen (accept() failing with EAGAIN after the "
                                f"spare descriptor was freed is counted too)")
            if probes_refused != PROBES:
                problems.append(f"only {probes_refused}/{PROBES} new connections "
                                f"refused within 1 s at the fd limit (the rest "
                                f"hang in the listen queue)")
            if cpu > 0.35 * wall:
                problems.append(f"server used {cpu:.2f}s CPU in {wall:.1f}s at "
                                f"the fd limit: busy accept loop (spare "
                                f"descriptors left: {spares - 1})")
            rss_report(gw, "idle_connections_fd_limit", rss0, RSS_BOUND_KB)
            if problems:
                comp.stop()
                try:
                    comp.check_healthy(t0, t1, "the descriptor exhaustion")
                except AssertionError as e:
                    problems.append(str(e))
            _check_all(problems)
            _close_all(socks)
            socks = []
            ok, r = False, None
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not ok:
                time.sleep(0.2)
                r = gw.curl("/v1/whoami", timeout=3)
                ok = r.status == 200
            check(ok, f"no new connection served after the idle ones closed: {r!r}")
            comp.stop()
            comp.check_healthy(t0, t1, "the descriptor exhaustion", min_during=5)
        finally:
            _close_all(socks)
            for c in old:
                c.close()


# --------------------------------------------------------------------------
# A body one byte per second
# --------------------------------------------------------------------------

def test_slow_body_408():
    """Ten request bodies (content-length 60), one byte per second each:
    408 request_timeout at timeouts.request (2 s), the connection still
    serves. Then the client goes silent with those streams still open on
    its side: expected, the server ends them (RST_STREAM) or closes the
    connection by timeouts.idle (2 s); holding it open forever would let a
    client keep a connection with no bytes and no timer."""
    cfg = {"timeouts": {"request": "2s", "idle": "2s"}}
    with gateway(config=cfg) as gw:
        comp = Companion(gw).start()
        rss0 = gw.rss_kb()
        c = RawH2(gw).handshake()
        hdrs = request_headers(gw, "POST", "/v1/aggregate",
                               [("content-type", "application/json"),
                                ("content-length", "60")])
        sids = [c.headers(hdrs, end_stream=False) for _ in range(10)]
        t0 = time.monotonic()
        got = {}
        for k in range(6):                     # at most 6 bytes, 1 a second
            for s in sids:
                if s not in got:
                    c.data(s, b"{"[:1] if k == 0 else b" ")
            c.pump(lambda c: all(c.responses.get(s, {}).get("ended") or s in c.rst
                                 for s in sids) or c.eof,
                   timeout=max(0.0, t0 + k + 1 - time.monotonic()))
            for s in sids:
                if s not in got and (c.status(s) is not None or s in c.rst):
                    got[s] = time.monotonic() - t0
            if len(got) == len(sids) or c.eof:
                break
        t1 = time.monotonic()
        statuses = [c.status(s) for s in sids]
        from abuselib import response_error_code
        codes = {response_error_code(c, s) for s in sids}
        note(f"10 slow bodies: statuses {sorted(set(map(str, statuses)))}, codes "
             f"{codes}, answered after {sorted(round(v, 2) for v in got.values())[:3]}"
             f"..{max(got.values()) if got else -1:.2f}s")
        check(all(s == 408 for s in statuses),
              f"slow bodies: statuses {statuses}, expected 408 each")
        check(codes == {"request_timeout"}, f"error codes {codes}")
        check(all(1.8 <= v <= 3.5 for v in got.values()),
              f"408 after {sorted(got.values())}, request timeout 2 s")
        check_still_serves(c, "after the 408s")
        # the client now goes silent, its side of the ten streams open
        silent0 = time.monotonic()
        c.pump(lambda c: c.eof or all(s in c.rst for s in sids), timeout=4.5)
        silent = time.monotonic() - silent0
        reset_after = [s for s in sids if s in c.rst]
        note(f"silent after the 408s: {len(reset_after)}/10 streams reset by the "
             f"server (codes {sorted(set(c.rst[s] for s in reset_after))}), "
             f"{goaway_str(c.goaway)}, closed={c.eof} after {silent:.1f}s")
        c.close()
        settle(gw)
        rss_report(gw, "slow_body_408", rss0, RSS_BOUND_KB)
        comp.stop()
        comp.check_healthy(t0, t1, "the slow bodies", min_during=5)
        check(c.eof or len(reset_after) == len(sids),
              f"after the 408s the client went silent: the connection stayed open "
              f"{silent:.1f}s (idle timeout 2s) with {len(sids) - len(reset_after)} "
              f"answered streams still open on the client's side and "
              f"{goaway_str(c.goaway)}: half-closed streams keep the idle timer "
              f"from ever starting")


if __name__ == "__main__":
    run(globals(), label="abuse")
