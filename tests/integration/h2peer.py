#!/usr/bin/python3
"""Misbehaving HTTP/2 servers for the client tests (tests/unit/test_h2client.c,
tests/unit/test_fanout.c, tests/integration/test_query_cli.py).

    /usr/bin/python3 tests/integration/h2peer.py CERTS_DIR

prints one JSON line {"h2": PORT, "ip2": PORT, "otherhost": PORT,
"http11": PORT, "noalpn": PORT, "proxy": PORT} once every listener is up,
and serves until its standard input closes:

  h2         127.0.0.1, the dev server certificate, ALPN h2; each request
             does what its JSON body says (below)
  ip2        the same on 127.0.0.2, whose address the certificate does not
             list
  otherhost  127.0.0.1, ALPN h2, a certificate of the dev CA for
             elsewhere.example only (made at start with the CA's key)
  http11     127.0.0.1, the dev server certificate, ALPN http/1.1 only
  noalpn     127.0.0.1, the dev server certificate, no ALPN at all
  proxy      127.0.0.1, an HTTP proxy: CONNECT HOST:PORT is answered 200
             and relayed, but 403 Forbidden for port 9

Request bodies (JSON; "size" bytes of binary answer, default 1000):
  {"do": "ok", "size": N}           200, content-length N, bytes 0..255 repeated
  {"do": "nolength", "size": N}     the same without content-length
  {"do": "reset-mid-body"}          half the answer, then RST_STREAM
  {"do": "drop-mid-body"}           half the answer, then a TCP reset
  {"do": "stall-mid-body"}          half the answer, then silence
  {"do": "once"}                    answered on a connection's first request;
                                    a later one on it closes the connection
                                    without a word (no GOAWAY)
  {"do": "flood-frames"}            200 without content-length, then frames
                                    of an unknown type (which a client must
                                    ignore) as fast as it can, for at most 5 s
  {"do": "refuse-first"}            the first such request of the process is
                                    refused with RST_STREAM REFUSED_STREAM, the
                                    connection kept open; later ones are
                                    answered
  {"do": "refuse-always"}           refused so, every time
  {"do": "goaway-first"}            the first such request of the process is
                                    refused with GOAWAY (last stream below
                                    it) and the connection closed; later ones
                                    are answered
Anything else: 200 {"echo": BODY}.
"""

import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions

CERTS = sys.argv[1] if len(sys.argv) > 1 else "certs/dev"
PATTERN = bytes(range(256))
goaway_done = threading.Event()
refuse_done = threading.Event()


def payload(n):
    return (PATTERN * (n // 256 + 1))[:n]


def make_other_host_cert(td):
    key, csr, crt, ext = (os.path.join(td, f) for f in ("o.key", "o.csr", "o.crt", "o.ext"))
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:elsewhere.example\nextendedKeyUsage=serverAuth\n")
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=elsewhere.example",
                    "-keyout", key, "-out", csr], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA",
                    os.path.join(CERTS, "ca.crt"), "-CAkey", os.path.join(CERTS, "ca.key"),
                    "-set_serial", "4242", "-days", "2", "-extfile", ext, "-out", crt],
                   check=True, capture_output=True)
    return crt, key


def context(crt, key, alpn):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


class Conn:
    def __init__(self, sock):
        self.s = sock
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8"))
        self.requests = 0

    def flush(self):
        data = self.h2.data_to_send()
        if data:
            self.s.sendall(data)

    def headers(self, sid, n=None):
        hs = [(":status", "200"), ("content-type", "application/octet-stream")]
        if n is not None:
            hs.append(("content-length", str(n)))
        self.h2.send_headers(sid, hs)

    def send(self, sid, data, end):
        """Sends |data| within the flow-control windows."""
        while data:
            n = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size,
                    len(data))
            if n <= 0:
                self.flush()
                self.pump()
                continue
            self.h2.send_data(sid, data[:n])
            data = data[n:]
        if end:
            self.h2.end_stream(sid)
        self.flush()

    def pump(self):
        data = self.s.recv(65536)
        if not data:
            raise EOFError
        for ev in self.h2.receive_data(data):
            if isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                raise EOFError

    def answer(self, sid, body):
        """Returns False when the connection is to end."""
        self.requests += 1
        try:
            q = json.loads(body or b"{}")
        except ValueError:
            q = {}
        what = q.get("do") if isinstance(q, dict) else None
        size = int(q.get("size", 1000)) if isinstance(q, dict) else 1000
        data = payload(size)
        if what == "ok":
            self.headers(sid, size)
            self.send(sid, data, True)
        elif what == "nolength":
            self.headers(sid)
            self.send(sid, data, True)
        elif what in ("reset-mid-body", "drop-mid-body", "stall-mid-body"):
            self.headers(sid, size)
            self.send(sid, data[:size // 2], False)
            if what == "reset-mid-body":
                self.h2.reset_stream(sid, 2)  # INTERNAL_ERROR
                self.flush()
            elif what == "drop-mid-body":
                # SO_LINGER 0: close() sends RST, not FIN
                self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return False
        elif what == "flood-frames":
            self.headers(sid)
            self.flush()
            # type 0xfa, no flags, stream 0, empty: not flow-controlled, no
            # answer due, so only the client's own loop bounds its work
            frames = b"\x00\x00\x00\xfa\x00\x00\x00\x00\x00" * 7000
            until = time.monotonic() + 5
            while time.monotonic() < until:
                self.s.sendall(frames)
            return False
        elif what == "once":
            if self.requests > 1:
                return False
            self.headers(sid, 5)
            self.send(sid, b"first", True)
        elif what == "refuse-always" or (what == "refuse-first" and not refuse_done.is_set()):
            refuse_done.set()
            self.h2.reset_stream(sid, 7)  # REFUSED_STREAM
            self.flush()
        elif what == "goaway-first" and not goaway_done.is_set():
            goaway_done.set()
            self.h2.close_connection(error_code=0, last_stream_id=max(sid - 2, 0))
            self.flush()
            return False
        else:
            out = json.dumps({"echo": body.decode("utf-8", "replace")}).encode()
            self.headers(sid, len(out))
            self.send(sid, out, True)
        return True


def serve(raw, ctx):
    try:
        raw.settimeout(30)
        s = ctx.wrap_socket(raw, server_side=True)
        if s.selected_alpn_protocol() != "h2":
            s.recv(1)  # wait for the client to give up
            return
        c = Conn(s)
        c.h2.initiate_connection()
        c.flush()
        bodies = {}
        while True:
            data = s.recv(65536)
            if not data:
                return
            for ev in c.h2.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    bodies[ev.stream_id] = b""
                elif isinstance(ev, h2.events.DataReceived):
                    bodies[ev.stream_id] = bodies.get(ev.stream_id, b"") + ev.data
                    c.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    if not c.answer(ev.stream_id, bodies.pop(ev.stream_id, b"")):
                        return
            c.flush()
    except (OSError, EOFError, ssl.SSLError, h2.exceptions.ProtocolError, ValueError):
        pass
    finally:
        try:
            raw.close()
        except OSError:
            pass


def relay(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def proxy(raw, _ctx):
    """HTTP CONNECT, then bytes both ways."""
    try:
        raw.settimeout(30)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 8192:
            data = raw.recv(4096)
            if not data:
                return
            head += data
        parts = head.split(b"\r\n", 1)[0].split()
        host, _, port = parts[1].decode().rpartition(":") if len(parts) == 3 else ("", "", "0")
        if parts[0] != b"CONNECT" or port == "9":
            raw.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        try:
            up = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except OSError:
            raw.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        # in pieces, the blank line split too: the client must read up to
        # it and not a byte further
        for piece in (b"HTTP/1.1 200 Connection established\r\n", b"Via: h2peer\r\n\r", b"\n"):
            raw.sendall(piece)
            time.sleep(0.05)
        raw.settimeout(None)
        up.settimeout(None)
        t = threading.Thread(target=relay, args=(up, raw), daemon=True)
        t.start()
        relay(raw, up)
        t.join()
        up.close()
    except (OSError, ValueError, IndexError):
        pass
    finally:
        raw.close()


def listen(addr, ctx, handler=None):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, 0))
    ls.listen(64)

    def loop():
        while True:
            try:
                s, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=handler or serve, args=(s, ctx), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return ls.getsockname()[1]


def main():
    # the tests end us with SIGTERM: leave through the with-block below, so
    # that the temporary certificate folder goes too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    crt, key = os.path.join(CERTS, "server.crt"), os.path.join(CERTS, "server.key")
    with tempfile.TemporaryDirectory(prefix="np-h2peer-") as td:
        ocrt, okey = make_other_host_cert(td)
        ports = {
            "h2": listen("127.0.0.1", context(crt, key, ["h2"])),
            "ip2": listen("127.0.0.2", context(crt, key, ["h2"])),
            "otherhost": listen("127.0.0.1", context(ocrt, okey, ["h2"])),
            "http11": listen("127.0.0.1", context(crt, key, ["http/1.1"])),
            "noalpn": listen("127.0.0.1", context(crt, key, None)),
            "proxy": listen("127.0.0.1", None, proxy),
        }
        print(json.dumps(ports), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
