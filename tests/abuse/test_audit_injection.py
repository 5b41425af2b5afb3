#!/usr/bin/python3
"""Abuse battery, the audit log (issue 10, section 4): requester strings
used to go into the audit log verbatim, so a member could write a BSN into
it ("purpose": "320836125") or a 900 KB line, and fill the disk with
refusals (after which fail-closed auditing refuses everyone).

- a battery of requests that put valid BSNs (they pass the elfproef) in
  every string field of /v1/lookup, /v1/aggregate and
  /v1/federation/subquery, in valid and invalid places, in keys of objects
  and in the values of filters; afterwards no audit line and no log line of
  the hub or the node holds a 9-digit string that passes the elfproef, nor
  any of the BSNs sent;
- a 900 KB purpose does not make a 900 KB audit line;
- the per-requester refusal limit: the limit-th refusal is answered and
  recorded, the (limit+1)-th is answered 429 with one summary line, later
  ones with none; other members and granted requests are not affected;
- section 8: /v1/lookup refuses unknown members as the hub does; an
  invalid BSN's message is a sentence that keeps its code; a number beyond
  long long in a subquery's filter values is refused (it was converted
  before its range was checked: undefined behaviour, an abort under UBSan).

The BSNs are also written into the run's artifacts as a CSV with a bsn
column, so tests/check_no_personal_data.py searches every archived log for
them too. Expected behaviour: docs/abuse.md, "Audit log".

Run: /usr/bin/python3 tests/abuse/test_audit_injection.py [NAME-SUBSTRING...]
"""

import json
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from abuselib import server_env  # noqa: E402
import harness  # noqa: E402
from harness import (  # noqa: E402
    REPO, Federation, Gateway, H2Client, NodeFiles, check, make_bsn, note,
    post_json, read_csv, run, synth_data,
)

DS = "opleidingsfonds-techniek/inschrijvingen"
NODE = "opleidingsfonds-techniek"
FED_POLICY = REPO / "tests" / "integration" / "data" / "federation" / "federation.yaml"
LOOKUP_POLICY = REPO / "tests" / "integration" / "data" / "node" / "lookup.yaml"
P_LOOKUP = "test-scholingscheck"      # lookup, granted to gemeente-groningen
P_FED = "test-fed-exact"              # aggregate, granted to arbeidsmarkttafel
LOOKUP_REQUESTER = "gemeente-groningen"
COORDINATOR = "arbeidsmarkttafel"
REFUSAL_LIMIT = 60                    # AUDIT_REFUSALS_PER_MINUTE (audit/audit.h)

# BSNs that pass the elfproef and are in no dataset of the tests.
BSNS = []
for start in (320836120, 111222330, 987654320, 123456780, 246813570, 135792460):
    BSNS.append(make_bsn(start, avoid=BSNS))
B0, B1, B2, B3, B4, B5 = BSNS


def elfproef(s):
    """The 11-test of a BSN (8 digits: with a leading 0)."""
    s = s.zfill(9)
    if not s.isdigit() or len(s) != 9 or int(s) == 0:
        return False
    total = sum(int(d) * w for d, w in zip(s[:8], range(9, 1, -1))) - int(s[8])
    return total % 11 == 0


# Nine digits not inside a longer run of digits or hex (hashes, audit ids,
# pseudonyms), as tests/check_no_personal_data.py reads them; the battery's
# own BSNs are looked for anywhere.
NINE = re.compile(r"(?<![0-9a-fA-F])[0-9]{9}(?![0-9a-fA-F])")


def leaks(lines, where):
    """Every line of |lines| with one of BSNS in it, or a 9-digit string
    (not part of a longer run of digits or hex) that passes the elfproef."""
    out = []
    for i, line in enumerate(lines, 1):
        hits = [b for b in BSNS if b in line]
        hits += [m for m in NINE.findall(line) if elfproef(m) and m not in hits]
        if hits:
            out.append(f"{where}:{i}: {hits[0][:3]}... in {line[:160]!r}")
    return out


def known_bsn():
    rows = read_csv(synth_data() / NODE / "inschrijvingen.csv")
    counts = {}
    for r in rows:
        counts[r["bsn"]] = counts.get(r["bsn"], 0) + 1
    for r in rows:
        if counts[r["bsn"]] == 1:
            return r["bsn"]
    raise AssertionError("no person with exactly one row")


def archive_bsns(folder):
    """The battery's BSNs as a dataset CSV next to the logs, so the run's
    final check (tests/check_no_personal_data.py) looks for them too."""
    p = Path(folder) / "audit_injection_bsns.csv"
    p.write_text("bsn\n" + "".join(b + "\n" for b in BSNS), encoding="utf-8")
    return p


def file_lines(p):
    p = Path(p)
    return p.read_text(encoding="utf-8", errors="replace").splitlines() if p.exists() else []


def audit_records(p):
    out = []
    for line in file_lines(p):
        o = json.loads(line)
        if "type" not in o:
            out.append(o)
    return out


def code_of(r):
    try:
        return (r[2] or {}).get("error", {}).get("code")
    except AttributeError:
        return None


def lookup_body(bsn, purpose=P_LOOKUP, dataset=DS, fields=("programme",), **extra):
    b = {"purpose": purpose, "dataset": dataset, "subject": {"bsn": bsn},
         "fields": list(fields)}
    b.update(extra)
    return b


# --------------------------------------------------------------------------
# The battery
# --------------------------------------------------------------------------

def lookup_battery():
    good = known_bsn()
    yield "purpose = BSN", lookup_body(good, purpose=B0)
    yield "purpose = p-BSN", lookup_body(good, purpose="p-" + B1)
    yield "purpose = BSN with upper case", lookup_body(good, purpose="X" + B2)
    yield "purpose = BSN with a quote", lookup_body(good, purpose=B3 + '"')
    yield "dataset = BSN", lookup_body(good, dataset=B0)
    yield "dataset = OWNER/BSN", lookup_body(good, dataset=f"{NODE}/{B1}")
    yield "fields = [BSN]", lookup_body(good, fields=[B2])
    yield "fields = [programme, BSN]", lookup_body(good, fields=["programme", B3])
    yield "fields = [BSN with a space]", lookup_body(good, fields=[B4 + " x"])
    yield "identifiers = BSN", lookup_body(good, identifiers=B4)
    yield "subject.bsn = BSN not held", lookup_body(B5)
    yield "subject.bsn = BSN, purpose = BSN", lookup_body(B5, purpose=B0)
    yield "unknown member named BSN", lookup_body(good, **{B0: 1})
    yield "unknown member of subject named BSN", dict(lookup_body(good), subject={"bsn": good, B1: B2})
    yield "BSN as a number in purpose", lookup_body(good, purpose=int(B3))
    yield "900 KB purpose of BSNs", lookup_body(good, purpose=(B4 + "-") * 92160)
    yield "granted (control)", lookup_body(good)


def aggregate_battery():
    yield "purpose = BSN", {"purpose": B0, "population": DS}
    yield "purpose = BSN, group_by", {"purpose": B1, "population": DS, "group_by": [f"{DS}.programme"]}
    yield "purpose = p-BSN", {"purpose": "p-" + B2, "population": DS}
    yield "purpose with a quote", {"purpose": B3 + '"', "population": DS}
    yield "population = BSN", {"purpose": P_FED, "population": B0}
    yield "population = OWNER/BSN", {"purpose": P_FED, "population": f"{NODE}/{B1}"}
    yield "link = [BSN]", {"purpose": P_FED, "population": DS, "link": [B2]}
    yield "group_by = [BSN]", {"purpose": P_FED, "population": DS, "group_by": [B3]}
    yield "group_by = [DS.BSN]", {"purpose": P_FED, "population": DS, "group_by": [f"{DS}.{B4}"]}
    yield "group_by = [DS.programme:BSN]", {"purpose": P_FED, "population": DS,
                                            "group_by": [f"{DS}.programme:{B5}"]}
    yield "group_by = [present_in.BSN]", {"purpose": P_FED, "population": DS,
                                          "group_by": [f"present_in.{B0}"]}
    yield "filters key = BSN", {"purpose": P_FED, "population": DS, "filters": {B1: ["x"]}}
    yield "filters key = DS.BSN", {"purpose": P_FED, "population": DS, "filters": {f"{DS}.{B2}": ["x"]}}
    yield "filters value = BSN", {"purpose": P_FED, "population": DS,
                                  "filters": {f"{DS}.programme": [B3, int(B4)]}}
    yield "unknown member named BSN", {"purpose": P_FED, "population": DS, B5: 1}
    yield "measure = BSN", {"purpose": P_FED, "population": DS, "measure": {"count": B0}}
    yield "900 KB purpose of BSNs", {"purpose": (B1 + "-") * 92160, "population": DS}
    yield "granted (control)", {"purpose": P_FED, "population": DS, "group_by": [f"{DS}.programme"]}


QID = "0123456789abcdef0123456789abcdef"


def subquery(**over):
    b = {"query_id": QID, "requester": COORDINATOR, "purpose": P_FED,
         "operation": "aggregate", "dataset": DS, "mode": "counts",
         "fields": [{"field": "programme", "gen": "exact"}], "filters": [],
         "max_cells_per_person": 1}
    b.update(over)
    return b


def subquery_battery():
    yield "requester = BSN", subquery(requester=B0)
    yield "purpose = BSN", subquery(purpose=B1)
    yield "dataset = BSN", subquery(dataset=B2)
    yield "dataset = OWNER/BSN", subquery(dataset=f"{NODE}/{B3}")
    yield "fields[].field = BSN", subquery(fields=[{"field": B4, "gen": "exact"}])
    yield "fields[] = BSN", subquery(fields=[B5])
    yield "fields[].gen = BSN", subquery(fields=[{"field": "programme", "gen": B0}])
    yield "filters[].field = BSN", subquery(filters=[{"field": B1, "gen": "exact", "values": ["x"]}])
    yield "filters[].values = [BSN]", subquery(filters=[{"field": "programme", "gen": "exact",
                                                         "values": [B2, int(B3)]}])
    yield "query_id = BSN", subquery(query_id=B4)
    yield "mode = BSN", subquery(mode=B5)
    yield "operation = BSN", subquery(operation=B0)
    yield "unknown member named BSN", subquery(**{B1: B2})
    yield "fields[] with a BSN key", subquery(fields=[{"field": "programme", "gen": "exact", B3: 1}])
    yield "900 KB purpose of BSNs", subquery(purpose=(B4 + "-") * 92160)
    yield "granted (control)", subquery()


def start_federation():
    fed = Federation({NODE: [(DS, synth_data() / NODE / "inschrijvingen.csv")]},
                     policies=[FED_POLICY, LOOKUP_POLICY], node_timeout="10s")
    fed.start()
    return fed


def test_audit_no_bsn_from_requester_strings():
    """Every string field of the three routes holds a BSN at least once;
    afterwards no audit or log line of the hub or the node holds one."""
    fed = start_federation()
    node, hub = fed.nodes[NODE], fed.hub
    problems, answers = [], []
    try:
        with H2Client(node, LOOKUP_REQUESTER) as c:
            for name, body in lookup_battery():
                r = post_json(c, "/v1/lookup", body)
                answers.append(("lookup", name, r[0], code_of(r)))
        with H2Client(node, "hub") as c:
            for name, body in subquery_battery():
                r = post_json(c, "/v1/federation/subquery", body)
                answers.append(("subquery", name, r[0], code_of(r)))
        with H2Client(node, LOOKUP_REQUESTER) as c:   # not the hub
            r = post_json(c, "/v1/federation/subquery", subquery(requester=B0, purpose=B1))
            answers.append(("subquery", "not the hub, BSNs", r[0], code_of(r)))
        for name, body in aggregate_battery():
            r = fed.ask(body)
            answers.append(("aggregate", name, r[0], code_of(r)))
        r = fed.ask({"purpose": B2, "population": DS}, org=LOOKUP_REQUESTER)
        answers.append(("aggregate", "not a coordinator, purpose = BSN", r[0], code_of(r)))
        for a in answers:
            note(f"{a[0]}: {a[1]}: {a[2]} {a[3]}")
        for route, name, st, code in answers:
            if "control" in name:
                if st != 200:
                    problems.append(f"{route}: the granted request got {st} {code}")
            elif st >= 500 or st == 0:
                problems.append(f"{route}: {name}: {st} {code}")
        check(not problems, "; ".join(problems))
    finally:
        archive_bsns(fed.dir)
        fed.stop(check_rc=False)
        harness.archive(fed.dir)
    found = []
    audits = fed.audit_paths()
    for who, p in audits.items():
        lines = file_lines(p)
        check(lines, f"{who}: the audit log is empty")
        found += leaks(lines, f"{who} audit")
        longest = max((len(line) for line in lines), default=0)
        note(f"{who} audit: {len(lines)} lines, longest {longest} bytes")
        if longest > 16 * 1024:
            found.append(f"{who} audit: a line of {longest} bytes")
    for who, gw in [("hub", hub), (NODE, node)]:
        found += leaks(gw.log_lines(), f"{who} log")
    check(not found, f"{len(found)} leaks: " + "; ".join(found[:6]))
    # the invalid and unknown strings are there, as markers
    marks = sum(len(re.findall(r'"(?:invalid|unknown):[0-9a-f]{8}"', "\n".join(file_lines(p))))
                for p in audits.values())
    note(f"{marks} marked identifiers in the audit logs")
    check(marks >= 20, f"only {marks} marked identifiers in the audit logs")


def test_audit_900kb_purpose_is_not_a_900kb_line():
    """A 900 KB purpose: 400, and its audit line is short; the line names
    the purpose as a marker."""
    nf = NodeFiles()
    archive_bsns(nf.dir)
    ds = [nf.csv_dataset(DS, synth_data() / NODE / "inschrijvingen.csv")]
    big = (B0 + "-") * 92160
    with Gateway(config=nf.config([LOOKUP_POLICY], ds), env=server_env()) as gw:
        before = len(file_lines(nf.audit))
        with H2Client(gw, LOOKUP_REQUESTER) as c:
            r = post_json(c, "/v1/lookup", lookup_body(known_bsn(), purpose=big))
        note(f"900 KB purpose ({len(big)} bytes): {r[0]} {code_of(r)}")
        check(r[0] == 400, f"expected 400, got {r[0]} {r[3][:200]!r}")
        time.sleep(0.2)
        lines = file_lines(nf.audit)[before:]
    harness.archive(nf.dir)
    check(len(lines) == 1, f"{len(lines)} audit lines for one request")
    note(f"its audit line: {len(lines[0]) if lines else 0} bytes")
    check(lines and len(lines[0]) < 2048, f"an audit line of {len(lines[0]) if lines else 0} bytes")
    check(lines and re.search(r'"purpose":"invalid:[0-9a-f]{8}"', lines[0]),
          f"the purpose is not a marker: {lines[0][:300] if lines else ''!r}")


def test_audit_refusal_limit_at_limit_plus_one():
    """REFUSAL_LIMIT refusals of one member are answered and recorded one
    by one; the next is 429 too_many_refusals with one summary line; ten
    more add no line. Another member is still refused normally, and the
    limited member's granted lookup still answers 200."""
    nf = NodeFiles()
    ds = [nf.csv_dataset(DS, synth_data() / NODE / "inschrijvingen.csv")]
    good = known_bsn()
    bad = lookup_body(good, purpose="no-such-purpose")
    with Gateway(config=nf.config([LOOKUP_POLICY], ds), env=server_env()) as gw:
        with H2Client(gw, LOOKUP_REQUESTER) as c:
            t0 = time.monotonic()
            statuses = [post_json(c, "/v1/lookup", bad)[0] for _ in range(REFUSAL_LIMIT)]
            time.sleep(0.2)
            at_limit = len(audit_records(nf.audit))
            r = post_json(c, "/v1/lookup", bad)
            time.sleep(0.2)
            after_one = audit_records(nf.audit)
            more = [post_json(c, "/v1/lookup", bad)[0] for _ in range(10)]
            ok = post_json(c, "/v1/lookup", lookup_body(good))
            elapsed = time.monotonic() - t0
        with H2Client(gw, "gemeente-leeuwarden") as c2:
            other = post_json(c2, "/v1/lookup", bad)
        time.sleep(0.2)
        final = audit_records(nf.audit)
    harness.archive(nf.dir)
    note(f"{REFUSAL_LIMIT} refusals: {sorted(set(statuses))}; #{REFUSAL_LIMIT + 1}: {r[0]} "
         f"{code_of(r)} retry-after {r[1].get('retry-after')}; 10 more: {sorted(set(more))}; "
         f"granted: {ok[0]}; another member: {other[0]} {code_of(other)} ({elapsed:.1f}s)")
    check(elapsed < 50, f"the requests took {elapsed:.0f}s, too close to the 60 s window")
    check(statuses == [403] * REFUSAL_LIMIT, f"refusals 1..{REFUSAL_LIMIT}: {statuses}")
    check(at_limit == REFUSAL_LIMIT, f"{at_limit} audit lines after {REFUSAL_LIMIT} refusals")
    check(r[0] == 429 and code_of(r) == "too_many_refusals",
          f"refusal {REFUSAL_LIMIT + 1}: {r[0]} {code_of(r)}, expected 429 too_many_refusals")
    check(r[1].get("retry-after"), "no Retry-After on the 429")
    check(len(after_one) == REFUSAL_LIMIT + 1 and after_one[-1].get("operation") == "refusals"
          and after_one[-1].get("requester") == LOOKUP_REQUESTER,
          f"after refusal {REFUSAL_LIMIT + 1}: {len(after_one)} lines, last {after_one[-1]}")
    check(more == [429] * 10, f"10 more: {more}")
    check(ok[0] == 200, f"a granted lookup of the limited member: {ok[0]}")
    check(other[0] == 403, f"another member: {other[0]} {code_of(other)}")
    # the ten add nothing; the granted lookup and the other member add one each
    check(len(final) == REFUSAL_LIMIT + 3, f"{len(final)} lines, expected {REFUSAL_LIMIT + 3}")


def test_audit_refusal_limit_from_config():
    """audit.refusals_per_minute sets the limit: with 5, refusals 1..5 are
    answered 403 and recorded; the 6th is 429 too_many_refusals."""
    nf = NodeFiles()
    ds = [nf.csv_dataset(DS, synth_data() / NODE / "inschrijvingen.csv")]
    bad = lookup_body(known_bsn(), purpose="no-such-purpose")
    cfg = nf.config([LOOKUP_POLICY], ds, audit={"refusals_per_minute": 5})
    with Gateway(config=cfg, env=server_env()) as gw:
        with H2Client(gw, LOOKUP_REQUESTER) as c:
            statuses = [post_json(c, "/v1/lookup", bad)[0] for _ in range(6)]
    harness.archive(nf.dir)
    note(f"refusals_per_minute 5: {statuses}")
    check(statuses == [403] * 5 + [429], f"statuses {statuses}, expected five 403 then 429")


def test_lookup_unknown_member_and_bsn_message():
    """/v1/lookup refuses an unknown member the way the hub does (400
    bad_request "unknown member 'x' (...)"), in the body and in subject; an
    invalid BSN is answered with a sentence that keeps its code."""
    nf = NodeFiles()
    ds = [nf.csv_dataset(DS, synth_data() / NODE / "inschrijvingen.csv")]
    good = known_bsn()
    with Gateway(config=nf.config([LOOKUP_POLICY], ds), env=server_env()) as gw:
        with H2Client(gw, LOOKUP_REQUESTER) as c:
            r1 = post_json(c, "/v1/lookup", lookup_body(good, x=1))
            r2 = post_json(c, "/v1/lookup", dict(lookup_body(good), subject={"bsn": good, "naam": "x"}))
            r3 = post_json(c, "/v1/lookup", lookup_body(good[:8] + str((int(good[8]) + 1) % 10)))
            r4 = post_json(c, "/v1/lookup", lookup_body("12345"))
            r5 = post_json(c, "/v1/lookup", lookup_body(good))
    harness.archive(nf.dir)
    for what, r in (("x", r1), ("subject.naam", r2), ("bad check digit", r3), ("5 digits", r4),
                    ("control", r5)):
        note(f"{what}: {r[0]} {r[3][:200].decode(errors='replace')}")
    msg = lambda r: ((r[2] or {}).get("error") or {}).get("message", "")  # noqa: E731
    check(r1[0] == 400 and code_of(r1) == "bad_request" and msg(r1).startswith("unknown member 'x' ("),
          f"unknown member x: {r1[0]} {r1[3][:200]!r}")
    check(r2[0] == 400 and code_of(r2) == "bad_request" and msg(r2).startswith("unknown member 'subject.naam' ("),
          f"unknown member subject.naam: {r2[0]} {r2[3][:200]!r}")
    check(r3[0] == 400 and code_of(r3) == "invalid_bsn" and "(invalid_bsn_checksum)" in msg(r3)
          and " " in msg(r3) and "elfproef" in msg(r3), f"bad check digit: {r3[3][:200]!r}")
    check(r4[0] == 400 and "(invalid_bsn_length)" in msg(r4) and " " in msg(r4),
          f"5 digits: {r4[3][:200]!r}")
    check(r5[0] == 200, f"the control lookup: {r5[0]}")


def test_subquery_number_beyond_long_long():
    """1e400 (infinity to cJSON), -1e400 and 2^63 among a subquery's filter
    values: 400, and the node still answers (the value was converted to long
    long before its range was checked: UBSan aborts)."""
    fed = start_federation()
    node = fed.nodes[NODE]
    got = []
    try:
        with H2Client(node, "hub") as c:
            for n in ("1e400", "-1e400", "9223372036854775808", "1e19"):
                body = json.dumps(subquery(filters=[{"field": "programme", "gen": "exact",
                                                     "values": ["X"]}])).replace('["X"]', f"[{n}]")
                try:
                    r = post_json(c, "/v1/federation/subquery", body.encode())
                    got.append((n, r[0], code_of(r)))
                except Exception as e:  # the node died
                    got.append((n, 0, repr(e)[:80]))
                    break
            try:
                ctl = post_json(c, "/v1/federation/subquery", subquery())[0]
            except Exception as e:
                ctl = repr(e)[:80]
        note(f"subquery filter values: {got}; then a valid subquery: {ctl}")
    finally:
        fed.stop(check_rc=False)
        harness.archive(fed.dir)
    check(all(st == 400 for _, st, _ in got) and len(got) == 4, f"answers: {got}")
    check(ctl == 200, f"the node after them: {ctl}")


if __name__ == "__main__":
    run(globals(), label="abuse")
