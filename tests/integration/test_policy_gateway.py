#!/usr/bin/python3
"""Integration tests: policies in the gateway (issue 3, "In the gateway").

The policy set's hash in whoami and /metrics, SIGHUP reload of policy files
(a broken file keeps the old set; a valid change takes effect without
dropping connections), and require_signed_policies at start, at reload and
in check-config. Test policies: tests/integration/data/node/*.yaml (valid
2020..2099), copied into a temporary folder so they can be changed.

Run: /usr/bin/python3 tests/integration/test_policy_gateway.py [NAME-SUBSTRING...]
"""

import hashlib
import json
import os
import re
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (  # noqa: E402
    REPO, Gateway, H2Client, NodeFiles, check, check_error_body,
    post_json, read_csv, run, run_cli, synth_data, wait_for,
)

DATA = REPO / "tests" / "integration" / "data" / "node"
DS = "opleidingsfonds-techniek/inschrijvingen"
P_CHECK = "test-scholingscheck"


def data_csv():
    return synth_data() / "opleidingsfonds-techniek" / "inschrijvingen.csv"


def a_bsn():
    return read_csv(data_csv())[0]["bsn"]


def body(purpose=P_CHECK, fields=("programme",)):
    return {"purpose": purpose, "dataset": DS, "subject": {"bsn": a_bsn()},
            "fields": list(fields)}


def copy_policies(nf, names=("lookup.yaml", "extra.yaml")):
    out = []
    for n in names:
        p = nf.dir / n
        shutil.copyfile(DATA / n, p)
        out.append(p)
    return out


def node(nf, policies, **top):
    return Gateway(config=nf.config(policies, [nf.csv_dataset(DS, data_csv())], **top))


def whoami_hash(gw, org_id="gemeente-groningen"):
    r = gw.curl("/v1/whoami", org=org_id)
    check(r.status == 200, f"whoami: {r!r}")
    obj = r.json()
    check(isinstance(obj.get("policy_set"), dict) and set(obj["policy_set"]) == {"sha256"},
          f"whoami policy_set: {obj.get('policy_set')!r}")
    return obj["policy_set"]["sha256"]


def metrics_hashes(gw):
    r = gw.curl("/metrics")
    check(r.status == 200, f"metrics: {r!r}")
    text = r.body.decode()
    return re.findall(r'^noordpoort_policy_set_info\{sha256="([0-9a-f]+)"\} 1$', text, re.M)


def cli_hash(files):
    r = run_cli("policy", "check", "--catalog", REPO / "policies/examples/catalog.yaml", *files)
    check(r.returncode == 0, f"policy check: {r.stdout}{r.stderr}")
    m = re.search(r"sha256 ([0-9a-f]{64})", r.stdout)
    check(m, f"no hash in policy check output: {r.stdout}")
    return m.group(1)


def file_hash(files):
    h = hashlib.sha256()
    for f in files:
        h.update(open(f, "rb").read())
    return h.hexdigest()


def lookup_status(client, b):
    st, hdrs, obj, raw = post_json(client, "/v1/lookup", b)
    return st, obj, raw


def wait_log(gw, event, after=0, timeout=5.0):
    """The first JSON log line with this event among lines[after:]."""
    def find():
        for line in gw.log_lines()[after:]:
            try:
                o = json.loads(line)
            except ValueError:
                continue
            if isinstance(o, dict) and o.get("event") == event:
                return o
        return None
    return wait_for(find, timeout, 0.05, f"log event {event}")


def keygen_sign(nf, name="officer"):
    r = run_cli("keygen", "--sign", "--out", nf.dir / name)
    check(r.returncode == 0, f"keygen --sign: {r.stderr}")
    return nf.dir / f"{name}.sec", nf.dir / f"{name}.pub"


def sign(sec, *files):
    r = run_cli("policy", "sign", "--key", sec, *files)
    check(r.returncode == 0, f"policy sign: rc {r.returncode}: {r.stdout}{r.stderr}")


def flip_byte_in_comment(path):
    """Changes one byte of the file's first comment (still valid YAML)."""
    raw = bytearray(path.read_bytes())
    i = raw.index(b"Test policy") if b"Test policy" in raw else raw.index(b"test policy")
    raw[i] = ord("B")
    path.write_bytes(bytes(raw))


# --------------------------------------------------------------------------
# The hash
# --------------------------------------------------------------------------

def test_policy_hash_in_whoami_and_metrics():
    with NodeFiles() as nf:
        files = copy_policies(nf)
        with node(nf, files) as gw:
            h = whoami_hash(gw)
            check(re.fullmatch(r"[0-9a-f]{64}", h), f"hash {h!r}")
            check(h == file_hash(files), f"whoami {h} != sha256 of the files concatenated "
                  f"{file_hash(files)}")
            check(h == cli_hash(files), f"whoami {h} != noordpoort policy check's {cli_hash(files)}")
            check(metrics_hashes(gw) == [h], f"/metrics policy_set_info {metrics_hashes(gw)}, "
                  f"expected [{h}]")
            check(whoami_hash(gw, "provincie-fryslan") == h, "whoami differs per caller")


# --------------------------------------------------------------------------
# SIGHUP
# --------------------------------------------------------------------------

def test_sighup_broken_policy_keeps_old_set():
    with NodeFiles() as nf:
        files = copy_policies(nf)
        good = files[0].read_bytes()
        with node(nf, files) as gw, H2Client(gw, "gemeente-groningen") as c:
            h0 = whoami_hash(gw)
            st, _, raw = lookup_status(c, body())
            check(st == 200, f"before: {st} {raw[:200]!r}")
            broken = {
                "YAML error": good.replace(b"purposes:\n", b"purposes: [\n", 1),
                "unknown key": good.replace(b"    grants:\n", b"    grantz:\n", 1),
            }
            for n, (what, text) in enumerate(broken.items(), 1):
                check(text != good, f"{what}: the edit did not apply")
                files[0].write_bytes(text)
                before = len(gw.log_lines())
                gw.signal(signal.SIGHUP)
                ev = wait_log(gw, "policy_reload_failed", before)
                check(ev.get("level") == "error" and "lookup.yaml" in ev.get("message", ""),
                      f"{what}: log line {ev}")
                check(gw.metric("noordpoort_policy_reload_failures_total") == n,
                      f"{what}: policy_reload_failures_total "
                      f"{gw.metric('noordpoort_policy_reload_failures_total')}, expected {n}")
                check(whoami_hash(gw) == h0, f"{what}: the hash changed after a failed reload")
                check(metrics_hashes(gw) == [h0], f"{what}: metrics hash {metrics_hashes(gw)}")
                st, _, raw = lookup_status(c, body())
                check(st == 200, f"{what}: the old policy is not in force: {st} {raw[:200]!r}")


def test_sighup_valid_change_takes_effect_on_open_connection():
    with NodeFiles() as nf:
        files = copy_policies(nf)
        with node(nf, files) as gw, H2Client(gw, "gemeente-leeuwarden") as lw, \
                H2Client(gw, "gemeente-groningen") as gr:
            h0 = whoami_hash(gw)
            st, _, raw = lookup_status(lw, body())
            check(st == 200, f"leeuwarden before: {st} {raw[:200]!r}")
            text = files[0].read_bytes()
            new = text.replace(b"requesters: [gemeente-groningen, gemeente-leeuwarden]",
                               b"requesters: [gemeente-groningen]", 1)
            new = new.replace(b"serial: 1\n", b"serial: 2\n", 1)
            check(new != text, "the edit did not apply")
            files[0].write_bytes(new)
            before = len(gw.log_lines())
            gw.signal(signal.SIGHUP)
            ev = wait_log(gw, "reloaded", before)
            h1 = file_hash(files)
            check(ev.get("policy_set") == h1, f"reloaded line {ev}, expected policy_set {h1}")
            check(whoami_hash(gw) == h1 != h0, f"whoami hash after reload {whoami_hash(gw)}")
            check(metrics_hashes(gw) == [h1], f"metrics hash {metrics_hashes(gw)}")
            # the same connections, opened before the reload
            st, obj, raw = lookup_status(lw, body())
            check_error_body(st, {"content-type": "application/json"}, raw, 403,
                             "requester_not_listed", "removed requester on its open connection")
            st, obj, raw = lookup_status(gr, body())
            check(st == 200, f"groningen after reload: {st} {raw[:200]!r}")
            check(obj["policy"]["sha256"] == h1, f"answer names policy {obj['policy']}")
            check(lw.terminated is None and gr.terminated is None, "a connection was closed")
            check(gw.metric("noordpoort_policy_reload_failures_total") == 0, "failure counted")


def test_sighup_unchanged_policies_lookup_still_answers():
    """A reload replaces the state (members, catalog, policies) and frees the
    old one once every worker has moved on; lookups after that must still
    answer exactly as before."""
    with NodeFiles() as nf:
        files = copy_policies(nf)
        fields = ("programme", "start_year", "completed", "birth_date", "postcode")
        with node(nf, files) as gw:
            with H2Client(gw, "gemeente-groningen") as c:
                st, obj0, raw = lookup_status(c, body(fields=fields))
                check(st == 200, f"before: {st} {raw[:200]!r}")
            before = len(gw.log_lines())
            gw.signal(signal.SIGHUP)
            wait_log(gw, "reloaded", before)
            # let the main thread retire and free the old state (it checks
            # at least once a second)
            time.sleep(2.2)
            with H2Client(gw, "gemeente-groningen") as c:
                st, obj1, raw = lookup_status(c, body(fields=fields))
            check(st == 200, f"after an unchanged reload: {st} {raw[:200]!r}")
            check(obj1["records"] == obj0["records"],
                  f"answer changed by the reload: {obj0['records']} -> {obj1['records']}")


# --------------------------------------------------------------------------
# Signed policies
# --------------------------------------------------------------------------

def signed_config(nf, files, pub):
    state = nf.dir / "state"
    state.mkdir(exist_ok=True)
    return {"require_signed_policies": True, "policy_signing_key": str(pub),
            "state_dir": str(state)}


def check_config(gw):
    return run_cli("check-config", "-c", gw.config_path)


def test_signed_policies_start():
    with NodeFiles() as nf:
        files = copy_policies(nf)
        sec, pub = keygen_sign(nf)
        sign(sec, *files)
        with node(nf, files, **signed_config(nf, files, pub)) as gw, \
                H2Client(gw, "gemeente-groningen") as c:
            st, _, raw = lookup_status(c, body())
            check(st == 200, f"signed set: {st} {raw[:200]!r}")
            check(whoami_hash(gw) == file_hash(files), "hash of a signed set")
            r = check_config(gw)
            check(r.returncode == 0, f"check-config of a good signed set: rc {r.returncode}: "
                  f"{r.stdout}{r.stderr}")


def test_signed_policy_tampered_refused_at_start():
    with NodeFiles() as nf:
        files = copy_policies(nf)
        sec, pub = keygen_sign(nf)
        sign(sec, *files)
        flip_byte_in_comment(files[0])
        gw = node(nf, files, **signed_config(nf, files, pub))
        try:
            rc, err = gw.run_expect_exit()
            r = check_config(gw)
        finally:
            gw.cleanup()
        check(rc != 0, f"started with a tampered policy file (rc {rc})")
        line = next((l for l in err.splitlines() if "start_failed" in l), None)
        check(line and "lookup.yaml" in line and re.search(r"signature|sig", line),
              f"no clear start_failed line naming the file and the signature: {err[-600:]}")
        check(r.returncode == 1 and "lookup.yaml" in r.stdout + r.stderr,
              f"check-config: rc {r.returncode}: {r.stdout}{r.stderr}")


def test_signed_policy_missing_sig_refused():
    with NodeFiles() as nf:
        files = copy_policies(nf)
        sec, pub = keygen_sign(nf)
        sign(sec, *files)
        os.unlink(str(files[1]) + ".sig")
        gw = node(nf, files, **signed_config(nf, files, pub))
        try:
            rc, err = gw.run_expect_exit()
            r = check_config(gw)
        finally:
            gw.cleanup()
        check(rc != 0, f"started with an unsigned policy file (rc {rc})")
        line = next((l for l in err.splitlines() if "start_failed" in l), None)
        check(line and "extra.yaml" in line, f"no start_failed line naming extra.yaml: {err[-600:]}")
        check(r.returncode == 1 and "extra.yaml" in r.stdout + r.stderr,
              f"check-config: rc {r.returncode}: {r.stdout}{r.stderr}")


def test_signed_policy_by_other_key_refused():
    with NodeFiles() as nf:
        files = copy_policies(nf)
        sec, pub = keygen_sign(nf)
        other_sec, _ = keygen_sign(nf, "intruder")
        sign(other_sec, *files)
        gw = node(nf, files, **signed_config(nf, files, pub))
        try:
            rc, err = gw.run_expect_exit()
        finally:
            gw.cleanup()
        check(rc != 0, f"started with policies signed by another key (rc {rc})")


def test_signed_policy_reload_tampered_then_valid():
    with NodeFiles() as nf:
        files = copy_policies(nf)
        sec, pub = keygen_sign(nf)
        sign(sec, *files)
        with node(nf, files, **signed_config(nf, files, pub)) as gw, \
                H2Client(gw, "gemeente-leeuwarden") as lw:
            h0 = whoami_hash(gw)
            # a changed file without a new signature: refused, old set kept
            text = files[0].read_bytes()
            new = text.replace(b"requesters: [gemeente-groningen, gemeente-leeuwarden]",
                               b"requesters: [gemeente-groningen]", 1)
            new = new.replace(b"serial: 1\n", b"serial: 2\n", 1)
            files[0].write_bytes(new)
            before = len(gw.log_lines())
            gw.signal(signal.SIGHUP)
            ev = wait_log(gw, "policy_reload_failed", before)
            check("lookup.yaml" in ev.get("message", ""), f"log line {ev}")
            check(gw.metric("noordpoort_policy_reload_failures_total") == 1, "failure not counted")
            check(whoami_hash(gw) == h0, "hash changed after a refused reload")
            st, _, raw = lookup_status(lw, body())
            check(st == 200, f"old set not in force after a refused reload: {st} {raw[:200]!r}")
            # signed now: accepted
            sign(sec, files[0])
            before = len(gw.log_lines())
            gw.signal(signal.SIGHUP)
            wait_log(gw, "reloaded", before)
            check(whoami_hash(gw) == file_hash(files) != h0, "hash after a signed reload")
            st, _, raw = lookup_status(lw, body())
            check(st == 403, f"removed requester after a signed reload: {st} {raw[:200]!r}")
            check(lw.terminated is None, "the connection was closed by the reload")


if __name__ == "__main__":
    run(globals())
