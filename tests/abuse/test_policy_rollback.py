#!/usr/bin/python3
"""Abuse tests: putting an older signed policy back (issue 10, section 5).

The attacker holds an older, more permissive policy file with a valid
signature (here: re-signed with a fresh serials record, as someone with an
old copy of the officer's files could) and swaps it in for the current one.
A signature over the bytes cannot tell old from new; the serial inside the
signed bytes can, because the gateway remembers the highest serial it
accepted per file in its state_dir (docs/policy.md, "Serial and validity").

The old (permissive) version lets gemeente-leeuwarden look up; the current
one (a higher serial) does not. After the swap + SIGHUP, Leeuwarden must
still be refused, the reload logged as refused naming the file, its serial
and the recorded one; a restart with the older file must be refused; a
valid_until of yesterday is refused and of today accepted.

Run: /usr/bin/python3 tests/abuse/test_policy_rollback.py [NAME-SUBSTRING...]
"""

import datetime
import os
import shutil
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import (  # noqa: E402
    REPO, Gateway, H2Client, NodeFiles, check, post_json, read_csv, run, run_cli,
    synth_data, wait_for,
)
import json  # noqa: E402

DATA = REPO / "tests" / "integration" / "data" / "node"
DS = "opleidingsfonds-techniek/inschrijvingen"
BOTH = b"requesters: [gemeente-groningen, gemeente-leeuwarden]"
GRONINGEN_ONLY = b"requesters: [gemeente-groningen]"


def data_csv():
    return synth_data() / "opleidingsfonds-techniek" / "inschrijvingen.csv"


def body():
    return {"purpose": "test-scholingscheck", "dataset": DS,
            "subject": {"bsn": read_csv(data_csv())[0]["bsn"]}, "fields": ["programme"]}


def version(serial, permissive, valid_until="2099-12-31", extra=b""):
    """lookup.yaml with this serial; permissive: Leeuwarden may look up."""
    text = (DATA / "lookup.yaml").read_bytes()
    text = text.replace(b"serial: 1\n", b"serial: %d\n" % serial, 1)
    text = text.replace(b"valid_until: 2099-12-31\n", b"valid_until: %s\n" % valid_until.encode(), 1)
    if not permissive:
        text = text.replace(BOTH, GRONINGEN_ONLY, 1)
    check(b"serial: %d\n" % serial in text, "test policy has no serial line to change")
    return text + extra


class Officer:
    """A privacy officer's key and serials record in |nf|'s folder."""

    def __init__(self, nf):
        self.nf = nf
        r = run_cli("keygen", "--sign", "--out", nf.dir / "officer")
        check(r.returncode == 0, f"keygen --sign: {r.stderr}")
        self.sec, self.pub = nf.dir / "officer.sec", nf.dir / "officer.pub"
        self.record = nf.dir / "officer.serials"

    def sign(self, *files, ok=True):
        r = run_cli("policy", "sign", "--key", self.sec, *files)
        if ok:
            check(r.returncode == 0, f"policy sign: rc {r.returncode}: {r.stdout}{r.stderr}")
        return r

    def sign_as_attacker(self, f):
        """Signs |f| with a fresh (empty) serials record, so `policy sign`
        lets a lower serial through: an attacker holding an old signed copy
        has exactly this."""
        saved = self.record.read_bytes() if self.record.exists() else None
        if saved is not None:
            self.record.unlink()
        try:
            self.sign(f)
        finally:
            if saved is not None:
                self.record.write_bytes(saved)


def setup(nf, serial=2, permissive=False, valid_until="2099-12-31"):
    """The current policy (lookup.yaml, |serial|) and extra.yaml, signed."""
    off = Officer(nf)
    pol = nf.dir / "lookup.yaml"
    extra = nf.dir / "extra.yaml"
    pol.write_bytes(version(serial, permissive, valid_until))
    shutil.copyfile(DATA / "extra.yaml", extra)
    off.sign(pol, extra)
    state = nf.dir / "state"
    state.mkdir(exist_ok=True)
    return off, [pol, extra], state


def config(nf, files, off, state):
    return nf.config(files, [nf.csv_dataset(DS, data_csv())],
                     require_signed_policies=True, policy_signing_key=str(off.pub),
                     state_dir=str(state))


def lookup(client):
    st, _, _, raw = post_json(client, "/v1/lookup", body())
    return st, raw


def whoami_hash(gw):
    r = gw.curl("/v1/whoami", org="gemeente-groningen")
    check(r.status == 200, f"whoami: {r!r}")
    return r.json()["policy_set"]["sha256"]


def wait_log(gw, events, after):
    def find():
        for line in gw.log_lines()[after:]:
            try:
                o = json.loads(line)
            except ValueError:
                continue
            if isinstance(o, dict) and o.get("event") in events:
                return o
        return None
    return wait_for(find, 5.0, 0.05, f"log event {events}")


def sighup(gw):
    before = len(gw.log_lines())
    gw.signal(signal.SIGHUP)
    return wait_log(gw, ("reloaded", "policy_reload_failed", "reload_failed"), before)


def start_refused(nf, files, off, state, what):
    gw = Gateway(config=config(nf, files, off, state))
    try:
        rc, err = gw.run_expect_exit()
    finally:
        gw.cleanup()
    check(rc != 0, f"{what}: the gateway started (rc {rc})")
    line = next((ln for ln in err.splitlines() if "start_failed" in ln), "")
    return line


def recorded(state):
    p = state / "policy-serials"
    if not p.exists():
        return {}
    out = {}
    for ln in p.read_text().splitlines():
        name, serial, sha = ln.split(" ")
        out[name] = (int(serial), sha)
    return out


def today_utc(delta_days=0):
    d = datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(days=delta_days)
    return d.isoformat()


# --------------------------------------------------------------------------

def test_rollback_on_sighup_refused_old_set_stays():
    with NodeFiles() as nf:
        off, files, state = setup(nf, serial=2, permissive=False)
        with Gateway(config=config(nf, files, off, state)) as gw, \
                H2Client(gw, "gemeente-leeuwarden") as lw:
            st, raw = lookup(lw)
            check(st == 403, f"current policy (serial 2) lets Leeuwarden look up: {st} {raw[:200]!r}")
            check(recorded(state).get("lookup.yaml", (0,))[0] == 2,
                  f"serial 2 not recorded at start: {recorded(state)}")
            h0 = whoami_hash(gw)
            # the attack: the older, more permissive version, validly signed
            files[0].write_bytes(version(1, permissive=True))
            off.sign_as_attacker(files[0])
            ev = sighup(gw)
            msg = ev.get("message", "")
            check(ev.get("event") == "policy_reload_failed",
                  f"an older signed policy (serial 1 < 2) was accepted at reload: {ev}")
            check("lookup.yaml" in msg and "serial 1 is lower than serial 2" in msg,
                  f"the log line does not name the file, its serial and the recorded one: {msg}")
            check(gw.metric("noordpoort_policy_reload_failures_total") == 1, "failure not counted")
            check(whoami_hash(gw) == h0, "the policy set changed after a refused reload")
            st, raw = lookup(lw)
            check(st == 403, f"after the rollback, Leeuwarden looks up: {st} {raw[:200]!r}")
            check(recorded(state)["lookup.yaml"][0] == 2, f"record went back: {recorded(state)}")
            # a newer version is still accepted afterwards (serial 3)
            files[0].write_bytes(version(3, permissive=True))
            off.sign(files[0])
            ev = sighup(gw)
            check(ev.get("event") == "reloaded", f"serial 3 refused: {ev}")
            st, raw = lookup(lw)
            check(st == 200, f"serial 3 grants Leeuwarden: {st} {raw[:200]!r}")
            check(recorded(state)["lookup.yaml"][0] == 3, f"serial 3 not recorded: {recorded(state)}")


def test_rollback_at_restart_refused_state_survives():
    with NodeFiles() as nf:
        off, files, state = setup(nf, serial=5, permissive=False)
        with Gateway(config=config(nf, files, off, state)) as gw:
            whoami_hash(gw)
        rec = recorded(state)
        check(rec.get("lookup.yaml", (0,))[0] == 5 and rec.get("extra.yaml", (0,))[0] == 1,
              f"record after the first run: {rec}")
        # serial 4 (one below): refused at start, after the restart
        files[0].write_bytes(version(4, permissive=True))
        off.sign_as_attacker(files[0])
        line = start_refused(nf, files, off, state, "serial 4 after serial 5")
        check("lookup.yaml" in line and "serial 4 is lower than serial 5" in line,
              f"no clear start_failed line: {line}")
        # the same serial with other bytes: refused too
        files[0].write_bytes(version(5, permissive=True))
        off.sign_as_attacker(files[0])
        line = start_refused(nf, files, off, state, "serial 5 with other bytes")
        check("serial 5 was accepted before" in line and "other content" in line,
              f"no clear start_failed line for the same serial: {line}")
        check(recorded(state) == rec, f"the record changed while refusing: {recorded(state)}")
        # the recorded version itself (serial 5, same bytes) starts again
        files[0].write_bytes(version(5, permissive=False))
        off.sign_as_attacker(files[0])
        with Gateway(config=config(nf, files, off, state)) as gw, \
                H2Client(gw, "gemeente-leeuwarden") as lw:
            st, raw = lookup(lw)
            check(st == 403, f"restarted on serial 5: {st} {raw[:200]!r}")
        # check-config reads the record but never writes it
        files[0].write_bytes(version(6, permissive=False))
        off.sign(files[0])
        gw = Gateway(config=config(nf, files, off, state))
        try:
            r = run_cli("check-config", "-c", gw.config_path)
        finally:
            gw.cleanup()
        check(r.returncode == 0, f"check-config: {r.stdout}{r.stderr}")
        check(recorded(state) == rec, f"check-config wrote the record: {recorded(state)}")


def test_valid_until_yesterday_refused_today_accepted():
    yesterday, today = today_utc(-1), today_utc(0)
    with NodeFiles() as nf:
        off, files, state = setup(nf, serial=1, permissive=False, valid_until=yesterday)
        line = start_refused(nf, files, off, state, f"valid_until {yesterday}")
        check("lookup.yaml" in line and f"valid until {yesterday} has expired" in line,
              f"no clear start_failed line for an expired file: {line}")
        files[0].write_bytes(version(2, permissive=False, valid_until=today))
        off.sign(files[0])
        with Gateway(config=config(nf, files, off, state)) as gw, \
                H2Client(gw, "gemeente-groningen") as gr:
            st, raw = lookup(gr)
            check(st == 200, f"valid_until today ({today}) refused: {st} {raw[:200]!r}")
            h0 = whoami_hash(gw)
            # and at reload: a newer serial that already ran out is refused
            files[0].write_bytes(version(3, permissive=True, valid_until=yesterday))
            off.sign(files[0])
            ev = sighup(gw)
            check(ev.get("event") == "policy_reload_failed" and
                  f"valid until {yesterday} has expired" in ev.get("message", ""),
                  f"an expired file was accepted at reload: {ev}")
            check(whoami_hash(gw) == h0, "policy set changed")


def test_unsigned_default_refused():
    """Section 3: a config naming policies without a key, saying nothing."""
    with NodeFiles() as nf:
        cfg = nf.config([DATA / "lookup.yaml"], [nf.csv_dataset(DS, data_csv())])
        del cfg["require_signed_policies"]
        gw = Gateway(config=cfg)
        try:
            rc, err = gw.run_expect_exit()
        finally:
            gw.cleanup()
        check(rc != 0, "started with unsigned policies and no explicit false")
        check("signed policies are required by default" in err and
              "require_signed_policies: false" in err and ".yaml:" in err,
              f"no clear file:line message: {err[-600:]}")


if __name__ == "__main__":
    run(globals())
