#!/usr/bin/python3
"""`noordpoort query`, the coordinator's client, against real gateways.

Until the hub answers /v1/aggregate, a plain gateway stands in: it answers
501 not_implemented (the "hub could not answer" path) and 403 to a
non-member (the "hub refused" path). With the hub in place, add the answered
question here (table, csv and json output).
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BIN, CERTS, REPO, Gateway, check, run,  # noqa: E402
                     _server_host)

QUESTION = {
    "purpose": "hnld-kv-monitoring",
    "population": "opleidingsfonds-techniek/inschrijvingen",
    "link": ["uwv/ww-uitkeringen"],
    "measure": {"count": "persons"},
    "group_by": ["opleidingsfonds-techniek/inschrijvingen.programme",
                 "uwv/ww-uitkeringen.end_reason"],
    "filters": {"opleidingsfonds-techniek/inschrijvingen.start_year": [2023, 2024]},
}

COORDINATOR = "arbeidsmarkttafel"


def query(*args, cwd="/", org=COORDINATOR, cacert=None, timeout=20, env_extra=None):
    """Runs `noordpoort query ARGS` (with --cert/--key/--cacert of |org|
    unless org is None; no proxy unless |env_extra| sets one); returns the
    CompletedProcess (text)."""
    cmd = [str(BIN), "query"] + [str(a) for a in args]
    if org:
        cmd += ["--cert", CERTS / f"{org}.crt", "--key", CERTS / f"{org}.key",
                "--cacert", cacert or CERTS / "ca.crt"]
    env = dict(os.environ)
    for k in ("https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        env.pop(k, None)
    env.update(env_extra or {})
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd, stdin=subprocess.DEVNULL)


def question_file(td, obj=QUESTION, name="question.json"):
    p = Path(td) / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return p


def hub_url(gw):
    host, _ = _server_host()
    return f"https://{host}:{gw.port}"


def one_line(r, what):
    lines = r.stderr.strip().splitlines()
    check(len(lines) == 1, f"{what}: expected one line on stderr, got {r.stderr!r}")
    return lines[0]


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_help():
    r = query("--help", org=None)
    check(r.returncode == 0, f"--help: exit {r.returncode}: {r.stderr}")
    check(r.stdout.startswith("Usage: noordpoort query --hub"), f"--help: {r.stdout[:200]!r}")
    for word in ("--format", "table", "csv", "json", "--cert", "--cacert", "<10"):
        check(word in r.stdout, f"--help does not mention {word!r}")
    check(r.stderr == "", f"--help wrote to stderr: {r.stderr!r}")


def test_bad_usage():
    with tempfile.TemporaryDirectory() as td:
        q = question_file(td)
        cases = [
            ([], "missing --hub"),
            (["-f", q], "missing --hub"),
            (["--hub", "https://127.0.0.1:1"], "missing -f"),
            (["--hub", "http://127.0.0.1:1", "-f", q], "must be https://"),
            (["--hub", "https://127.0.0.1:1", "-f", q, "--format", "xml"], "table, csv or json"),
            (["--hub", "https://127.0.0.1:1", "-f", q, "--bogus"], "unexpected argument '--bogus'"),
            (["--hub", "https://127.0.0.1:1", "-f"], "-f needs a value"),
            (["--hub", "https://127.0.0.1:1", "-f", q, "--timeout", "0"], "--timeout"),
            (["--hub", "https://a:1", "--hub", "https://b:1", "-f", q], "given twice"),
        ]
        for args, want in cases:
            r = query(*args, org=None)
            check(r.returncode == 2, f"{args}: exit {r.returncode}, expected 2: {r.stderr!r}")
            line = one_line(r, str(args))
            check(line.startswith("noordpoort query: ") and want in line,
                  f"{args}: stderr {line!r}, expected it to say {want!r}")
            check(r.stdout == "", f"{args}: wrote to stdout: {r.stdout!r}")


def test_no_default_certs_outside_repo():
    """Without --cert, the defaults are certs/dev/... relative to the working
    folder; elsewhere that is a usage error naming the missing file."""
    with tempfile.TemporaryDirectory() as td:
        q = question_file(td)
        r = query("--hub", "https://127.0.0.1:1", "-f", q, org=None, cwd=td)
        check(r.returncode == 2, f"exit {r.returncode}: {r.stderr!r}")
        check("missing --cert FILE" in one_line(r, "no certs"), r.stderr)


def test_bad_question_file():
    with tempfile.TemporaryDirectory() as td:
        q = question_file(td, '{"purpose": "x",\n  "population": }\n')
        r = query("--hub", "https://127.0.0.1:1", "-f", q)
        check(r.returncode == 1, f"exit {r.returncode}: {r.stderr!r}")
        line = one_line(r, "bad JSON")
        check(f"{q}:2:" in line and "not a JSON object" in line, line)
        r = query("--hub", "https://127.0.0.1:1", "-f", Path(td) / "nope.json")
        check(r.returncode == 1 and "No such file" in one_line(r, "missing file"), r.stderr)


def test_unreachable_hub():
    with tempfile.TemporaryDirectory() as td:
        q = question_file(td)
        port = closed_port()
        r = query("--hub", f"https://127.0.0.1:{port}", "-f", q)
        check(r.returncode == 1, f"exit {r.returncode}: {r.stderr!r}")
        line = one_line(r, "unreachable")
        check(f"no answer from the hub at https://127.0.0.1:{port}" in line and
              "Couldn't connect to server" in line, line)
        check(r.stdout == "", f"wrote to stdout: {r.stdout!r}")


def test_hub_not_implemented():
    """A gateway without the hub role answers 501: reported in words, exit 1;
    the gateway saw the coordinator's certificate over HTTP/2."""
    with tempfile.TemporaryDirectory() as td, Gateway() as gw:
        q = question_file(td)
        r = query("--hub", hub_url(gw), "-f", q)
        check(r.returncode == 1, f"exit {r.returncode}: {r.stderr!r}")
        line = one_line(r, "501")
        check(line.startswith("noordpoort query: hub could not answer the question "
                              "(501 not_implemented): "), line)
        check("no data role" in line, line)
        reqs = [o for o in gw.log_json() if o.get("event") == "request"]
        check(any(o.get("org") == COORDINATOR and o.get("route") == "/v1/aggregate" and
                  o.get("status") == 501 and o.get("method") == "POST" for o in reqs),
              f"no request log line for {COORDINATOR} on /v1/aggregate: {reqs}")


def test_default_certs_from_repo_root():
    """Run from the repository root, the development coordinator's
    certificate is the default."""
    if CERTS.resolve() != (REPO / "certs" / "dev").resolve():
        return  # the defaults point into certs/dev; nothing to check elsewhere
    with tempfile.TemporaryDirectory() as td, Gateway() as gw:
        q = question_file(td)
        r = query("--hub", hub_url(gw), "-f", q, org=None, cwd=REPO)
        check(r.returncode == 1 and "(501 not_implemented)" in r.stderr, r.stderr)
        reqs = [o for o in gw.log_json() if o.get("event") == "request"]
        check(any(o.get("org") == COORDINATOR for o in reqs), f"{reqs}")


def test_hub_refuses_non_member():
    with tempfile.TemporaryDirectory() as td, Gateway(exclude=[COORDINATOR]) as gw:
        q = question_file(td)
        r = query("--hub", hub_url(gw), "-f", q)
        check(r.returncode == 1, f"exit {r.returncode}: {r.stderr!r}")
        line = one_line(r, "403")
        check(line.startswith("noordpoort query: hub refused the question (403 "), line)


def test_hub_certificate_not_trusted():
    """The hub is always verified: against another CA the query fails with
    its reason and sends nothing."""
    with tempfile.TemporaryDirectory() as td, Gateway() as gw:
        q = question_file(td)
        r = query("--hub", hub_url(gw), "-f", q, cacert=CERTS / "rogue-ca.crt")
        check(r.returncode == 1, f"exit {r.returncode}: {r.stderr!r}")
        line = one_line(r, "rogue CA")
        check("no answer from the hub" in line and "certificate" in line.lower(), line)
        reqs = [o for o in gw.log_json() if o.get("event") == "request"]
        check(not reqs, f"a request got through: {reqs}")


@contextlib.contextmanager
def h2peer():
    """tests/integration/h2peer.py: misbehaving HTTP/2 servers; yields
    {listener: port}."""
    p = subprocess.Popen(["/usr/bin/python3", str(Path(__file__).with_name("h2peer.py")),
                          str(CERTS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        check(line.startswith("{"), f"h2peer.py did not start: {line!r}")
        yield json.loads(line)
    finally:
        p.stdin.close()
        p.terminate()
        p.wait(timeout=10)


def test_hub_without_h2():
    """A server that does not select HTTP/2 by ALPN: refused, in words."""
    with tempfile.TemporaryDirectory() as td, h2peer() as ports:
        q = question_file(td)
        r = query("--hub", f"https://127.0.0.1:{ports['http11']}", "-f", q)
        check(r.returncode == 1, f"exit {r.returncode}: {r.stderr!r}")
        line = one_line(r, "no h2")
        check("no answer from the hub at" in line and "HTTP/2 (ALPN h2)" in line, line)


def test_hub_certificate_for_another_host():
    """A certificate of the federation CA, but for another host name."""
    with tempfile.TemporaryDirectory() as td, h2peer() as ports:
        q = question_file(td)
        r = query("--hub", f"https://localhost:{ports['otherhost']}", "-f", q)
        check(r.returncode == 1, f"exit {r.returncode}: {r.stderr!r}")
        line = one_line(r, "other host")
        check("certificate" in line and "hostname mismatch" in line, line)


def test_hub_breaks_off_its_answer():
    """An answer reset half way, one that stalls past --timeout, and one
    that is not JSON: exit 1, one line each, nothing on stdout."""
    with tempfile.TemporaryDirectory() as td, h2peer() as ports:
        hub = f"https://127.0.0.1:{ports['h2']}"
        q = question_file(td, {"do": "reset-mid-body", "size": 100000}, "reset.json")
        r = query("--hub", hub, "-f", q)
        check(r.returncode == 1 and "Stream reset by the server" in one_line(r, "reset"),
              r.stderr)
        q = question_file(td, {"do": "stall-mid-body", "size": 100000}, "stall.json")
        t0 = time.monotonic()
        r = query("--hub", hub, "-f", q, "--timeout", "1")
        dt = time.monotonic() - t0
        check(r.returncode == 1 and "Timeout was reached" in one_line(r, "stall"), r.stderr)
        check(dt < 5, f"--timeout 1 took {dt:.1f}s")
        q = question_file(td, {"do": "ok", "size": 1000}, "binary.json")
        r = query("--hub", hub, "-f", q)
        check(r.returncode == 1 and "the hub's answer: not a JSON object" in one_line(r, "bin"),
              r.stderr)
        check(r.stdout == "", f"wrote to stdout: {r.stdout!r}")


def test_client_key_checked():
    """A key that is not the certificate's, or that others may read: refused
    before anything is sent."""
    with tempfile.TemporaryDirectory() as td:
        q = question_file(td)
        args = ["--hub", "https://127.0.0.1:1", "-f", q, "--cacert", CERTS / "ca.crt",
                "--cert", CERTS / f"{COORDINATOR}.crt"]
        r = query(*args, "--key", CERTS / "uwv.key", org=None)
        check(r.returncode == 1 and "does not belong to certificate" in one_line(r, "key"),
              r.stderr)
        loose = Path(td) / "loose.key"
        shutil.copy(CERTS / f"{COORDINATOR}.key", loose)
        loose.chmod(0o644)
        r = query(*args, "--key", loose, org=None)
        check(r.returncode == 1 and "secret key file is accessible by group or others (mode 0644)"
              in one_line(r, "mode"),
              r.stderr)



def test_proxy():
    """https_proxy as curl reads it: CONNECT through an HTTP proxy, TLS end
    to end (the gateway still sees the coordinator's certificate); a proxy
    that is not there or says no fails in words; no_proxy goes around it;
    a proxy of a kind the client cannot use is refused, not bypassed."""
    with tempfile.TemporaryDirectory() as td, Gateway() as gw, h2peer() as ports:
        q = question_file(td)
        hub = hub_url(gw)
        via = {"https_proxy": f"http://127.0.0.1:{ports['proxy']}"}
        r = query("--hub", hub, "-f", q, env_extra=via)
        check(r.returncode == 1 and "(501 not_implemented)" in one_line(r, "via proxy"), r.stderr)
        reqs = [o for o in gw.log_json() if o.get("event") == "request"]
        check(any(o.get("org") == COORDINATOR for o in reqs), f"{reqs}")
        dead = closed_port()
        gone = {"HTTPS_PROXY": f"127.0.0.1:{dead}"}
        r = query("--hub", hub, "-f", q, env_extra=gone)
        line = one_line(r, "proxy not there")
        check(r.returncode == 1 and "Couldn't connect to server" in line and
              f"proxy 127.0.0.1 port {dead}" in line, line)
        host = hub.split("//")[1].rsplit(":", 1)[0]
        r = query("--hub", hub, "-f", q, env_extra=dict(gone, no_proxy=f"example.org, {host}"))
        check(r.returncode == 1 and "(501 not_implemented)" in one_line(r, "no_proxy"), r.stderr)
        r = query("--hub", "https://127.0.0.1:9", "-f", q, env_extra=via)
        line = one_line(r, "proxy says no")
        check(r.returncode == 1 and "the proxy answered 'HTTP/1.1 403 Forbidden'" in line, line)
        for bad in ("socks5://127.0.0.1:1", "https://127.0.0.1:1", "http://u:secret@127.0.0.1:1"):
            r = query("--hub", hub, "-f", q, env_extra={"https_proxy": bad})
            line = one_line(r, bad)
            check(r.returncode == 1 and "only an http://HOST:PORT proxy" in line and
                  "secret" not in line, line)


if __name__ == "__main__":
    run(globals())
