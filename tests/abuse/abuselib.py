"""Shared helpers of the abuse battery (tests/abuse/test_*.py).

Builds on tests/integration/harness.py (Gateway, H2Client, RawH2,
Companion). Every attack runs against a real `noordpoort serve` on loopback
while a Companion keeps asking on another connection; the server's RSS is
measured before and after (`# rss ...` lines) and bounded.

RSS and AddressSanitizer: an ASan build keeps freed memory in a quarantine
(256 MiB by default) before reusing it, so its RSS grows with everything an
attack made the server allocate and free, not with what it keeps. The
battery runs the server with quarantine_size_mb=32 (unless ASAN_OPTIONS
already sets it); use-after-free detection stays on, and the bound below
measures what the server really holds. docs/abuse.md has the figures for
both builds.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration"))
from harness import Gateway, check, is_asan_binary, note  # noqa: E402

ASAN = is_asan_binary()
QUARANTINE_MB = 32

# Generous bounds on RSS growth per attack: a leak or unbounded buffering of
# an attack's bytes costs tens to hundreds of MiB; what an attack may
# legitimately leave is per-connection state and allocator caches.
RSS_BOUND_KB = (QUARANTINE_MB + 48) * 1024 if ASAN else 48 * 1024

ERR_NAMES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR",
             3: "FLOW_CONTROL_ERROR", 4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED",
             6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL",
             9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR",
             11: "ENHANCE_YOUR_CALM"}


def err(code):
    if code is None:
        return "none"
    return f"{ERR_NAMES.get(code, '?')}(0x{code:x})"


def goaway_str(g):
    if g is None:
        return "no GOAWAY"
    return f"GOAWAY {err(g[1])} last_stream={g[0]} debug={g[2][:80]!r}"


def server_env(extra=None):
    """Environment for the gateway under attack (see the module comment)."""
    env = {}
    if ASAN:
        opts = os.environ.get("ASAN_OPTIONS", "")
        if "quarantine_size_mb" not in opts:
            opts = (opts + ":" if opts else "") + f"quarantine_size_mb={QUARANTINE_MB}"
        env["ASAN_OPTIONS"] = opts
    env.update(extra or {})
    return env


def gateway(config=None, env=None, **kw):
    """A Gateway for an attack (see server_env)."""
    return Gateway(config=config, env=server_env(env), **kw)


def settle(gw, seconds=0.3):
    """Lets the server finish closing what the attack opened before RSS is
    read again."""
    time.sleep(seconds)


# --------------------------------------------------------------------------
# Hand-made HPACK (RFC 7541), for header blocks python's hpack will not make
# --------------------------------------------------------------------------

def hp_int(value, prefix_bits, first_byte_flags):
    """An HPACK integer with an N-bit prefix, the first byte or-ed with flags."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = bytearray([first_byte_flags | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hp_str(s):
    """A string literal without Huffman coding."""
    b = s if isinstance(s, bytes) else s.encode()
    return hp_int(len(b), 7, 0x00) + b


def hp_literal(name, value, indexing=False):
    """Literal header field with a new name: with incremental indexing
    (inserted into the dynamic table) or without indexing."""
    return (b"\x40" if indexing else b"\x00") + hp_str(name) + hp_str(value)


def hp_indexed(index):
    return hp_int(index, 7, 0x80)


def hp_table_size(size):
    """Dynamic table size update."""
    return hp_int(size, 5, 0x20)


def hp_request(gw, method, path, extra=b""):
    """A request header block made of literals (no dynamic-table state)."""
    host = f"127.0.0.1:{gw.port}"
    return (hp_literal(":method", method) + hp_literal(":scheme", "https") +
            hp_literal(":authority", host) + hp_literal(":path", path) + extra)


def header_frames(sid, block, end_stream=True, max_frame=16384):
    """HEADERS (+ CONTINUATION...) frames carrying |block|."""
    from harness import CONTINUATION, END_HEADERS, END_STREAM, HEADERS, frame
    chunks = [block[i:i + max_frame] for i in range(0, len(block), max_frame)] or [b""]
    out = bytearray()
    for i, ch in enumerate(chunks):
        last = i == len(chunks) - 1
        if i == 0:
            flags = (END_STREAM if end_stream else 0) | (END_HEADERS if last else 0)
            out += frame(HEADERS, flags, sid, ch)
        else:
            out += frame(CONTINUATION, END_HEADERS if last else 0, sid, ch)
    return bytes(out)


def check_still_serves(c, what, path="/v1/whoami"):
    """A valid request on RawH2 connection |c| is answered 200. Its header
    block is made of literals only, so it decodes whatever the attack left
    in the server's dynamic table."""
    sid = c.next_sid
    c.next_sid += 2
    c.raw(header_frames(sid, hp_request(c.gw, "GET", path)))
    c.pump(lambda c: c.responses.get(sid, {}).get("ended") or c.eof, timeout=10)
    check(c.status(sid) == 200, f"{what}: a valid request on the same connection "
          f"got {c.status(sid)} (reset {c.rst.get(sid)}, goaway {c.goaway}, "
          f"eof {c.eof})")


def response_error_code(c, sid):
    import json
    r = c.responses.get(sid) or {}
    try:
        return json.loads(r.get("body", b"").decode())["error"]["code"]
    except Exception:  # noqa: BLE001
        return None


__all__ = ["ASAN", "RSS_BOUND_KB", "err", "goaway_str", "server_env", "gateway",
           "settle", "hp_int", "hp_str", "hp_literal", "hp_indexed",
           "hp_table_size", "hp_request", "header_frames", "check_still_serves",
           "response_error_code", "note"]
