#!/usr/bin/python3
"""Abuse battery, a partner whose key was stolen (issue 10, section 1): on a
connection it already has open, it must be cut off within a second of the
revocation. Each test keeps a real HTTP/2 connection open, asks once, changes
the federation's state (the CRL, the members file, the clock passing the
certificate's not_after), and asks again on the same connection: no data,
only 403 or GOAWAY and a closed connection. A partner whose state did not
change keeps its connection (the other side of each boundary).
docs/abuse.md, "Revocation on open connections", has what happens.

Run: /usr/bin/python3 tests/abuse/test_revocation.py [NAME-SUBSTRING...]
"""

import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from abuselib import gateway, goaway_str, response_error_code  # noqa: E402
from harness import (  # noqa: E402
    CERTS, REPO, Federation, RawH2, check, client_context, load_orgs,
    members_yaml, note, run, synth_data, wait_for,
)

CUT_WITHIN_S = 1.0
CNF = str(REPO / "certs" / "openssl-ca.cnf")


def _ca_env(tmp):
    """A private copy of the dev CA's state (certs/dev stays untouched)."""
    ca_dir = Path(tmp) / "ca-state"
    if not ca_dir.exists():
        shutil.copytree(CERTS / ".ca", ca_dir)
    return dict(os.environ, NOORDPOORT_CA_DIR=str(ca_dir),
                NOORDPOORT_CA_CERT=str(CERTS / "ca.crt"),
                NOORDPOORT_CA_KEY=str(CERTS / "ca.key"))


def _openssl(args, env):
    r = subprocess.run(["openssl"] + args, env=env, capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 0, f"openssl {' '.join(args[:2])} failed: {r.stderr[-400:]}")


def _revoke(tmp, crt, crl_out):
    """Revokes |crt| and writes the CA's new CRL to |crl_out| atomically."""
    env = _ca_env(tmp)
    _openssl(["ca", "-batch", "-config", CNF, "-revoke", str(crt)], env)
    _openssl(["ca", "-batch", "-config", CNF, "-gencrl", "-out", str(crl_out) + ".new"], env)
    os.replace(str(crl_out) + ".new", crl_out)


def _short_lived_cert(tmp, org_id, seconds):
    """A client certificate of |org_id|'s subject from the dev CA, valid from
    a minute ago until |seconds| from now. Returns (crt, key, not_after)."""
    org = next(o for o in load_orgs() if o["id"] == org_id)
    env = _ca_env(tmp)
    key, csr, crt = (Path(tmp) / f"short.{x}" for x in ("key", "csr", "crt"))
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    start = (now - datetime.timedelta(minutes=1)).strftime("%Y%m%d%H%M%SZ")
    end_t = now + datetime.timedelta(seconds=seconds)
    end = end_t.strftime("%Y%m%d%H%M%SZ")
    subj = f"/C=NL/O={org['name']}/CN={org_id}/serialNumber={org['oin']}"
    _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-out", str(key)], env)
    os.chmod(key, 0o600)
    _openssl(["req", "-config", CNF, "-new", "-utf8", "-key", str(key), "-subj", subj,
              "-out", str(csr)], env)
    _openssl(["ca", "-config", CNF, "-batch", "-notext", "-utf8", "-extensions",
              "client_cert", "-startdate", start, "-enddate", end, "-in", str(csr),
              "-out", str(crt)], env)
    return crt, key, end_t.timestamp()


def _ctx_for(crt, key):
    ctx = client_context(org=None)
    ctx.load_cert_chain(str(crt), str(key))
    return ctx


def _ask(c, path="/v1/whoami", timeout=5.0):
    """One GET on RawH2 connection |c|; returns its stream id once it is
    answered, reset, or the connection closed."""
    sid = c.request("GET", path)
    c.pump(lambda c: c.responses.get(sid, {}).get("ended") or c.eof, timeout=timeout)
    return sid


def _body(c, sid):
    return (c.responses.get(sid) or {}).get("body", b"")


def _check_served(c, what):
    sid = _ask(c)
    check(c.status(sid) == 200 and b'"organisation"' in _body(c, sid),
          f"{what}: whoami on the open connection got {c.status(sid)} "
          f"{_body(c, sid)[:200]!r} ({goaway_str(c.goaway)}, eof {c.eof})")
    return json.loads(_body(c, sid))


def _wait_reload(gw, before, timeout=5.0):
    """The 'reloaded' (or reload failure) event logged after line |before|."""
    found = {}

    def seen():
        for line in gw.log_lines()[before:]:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") in ("reloaded", "reload_failed", "policy_reload_failed"):
                found["ev"] = ev
                return True
        return False
    wait_for(seen, timeout=timeout, what="a reload event in the log")
    return found["ev"]


def _check_cut(c, t_signal, what, codes):
    """After a reload at |t_signal| (monotonic): the server must end |c| by
    itself within CUT_WITHIN_S, and the next request on it gets no data."""
    c.pump(lambda c: c.goaway is not None or c.eof, timeout=CUT_WITHIN_S + 2)
    t_cut = min(t for t in (c.goaway_at, c.eof_at) if t is not None) \
        if (c.goaway_at or c.eof_at) else None
    note(f"{what}: {goaway_str(c.goaway)}, closed {c.eof}, "
         f"{(t_cut - t_signal) * 1000 if t_cut else -1:.0f} ms after the signal")
    # the attacker asks again on the same connection, whatever it was told
    sid = None
    if not c.eof:
        sid = _ask(c, timeout=3.0)
    check(sid is None or c.status(sid) != 200,
          f"{what}: a request on the open connection was answered {c.status(sid)} "
          f"{_body(c, sid)[:200]!r}")
    check(sid is None or b'"organisation"' not in _body(c, sid),
          f"{what}: data on the open connection: {_body(c, sid)[:200]!r}")
    check(sid is None or c.status(sid) in (None, 403),
          f"{what}: status {c.status(sid)} after the cut")
    if sid is not None and c.status(sid) == 403:
        check(response_error_code(c, sid) in codes,
              f"{what}: 403 code {response_error_code(c, sid)}, expected one of {codes}")
    check(t_cut is not None and t_cut - t_signal <= CUT_WITHIN_S,
          f"{what}: the connection was not cut within {CUT_WITHIN_S}s of the "
          f"reload ({goaway_str(c.goaway)}, closed {c.eof})")
    c.pump(lambda c: c.eof, timeout=3.0)
    check(c.eof, f"{what}: the connection is still open after GOAWAY")


def _cut_events(gw, before):
    out = []
    for line in gw.log_lines()[before:]:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == "connection_cut":
            out.append(ev)
    return out


def test_revoked_certificate_cut_on_open_connection():
    """request OK -> revoke + SIGHUP -> no data on the same connection,
    within 1 s; an unrevoked partner's connection stays; a request in flight
    (its body still coming) is answered 403 'revoked'."""
    with tempfile.TemporaryDirectory(prefix="noordpoort-revoke-") as tmp:
        crl = Path(tmp) / "crl.pem"
        shutil.copy(CERTS / "crl.pem", crl)
        with gateway(config={"tls": {"crl": str(crl)}}) as gw:
            thief = RawH2(gw, "provincie-drenthe").handshake()
            other = RawH2(gw, "provincie-groningen").handshake()
            _check_served(thief, "drenthe before the revocation")
            _check_served(other, "groningen before the revocation")
            # a request in flight: headers sent, the body never finished
            inflight = thief.request("POST", "/v1/lookup", end_stream=False)
            thief.data(inflight, b'{"purpose":')
            check(thief.sync(), "PING after the unfinished request")
            _revoke(tmp, CERTS / "provincie-drenthe.crt", crl)
            before = len(gw.log_lines())
            t0 = time.monotonic()
            gw.signal(signal.SIGHUP)
            ev = _wait_reload(gw, before)
            check(ev.get("event") == "reloaded", f"reload: {ev}")
            _check_cut(thief, t0, "revoked drenthe", ("revoked",))
            check(thief.status(inflight) == 403 and
                  response_error_code(thief, inflight) == "revoked",
                  f"the request in flight got {thief.status(inflight)} "
                  f"{_body(thief, inflight)[:200]!r}, expected 403 revoked")
            check(thief.goaway is not None and thief.goaway[2] == b"revoked",
                  f"GOAWAY debug data {goaway_str(thief.goaway)}")
            _check_served(other, "groningen after drenthe's revocation")
            check(other.goaway is None, f"groningen got {goaway_str(other.goaway)}")
            cuts = _cut_events(gw, before)
            check([(e.get("reason"), e.get("org")) for e in cuts] ==
                  [("revoked", "provincie-drenthe")], f"connection_cut events {cuts}")
            other.close()
            thief.close()


def test_removed_member_cut_on_open_connection():
    """A member removed from the members file + SIGHUP: its open connection
    is cut within 1 s; a member whose roles changed is cut too (it gets its
    new roles on a new connection); one unchanged keeps its connection."""
    with gateway() as gw:
        gone = RawH2(gw, "provincie-drenthe").handshake()
        moved = RawH2(gw, "provincie-fryslan").handshake()
        stays = RawH2(gw, "provincie-groningen").handshake()
        for c, who in ((gone, "drenthe"), (moved, "fryslan"), (stays, "groningen")):
            _check_served(c, f"{who} before the reload")
        orgs = [o for o in load_orgs() if o["id"] != "provincie-drenthe"]
        for o in orgs:
            if o["id"] == "provincie-fryslan":
                o["roles"] = ["coordinator"]
        gw.write_members(text=members_yaml(orgs))
        before = len(gw.log_lines())
        t0 = time.monotonic()
        gw.signal(signal.SIGHUP)
        ev = _wait_reload(gw, before)
        check(ev.get("event") == "reloaded", f"reload: {ev}")
        _check_cut(gone, t0, "removed drenthe", ("unknown_organisation",))
        _check_cut(moved, t0, "fryslan with other roles", ("membership_changed",))
        who = _check_served(stays, "groningen after the reload")
        check(who["organisation"]["id"] == "provincie-groningen", f"whoami {who}")
        reasons = sorted((e.get("org"), e.get("reason")) for e in _cut_events(gw, before))
        check(reasons == [("provincie-drenthe", "unknown_organisation"),
                          ("provincie-fryslan", "membership_changed")],
              f"connection_cut events {reasons}")
        # a new connection of the moved member has its new roles
        c = RawH2(gw, "provincie-fryslan").handshake()
        who = _check_served(c, "fryslan on a new connection")
        check(who["organisation"]["roles"] == ["coordinator"], f"whoami {who}")
        for x in (c, gone, moved, stays):
            x.close()


def test_member_removed_while_a_policy_names_it():
    """Removing a member that policies still name: the reload succeeds
    (today's main refused it, so the only cut-off was a restart), a warning
    names each dangling place, the member's open connection is cut and the
    others keep theirs. A gateway also starts with such a policy."""
    policy = """\
purposes:
  - id: p-revoke
    description: Test - a grant naming a member that will be removed.
    legal_basis:
      text: Testgrondslag (geen echte verwerking).
    valid:
      from: 2020-01-01
      until: 2099-12-31
    grants:
      - id: g-two
        requesters: [gemeente-groningen, gemeente-leeuwarden]
        operations: [aggregate]
        noise: {mechanism: discrete_laplace, epsilon: 1}
        datasets:
          gemeente-leeuwarden/mobiliteitsteam-contacten:
            contact_date: month
          uwv/ww-uitkeringen:
            end_date: month
    forbid:
      - id: f-leeuwarden
        reason: Test.
        requesters: [gemeente-leeuwarden]
        datasets:
          uwv/ww-uitkeringen: [start_date]
"""
    with tempfile.TemporaryDirectory(prefix="noordpoort-revoke-") as tmp:
        pol = Path(tmp) / "p.yaml"
        pol.write_text(policy, encoding="utf-8")
        cfg = {"catalog": str(REPO / "policies" / "examples" / "catalog.yaml"),
               "policies": [str(pol)], "require_signed_policies": False}
        with gateway(config=cfg) as gw:
            lw = RawH2(gw, "gemeente-leeuwarden").handshake()
            gr = RawH2(gw, "gemeente-groningen").handshake()
            h0 = _check_served(lw, "leeuwarden before")["policy_set"]["sha256"]
            _check_served(gr, "groningen before")
            gw.write_members(exclude=["gemeente-leeuwarden"])
            before = len(gw.log_lines())
            t0 = time.monotonic()
            gw.signal(signal.SIGHUP)
            ev = _wait_reload(gw, before)
            check(ev.get("event") == "reloaded",
                  f"removing a member that a policy names: {ev}")
            _check_cut(lw, t0, "removed leeuwarden", ("unknown_organisation",))
            who = _check_served(gr, "groningen after leeuwarden's removal")
            check(who["policy_set"]["sha256"] == h0, f"policy set changed: {who}")
            text = "\n".join(gw.log_lines()[before:])
            for place in ("grant 'g-two'.requesters: 'gemeente-leeuwarden' is not a member",
                          "forbid 'f-leeuwarden'.requesters: 'gemeente-leeuwarden' is not a member",
                          "dataset 'gemeente-leeuwarden/mobiliteitsteam-contacten' belongs to "
                          "'gemeente-leeuwarden', which is not a member"):
                check(place in text, f"no warning '{place}' in the log after the reload: "
                      f"{text[-1500:]}")
            lw.close()
            gr.close()
        # the same files at start: serves, with the warnings
        with gateway(config=cfg, exclude=["gemeente-leeuwarden"]) as gw:
            c = RawH2(gw, "gemeente-groningen").handshake()
            _check_served(c, "groningen, gateway started without leeuwarden")
            c.close()
            text = "\n".join(gw.log_lines())
            check("'gemeente-leeuwarden' is not a member" in text,
                  f"no warning at start: {text[-1500:]}")


def test_certificate_expiring_while_connected():
    """A certificate that expires while its connection is open: the next
    request is refused (403 certificate_expired, or the connection cut), not
    answered; a connection with a long-lived certificate is not touched."""
    with tempfile.TemporaryDirectory(prefix="noordpoort-revoke-") as tmp:
        crt, key, not_after = _short_lived_cert(tmp, "provincie-drenthe", 5)
        with gateway() as gw:
            c = RawH2(gw, ctx=_ctx_for(crt, key)).handshake()
            other = RawH2(gw, "provincie-groningen").handshake()
            check(time.time() < not_after - 1,
                  "the short-lived certificate expired before the test could use it")
            who = _check_served(c, "drenthe's short-lived certificate before not_after")
            check(who["organisation"]["id"] == "provincie-drenthe", f"whoami {who}")
            # wait until just past not_after on the wall clock
            while time.time() < not_after + 0.2:
                c.pump(lambda c: c.eof, timeout=0.1)
                if c.eof:
                    break
            sid = None if c.eof else _ask(c, timeout=3.0)
            note(f"expired: status {c.status(sid) if sid else None} "
                 f"{_body(c, sid)[:120]!r}, {goaway_str(c.goaway)}, closed {c.eof}")
            check(sid is None or c.status(sid) != 200,
                  f"a request after not_after was answered {c.status(sid)} "
                  f"{_body(c, sid)[:200]!r}")
            check(sid is None or c.status(sid) is None or
                  (c.status(sid) == 403 and
                   response_error_code(c, sid) == "certificate_expired"),
                  f"after not_after: {c.status(sid)} {_body(c, sid)[:200]!r}")
            check(sid is not None and c.status(sid) == 403 or c.goaway is not None,
                  f"after not_after: neither 403 nor GOAWAY ({goaway_str(c.goaway)})")
            c.pump(lambda c: c.eof, timeout=3.0)
            check(c.eof, "the connection of an expired certificate stays open")
            _check_served(other, "groningen after drenthe's certificate expired")
            other.close()
            c.close()


def test_revoked_coordinator_hub_question_in_progress():
    """The hub's deferred path: a coordinator's question is being answered
    on a job thread (its node stopped with SIGSTOP) when the coordinator's
    certificate is revoked and the hub reloaded. The question is answered
    403 'revoked' at once and the connection cut; when the node resumes and
    the job completes, its answer is never sent."""
    tek = "opleidingsfonds-techniek/inschrijvingen"
    policy = REPO / "tests" / "integration" / "data" / "federation" / "federation.yaml"
    question = {"purpose": "test-fed-exact", "population": tek,
                "group_by": [f"{tek}.programme"]}
    with tempfile.TemporaryDirectory(prefix="noordpoort-revoke-") as tmp:
        crl = Path(tmp) / "crl.pem"
        shutil.copy(CERTS / "crl.pem", crl)
        csv = synth_data(seed=7, scale=0.01) / (tek + ".csv")
        fed = Federation({"opleidingsfonds-techniek": [(tek, csv)]}, [policy],
                         node_timeout="8s", hub_extra={"tls": {"crl": str(crl)}})
        fed.start()
        try:
            st, _, obj, raw = fed.ask(question)
            check(st == 200, f"the question before the revocation: {st} {raw[:300]!r}")
            c = RawH2(fed.hub, fed.coordinator).handshake()
            node = fed.nodes["opleidingsfonds-techniek"]
            node.signal(signal.SIGSTOP)
            try:
                sid = c.request("POST", "/v1/aggregate",
                                extra=[("content-type", "application/json")],
                                end_stream=False)
                c.data(sid, json.dumps(question).encode(), end_stream=True)
                check(c.sync(), "PING after the question")
                time.sleep(0.3)  # the job is waiting for the stopped node
                check(c.status(sid) is None, f"answered before the revocation: "
                      f"{c.status(sid)} {_body(c, sid)[:200]!r}")
                _revoke(tmp, CERTS / f"{fed.coordinator}.crt", crl)
                before = len(fed.hub.log_lines())
                t0 = time.monotonic()
                fed.hub.signal(signal.SIGHUP)
                ev = _wait_reload(fed.hub, before)
                check(ev.get("event") == "reloaded", f"hub reload: {ev}")
                c.pump(lambda c: c.status(sid) is not None or c.eof,
                       timeout=CUT_WITHIN_S + 2)
                dt = time.monotonic() - t0
            finally:
                node.signal(signal.SIGCONT)
            # the job completes now; whatever it produced must not arrive
            c.pump(lambda c: c.eof, timeout=5.0)
            note(f"question in progress: {c.status(sid)} {_body(c, sid)[:100]!r} "
                 f"{dt * 1000:.0f} ms after the signal, {goaway_str(c.goaway)}, "
                 f"closed {c.eof}")
            check(c.status(sid) == 403 and response_error_code(c, sid) == "revoked",
                  f"the question in progress got {c.status(sid)} {_body(c, sid)[:300]!r}")
            check(dt <= CUT_WITHIN_S, f"answered {dt:.2f}s after the reload")
            check(b'"cells"' not in _body(c, sid) and b'"rows"' not in _body(c, sid),
                  f"data after the revocation: {_body(c, sid)[:300]!r}")
            check(c.eof, f"the hub kept the revoked coordinator's connection open "
                  f"({goaway_str(c.goaway)})")
            c.close()
        finally:
            fed.stop(check_rc=False)


if __name__ == "__main__":
    run(globals(), label="abuse")
