#!/usr/bin/python3
"""Integration tests: routes, mTLS, limits, CLI, logging.

Run: /usr/bin/python3 tests/integration/test_gateway.py [NAME-SUBSTRING...]
"""

import datetime
import json
import os
import re
import shutil
import socket
import ssl
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (  # noqa: E402
    CERTS, Gateway, H2Client, check, check_curl_error,
    check_refused, cert, client_context, fail, mget, nghttp, note,
    openssl_fingerprint, openssl_not_after, org, parse_metrics, run, run_cli,
    tls_connect, wait_for,
)

JSON_ROUTES = ["/v1/lookup", "/v1/aggregate", "/v1/federation/subquery"]
FP_RE = re.compile(r"^[0-9a-f]{64}$")
ISO_Z_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _whoami_ok(r, org_id, crt):
    check(r.status == 200, f"whoami as {org_id}: {r!r}")
    check(r.headers.get("content-type", "").startswith("application/json"),
          f"whoami content-type {r.headers.get('content-type')!r}")
    body = r.json()
    o = org(org_id)
    got = body.get("organisation")
    check(isinstance(got, dict), f"no organisation object: {body!r}")
    for k in ("id", "name", "oin"):
        check(got.get(k) == o[k], f"organisation.{k} = {got.get(k)!r}, "
              f"expected {o[k]!r}")
    check(got.get("roles") == o["roles"], f"organisation.roles = "
          f"{got.get('roles')!r}, expected {o['roles']!r}")
    c = body.get("certificate")
    check(isinstance(c, dict), f"no certificate object: {body!r}")
    fp = c.get("fingerprint_sha256", "")
    check(isinstance(fp, str) and FP_RE.match(fp),
          f"fingerprint_sha256 {fp!r} is not 64 lowercase hex digits")
    want = openssl_fingerprint(crt)
    check(fp == want, f"fingerprint_sha256 {fp} != openssl's {want}")
    na = c.get("not_after", "")
    check(isinstance(na, str) and ISO_Z_RE.match(na),
          f"not_after {na!r} is not ISO 8601 UTC with Z")
    got_dt = datetime.datetime.strptime(na[:19], "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)
    want_dt = openssl_not_after(crt)
    check(got_dt == want_dt, f"not_after {na} != certificate's {want_dt.isoformat()}")
    return body


# --------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------

def test_whoami_curl():
    with Gateway() as gw:
        for org_id in ("provincie-groningen", "provincie-fryslan", "hub",
                       "arbeidsmarkttafel"):
            r = gw.curl("/v1/whoami", org=org_id)
            check(r.version == "2", f"curl negotiated HTTP/{r.version}, expected 2")
            _whoami_ok(r, org_id, cert(org_id)[0])


def test_whoami_nghttp():
    with Gateway() as gw:
        rc, out, err = nghttp(gw, "/v1/whoami")
        check(rc == 0, f"nghttp exit {rc}: {err.strip()[:300]} {out[-300:]}")
        check(":status: 200" in out, f"nghttp: no ':status: 200' in output: "
              f"{out[-500:]}")
        i = out.find('{"organisation"')
        check(i >= 0, f"nghttp: no whoami JSON body in output: {out[-500:]}")
        body, _ = json.JSONDecoder().raw_decode(out[i:])
        check(body["organisation"]["id"] == "provincie-groningen",
              f"nghttp whoami body {body!r}")
        recv_settings = re.search(r"recv SETTINGS frame <[^>]*flags=0x00[^>]*>"
                                  r"(.*?)(?=\n\[ *\d)", out, re.S)
        check(recv_settings, f"nghttp: no SETTINGS frame received: {out[:600]}")
        check("SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100" in recv_settings.group(1),
              "nghttp: server SETTINGS do not announce MAX_CONCURRENT_STREAMS "
              f"100: {recv_settings.group(1).strip()!r}")


def test_whoami_python_h2_tls12():
    """TLS 1.2 is allowed (TLS >= 1.2), with ALPN h2 and a client cert."""
    with Gateway() as gw:
        ctx = client_context("provincie-drenthe", max_version=ssl.TLSVersion.TLSv1_2)
        s = tls_connect(gw, ctx=ctx)
        check(s.version() == "TLSv1.2", f"negotiated {s.version()}")
        s.close()
        with H2Client(gw, "provincie-drenthe") as c:
            for _ in range(3):
                st, hd, body = c.request("GET", "/v1/whoami")
                check(st == 200, f"whoami over h2: {st} {body[:200]!r}")
                check(json.loads(body)["organisation"]["id"] == "provincie-drenthe",
                      f"whoami body {body[:200]!r}")


def test_healthz():
    with Gateway() as gw:
        r = gw.curl("/healthz")
        check(r.status == 200, f"healthz: {r!r}")
        check(r.json() == {"status": "ok"}, f"healthz body {r.body!r}")
        check(r.headers.get("content-type", "").startswith("application/json"),
              f"healthz content-type {r.headers.get('content-type')!r}")


def test_metrics_format():
    with Gateway() as gw:
        for _ in range(2):
            check(gw.curl("/v1/whoami").status == 200, "whoami failed")
        gw.curl("/no/such/path")
        r = gw.curl("/metrics")
        check(r.status == 200, f"metrics: {r!r}")
        ct = r.headers.get("content-type", "")
        check(ct.startswith("text/plain"), f"metrics content-type {ct!r}")
        text = r.body.decode("utf-8")
        m = parse_metrics(text, strict=True)
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
        for name, typ in [("noordpoort_requests_total", "counter"),
                          ("noordpoort_request_duration_seconds", "histogram"),
                          ("noordpoort_connections_active", "gauge"),
                          ("noordpoort_streams_active", "gauge"),
                          ("noordpoort_tls_handshake_failures_total", "counter"),
                          ("noordpoort_authn_refusals_total", "counter"),
                          ("noordpoort_goaway_sent_total", "counter"),
                          ("noordpoort_reloads_total", "counter")]:
            check(types.get(name) == typ, f"# TYPE {name} is {types.get(name)!r}, "
                  f"expected {typ}")
        check(mget(m, "noordpoort_requests_total", route="/v1/whoami",
                   status="200") >= 2, "requests_total{route=/v1/whoami,status=200}"
              f" < 2: {[k for k in m if 'requests_total' in k]}")
        check(mget(m, "noordpoort_requests_total", route="other", status="404") >= 1,
              "requests_total{route=other,status=404} < 1: "
              f"{[k for k in m if 'requests_total' in k]}")
        check(mget(m, "noordpoort_connections_active") >= 1,
              "connections_active < 1 while a connection is open")
        # histogram consistency
        buckets = {}
        for k, v in m.items():
            if k.startswith("noordpoort_request_duration_seconds_bucket{"):
                le = re.search(r'le="([^"]+)"', k).group(1)
                rest = re.sub(r',?le="[^"]+"', "", k)
                buckets.setdefault(rest, []).append(
                    (float("inf") if le == "+Inf" else float(le), v))
        check(buckets, "no noordpoort_request_duration_seconds_bucket samples")
        for series, bs in buckets.items():
            bs.sort()
            check(bs[-1][0] == float("inf"), f"{series}: no le=\"+Inf\" bucket")
            vals = [v for _, v in bs]
            check(vals == sorted(vals), f"{series}: buckets not cumulative {bs}")
            count_key = series.replace("_bucket", "_count")
            sum_key = series.replace("_bucket", "_sum")
            if count_key.endswith("{}"):
                count_key, sum_key = count_key[:-2], sum_key[:-2]
            check(count_key in m and sum_key in m,
                  f"{series}: missing {count_key} / {sum_key}")
            check(m[count_key] == bs[-1][1],
                  f"{count_key} = {m[count_key]} != +Inf bucket {bs[-1][1]}")
        total = sum(m[k] for k in m if k.startswith("noordpoort_request_duration_seconds_count"))
        check(total >= 3, f"request_duration_seconds_count total {total} < 3")


def test_not_found_404():
    with Gateway() as gw:
        for path in ("/nope", "/v1/whoami/extra", "/v2/whoami", "/"):
            r = gw.curl(path)
            check_curl_error(r, 404, "not_found", f"GET {path}")
        check(gw.metric("noordpoort_requests_total", route="other",
                        status="404") >= 4, "404s not counted under route=other")


def test_method_not_allowed_405():
    with Gateway() as gw:
        for method, path in [("POST", "/v1/whoami"), ("DELETE", "/healthz"),
                             ("PUT", "/metrics"), ("GET", "/v1/lookup"),
                             ("GET", "/v1/aggregate"),
                             ("GET", "/v1/federation/subquery")]:
            data = "{}" if method in ("POST", "PUT") else None
            r = gw.curl(path, method=method, data=data,
                        headers=["content-type: application/json"] if data else ())
            check_curl_error(r, 405, "method_not_allowed", f"{method} {path}")


def test_invalid_json_400():
    with Gateway() as gw:
        for path in JSON_ROUTES:
            for body in ("{bad", "", "[1,2", "{\"a\":}", "\xff\xfe"):
                r = gw.curl(path, method="POST", data=body.encode("latin-1"),
                            headers=["content-type: application/json"])
                check_curl_error(r, 400, "invalid_json", f"POST {path} {body!r}")


def test_valid_json_501():
    with Gateway() as gw:
        for path in JSON_ROUTES:
            r = gw.curl(path, method="POST", data=b'{"query":"x","n":[1,2,3]}',
                        headers=["content-type: application/json"])
            check_curl_error(r, 501, "not_implemented", f"POST {path}")


# --------------------------------------------------------------------------
# mTLS and authentication
# --------------------------------------------------------------------------

def _refused_and_counted(gw, reason, **curl_kw):
    before = gw.metric("noordpoort_tls_handshake_failures_total", reason=reason)
    r = gw.curl("/v1/whoami", **curl_kw)
    check_refused(r, f"{reason}")
    gw.wait_metric("noordpoort_tls_handshake_failures_total", before + 1,
                   reason=reason)
    return r


def test_no_client_cert_refused():
    with Gateway() as gw:
        _refused_and_counted(gw, "no_certificate", org=None)


def test_revoked_cert_refused():
    with Gateway() as gw:
        _refused_and_counted(gw, "revoked", org="revoked")


def test_expired_cert_refused():
    with Gateway() as gw:
        _refused_and_counted(gw, "expired", org="expired")


def test_rogue_ca_cert_refused():
    with Gateway() as gw:
        _refused_and_counted(gw, "unknown_ca", org="rogue")


def test_http11_only_refused_no_alpn():
    with Gateway() as gw:
        r = _refused_and_counted(gw, "no_alpn", http="--http1.1")
        note(f"curl --http1.1: rc {r.rc}: {r.err.strip()[:200]}")


def test_python_no_alpn_refused():
    """A client that offers no ALPN at all is refused too (ALPN h2 only)."""
    with Gateway() as gw:
        before = gw.metric("noordpoort_tls_handshake_failures_total", reason="no_alpn")
        ok = False
        try:
            s = tls_connect(gw, alpn=None, check_alpn=False)
            # TLS 1.3: the server may only tell us after our first read/write
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            ok = bool(s.recv(100))
            s.close()
        except (ssl.SSLError, OSError):
            pass
        check(not ok, "connection without ALPN was served")
        gw.wait_metric("noordpoort_tls_handshake_failures_total", before + 1,
                       reason="no_alpn")


def test_tls11_refused():
    with Gateway() as gw:
        before = gw.metric("noordpoort_tls_handshake_failures_total",
                           reason="protocol_version")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.set_alpn_protocols(["h2"])
        ctx.load_cert_chain(*cert("provincie-groningen"))
        raw = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        try:
            s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            v = s.version()
            s.close()
            fail(f"TLS handshake with max TLS 1.1 succeeded ({v})")
        except ssl.SSLError as e:
            note(f"TLS 1.1 client: {e}")
        finally:
            raw.close()
        gw.wait_metric("noordpoort_tls_handshake_failures_total", before + 1,
                       reason="protocol_version")
        # curl's view of the same thing
        r = gw.curl("/healthz", extra=["--tlsv1.0", "--tls-max", "1.1",
                                       "--ciphers", "DEFAULT:@SECLEVEL=0"])
        check_refused(r, "curl --tls-max 1.1")


def test_no_oin_403():
    with Gateway() as gw:
        before = gw.metric("noordpoort_authn_refusals_total", reason="no_oin")
        for path, method in [("/v1/whoami", None), ("/metrics", None),
                             ("/v1/nothing", None), ("/v1/lookup", "POST")]:
            r = gw.curl(path, org="no-oin", method=method,
                        data=b"{}" if method else None)
            check_curl_error(r, 403, "no_oin", f"{path} as no-oin")
        gw.wait_metric("noordpoort_authn_refusals_total", before + 4, reason="no_oin")
        # /healthz needs only a verified certificate (docs/config.md), so a
        # monitoring system with a federation certificate can check liveness.
        r = gw.curl("/healthz", org="no-oin")
        check(r.status == 200, f"/healthz as no-oin: {r!r}")


def test_unknown_organisation_403():
    with Gateway(exclude=["provincie-fryslan"]) as gw:
        before = gw.metric("noordpoort_authn_refusals_total",
                           reason="unknown_organisation")
        r = gw.curl("/v1/whoami", org="provincie-fryslan")
        check_curl_error(r, 403, "unknown_organisation", "whoami as fryslan")
        gw.wait_metric("noordpoort_authn_refusals_total", before + 1,
                       reason="unknown_organisation")
        r = gw.curl("/v1/whoami", org="provincie-groningen")
        check(r.status == 200, f"groningen still a member: {r!r}")


# --------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------

def test_big_header_431():
    with Gateway() as gw:
        r = gw.curl("/v1/whoami", headers=["x-big: " + "a" * 20000])
        check_curl_error(r, 431, "headers_too_large", "one 20 KB header")
        # control: a 10 KB header is within max_header_list_bytes (16384)
        r = gw.curl("/v1/whoami", headers=["x-big: " + "a" * 10000])
        check(r.status == 200, f"one 10 KB header should be allowed: {r!r}")


def test_many_headers_431():
    with Gateway() as gw:
        hs = [f"x-h-{i}: v{i}" for i in range(200)]
        r = gw.curl("/v1/whoami", headers=hs)
        check_curl_error(r, 431, "headers_too_large", "200 small headers")
        hs = [f"x-h-{i}: v{i}" for i in range(80)]
        r = gw.curl("/v1/whoami", headers=hs)
        check(r.status == 200, f"80 small headers should be allowed: {r!r}")


def test_many_headers_431_configured_limit():
    with Gateway(config={"limits": {"max_header_fields": 20,
                                    "max_header_list_bytes": 2000}}) as gw:
        r = gw.curl("/v1/whoami", headers=[f"x-h-{i}: v" for i in range(30)])
        check_curl_error(r, 431, "headers_too_large", "30 headers, limit 20")
        r = gw.curl("/v1/whoami", headers=["x-big: " + "b" * 2500])
        check_curl_error(r, 431, "headers_too_large", "2.5 KB header, limit 2000")
        r = gw.curl("/v1/whoami", headers=["x-ok: " + "b" * 500])
        check(r.status == 200, f"0.5 KB header within 2000: {r!r}")


def test_big_body_413():
    with Gateway() as gw, tempfile.NamedTemporaryFile(suffix=".json") as f:
        f.write(b'{"p":"' + b"a" * (2 * 1024 * 1024) + b'"}')
        f.flush()
        r = gw.curl("/v1/lookup", method="POST", data_file=f.name,
                    headers=["content-type: application/json"], timeout=20)
        check_curl_error(r, 413, "body_too_large", "2 MB POST with content-length")
        # without content-length (curl -T - streams the body)
        r = gw.curl("/v1/lookup", method="POST", stdin_data=b"a" * (2 * 1024 * 1024),
                    headers=["content-type: application/json"], timeout=20)
        check_curl_error(r, 413, "body_too_large", "2 MB POST without content-length")
        # control: exactly max_body_bytes of valid JSON is accepted
        exact = b'{"p":"' + b"a" * (1048576 - 8) + b'"}'
        check(len(exact) == 1048576, "test bug")
        r = gw.curl("/v1/lookup", method="POST", data=exact,
                    headers=["content-type: application/json"], timeout=20)
        check_curl_error(r, 501, "not_implemented", "body of exactly 1 MiB")


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def test_cli_help_version():
    r = run_cli("--help")
    check(r.returncode == 0, f"--help exit {r.returncode}: {r.stderr[:200]}")
    check("serve" in r.stdout and "check-config" in r.stdout,
          f"--help does not mention serve / check-config: {r.stdout[:300]!r}")
    r = run_cli("--version")
    check(r.returncode == 0, f"--version exit {r.returncode}: {r.stderr[:200]}")
    check(re.search(r"\d+\.\d+", r.stdout) and "noordpoort" in r.stdout.lower(),
          f"--version output {r.stdout!r}")
    for sub in ("serve", "check-config"):
        r = run_cli(sub, "--help")
        check(r.returncode == 0, f"{sub} --help exit {r.returncode}: {r.stderr[:200]}")
        check("-c" in r.stdout, f"{sub} --help does not mention -c: {r.stdout[:300]!r}")


def test_cli_bad_usage_exit_2():
    cases = [(), ("frobnicate",), ("serve",), ("check-config",), ("serve", "-x"),
             ("--bogus",), ("serve", "-c")]
    for args in cases:
        r = run_cli(*args)
        check(r.returncode == 2, f"noordpoort {' '.join(args)}: exit "
              f"{r.returncode}, expected 2 (stderr {r.stderr[:200]!r})")
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        check(len(lines) == 1, f"noordpoort {' '.join(args)}: expected a one-line "
              f"reason on stderr, got {r.stderr[:300]!r}")


def test_check_config_good():
    gw = Gateway()  # not started: only to get a written, valid config
    try:
        r = run_cli("check-config", "-c", gw.config_path)
        check(r.returncode == 0, f"check-config on a valid config: exit "
              f"{r.returncode}: {r.stdout[:300]} {r.stderr[:300]}")
    finally:
        gw.dir.cleanup()


def _config_text(members):
    c = CERTS
    return f"""listen:
  - 127.0.0.1:0
tls:
  certificate: {c}/server.crt
  key: {c}/server.key
  client_ca: {c}/ca.crt
  crl: {c}/crl.pem
members: {members}
workers: 2
limits:
  max_connections: 4096
  max_concurrent_streams: 100
timeouts:
  handshake: 10s
  idle: 120s
log:
  destination: stderr
"""


def _check_config_errors(text, want_lines):
    gw = Gateway()  # not started: only for its members file and tempdir
    try:
        members = gw.members_path
        path = gw.path / "broken.yaml"
        path.write_text(text.replace("@MEMBERS@", str(members)))
        r = run_cli("check-config", "-c", path)
        out = r.stdout + r.stderr
        check(r.returncode == 1, f"check-config exit {r.returncode}, expected 1; "
              f"output {out[:400]!r}")
        found = {}
        for m in re.finditer(r"^(\S+?):(\d+):(\d+): (.+)$", out, re.M):
            if m.group(1).endswith("broken.yaml"):
                found.setdefault(int(m.group(2)), []).append(
                    (int(m.group(3)), m.group(4)))
        for line, want_cols, what in want_lines:
            check(line in found, f"no '{path.name}:{line}:COL: ...' error for "
                  f"{what}; output {out[:500]!r}")
            cols = [c for c, _ in found[line]]
            check(any(c in want_cols for c in cols), f"{what}: column {cols}, "
                  f"expected one of {want_cols} (1-based); output {out[:400]!r}")
        note("check-config said: " + " | ".join(out.strip().splitlines()[:4]))
    finally:
        gw.dir.cleanup()


def test_check_config_unknown_key():
    text = _config_text("@MEMBERS@").replace(
        "  max_concurrent_streams: 100\n",
        "  max_concurrent_streams: 100\n  max_connectionz: 5\n")
    # line 13, column 3
    _check_config_errors(text, [(13, (3,), "unknown key limits.max_connectionz")])


def test_check_config_wrong_type():
    text = _config_text("@MEMBERS@").replace("workers: 2\n", "workers: many\n")
    # 'many' is on line 9 at column 10
    _check_config_errors(text, [(9, (1, 10), "workers: many (wrong type)")])


def test_check_config_several_errors():
    text = _config_text("@MEMBERS@").replace(
        "workers: 2\n", "workers: many\n").replace(
        "  idle: 120s\n", "  idle: 120s\n  idel: 5s\n").replace(
        "  max_connections: 4096\n", "  max_connections: [1, 2]\n")
    _check_config_errors(text, [(9, (1, 10), "workers: many"),
                                (11, (3, 20), "max_connections: [1, 2]"),
                                (16, (3,), "unknown key timeouts.idel")])


# --------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------

SECRET = "NPSECRET-7f3a9c-BSN-999990019"


def test_request_log_lines():
    with Gateway() as gw:
        def req_lines():
            return [o for o in gw.log_json() if "status" in o and "method" in o]
        n0 = len(req_lines())
        for _ in range(3):
            check(gw.curl("/healthz").status == 200, "healthz failed")
        r = gw.curl("/v1/lookup", method="POST",
                    data=json.dumps({"bsn": SECRET, "name": SECRET}).encode(),
                    headers=["content-type: application/json"])
        check(r.status == 501, f"lookup: {r!r}")
        r = gw.curl("/v1/lookup", method="POST", data=("{" + SECRET).encode())
        check(r.status == 400, f"bad lookup: {r!r}")
        time.sleep(0.5)
        lines = req_lines()[n0:]
        check(len(lines) == 5, f"expected 5 request log lines, got {len(lines)}: "
              f"{lines}")
        for o in lines:
            for k in ("time", "org", "method", "status", "duration_ms", "bytes"):
                check(k in o, f"request log line lacks {k!r}: {o}")
            check("route" in o or "path" in o, f"request log line lacks route/path: {o}")
            check(isinstance(o["status"], int), f"status not a number: {o}")
            check(isinstance(o["duration_ms"], (int, float)), f"duration_ms: {o}")
            check(isinstance(o["bytes"], int), f"bytes: {o}")
            check(o["org"] in ("provincie-groningen", org("provincie-groningen")["oin"]),
                  f"org {o['org']!r}, expected provincie-groningen")
        health = [o for o in lines if "/healthz" in (str(o.get("route")), str(o.get("path")))]
        check(len(health) == 3, f"expected 3 /healthz lines: {lines}")
        check([o["status"] for o in lines[3:]] == [501, 400],
              f"statuses of lookup lines: {[o['status'] for o in lines[3:]]}")
        for line in gw.log_lines():
            check(SECRET not in line, f"request body leaked into the log: {line[:300]}")
        bad = [l for l in gw.log_lines() if l.strip() and not _is_json(l)]
        check(not bad, f"non-JSON log lines on stderr: {bad[:3]}")


def test_log_to_file():
    with Gateway(config={"log": {"destination": "gateway.log"}}) as gw:
        check(gw.curl("/v1/whoami").status == 200, "whoami failed")
        check(gw.curl("/nope").status == 404, "404 failed")
        time.sleep(0.5)

        def reqs():
            return [o for o in gw.log_json() if "status" in o and "method" in o]
        wait_for(lambda: len(reqs()) >= 2, 5, what="request lines in gateway.log")
        check(gw.log_file.exists(), f"{gw.log_file} (relative to the config "
              "file) was not created")
        statuses = sorted(o["status"] for o in reqs())
        check(statuses[:2] == [200, 404], f"statuses in the log file: {statuses}")
        stray = [l for l in gw._out if '"status"' in l]
        check(not stray, f"request lines also on stderr/stdout: {stray[:2]}")


def test_relative_paths_in_config():
    """Relative paths resolve against the config file, not the working
    directory (the harness runs the server with cwd=/)."""
    gw = Gateway(config={
        "tls": {"certificate": "pki/server.crt", "key": "pki/server.key",
                "client_ca": "pki/ca.crt", "crl": "pki/crl.pem"},
        "members": "members.yaml"})
    (gw.path / "pki").mkdir()
    for f in ("server.crt", "server.key", "ca.crt", "crl.pem"):
        shutil.copy(CERTS / f, gw.path / "pki" / f)
    os.chmod(gw.path / "pki" / "server.key", 0o600)
    r = run_cli("check-config", "-c", gw.config_path)
    check(r.returncode == 0, f"check-config with relative paths: exit "
          f"{r.returncode}: {r.stdout[:300]} {r.stderr[:300]}")
    with gw:
        r = gw.curl("/v1/whoami")
        _whoami_ok(r, "provincie-groningen", cert("provincie-groningen")[0])


def test_durations_milliseconds():
    with Gateway(config={"timeouts": {"handshake": "500ms"}}) as gw:
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        t0 = time.monotonic()
        try:
            s.recv(10)
        except (ConnectionResetError, socket.timeout):
            pass
        dt = time.monotonic() - t0
        s.close()
        check(0.3 <= dt <= 1.5, f"handshake timeout \"500ms\": closed after {dt:.2f}s")


def test_max_connections():
    with Gateway(config={"workers": 1, "limits": {"max_connections": 4}}) as gw:
        conns = [H2Client(gw) for _ in range(4)]
        try:
            for c in conns:
                st, _, _ = c.request("GET", "/healthz")
                check(st == 200, f"healthz on one of 4 allowed connections: {st}")
            refused = False
            try:
                with H2Client(gw, timeout=3) as extra:
                    st, _, _ = extra.request("GET", "/healthz")
                    note(f"5th connection served with {st}")
            except (OSError, ssl.SSLError, AssertionError) as e:
                refused = True
                note(f"5th connection: {type(e).__name__}: {e}")
            check(refused, "a 5th connection was served with max_connections 4")
            st, _, _ = conns[0].request("GET", "/healthz")
            check(st == 200, f"existing connection after the refusal: {st}")
            conns.pop().close()
            time.sleep(0.5)
            r = gw.curl("/healthz")
            check(r.status == 200, f"a new connection after one closed: {r!r}")
        finally:
            for c in conns:
                c.close()


def _is_json(line):
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_head_as_get_without_content():
    """HEAD on a GET route: GET's status and content-length, no content
    (RFC 9110 9.3.2); python-h2 resets a HEAD stream that carries DATA, as
    before the fix every client did on the 405 body. HEAD on a POST route:
    405 with allow: POST, also without content."""
    with Gateway() as gw, H2Client(gw) as c:
        st, hdrs, body = c.request("GET", "/v1/whoami")
        check(st == 200, f"GET whoami {st}")
        for path, want in (("/v1/whoami", 200), ("/healthz", 200), ("/metrics", 200),
                           ("/v1/lookup", 405), ("/v1/nothing", 404)):
            st2, h2hdrs, body2 = c.request("HEAD", path)
            check(st2 == want and body2 == b"", f"HEAD {path}: {st2} with {len(body2)} "
                  f"content bytes, expected {want} and none")
            if path == "/v1/whoami":
                check(h2hdrs.get("content-length") == str(len(body)),
                      f"HEAD whoami content-length {h2hdrs.get('content-length')}, GET's {len(body)}")
            if want == 405:
                check(h2hdrs.get("allow") == "POST", f"HEAD {path}: allow {h2hdrs.get('allow')}")
    with Gateway() as gw, H2Client(gw, "provincie-fryslan") as c:
        st, _, body = c.request("HEAD", "/metrics")
        check(st == 403 and body == b"", f"HEAD /metrics as a non-operator: {st}")
        st, _, body = c.request("GET", "/metrics")
        check(st == 403 and b"not_an_operator" in body, f"GET /metrics as a non-operator: {st} {body[:100]!r}")


if __name__ == "__main__":
    run(globals())
