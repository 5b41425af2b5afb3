#!/usr/bin/python3
"""Integration tests: privileges, key secrecy and personal data in logs
(issue 6, docs/security.md).

- Privilege drop (`user:`, gateway/privdrop.c): started as root, the gateway
  binds (a port below 1024 too), opens its keys, audit log and ledger, then
  becomes the configured user. /proc/PID/status shows every uid and gid as
  that user's, no other group, NoNewPrivs 1; it keeps serving; a SIGHUP
  reload works when the files it re-reads are readable by that user, and
  fails (old state kept, gateway serving) when they are not, with a warning
  at start saying so. An unknown user or uid 0 is a config error with
  file:line:col. Root without `user:` gets a warning.
  These tests create a system user (useradd) and remove it at the end; they
  need root and are reported as skipped (ok, with a note) without it.
- Key secrecy: a group- or world-readable TLS key, master key, hub box key,
  hub client key or audit signing key refuses the start with a message that
  names the file and says `chmod 600`.
- No personal data in logs: a node and a small federation (hub + two nodes,
  all dropped to the test user) get lookups and questions, including every
  error we can provoke with a BSN in it (invalid, unknown, not granted, not a
  member, rate limited, malformed JSON, the BSN in the path and in a header);
  then every gateway log line and every audit line is searched for every BSN
  of the test data, as 9 digits and, when it starts with 0, as 8.

Run: /usr/bin/python3 tests/integration/test_security.py [NAME-SUBSTRING...]
"""

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (  # noqa: E402
    CERTS, REPO, Federation, Gateway, H2Client, NodeFiles, at_end, check,
    check_curl_error, check_error_body, fail, load_orgs, make_bsn,
    members_yaml, note, post_json, read_csv, run, run_cli, synth_data, wait_for,
)

IS_ROOT = os.geteuid() == 0
DS = "opleidingsfonds-techniek/inschrijvingen"
UWV = "uwv/ww-uitkeringen"
NODE_POLICY = REPO / "tests" / "integration" / "data" / "node" / "lookup.yaml"

# A federation purpose of our own (the federation test's policies are that
# file's business): noise, min_cell and a budget, as in production.
FED_POLICY = """\
# Test policy for tests/integration/test_security.py. Valid 2020..2099.
purposes:
  - id: test-sec-fed
    description: Test - bereik per programma en einde uitkering (beveiligingstest).
    legal_basis:
      text: Testgrondslag (geen echte verwerking).
    valid: {from: 2020-01-01, until: 2099-12-31}
    grants:
      - id: test-sec-fed-grant
        requesters: [arbeidsmarkttafel]
        operations: [aggregate, linked_aggregate]
        datasets:
          opleidingsfonds-techniek/inschrijvingen:
            programme: exact
            completed: exact
          uwv/ww-uitkeringen:
            end_reason: exact
        min_cell: 10
        noise: {mechanism: discrete_laplace, epsilon: 0.5}
        round_to: 5
        budget: {epsilon: 10, per: year}
"""


# --------------------------------------------------------------------------
# The test user
# --------------------------------------------------------------------------

_USER = None


def skip_unless_root(what):
    if not IS_ROOT:
        note(f"SKIP {what}: needs root (privilege drop)")
        return True
    return False


def the_user():
    """A system user made for this run (useradd), removed at the end:
    (name, uid, gid)."""
    global _USER
    if _USER is None:
        name = f"np-sec-{os.getpid() % 100000}"
        r = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                            "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                            name], capture_output=True, text=True, timeout=30)
        check(r.returncode == 0, f"useradd {name}: {r.stderr.strip()}")

        def remove():
            subprocess.run(["userdel", name], capture_output=True, timeout=30)
        at_end(remove)
        pw = pwd.getpwnam(name)
        _USER = (name, pw.pw_uid, pw.pw_gid)
    return _USER


class UserFiles:
    """A folder the test user can read: copies of the dev server certificate
    (its key owned by the user, mode 0600, as docs/security.md asks), CA,
    CRL and a members file, so that a reload as that user works."""

    def __init__(self, user, key_owner=None):
        name, uid, gid = user
        self.td = tempfile.TemporaryDirectory(prefix="noordpoort-sec-")
        self.dir = Path(self.td.name)
        os.chmod(self.dir, 0o755)
        for f in ("server.crt", "ca.crt", "crl.pem"):
            shutil.copy(CERTS / f, self.dir / f)
            os.chmod(self.dir / f, 0o644)
        self.key = self.dir / "server.key"
        shutil.copy(CERTS / "server.key", self.key)
        os.chmod(self.key, 0o600)
        ko = uid if key_owner is None else key_owner
        os.chown(self.key, ko, gid if key_owner is None else 0)
        self.members = self.dir / "members.yaml"
        self.write_members()
        self.log = self.dir / "gateway.log"

    def write_members(self, exclude=()):
        text = members_yaml([o for o in load_orgs() if o["id"] not in set(exclude)])
        tmp = self.dir / ".members.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.members)

    def config(self, user=None, listen="127.0.0.1:0", log_owned_by=None):
        """Config overrides: our TLS files and members, a log file (created
        for |log_owned_by| beforehand, as logrotate's `create` would)."""
        if log_owned_by is not None:
            self.log.touch()
            os.chmod(self.log, 0o640)
            os.chown(self.log, log_owned_by[0], log_owned_by[1])
        cfg = {
            "listen": [listen],
            "tls": {"certificate": str(self.dir / "server.crt"), "key": str(self.key),
                    "client_ca": str(self.dir / "ca.crt"), "crl": str(self.dir / "crl.pem")},
            "members": str(self.members),
            "log": {"destination": str(self.log)},
        }
        if user:
            cfg["user"] = user
        return cfg

    def cleanup(self):
        self.td.cleanup()


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()
    return out


def check_dropped(gw, uid, gid):
    st = proc_status(gw.pid)
    check(st["Uid"] == [str(uid)] * 4, f"Uid line {st['Uid']}, expected {uid} x4 "
          "(real, effective, saved, filesystem)")
    check(st["Gid"] == [str(gid)] * 4, f"Gid line {st['Gid']}, expected {gid} x4")
    check(st.get("Groups", []) == [str(gid)], f"Groups line {st.get('Groups')}, "
          f"expected only {gid}")
    check(st.get("NoNewPrivs") == ["1"], f"NoNewPrivs {st.get('NoNewPrivs')}")
    # No capability left in any set: root cannot come back.
    for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        if cap in st:
            check(int(st[cap][0], 16) == 0, f"{cap} {st[cap]} after the drop")
    # Every thread, not only the main one (workers start after the drop).
    for t in os.listdir(f"/proc/{gw.pid}/task"):
        ts = proc_status(f"{gw.pid}/task/{t}")
        check(ts["Uid"] == [str(uid)] * 4, f"thread {t}: Uid {ts['Uid']}")


def events(gw, name):
    return [o for o in gw.log_json() if o.get("event") == name]


def reload_and_wait(gw, timeout=5.0):
    """SIGHUP; waits for the next "reloaded" or "reload_failed"; returns
    that event's name."""
    before = len(events(gw, "reloaded")) + len(events(gw, "reload_failed"))
    gw.signal(signal.SIGHUP)
    wait_for(lambda: len(events(gw, "reloaded")) + len(events(gw, "reload_failed")) > before,
             timeout, what="reloaded or reload_failed")
    last = [o for o in gw.log_json() if o.get("event") in ("reloaded", "reload_failed")][-1]
    return last["event"]


def free_low_port():
    for p in range(1023, 899, -1):
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    fail("no free port below 1024 on 127.0.0.1")


# --------------------------------------------------------------------------
# Privilege drop
# --------------------------------------------------------------------------

def test_privdrop_low_port_ids_serves_and_reloads():
    """Root binds a port < 1024, becomes the user, serves, reloads."""
    if skip_unless_root("privilege drop"):
        return
    user = the_user()
    name, uid, gid = user
    uf = UserFiles(user)
    try:
        port = free_low_port()
        with Gateway(config=uf.config(name, f"127.0.0.1:{port}", log_owned_by=(uid, gid))) as gw:
            check(gw.port == port, f"listening on {gw.port}, expected {port}")
            check_dropped(gw, uid, gid)
            d = events(gw, "privileges_dropped")
            check(d and d[0].get("user") == name and d[0].get("uid") == uid and
                  d[0].get("gid") == gid, f"privileges_dropped event: {d}")
            check(not events(gw, "reload_will_fail") and not events(gw, "log_reopen_will_fail"),
                  f"unexpected warnings: {gw.log_lines()[:6]}")
            check(not events(gw, "running_as_root"), "running_as_root after a drop")
            r = gw.curl("/v1/whoami", org="gemeente-emmen")
            check(r.status == 200, f"whoami before reload: {r}")
            # Reload as the user: members re-read, TLS files re-read, log reopened
            uf.write_members(exclude=("gemeente-emmen",))
            check(reload_and_wait(gw) == "reloaded", f"reload failed: {gw.log_lines()[-3:]}")
            check_curl_error(gw.curl("/v1/whoami", org="gemeente-emmen"), 403,
                             "unknown_organisation", "emmen after the reload")
            r = gw.curl("/v1/whoami", org="gemeente-groningen")
            check(r.status == 200, f"groningen after the reload: {r}")
            check(not events(gw, "log_reopen_failed"), "log reopen failed")
            check_dropped(gw, uid, gid)
            # The log file stays the user's and keeps receiving lines
            st = os.stat(uf.log)
            check(st.st_uid == uid, f"log owner {st.st_uid}")
    finally:
        uf.cleanup()


def test_privdrop_state_dir_writable_by_the_user():
    """Issue 10, section 5: the policy serials are recorded in state_dir at
    every reload, as the user. A state_dir the user cannot write refuses the
    start (a reload could not record a serial); one it owns records the
    serial of a reloaded policy."""
    if skip_unless_root("privilege drop"):
        return
    name, uid, gid = the_user()
    uf = UserFiles(the_user())
    try:
        state = uf.dir / "state"
        state.mkdir(mode=0o755)
        pol = uf.dir / "lookup.yaml"
        shutil.copy(NODE_POLICY, pol)
        os.chmod(pol, 0o644)
        cat = uf.dir / "catalog.yaml"
        shutil.copy(REPO / "policies" / "examples" / "catalog.yaml", cat)
        os.chmod(cat, 0o644)
        cfg = dict(uf.config(name), catalog=str(cat), policies=[str(pol)],
                   require_signed_policies=False, state_dir=str(state))
        gw = Gateway(config=cfg)
        try:
            rc, err = gw.run_expect_exit()
            err += uf.log.read_text() if uf.log.exists() else ""
        finally:
            gw.cleanup()
        check(rc != 0 and "state_dir" in err and "is not writable by user" in err,
              f"root-owned state_dir: rc {rc}: {err[-400:]}")
        os.chown(state, uid, gid)
        with Gateway(config=cfg) as gw:
            check_dropped(gw, uid, gid)
            rec = (state / "policy-serials").read_text()
            check(rec.startswith("lookup.yaml 1 "), f"record at start: {rec!r}")
            pol.write_bytes(pol.read_bytes().replace(b"serial: 1\n", b"serial: 2\n", 1))
            check(reload_and_wait(gw) == "reloaded", f"reload as the user: {gw.log_lines()[-3:]}")
            rec = (state / "policy-serials").read_text()
            check(rec.startswith("lookup.yaml 2 "), f"record after the reload: {rec!r}")
            check(os.stat(state / "policy-serials").st_uid == uid, "record not written as the user")
    finally:
        uf.cleanup()


def test_privdrop_root_owned_key_reload_fails_documented():
    """Key left root's (0600): start works (read as root), a warning says
    the reload will fail; SIGHUP fails, keeps the old state, keeps serving."""
    if skip_unless_root("privilege drop"):
        return
    name, uid, gid = the_user()
    uf = UserFiles(the_user(), key_owner=0)
    try:
        with Gateway(config=uf.config(name)) as gw:
            check_dropped(gw, uid, gid)
            w = events(gw, "reload_will_fail")
            check(any("tls.key" in o.get("message", "") and str(uf.key) in o["message"]
                      for o in w), f"no reload_will_fail warning for the key: {w}")
            lw = events(gw, "log_reopen_will_fail")
            check(lw, "no log_reopen_will_fail warning for a root-owned log file")
            check(reload_and_wait(gw) == "reload_failed", "reload unexpectedly worked")
            f = events(gw, "reload_failed")[-1]
            check("Permission denied" in f.get("message", ""), f"reload_failed: {f}")
            r = gw.curl("/v1/whoami", org="gemeente-groningen")
            check(r.status == 200, f"not serving after a failed reload: {r}")
    finally:
        uf.cleanup()


def test_privdrop_node_and_hub_answer():
    """A federation whose hub and nodes all drop to the user: lookups and a
    linked aggregate (ledger debit as the user) work; a node reloads its
    policies as the user (the policy is readable). The datasets stay in
    root's 0700 folder (docs/security.md allows it): each node says at start
    that a file renamed over them would not be seen."""
    if skip_unless_root("privilege drop"):
        return
    _, fed, _, _ = federation_with_user()
    name, uid, gid = the_user()
    for gw in [fed.hub] + list(fed.nodes.values()):
        check_dropped(gw, uid, gid)
    for org, gw in fed.nodes.items():
        w = events(gw, "dataset_replacement_unseen")
        check(w and all("cannot be looked at by user" in o.get("message", "") and
                        "Permission denied" in o["message"] for o in w),
              f"{org}: no dataset_replacement_unseen warning: {w}")
    check(not events(fed.hub, "dataset_replacement_unseen"), "the hub has no datasets")
    obj = fed.ask_ok(FED_Q, "linked aggregate with dropped privileges")
    check("cells" in obj or "rows" in obj or "total" in obj, f"answer: {str(obj)[:300]}")


def core_limit(pid):
    """(soft, hard) of 'Max core file size' in /proc/PID/limits."""
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max core file size"):
            f = line.split()
            return f[4], f[5]
    fail("no core limit line")


def test_no_core_dumps():
    """A serving process cannot leave a core file (it holds keys and, on a
    node, the datasets typed in memory): RLIMIT_CORE 0/0, even when the
    shell that started it allows them, and not dumpable, so its /proc/PID
    files belong to root whoever it runs as (docs/security.md)."""
    import resource
    old = resource.getrlimit(resource.RLIMIT_CORE)
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
                           if os.geteuid() == 0 else (old[1], old[1]))
        with Gateway() as gw:
            check(core_limit(gw.pid) == ("0", "0"), f"core limit {core_limit(gw.pid)}")
            check(os.stat(f"/proc/{gw.pid}/status").st_uid == 0, "/proc/PID/status not root's")
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, old)
    if os.geteuid() == 0:
        _, fed, _, _ = federation_with_user()
        for gw in [fed.hub] + list(fed.nodes.values()):
            check(core_limit(gw.pid) == ("0", "0"), f"after the drop: core limit {core_limit(gw.pid)}")
            check(os.stat(f"/proc/{gw.pid}/status").st_uid == 0,
                  "after the drop: /proc/PID/status belongs to the user (dumpable)")


def test_user_unknown_is_config_error():
    with tempfile.TemporaryDirectory() as td:
        gw = Gateway(config={"user": "np-no-such-user-xyz"})
        try:
            r = run_cli("check-config", "-c", gw.config_path)
            check(r.returncode == 1, f"check-config rc {r.returncode}: {r.stdout}{r.stderr}")
            m = re.search(r"^(\S+):(\d+):(\d+): error: user: no such user 'np-no-such-user-xyz'",
                          r.stderr, re.M)
            check(m and m.group(1) == str(gw.config_path), f"no file:line:col error: {r.stderr}")
            line = gw.config_path.read_text().splitlines()[int(m.group(2)) - 1]
            check(line.startswith("user:"), f"line {m.group(2)} is {line!r}")
            rc, err = gw.run_expect_exit()
            check(rc == 1 and "no such user" in err, f"serve: rc {rc}: {err[-400:]}")
        finally:
            gw.cleanup()


def test_user_root_refused():
    gw = Gateway(config={"user": "root"})
    try:
        r = run_cli("check-config", "-c", gw.config_path)
        check(r.returncode == 1 and re.search(r":\d+:\d+: error: user: 'root' is uid 0", r.stderr),
              f"check-config: rc {r.returncode}: {r.stderr}")
    finally:
        gw.cleanup()


def test_root_without_user_warns():
    if skip_unless_root("root warning"):
        return
    with Gateway() as gw:
        w = events(gw, "running_as_root")
        check(w and w[0].get("level") == "warn" and "user:" in w[0].get("message", ""),
              f"no running_as_root warning: {gw.log_lines()[:4]}")
        check(not events(gw, "privileges_dropped"), "dropped without user:")


def test_user_but_not_root_refused():
    """Started as an unprivileged user that is not `user:`: cannot switch,
    refuses to start (rather than serving as the wrong account)."""
    if skip_unless_root("running as another user"):
        return
    name, uid, gid = the_user()
    uf = UserFiles(the_user())
    try:
        cfg_path = uf.dir / "g.yaml"
        cfg = harness.deep_merge(harness.default_config(uf.members), uf.config("nobody"))
        cfg["log"] = {"destination": "stderr"}
        cfg_path.write_text(harness.to_yaml(cfg) + "\n")
        os.chmod(cfg_path, 0o644)
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
        r = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                            str(harness.BIN), "serve", "-c", str(cfg_path)],
                           capture_output=True, text=True, timeout=20, env=env,
                           stdin=subprocess.DEVNULL)
        check(r.returncode == 1 and "cannot switch to 'nobody'" in r.stderr and
              "start_failed" in r.stderr, f"rc {r.returncode}: {r.stderr[-600:]}")
    finally:
        uf.cleanup()


# --------------------------------------------------------------------------
# Key files readable by others are refused
# --------------------------------------------------------------------------

def _refused(gw, path, what):
    try:
        rc, err = gw.run_expect_exit()
    finally:
        gw.cleanup()
    check(rc != 0, f"{what}: the gateway started with a key readable by others (rc {rc})")
    check("start_failed" in err or "error" in err, f"{what}: no error line: {err[-500:]}")
    check(str(path) in err, f"{what}: the message does not name {path}: {err[-500:]}")
    want = f"{path}: secret key file is accessible by group or others"
    check(want in err, f"{what}: not the common wording ({want}): {err[-500:]}")
    check(f"run: chmod 600 '{path}'" in err,
          f"{what}: the message does not say chmod 600 '{path}': {err[-500:]}")


def test_world_readable_tls_key_refused():
    for mode in (0o644, 0o640, 0o604):
        with tempfile.TemporaryDirectory() as td:
            key = Path(td) / "server.key"
            shutil.copy(CERTS / "server.key", key)
            os.chmod(key, mode)
            gw = Gateway(config={"tls": {"key": str(key)}})
            _refused(gw, key, f"tls.key mode {mode:04o}")
    # check-config says the same (a fresh config: the one above is gone)
    with tempfile.TemporaryDirectory() as td:
        key = Path(td) / "server.key"
        shutil.copy(CERTS / "server.key", key)
        os.chmod(key, 0o644)
        gw = Gateway(config={"tls": {"key": str(key)}})
        try:
            r = run_cli("check-config", "-c", gw.config_path)
            check(r.returncode == 1 and
                  f"{key}: secret key file is accessible by group or others (mode 0644)" in r.stderr,
                  f"check-config: rc {r.returncode}: {r.stderr}")
        finally:
            gw.cleanup()


def test_world_readable_master_key_refused():
    with NodeFiles() as nf:
        os.chmod(nf.master_key, 0o644)
        cfg = nf.config([NODE_POLICY], [nf.csv_dataset(DS, synth_data() / (DS + ".csv"))])
        _refused(Gateway(config=cfg), nf.master_key, "node.master_key 0644")


def _hub_config(nf, **hub):
    box = nf.dir / "hubbox"
    if not (nf.dir / "hubbox.sec").exists():
        r = run_cli("keygen", "--box", "--out", box)
        check(r.returncode == 0, f"keygen --box: {r.stderr}")
    if not (nf.dir / "ledger.sqlite").exists():
        r = run_cli("ledger", "init", nf.dir / "ledger.sqlite")
        check(r.returncode == 0, f"ledger init: {r.stderr}")
    h = {"box_key": str(nf.dir / "hubbox.sec"),
         "client_certificate": str(CERTS / "hub.crt"), "client_key": str(CERTS / "hub.key"),
         "ledger": str(nf.dir / "ledger.sqlite")}
    h.update(hub)
    return {"roles": ["hub"], "catalog": str(nf.catalog), "policies": [str(NODE_POLICY)],
            "hub": h, "audit": {"path": str(nf.dir / "hub-audit.log")},
            "require_signed_policies": False}


def test_world_readable_hub_keys_refused():
    with NodeFiles() as nf:
        cfg = _hub_config(nf)
        os.chmod(nf.dir / "hubbox.sec", 0o644)
        _refused(Gateway(config=cfg), nf.dir / "hubbox.sec", "hub.box_key 0644")
    with NodeFiles() as nf:
        key = nf.dir / "hub.key"
        shutil.copy(CERTS / "hub.key", key)
        os.chmod(key, 0o640)
        _refused(Gateway(config=_hub_config(nf, client_key=str(key))), key,
                 "hub.client_key 0640")


def test_world_readable_audit_sign_key_refused():
    with NodeFiles() as nf:
        r = run_cli("keygen", "--sign", "--out", nf.dir / "audit")
        check(r.returncode == 0, f"keygen --sign: {r.stderr}")
        os.chmod(nf.dir / "audit.sec", 0o644)
        cfg = nf.config([NODE_POLICY], [nf.csv_dataset(DS, synth_data() / (DS + ".csv"))],
                        audit={"sign_key": str(nf.dir / "audit.sec")})
        _refused(Gateway(config=cfg), nf.dir / "audit.sec", "audit.sign_key 0644")


# --------------------------------------------------------------------------
# No personal data in any log or audit line
# --------------------------------------------------------------------------

FED_Q = {"purpose": "test-sec-fed", "population": DS, "link": [UWV],
         "group_by": [f"{DS}.programme", f"{UWV}.end_reason"]}
_FEDX = None


def federation_with_user():
    """(NodeFiles with the policy, Federation, policy path, user or None):
    a hub and two nodes (the training fund, UWV), dropped to the test user
    when we are root. Shared by the tests of this file, stopped at the end."""
    global _FEDX
    if _FEDX is None:
        nf = NodeFiles()
        pol = nf.write("security-fed.yaml", FED_POLICY)
        os.chmod(nf.dir, 0o755)
        os.chmod(pol, 0o644)
        extra = {}
        user = None
        if IS_ROOT:
            user = the_user()
            extra = {"user": user[0]}
        spec = {"opleidingsfonds-techniek": [(DS, synth_data() / (DS + ".csv"))],
                "uwv": [(UWV, synth_data() / (UWV + ".csv"))]}
        at_end(nf.cleanup)
        fed = Federation(spec, [pol], node_timeout="5s", hub_extra=extra,
                         node_extra=extra)
        fed.start()
        _FEDX = (nf, fed, pol, user)
    return _FEDX


def all_bsns():
    out = set()
    for p in synth_data().glob("*/*.csv"):
        for r in read_csv(p):
            if r.get("bsn"):
                out.add(r["bsn"])
    return out


def bsn_forms(bsns):
    """Every BSN as 9 digits and, when it has a leading zero, as the 8 digits
    a careless integer conversion would print."""
    out = set()
    for b in bsns:
        out.add(b)
        if len(b) == 9 and b[0] == "0":
            out.add(b[1:])
    return out


def find_bsns(lines, forms, what):
    """Lines (as text) containing any form as a standalone digit run (a
    64-hex pseudonym or hash may contain a digit run; it is not a BSN)."""
    pat = re.compile(r"(?<![0-9A-Fa-f])([0-9]{8,9})(?![0-9A-Fa-f])")
    hits = []
    for i, t in enumerate(lines):
        for m in pat.finditer(t):
            if m.group(1) in forms:
                hits.append(f"{what} line {i + 1}: {m.group(1)} in {t[:200]}")
    return hits


def test_no_bsn_in_any_log_or_audit_line():
    bsns = all_bsns()
    check(len(bsns) > 100, f"only {len(bsns)} BSNs in the synthetic data")
    here = [r["bsn"] for r in read_csv(synth_data() / (DS + ".csv"))]
    bsn = here[0]
    unknown = make_bsn(100000000, avoid=bsns)
    invalid = "123456789"
    lead0 = make_bsn(10000000, avoid=bsns)       # starts with 0
    probes = {unknown, invalid, lead0}
    nf, fed, pol, user = federation_with_user()
    node = fed.nodes["opleidingsfonds-techniek"]
    with NodeFiles() as own:
        # a node of its own too, with the lookup policy and a low rate limit
        cfg = own.config([NODE_POLICY], [own.csv_dataset(DS, synth_data() / (DS + ".csv"))],
                         lookups_per_minute=60, lookup_burst=12)
        cfg["log"] = {"destination": str(own.dir / "gateway.log")}
        with Gateway(config=cfg, exclude=("provincie-drenthe",)) as gw:
            def body(b, **kw):
                d = {"purpose": "test-scholingscheck", "dataset": DS, "subject": {"bsn": b},
                     "fields": ["programme", "birth_date", "postcode"]}
                d.update(kw)
                return d
            statuses = []
            with H2Client(gw, "gemeente-groningen") as c:
                for b in (body(bsn), body(invalid), body(unknown), body(lead0),
                          body(bsn, fields=["sector"]), body(bsn, purpose="geen-doel"),
                          body(bsn[1:]), body(int(bsn)), body(bsn + "0")):
                    statuses.append(post_json(c, "/v1/lookup", b)[0])
                # malformed JSON with a BSN in it; a BSN in the path, a header
                statuses.append(post_json(c, "/v1/lookup",
                                          ('{"subject":{"bsn":"%s"' % bsn).encode())[0])
                st, _, _ = c.request("GET", f"/v1/lookup?bsn={bsn}")
                statuses.append(st)
                st, _, _ = c.request("GET", f"/v1/persons/{bsn}",
                                     headers=[("x-bsn", bsn)])
                statuses.append(st)
                for _ in range(8):   # past the burst: 429, audited too
                    statuses.append(post_json(c, "/v1/lookup", body(bsn))[0])
            with H2Client(gw, "gemeente-emmen") as c:   # identifiers: bsn granted
                st, _, obj, raw = post_json(c, "/v1/lookup", {
                    "purpose": "test-met-bsn", "dataset": DS, "subject": {"bsn": bsn},
                    "fields": ["programme"], "identifiers": "bsn"})
                statuses.append(st)
            r = gw.curl("/v1/lookup", org="provincie-drenthe", method="POST",
                        data=json.dumps(body(bsn)))     # not a member
            statuses.append(r.status)
            note(f"node statuses: {statuses}")
            for want in (200, 400, 403, 404, 429):
                check(want in statuses, f"no {want} among {statuses}")
        own_log = (own.dir / "gateway.log").read_text(errors="replace").splitlines()
        own_audit = own.audit.read_text(errors="replace").splitlines()
        check(own_log and own_audit, "no log or audit lines to search")
    # the federation: lookups are not granted there, questions are
    with H2Client(node, "gemeente-groningen") as c:
        post_json(c, "/v1/lookup", {"purpose": "test-sec-fed", "dataset": DS,
                                    "subject": {"bsn": bsn}, "fields": ["programme"]})
    fed.ask_ok(FED_Q, "federation question")
    st, _, _, _ = fed.ask(dict(FED_Q, filters={f"{DS}.programme": [bsn]}))
    note(f"federation question with a BSN as filter value: {st}")
    texts = {"node gateway log": own_log, "node audit log": own_audit,
             "hub log": fed.hub.log_lines(),
             "hub audit log": fed.hub_audit.read_text(errors="replace").splitlines()}
    for org, g in fed.nodes.items():
        texts[f"{org} log"] = g.log_lines()
        texts[f"{org} audit log"] = fed.node_audit(org).read_text(errors="replace").splitlines()
    forms = bsn_forms(bsns | probes)
    hits, nlines = [], 0
    for what, lines in texts.items():
        nlines += len(lines)
        hits += find_bsns(lines, forms, what)
    note(f"searched {nlines} log and audit lines for {len(forms)} BSN forms "
         f"({len(bsns | probes)} BSNs)")
    check(not hits, f"{len(hits)} BSN(s) in logs: " + "; ".join(hits[:5]))
    # and the search itself finds what it is meant to find
    check(find_bsns([f'x {bsn} y'], forms, "self-test"), "the search misses a BSN")
    check(not find_bsns(["a" * 10 + bsn + "f"], forms, "self-test"),
          "the search flags a hash")


def test_zz_stop_federation():
    """Stops the shared federation: exit status 0, no sanitizer report."""
    if _FEDX is None:
        return
    _FEDX[1].stop()


if __name__ == "__main__":
    run(globals())
