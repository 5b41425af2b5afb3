#!/usr/bin/python3
"""Integration tests: the node role and POST /v1/lookup (issue 3).

A real `noordpoort serve` with roles [node], real certificates and real
clients (python-h2; curl for the Retry-After header), synthetic data from
`noordpoort synth`, a master key from `noordpoort keygen`, and the test
policy tests/integration/data/node/lookup.yaml (valid 2020..2099).

Run: /usr/bin/python3 tests/integration/test_node.py [NAME-SUBSTRING...]
"""

import datetime
import json
import subprocess
import os
import re
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (  # noqa: E402
    REPO, Gateway, H2Client, NodeFiles, check, check_curl_error,
    check_error_body, fail, make_bsn, note, post_json, read_csv, run, run_cli,
    synth_data,
)

DS = "opleidingsfonds-techniek/inschrijvingen"
DS_NOT_HELD = "opleidingsfonds-zorg/inschrijvingen"   # granted, not on this node
POLICY = REPO / "tests" / "integration" / "data" / "node" / "lookup.yaml"
P_CHECK = "test-scholingscheck"      # groningen + leeuwarden, age_band_10, postcode4
P_YEAR = "test-geboortejaar"         # groningen, birth_year
P_BSN = "test-met-bsn"               # emmen, identifiers: bsn
ALL_FIELDS = ["programme", "start_year", "completed", "birth_date", "postcode"]
NON_MEMBER = "provincie-drenthe"     # left out of the members file
HEX64 = re.compile(r"[0-9a-f]{64}")


# --------------------------------------------------------------------------
# Data and helpers
# --------------------------------------------------------------------------

def data_csv():
    return synth_data() / "opleidingsfonds-techniek" / "inschrijvingen.csv"


def rows():
    return read_csv(data_csv())


def all_synth_bsns():
    """Every BSN in every synthetic dataset (for the never-logged checks)."""
    out = set()
    for p in synth_data().glob("*/*.csv"):
        for r in read_csv(p):
            out.add(r["bsn"])
    return out


def known_person():
    """A BSN with exactly one row in the node's dataset, and that row."""
    rs = rows()
    counts = {}
    for r in rs:
        counts[r["bsn"]] = counts.get(r["bsn"], 0) + 1
    for r in rs:
        if counts[r["bsn"]] == 1:
            return r["bsn"], r
    fail("no person with exactly one row in the synthetic data")


def elsewhere_only_bsn():
    """A BSN present in another dataset (UWV) but not at this node."""
    here = {r["bsn"] for r in rows()}
    for r in read_csv(synth_data() / "uwv" / "ww-uitkeringen.csv"):
        if r["bsn"] not in here:
            return r["bsn"]
    fail("no UWV BSN outside the training fund's data")


def nowhere_bsn():
    return make_bsn(100000000, avoid=all_synth_bsns())


def age_band(birth, width, today=None):
    today = today or datetime.datetime.now(datetime.timezone.utc).date()
    y, m, d = (int(x) for x in birth.split("-"))
    age = today.year - y - ((today.month, today.day) < (m, d))
    lo = age // width * width
    return f"{lo}-{lo + width - 1}"


def lookup_body(bsn, fields=None, purpose=P_CHECK, dataset=DS, **extra):
    b = {"purpose": purpose, "dataset": dataset, "subject": {"bsn": bsn},
         "fields": list(fields if fields is not None else ALL_FIELDS)}
    b.update(extra)
    return b


def node_gateway(nf, datasets=None, exclude=(NON_MEMBER,), policies=(POLICY,), **kw):
    if datasets is None:
        datasets = [nf.csv_dataset(DS, data_csv())]
    return Gateway(config=nf.config(list(policies), datasets, **kw), exclude=exclude)


def lookup(client, body):
    return post_json(client, "/v1/lookup", body)


def check_error(resp, status, code, what):
    st, hdrs, _, raw = resp
    return check_error_body(st, hdrs, raw, status, code, what)


def audit_lines(path):
    text = Path(path).read_bytes().decode("utf-8")
    return [json.loads(l) for l in text.splitlines() if l.strip()]


def audit_lines_tolerant(path):
    out = []
    for l in Path(path).read_bytes().decode("utf-8", "replace").splitlines():
        try:
            out.append(json.loads(l))
        except ValueError:
            pass
    return out


def audit_records(path):
    return [o for o in audit_lines(path) if "type" not in o]


def assert_no_bsn(texts, bsns, what):
    """No BSN as a standalone digit run (a 64-hex pseudonym may contain
    digits; a BSN inside one is not a BSN)."""
    for i, t in enumerate(texts):
        for b in bsns:
            if re.search(r"(?<![0-9a-fA-F])" + b + r"(?![0-9a-fA-F])", t):
                fail(f"{what}: BSN {b} appears in line {i + 1}: {t[:300]}")


# --------------------------------------------------------------------------
# Lookup: permits
# --------------------------------------------------------------------------

def test_lookup_happy_path_shapes():
    bsn, row = known_person()
    with NodeFiles() as nf, node_gateway(nf) as gw:
        with H2Client(gw, "gemeente-groningen") as c:
            st, hdrs, obj, raw = lookup(c, lookup_body(bsn))
        check(st == 200, f"status {st}: {raw[:300]!r}")
        check(hdrs.get("content-type", "").startswith("application/json"),
              f"content-type {hdrs.get('content-type')!r}")
        check(set(obj) == {"subject", "purpose", "dataset", "records", "policy", "audit_id"},
              f"top-level keys {sorted(obj)}")
        check(obj["purpose"] == P_CHECK and obj["dataset"] == DS, f"echo: {obj}")
        check(set(obj["subject"]) == {"pseudonym"}, f"subject {obj['subject']}")
        check(HEX64.fullmatch(obj["subject"]["pseudonym"]),
              f"pseudonym not 64 hex: {obj['subject']['pseudonym']!r}")
        check(re.fullmatch(r"[0-9a-f]{32}", obj["audit_id"]), f"audit_id {obj['audit_id']!r}")
        check(obj["policy"]["rule"] == "test-check-gemeenten", f"policy {obj['policy']}")
        check(HEX64.fullmatch(obj["policy"]["sha256"]), f"policy {obj['policy']}")
        want = {
            "programme": row["programme"],
            "start_year": int(row["start_year"]),
            "completed": row["completed"] == "true",
            "birth_date": age_band(row["birth_date"], 10),   # age_band_10
            "postcode": row["postcode"][:4],                  # postcode4
        }
        check(obj["records"] == [want], f"records {obj['records']}, expected [{want}]")
        check(re.fullmatch(r"\d+-\d+", obj["records"][0]["birth_date"]) and
              obj["records"][0]["birth_date"] != row["birth_date"],
              "birth_date left the node unbanded")
        check(bsn.encode() not in raw, "the BSN is in the body without identifiers: bsn")
        check("sector" not in obj["records"][0], "a field that was not asked came back")


def test_lookup_only_requested_fields():
    bsn, row = known_person()
    with NodeFiles() as nf, node_gateway(nf) as gw:
        with H2Client(gw, "gemeente-groningen") as c:
            st, _, obj, raw = lookup(c, lookup_body(bsn, ["programme"]))
        check(st == 200, f"status {st}: {raw[:300]!r}")
        check(obj["records"] == [{"programme": row["programme"]}], f"records {obj['records']}")


def test_lookup_birth_year_shape():
    bsn, row = known_person()
    with NodeFiles() as nf, node_gateway(nf) as gw:
        with H2Client(gw, "gemeente-groningen") as c:
            st, _, obj, raw = lookup(c, lookup_body(bsn, ["programme", "birth_date"], purpose=P_YEAR))
        check(st == 200, f"status {st}: {raw[:300]!r}")
        check(obj["records"] == [{"programme": row["programme"],
                                  "birth_date": int(row["birth_date"][:4])}],
              f"records {obj['records']} (birth_year should be the year as a number)")
        check(obj["policy"]["rule"] == "test-geboortejaar-groningen", f"policy {obj['policy']}")


def test_pseudonym_per_requester_and_purpose():
    bsn, _ = known_person()
    with NodeFiles() as nf, node_gateway(nf) as gw:
        def pseudonym(org_id, purpose, fields=("programme",)):
            with H2Client(gw, org_id) as c:
                st, _, obj, raw = lookup(c, lookup_body(bsn, fields, purpose=purpose))
            check(st == 200, f"{org_id}/{purpose}: status {st}: {raw[:300]!r}")
            return obj["subject"]["pseudonym"]
        a1 = pseudonym("gemeente-groningen", P_CHECK)
        a2 = pseudonym("gemeente-groningen", P_CHECK, ("programme", "start_year"))
        b = pseudonym("gemeente-leeuwarden", P_CHECK)
        c = pseudonym("gemeente-groningen", P_YEAR)
        check(a1 == a2, "the pseudonym changed between two lookups of the same "
              "requester and purpose")
        check(a1 != b, "two requesters got the same pseudonym (they could join)")
        check(a1 != c, "two purposes gave the same requester the same pseudonym")


def test_pseudonym_stable_across_restart():
    bsn, _ = known_person()
    with NodeFiles() as nf:
        got = []
        for _ in range(2):
            with node_gateway(nf) as gw, H2Client(gw, "gemeente-groningen") as c:
                st, _, obj, raw = lookup(c, lookup_body(bsn, ["programme"]))
                check(st == 200, f"status {st}: {raw[:300]!r}")
                got.append(obj["subject"]["pseudonym"])
        check(got[0] == got[1], f"pseudonym changed across a restart: {got}")


def test_identifiers_bsn_only_when_granted_and_asked():
    bsn, row = known_person()
    with NodeFiles() as nf, node_gateway(nf) as gw:
        with H2Client(gw, "gemeente-emmen") as c:
            st, _, obj, raw = lookup(c, lookup_body(bsn, ["programme"], purpose=P_BSN,
                                                    identifiers="bsn"))
            check(st == 200, f"granted+asked: status {st}: {raw[:300]!r}")
            check(obj["subject"].get("bsn") == bsn, f"granted+asked: subject {obj['subject']}")
            # granted, not asked: pseudonym (the default) only
            st, _, obj, raw = lookup(c, lookup_body(bsn, ["programme"], purpose=P_BSN))
            check(st == 200, f"granted, not asked: status {st}: {raw[:300]!r}")
            check("bsn" not in obj["subject"] and bsn.encode() not in raw,
                  f"granted but not asked: the BSN came back: {raw[:300]!r}")
            check(HEX64.fullmatch(obj["subject"].get("pseudonym", "")), f"subject {obj['subject']}")
            # identifiers: none -> no identifier at all
            st, _, obj, raw = lookup(c, lookup_body(bsn, ["programme"], purpose=P_BSN,
                                                    identifiers="none"))
            check(st == 200, f"identifiers none: status {st}: {raw[:300]!r}")
            check(obj["subject"] == {}, f"identifiers none: subject {obj['subject']}")
        with H2Client(gw, "gemeente-groningen") as c:
            r = lookup(c, lookup_body(bsn, ["programme"], identifiers="bsn"))
            check_error(r, 403, "identifiers_not_granted", "asked, not granted")
            check(bsn.encode() not in r[3], "the refusal echoes the BSN")


# --------------------------------------------------------------------------
# Lookup: refusals
# --------------------------------------------------------------------------

def test_invalid_bsn_400():
    with NodeFiles() as nf, node_gateway(nf) as gw, H2Client(gw, "gemeente-groningen") as c:
        for bad in ("123456789", "12345678a", "1234567890", "", "000000000"):
            r = lookup(c, lookup_body(bad))
            check_error(r, 400, "invalid_bsn", f"bsn {bad!r}")
            if bad:
                check(bad.encode() not in r[3], f"the invalid BSN {bad!r} is echoed: {r[3]!r}")


def test_unknown_subject_404_same_body():
    with NodeFiles() as nf, node_gateway(nf) as gw, H2Client(gw, "gemeente-groningen") as c:
        elsewhere, nowhere = elsewhere_only_bsn(), nowhere_bsn()
        r1 = lookup(c, lookup_body(elsewhere))
        r2 = lookup(c, lookup_body(nowhere))
        check_error(r1, 404, "not_found", "known elsewhere")
        check_error(r2, 404, "not_found", "known nowhere")
        check(r1[3] == r2[3], f"the 404 differs by whether the person is known elsewhere: "
              f"{r1[3]!r} vs {r2[3]!r}")
        check(r1[1].get("content-length") == r2[1].get("content-length"), "lengths differ")


def test_field_not_granted_names_field():
    bsn, _ = known_person()
    with NodeFiles() as nf, node_gateway(nf) as gw, H2Client(gw, "gemeente-groningen") as c:
        obj = check_error(lookup(c, lookup_body(bsn, ["programme", "sector"])), 403,
                          "field_not_granted", "sector")
        check("sector" in obj["error"]["message"], f"message does not name the field: {obj}")
        # a field that is not in the catalog at all
        obj = check_error(lookup(c, lookup_body(bsn, ["salaris"])), 403, "field_not_granted",
                          "salaris")
        check("salaris" in obj["error"]["message"], f"message does not name the field: {obj}")


def test_forbidden_field_403():
    bsn, _ = known_person()
    with NodeFiles() as nf, node_gateway(nf) as gw, H2Client(gw, "gemeente-leeuwarden") as c:
        obj = check_error(lookup(c, lookup_body(bsn, ["programme", "sector"])), 403,
                          "forbidden", "forbid")
        check("Leeuwarden" in obj["error"]["message"],
              f"the forbid's reason is not in the message: {obj}")


def test_requester_not_listed_unknown_purpose_not_held():
    bsn, _ = known_person()
    with NodeFiles() as nf, node_gateway(nf) as gw:
        with H2Client(gw, "provincie-groningen") as c:
            check_error(lookup(c, lookup_body(bsn)), 403, "requester_not_listed", "not listed")
        with H2Client(gw, "gemeente-groningen") as c:
            check_error(lookup(c, lookup_body(bsn, purpose="geen-bestaand-doel")), 403,
                        "unknown_purpose", "unknown purpose")
            check_error(lookup(c, lookup_body(bsn, ["programme"], dataset=DS_NOT_HELD)), 404,
                        "not_found", "granted dataset this node does not hold")
            check_error(lookup(c, lookup_body(bsn, ["end_reason"], dataset="uwv/ww-uitkeringen")),
                        403, "dataset_not_granted", "dataset not granted")
            # asking the identifier as a field
            r = lookup(c, lookup_body(bsn, ["bsn"]))
            check(r[0] in (400, 403), f"bsn as a field: status {r[0]} {r[3][:200]!r}")
            check(bsn.encode() not in r[3], "bsn as a field: the BSN came back")


def test_bad_bodies_400():
    bsn, _ = known_person()
    good = lookup_body(bsn, ["programme"])
    cases = {}
    b = dict(good); del b["purpose"]; cases["missing purpose"] = b
    b = dict(good); b["purpose"] = ""; cases["empty purpose"] = b
    b = dict(good); b["purpose"] = 7; cases["purpose a number"] = b
    b = dict(good); del b["dataset"]; cases["missing dataset"] = b
    b = dict(good); del b["subject"]; cases["missing subject"] = b
    b = dict(good); b["subject"] = {"bsn": int(bsn)}; cases["bsn a number"] = b
    b = dict(good); b["subject"] = bsn; cases["subject a string"] = b
    b = dict(good); b["fields"] = "programme"; cases["fields not a list"] = b
    b = dict(good); b["fields"] = []; cases["fields empty"] = b
    b = dict(good); b["fields"] = ["programme", 3]; cases["fields hold a number"] = b
    b = dict(good); b["fields"] = ["programme", "programme"]; cases["duplicate field"] = b
    b = dict(good); b["fields"] = [f"f{i}" for i in range(33)]; cases["33 fields"] = b
    b = dict(good); b["identifiers"] = "weird"; cases["identifiers weird"] = b
    b = dict(good); b["identifiers"] = 1; cases["identifiers a number"] = b
    with NodeFiles() as nf, node_gateway(nf) as gw, H2Client(gw, "gemeente-groningen") as c:
        for what, body in cases.items():
            check_error(lookup(c, body), 400, "bad_request", what)
        # the boundary: 32 distinct fields is not a bad request (it is decided)
        b = dict(good); b["fields"] = [f"f{i}" for i in range(32)]
        r = lookup(c, b)
        check(r[0] == 403, f"32 fields: status {r[0]}, expected 403 (decided): {r[3][:200]!r}")
        st, hdrs, raw = c.request("POST", "/v1/lookup", body=b"[1,2]")
        check_error_body(st, hdrs, raw, 400, "invalid_json", "array body")
        st, hdrs, raw = c.request("POST", "/v1/lookup", body=b'{"purpose":')
        check_error_body(st, hdrs, raw, 400, "invalid_json", "truncated JSON")


def test_non_member_403():
    bsn, _ = known_person()
    with NodeFiles() as nf, node_gateway(nf) as gw:
        r = gw.curl("/v1/lookup", org=NON_MEMBER, data=json.dumps(lookup_body(bsn)),
                    headers=["content-type: application/json"])
        check_curl_error(r, 403, "unknown_organisation", "non-member")
        check(audit_records(nf.audit) == [], "a non-member's request was audited as a lookup")


# --------------------------------------------------------------------------
# Rate limit
# --------------------------------------------------------------------------

def test_rate_limit_429_retry_after():
    bsn, _ = known_person()
    with NodeFiles() as nf, node_gateway(nf, workers=1, lookups_per_minute=1,
                                          lookup_burst=2) as gw:
        body = json.dumps(lookup_body(bsn, ["programme"]))
        hdr = ["content-type: application/json"]
        for i in range(2):
            r = gw.curl("/v1/lookup", org="gemeente-groningen", data=body, headers=hdr)
            check(r.status == 200, f"lookup {i + 1} of the burst: {r!r}")
        r = gw.curl("/v1/lookup", org="gemeente-groningen", data=body, headers=hdr)
        check_curl_error(r, 429, "rate_limited", "past the burst")
        ra = r.headers.get("retry-after")
        check(ra is not None and re.fullmatch(r"[0-9]+", ra) and 1 <= int(ra) <= 61,
              f"Retry-After {ra!r}, expected whole seconds in 1..61 at 1 lookup/minute")
        # another requester has its own bucket
        r = gw.curl("/v1/lookup", org="gemeente-leeuwarden", data=body, headers=hdr)
        check(r.status == 200, f"another requester was limited too: {r!r}")
        # Every lookup request leaves an audit line, the 429 included, so
        # throttled enumeration attempts leave a trace too.
        recs = audit_records(nf.audit)
        got = [(x.get('requester'), x.get('status'), x.get('outcome')) for x in recs]
        check(got == [("gemeente-groningen", 200, "answered")] * 2 +
              [("gemeente-groningen", 429, "rate_limited"),
               ("gemeente-leeuwarden", 200, "answered")],
              f"audit records: {got}")


def test_rate_limit_burst_per_organisation_one_connection():
    """lookup_burst is per requesting organisation (examples/node/gateway.yaml,
    docs/config.md): one h2 connection of one requester gets the whole burst,
    whatever the number of workers."""
    bsn, _ = known_person()
    with NodeFiles() as nf, node_gateway(nf, workers=2, lookups_per_minute=1,
                                          lookup_burst=4) as gw:
        with H2Client(gw, "gemeente-groningen") as c:
            got = [lookup(c, lookup_body(bsn, ["programme"]))[0] for _ in range(5)]
        check(got == [200, 200, 200, 200, 429],
              f"statuses {got} with lookup_burst: 4 (workers: 2), expected 4 x 200 then 429")


def test_rate_limit_burst_holds_across_workers():
    """... and a requester whose connections land on both workers gets at
    most lookup_burst lookups at once (here 1)."""
    bsn, _ = known_person()
    with NodeFiles() as nf, node_gateway(nf, workers=2, lookups_per_minute=1,
                                          lookup_burst=1) as gw:
        ok = 0
        body = lookup_body(bsn, ["programme"])
        for _ in range(16):   # 16 connections: both workers get some (SO_REUSEPORT)
            with H2Client(gw, "gemeente-groningen") as c:
                st, _, _, _ = lookup(c, body)
                ok += st == 200
        check(ok == 1, f"{ok} lookups answered 200 at once with lookup_burst: 1 "
              f"(workers: 2), expected 1")


# --------------------------------------------------------------------------
# Audit
# --------------------------------------------------------------------------

def test_audit_every_decision_verify_tamper_subject():
    bsn, _ = known_person()
    other = elsewhere_only_bsn()
    sign = NodeFiles()
    try:
        nf = sign
        r = run_cli("keygen", "--sign", "--out", nf.dir / "audit")
        check(r.returncode == 0, f"keygen --sign: {r.stderr}")
        audit_cfg = {"sign_key": str(nf.dir / "audit.sec"), "checkpoint_every_records": 3,
                     "fsync_every_records": 1, "fsync_every_ms": 10}
        expect = []   # (requester, status, outcome, subject?) per decided lookup
        with node_gateway(nf, audit=audit_cfg) as gw:
            with H2Client(gw, "gemeente-groningen") as c:
                steps = [
                    (lookup_body(bsn), 200, "answered", True),
                    (lookup_body(bsn, ["sector"]), 403, "field_not_granted", True),
                    (lookup_body("123456789"), 400, "invalid_bsn", False),
                    (lookup_body(other), 404, "not_found", True),
                    (lookup_body(bsn, purpose="geen-doel"), 403, "unknown_purpose", True),
                    (lookup_body(bsn, ["programme"], dataset=DS_NOT_HELD), 404, "not_found", True),
                ]
                ids = []
                for body, status, outcome, subj in steps:
                    st, _, obj, raw = lookup(c, body)
                    check(st == status, f"{outcome}: status {st}, expected {status}: {raw[:200]!r}")
                    if st == 200:
                        ids.append(obj["audit_id"])
                    expect.append(("gemeente-groningen", status, outcome, subj))
            with H2Client(gw, "gemeente-emmen") as c:
                st, _, _, _ = lookup(c, lookup_body(bsn, ["programme"], purpose=P_BSN,
                                                    identifiers="bsn"))
                check(st == 200, f"emmen bsn lookup: {st}")
                expect.append(("gemeente-emmen", 200, "answered", True))
            gw_log = gw.log_lines()
        recs = audit_records(nf.audit)
        got = [(x.get("requester"), x.get("status"), x.get("outcome"), "subject" in x)
               for x in recs]
        check(got == expect, f"audit records {got}, expected {expect}")
        check(recs[0]["audit_id"] == ids[0], "the 200's audit_id is not its record's")
        for x in recs:
            check(x.get("decision") == ("permit" if x["status"] == 200 else x.get("decision")),
                  f"decision {x}")
            check(x.get("purpose") and x.get("datasets"), f"record without purpose/datasets: {x}")
        check(recs[1]["decision"] == "deny" and recs[1]["reason"] == "field_not_granted",
              f"deny record {recs[1]}")
        lines = nf.audit.read_bytes().decode().splitlines()
        check(any('"type":"checkpoint"' in l for l in lines), "no checkpoint line")

        # verify: intact, signatures too
        r = run_cli("audit", "verify", "--pub", nf.dir / "audit.pub", nf.audit)
        check(r.returncode == 0, f"audit verify --pub: rc {r.returncode}: {r.stdout}{r.stderr}")

        # subject access: the BSN's accesses (not the invalid one's)
        r = run_cli("audit", "subject", "--bsn", bsn, "--key", nf.master_key, nf.audit)
        check(r.returncode == 0, f"audit subject: rc {r.returncode}: {r.stdout}{r.stderr}")
        n_bsn = sum(1 for body, *_ in steps if body["subject"]["bsn"] == bsn) + 1
        check(f"{n_bsn} records concern this person" in r.stdout,
              f"audit subject: expected {n_bsn} records: {r.stdout}")
        check("gemeente-emmen" in r.stdout and "gemeente-groningen" in r.stdout,
              f"audit subject does not list both requesters: {r.stdout}")
        check(bsn not in r.stdout + r.stderr, "audit subject printed the BSN")

        # no BSN in the gateway log or the audit log
        bsns = all_synth_bsns() | {"123456789"}
        assert_no_bsn(gw_log, bsns, "gateway log")
        assert_no_bsn(lines, bsns, "audit log")

        # tamper with one byte of a middle record -> verify names that line
        k = 3   # 1-based line number of a record that is not the last
        check(lines[k - 1].startswith('{"seq":'), f"line {k} is not a record")
        raw = bytearray(nf.audit.read_bytes())
        start = sum(len(l) + 1 for l in lines[:k - 1])
        pos = raw.index(b'"purpose":"', start) + len('"purpose":"')
        raw[pos] = ord("X") if raw[pos] != ord("X") else ord("Y")
        nf.audit.write_bytes(bytes(raw))
        r = run_cli("audit", "verify", nf.audit)
        check(r.returncode == 1, f"verify after tampering: rc {r.returncode}: {r.stdout}")
        check(re.search(rf"\bline {k}\b", r.stdout + r.stderr),
              f"verify does not name line {k}: {r.stdout}{r.stderr}")
    finally:
        sign.cleanup()


def test_audit_fail_closed_on_unwritable_log():
    """The audit file cannot be opened at start -> the node does not start."""
    with NodeFiles() as nf:
        gw = node_gateway(nf, audit={"path": str(nf.dir / "no-such-dir" / "audit.log")})
        try:
            rc, err = gw.run_expect_exit()
        finally:
            gw.cleanup()
        check(rc != 0, f"a node with an unwritable audit log started (rc {rc})")
        check("start_failed" in err, f"no start_failed line: {err[-500:]}")


def test_sigkill_under_load_then_recover():
    bsn, _ = known_person()
    with NodeFiles() as nf:
        answered, errors = [], []
        stop = threading.Event()
        gw = node_gateway(nf, audit={"fsync_every_records": 64, "fsync_every_ms": 100})
        gw.start()
        try:
            def worker(org_id, purpose):
                try:
                    with H2Client(gw, org_id, timeout=5) as c:
                        while not stop.is_set():
                            st, _, obj, _ = lookup(c, lookup_body(bsn, ["programme"],
                                                                  purpose=purpose))
                            if st == 200:
                                answered.append(obj["audit_id"])
                except Exception as e:  # the kill ends every connection
                    errors.append(e)
            ts = [threading.Thread(target=worker, args=a, daemon=True) for a in
                  [("gemeente-groningen", P_CHECK), ("gemeente-leeuwarden", P_CHECK),
                   ("gemeente-groningen", P_YEAR), ("gemeente-emmen", P_BSN)]]
            for t in ts:
                t.start()
            deadline = time.monotonic() + 10
            while len(answered) < 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            gw.signal(signal.SIGKILL)
            stop.set()
            for t in ts:
                t.join(10)
        finally:
            gw.stop(expect_rc=None)
        check(len(answered) >= 20, f"only {len(answered)} lookups answered before the kill")
        note(f"{len(answered)} lookups answered before SIGKILL")
        r = run_cli("audit", "verify", nf.audit)
        text = r.stdout + r.stderr
        torn = "torn" in text
        check(r.returncode == 0 or (r.returncode == 1 and torn),
              f"verify after SIGKILL: rc {r.returncode}: {text}")
        # nothing that was answered is missing from the log
        logged = set()
        for line in nf.audit.read_text(errors="replace").splitlines():
            try:
                logged.add(json.loads(line).get("audit_id"))
            except ValueError:
                pass    # the torn last line
        missing = [a for a in answered if a not in logged]
        check(not missing, f"{len(missing)} answered lookups are not in the audit log "
              f"(e.g. {missing[:3]})")
        # A kill inside a write(2) can leave a torn last line; make one for
        # sure (half a record, no newline): verify reports it ...
        if not torn:
            with open(nf.audit, "ab") as f:
                f.write(b'{"seq":999999,"time":"2026-01-01T00:00:00.000Z","audit_id":"ab')
            r = run_cli("audit", "verify", nf.audit)
            check(r.returncode == 1 and "torn" in r.stdout + r.stderr,
                  f"verify of a torn tail: rc {r.returncode}: {r.stdout}{r.stderr}")
        # ... and a restart on the same log recovers it: one lookup, then
        # the log verifies (with a warning naming the torn line)
        with node_gateway(nf) as gw2, H2Client(gw2, "gemeente-groningen") as c:
            st, _, _, raw = lookup(c, lookup_body(bsn, ["programme"]))
            check(st == 200, f"after restart: status {st}: {raw[:200]!r}")
        r = run_cli("audit", "verify", nf.audit)
        check(r.returncode == 0, f"verify after restart: rc {r.returncode}: {r.stdout}{r.stderr}")
        check("torn" in r.stdout + r.stderr and "recovered" in r.stdout + r.stderr,
              f"verify after restart does not mention the recovered torn line: {r.stdout}{r.stderr}")
        recs = audit_lines_tolerant(nf.audit)
        check(any(o.get("type") == "recovery" for o in recs), "no recovery record")


# --------------------------------------------------------------------------
# Sources: SQLite, bad rows
# --------------------------------------------------------------------------

def make_sqlite(path, csv_rows, index=True):
    db = sqlite3.connect(str(path))
    cols = list(csv_rows[0].keys())
    db.execute("CREATE TABLE inschrijvingen (" + ", ".join(f'"{c}"' for c in cols) + ")")
    for r in csv_rows:
        vals = []
        for c in cols:
            v = r[c]
            if c in ("bsn", "start_year"):
                v = int(v)              # INTEGER, as a partner's export would have
            vals.append(v)
        db.execute("INSERT INTO inschrijvingen VALUES (" + ",".join("?" * len(cols)) + ")", vals)
    if index:
        db.execute("CREATE INDEX inschrijvingen_bsn ON inschrijvingen (bsn)")
    db.commit()
    db.close()


def answers(gw, cases):
    out = []
    with H2Client(gw, "gemeente-groningen") as c:
        for body in cases:
            st, _, obj, raw = lookup(c, body)
            if isinstance(obj, dict):
                obj.pop("audit_id", None)
            out.append((st, obj))
    return out


def test_sqlite_source_same_answers_as_csv():
    rs = rows()
    with NodeFiles() as nf:
        db = nf.dir / "fonds.db"
        make_sqlite(db, rs)
        sample = [r["bsn"] for r in rs[:6]]
        cases = [lookup_body(b) for b in sample] + \
                [lookup_body(b, ["programme", "birth_date"], purpose=P_YEAR) for b in sample[:2]] + \
                [lookup_body(elsewhere_only_bsn()), lookup_body("123456789"),
                 lookup_body(sample[0], ["sector"])]
        with node_gateway(nf) as gw:
            from_csv = answers(gw, cases)
        with node_gateway(nf, datasets=[nf.sqlite_dataset(DS, db, table="inschrijvingen")]) as gw:
            from_sqlite = answers(gw, cases)
        for i, (a, b) in enumerate(zip(from_csv, from_sqlite)):
            check(a == b, f"case {i} ({cases[i]['subject']}, {cases[i]['fields']}): "
                  f"CSV {a} vs SQLite {b}")
        check(sum(1 for st, _ in from_csv if st == 200) == 8, f"CSV answers {from_csv}")


def test_sqlite_without_bsn_index_warns():
    """docs/adapters.md: the node should call adapter_field_indexed() at
    start-up for the bsn field and warn when lookups would scan the table."""
    with NodeFiles() as nf:
        db = nf.dir / "fonds.db"
        make_sqlite(db, rows(), index=False)
        with node_gateway(nf, datasets=[nf.sqlite_dataset(DS, db, table="inschrijvingen")]) as gw:
            log = gw.log_lines()
        check(any("index" in l.lower() for l in log),
              "no warning about the missing index on bsn at start-up: " + " | ".join(log)[:600])


def bad_rows_csv(nf, structural=True, typing=True):
    """The synthetic CSV plus bad rows; returns (path, BSN of the typing-bad row)."""
    text = data_csv().read_text()
    lines = text.rstrip("\n").split("\n")
    bad_bsn = make_bsn(200000000, avoid=all_synth_bsns())
    extra = []
    if typing:
        extra.append(f"{bad_bsn},noorden-leert-door-1,bouw,abc,true,1980-01-01,9712")
    if structural:
        extra.append("only,three,fields")
    # the bad rows in the middle, so good rows follow them
    mid = len(lines) // 2
    lines = lines[:mid] + extra + lines[mid:]
    return nf.write("bad.csv", "\n".join(lines) + "\n"), bad_bsn


def test_bad_rows_skip():
    bsn_first, bsn_last = rows()[0]["bsn"], rows()[-1]["bsn"]
    with NodeFiles() as nf:
        path, bad_bsn = bad_rows_csv(nf)
        with node_gateway(nf, datasets=[nf.csv_dataset(DS, path, on_bad_row="skip")]) as gw, \
                H2Client(gw, "gemeente-groningen") as c:
            for b in (bsn_first, bsn_last):
                st, _, obj, raw = lookup(c, lookup_body(b, ["programme"]))
                check(st == 200, f"good row {b[:2]}…: status {st}: {raw[:200]!r}")
            check_error(lookup(c, lookup_body(bad_bsn, ["programme"])), 404, "not_found",
                        "the skipped row's person")


def test_bad_rows_skip_reported():
    """on_bad_row: skip "counts and reports" bad rows (docs/config.md,
    examples/node/gateway.yaml): a skipped row must show up somewhere an
    operator looks - a log line or a metric - without the row's BSN."""
    with NodeFiles() as nf:
        path, bad_bsn = bad_rows_csv(nf)
        with node_gateway(nf, datasets=[nf.csv_dataset(DS, path, on_bad_row="skip")]) as gw:
            with H2Client(gw, "gemeente-groningen") as c:
                st, _, _, _ = lookup(c, lookup_body(rows()[0]["bsn"], ["programme"]))
                check(st == 200, f"status {st}")
            metrics = gw.curl("/metrics").body.decode()
            logs = [l for l in gw.log_lines() if '"event":"request"' not in l]
        reported = [l for l in logs if re.search(r"bad|skip", l, re.I)] + \
                   [l for l in metrics.splitlines()
                    if not l.startswith("#") and re.search(r"bad_row|skipped", l)]
        check(reported, "2 bad rows were skipped but neither the log nor /metrics says so")
        assert_no_bsn(logs, {bad_bsn}, "gateway log")


def _refused_at_load(nf, path, want_line_re, what):
    """on_bad_row: fail "fails the load" (issue 4): the node reads every row
    at start and refuses to start on the first bad one, naming file:line and
    the field, and without echoing the row's BSN."""
    gw = node_gateway(nf, datasets=[nf.csv_dataset(DS, path, on_bad_row="fail")])
    try:
        rc, err = gw.run_expect_exit()
    finally:
        gw.cleanup()
    check(rc != 0, f"{what}: the node started despite a bad row (exit {rc})")
    check(re.search(want_line_re, err), f"{what}: no file:line: reason in {err[-800:]!r}")
    check("start_failed" in err, f"{what}: no start_failed event: {err[-800:]!r}")
    return err


def test_bad_rows_fail_structural():
    with NodeFiles() as nf:
        path, bad_bsn = bad_rows_csv(nf, structural=True, typing=False)
        err = _refused_at_load(nf, path, r"bad\.csv:\d+:\d+: error: 3 fields, expected 7",
                               "damaged record")
        check(bad_bsn not in err, "the bad row's BSN is in the start-up log")


def test_bad_rows_fail_typing():
    with NodeFiles() as nf:
        path, bad_bsn = bad_rows_csv(nf, structural=False, typing=True)
        err = _refused_at_load(nf, path, r"bad\.csv:\d+:\d+: error: field '[a-z_]+': ",
                               "untyped value")
        check(bad_bsn not in err, "the bad row's BSN is in the start-up log")


def test_bad_rows_check_config():
    """check-config reads the datasets as serve would, and says the same."""
    with NodeFiles() as nf:
        path, _ = bad_rows_csv(nf, structural=True, typing=False)
        gw = node_gateway(nf, datasets=[nf.csv_dataset(DS, path, on_bad_row="fail")])
        try:
            r = subprocess.run([str(harness.BIN), "check-config", "-c", str(gw.config_path)],
                               capture_output=True, text=True, timeout=30)
        finally:
            gw.cleanup()
        check(r.returncode == 1, f"check-config exit {r.returncode}: {r.stderr[-400:]}")
        check(re.search(r"bad\.csv:\d+:\d+: error: 3 fields", r.stderr),
              f"check-config output: {r.stderr[-400:]!r}")


def test_csv_replaced_while_running():
    """docs/adapters.md, "The file replaced under a running adapter": an
    export renamed over the node's CSV is answered from the next lookup on,
    its header read again (columns in another order), with no restart; while
    the path names no file, or a file without a schema column, lookups
    answer 503 source_unavailable, never the old rows; a good file renamed
    in is answered again. Each state is asked over several connections, so
    that both workers (each with its own adapter) answer."""
    bsn, row = known_person()
    header = data_csv().read_text().split("\n", 1)[0].split(",")
    other = next(p for p in ("noorden-leert-door-1", "noorden-leert-door-2", "kansrijk-verzilveren")
                 if p != row["programme"])
    changed = [dict(r, programme=other) if r["bsn"] == bsn else r for r in rows()]

    def export(records, columns):
        return "".join(",".join(r[k] for k in columns) + "\n" for r in [dict(zip(columns, columns))] + records)

    def ask(gw, want_programme, what):
        for _ in range(6):
            with H2Client(gw, "gemeente-groningen") as c:
                resp = lookup(c, lookup_body(bsn, ["programme"]))
            if want_programme is None:
                check_error(resp, 503, "source_unavailable", what)
            else:
                st, _, obj, raw = resp
                check(st == 200 and obj["records"] == [{"programme": want_programme}],
                      f"{what}: status {st}: {raw[:300]!r}")

    with NodeFiles() as nf:
        path = nf.write("fonds.csv", export(rows(), header))
        with node_gateway(nf, datasets=[nf.csv_dataset(DS, path, on_bad_row="fail")],
                          lookups_per_minute=0) as gw:
            ask(gw, row["programme"], "before the rename")
            nf.write("fonds.csv", export(changed, list(reversed(header))))   # write, then rename
            ask(gw, other, "the renamed export, columns reversed")
            os.unlink(path)
            ask(gw, None, "the file removed")
            nf.write("fonds.csv", export(changed, [h for h in header if h != "programme"]))
            ask(gw, None, "a file without the programme column")
            nf.write("fonds.csv", export([dict(r, programme="geheime-waarde") if r["bsn"] == bsn else r
                                          for r in rows()], header))
            ask(gw, None, "the person's row with a programme that is not a category")
            nf.write("fonds.csv", export(rows(), header))
            ask(gw, row["programme"], "a good file renamed in again")
            # the operator's side of each 503: which file, what is wrong,
            # and for a bad row its place but never its value
            msgs = [o.get("message", "") for o in gw.log_json() if o.get("event") == "dataset_unavailable"]
            check(any(str(path) in m and "no such file" in m for m in msgs),
                  f"no log line for the removed file: {msgs[:3]}")
            check(any(str(path) in m and "programme" in m and "header" in m for m in msgs),
                  f"no log line for the missing column: {msgs[:3]}")
            bad = [m for m in msgs if "does not type" in m]
            check(bad and all(f"{path}:" in m for m in bad), f"no log line for the bad row: {msgs[:3]}")
            check(not any("geheime-waarde" in line for line in gw.log_lines()),
                  "the bad row's value reached the node's log")


if __name__ == "__main__":
    run(globals())
