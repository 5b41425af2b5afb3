#!/usr/bin/python3
"""Abuse battery, request bodies: JSON nested 100 000 deep, duplicate keys,
invalid UTF-8 and NUL bytes in strings, numbers beyond int64. Each against a
node (POST /v1/lookup really parses and decides on the body) and against
POST /v1/aggregate on a plain gateway (parse-only: a valid body gets 501).
Expected behaviour of each: docs/abuse.md.

Run: /usr/bin/python3 tests/abuse/test_json.py [NAME-SUBSTRING...]
"""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from abuselib import RSS_BOUND_KB, gateway, server_env, settle  # noqa: E402
from harness import (  # noqa: E402
    REPO, Companion, Gateway, H2Client, NodeFiles, check, fail, note,
    read_csv, rss_report, run, run_cli, synth_data,
)

DS = "opleidingsfonds-techniek/inschrijvingen"
POLICY = REPO / "tests" / "integration" / "data" / "node" / "lookup.yaml"
PURPOSE = "test-scholingscheck"          # granted to gemeente-groningen
REQUESTER = "gemeente-groningen"
NON_MEMBER = "provincie-drenthe"


def known_bsn():
    rows = read_csv(synth_data() / "opleidingsfonds-techniek" / "inschrijvingen.csv")
    counts = {}
    for r in rows:
        counts[r["bsn"]] = counts.get(r["bsn"], 0) + 1
    for r in rows:
        if counts[r["bsn"]] == 1:
            return r["bsn"]
    fail("no person with exactly one row in the synthetic data")


def node_gateway(nf):
    ds = [nf.csv_dataset(DS, synth_data() / "opleidingsfonds-techniek" /
                         "inschrijvingen.csv")]
    return Gateway(config=nf.config([POLICY], ds), exclude=(NON_MEMBER,),
                   env=server_env())


def body_of(bsn, purpose=PURPOSE, fields=("programme",), **extra):
    """A valid lookup body as text, with |extra| members spliced in raw."""
    parts = [f'"purpose": {json.dumps(purpose)}', f'"dataset": {json.dumps(DS)}',
             f'"subject": {{"bsn": {json.dumps(bsn)}}}',
             f'"fields": {json.dumps(list(fields))}']
    parts += [f'"{k}": {v}' for k, v in extra.items()]
    return "{" + ", ".join(parts) + "}"


def post(client, path, body):
    """POST raw bytes; returns (status, error code or None, parsed or None,
    raw). Fails when the answer is not UTF-8 JSON."""
    b = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    st, hdrs, raw = client.request("POST", path, body=b,
                                   headers=[("content-type", "application/json")])
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        fail(f"POST {path}: status {st} with a body that is not UTF-8 JSON: "
             f"{raw[:200]!r}")
    code = obj.get("error", {}).get("code") if isinstance(obj, dict) and \
        isinstance(obj.get("error"), dict) else None
    return st, code, obj, raw


def _fmt(r):
    st, code, obj, raw = r
    if code:
        return f"{st} {code}: {obj['error'].get('message', '')[:90]}"
    return f"{st} {raw[:90]!r}"


def check_audit(nf):
    """The node's audit log is valid UTF-8 JSON, line by line, and its chain
    verifies."""
    data = Path(nf.audit).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        fail(f"audit log is not valid UTF-8: {e}")
    for i, line in enumerate(text.splitlines(), 1):
        try:
            json.loads(line)
        except ValueError:
            fail(f"audit line {i} is not JSON: {line[:200]!r}")
    r = run_cli("audit", "verify", nf.audit)
    check(r.returncode == 0, f"audit verify: rc {r.returncode}: "
          f"{(r.stdout + r.stderr).strip()[-300:]}")
    return text


def audit_records(text):
    return [json.loads(l) for l in text.splitlines()
            if l.strip() and "type" not in json.loads(l)]


# --------------------------------------------------------------------------
# Nesting
# --------------------------------------------------------------------------

def test_json_nested_100000_deep():
    """Arrays and objects nested 100 000 deep, as a whole body and inside a
    valid lookup: 400 json_limit (the byte scan's depth cap, cJSON's nesting
    limit of 1000), no crash,
    no stack exhaustion, no memory kept; 20 times on one connection."""
    deep_arr = "[" * 100000 + "]" * 100000
    deep_obj = '{"a":' * 100000 + "1" + "}" * 100000
    bsn = known_bsn()
    inner = body_of(bsn, x="[" * 100000 + "]" * 100000)
    at_limit = body_of(bsn, x="[" * 999 + "]" * 999)
    problems = []
    with NodeFiles() as nf:
        with node_gateway(nf) as gw:
            comp = Companion(gw, REQUESTER).start()
            rss0 = gw.rss_kb()
            t0 = time.monotonic()
            with H2Client(gw, REQUESTER) as c:
                for name, b in (("array", deep_arr), ("object", deep_obj),
                                ("inside a lookup", inner)):
                    t = time.monotonic()
                    r = post(c, "/v1/lookup", b)
                    note(f"/v1/lookup, {name} 100000 deep ({len(b)} bytes): {_fmt(r)} "
                         f"in {time.monotonic() - t:.2f}s")
                    if (r[0], r[1]) != (400, "json_limit"):
                        problems.append(f"lookup, {name} 100000 deep: {_fmt(r)}, "
                                        f"expected 400 json_limit")
                r = post(c, "/v1/lookup", at_limit)
                note(f"/v1/lookup with an unknown member nested 999 deep: {_fmt(r)}")
                # parsed (under cJSON's limit), then refused as an unknown
                # member (issue 10: the node refuses them as the hub does)
                if (r[0], r[1]) != (400, "bad_request"):
                    problems.append(f"a lookup with an unknown member nested 999 deep "
                                    f"(under cJSON's limit): {_fmt(r)}, expected 400 bad_request")
                for _ in range(20):
                    r = post(c, "/v1/lookup", deep_arr)
                    if r[0] != 400:
                        problems.append(f"repeat: {_fmt(r)}")
                        break
            t1 = time.monotonic()
            settle(gw)
            rss_report(gw, "json_nested_100000_deep (node)", rss0, RSS_BOUND_KB)
            comp.stop()
            comp.check_healthy(t0, t1, "deeply nested JSON")
        check_audit(nf)
    with gateway() as gw:
        rss0 = gw.rss_kb()
        with H2Client(gw) as c:
            for name, b in (("array", deep_arr), ("object", deep_obj)):
                r = post(c, "/v1/aggregate", b)
                note(f"/v1/aggregate (plain), {name} 100000 deep: {_fmt(r)}")
                if (r[0], r[1]) != (400, "json_limit"):
                    problems.append(f"aggregate, {name} 100000 deep: {_fmt(r)}")
        rss_report(gw, "json_nested_100000_deep (plain)", rss0, RSS_BOUND_KB)
    if problems:
        fail("; ".join(problems))


# --------------------------------------------------------------------------
# Duplicate keys
# --------------------------------------------------------------------------

def test_json_duplicate_keys():
    """Duplicate members are refused with 400 invalid_json, always: cJSON
    would read the first, a proxy in front might read the last, and the
    purpose a node decides on must be the one every party saw. Nothing is
    decided, so nothing reaches the audit log."""
    bsn = known_bsn()
    other = "test-geboortejaar"          # granted too; a different pseudonym key
    problems = []
    with NodeFiles() as nf:
        with node_gateway(nf) as gw:
            comp = Companion(gw, REQUESTER).start()
            rss0 = gw.rss_kb()
            t0 = time.monotonic()
            first_bad = ('{"purpose": "no-such-purpose", "purpose": "%s", "dataset": "%s", '
                         '"subject": {"bsn": "%s"}, "fields": ["programme"]}' % (PURPOSE, DS, bsn))
            first_good = ('{"purpose": "%s", "purpose": "no-such-purpose", "dataset": "%s", '
                          '"subject": {"bsn": "%s"}, "fields": ["programme"]}' % (PURPOSE, DS, bsn))
            two_purposes = ('{"purpose": "%s", "purpose": "%s", "dataset": "%s", '
                            '"subject": {"bsn": "%s"}, "fields": ["programme"]}'
                            % (other, PURPOSE, DS, bsn))
            two_bsns = ('{"purpose": "%s", "dataset": "%s", "subject": {"bsn": "%s", '
                        '"bsn": "000000000"}, "fields": ["programme"]}' % (PURPOSE, DS, bsn))
            results = {}
            with H2Client(gw, REQUESTER) as c:
                for name, b in (("bad purpose first", first_bad),
                                ("granted purpose first", first_good),
                                ("two granted purposes", two_purposes),
                                ("two bsns, known first", two_bsns)):
                    seen = []
                    for _ in range(5):
                        r = post(c, "/v1/lookup", b)
                        seen.append((r[0], r[1], (r[2] or {}).get("purpose"),
                                     json.dumps((r[2] or {}).get("subject"))))
                    results[name] = seen
                    note(f"duplicate keys, {name}: {_fmt(r)}")
                    if len(set(seen)) != 1:
                        problems.append(f"{name}: not deterministic: {sorted(set(seen))}")
            t1 = time.monotonic()
            settle(gw)
            rss_report(gw, "json_duplicate_keys", rss0, RSS_BOUND_KB)
            comp.stop()
            comp.check_healthy(t0, t1, "duplicate keys")
        text = check_audit(nf)
        recs = [r for r in audit_records(text) if r.get("requester", r.get("org")) in
                (None, REQUESTER)]
        purposes = [r.get("purpose") for r in recs]
    note(f"audit purposes recorded: {sorted(set(map(str, purposes)))}")
    for name, seen in results.items():
        st, code = seen[0][0], seen[0][1]
        if st != 400 or code != "invalid_json":
            problems.append(f"{name}: {seen[0]}, expected 400 invalid_json")
    if purposes:
        problems.append(f"{len(purposes)} audit records for refused bodies: {purposes}")
    if problems:
        fail("; ".join(problems))


# --------------------------------------------------------------------------
# Invalid UTF-8 and NUL
# --------------------------------------------------------------------------

def test_json_invalid_utf8_and_nul():
    """NUL (\\u0000 escapes and raw 0x00) and invalid UTF-8 (raw 0xff, a lone
    surrogate escape, an overlong encoding) in strings. Expected: 400, or a
    refusal (403/404) that is about the string as sent; never a 200 for a
    string the node read only up to its NUL, never a 5xx; every answer and
    every audit line valid UTF-8 JSON."""
    bsn = known_bsn()
    B = lambda s: s.encode("utf-8")  # noqa: E731
    cases = [
        # name, body bytes, must_not_be_200
        ("purpose with \\u0000 after a granted purpose",
         B(body_of(bsn, purpose=PURPOSE + "\u0000-anything")), True),
        ("dataset with \\u0000 after the dataset id",
         B(body_of(bsn).replace(json.dumps(DS), json.dumps(DS + "\u0000x"))), True),
        ("bsn with \\u0000 after a known bsn",
         B(body_of(bsn + "\u0000" + "123")), True),
        ("field name with \\u0000",
         B(body_of(bsn, fields=["programme\u0000secret"])), True),
        ("raw NUL byte inside the purpose",
         B(body_of(bsn)).replace(PURPOSE.encode(), PURPOSE.encode() + b"\x00x"), True),
        ("raw 0xff inside the purpose",
         B(body_of(bsn)).replace(PURPOSE.encode(), PURPOSE.encode() + b"\xff"), True),
        ("raw 0xff as the bsn",
         B(body_of("X")).replace(b'"X"', b'"\xff\xfe\xfd"'), True),
        ("overlong '/' (0xc0 0xaf) in the dataset",
         B(body_of(bsn)).replace(b"techniek/", b"techniek\xc0\xaf"), True),
        ("lone surrogate escape in the purpose",
         B(body_of(bsn)).replace(PURPOSE.encode(), PURPOSE.encode() + b"\\ud800"), True),
        ("raw 0xff outside any string",
         B(body_of(bsn))[:-1] + b", \xff}", True),
    ]
    problems = []
    with NodeFiles() as nf:
        with node_gateway(nf) as gw:
            comp = Companion(gw, REQUESTER).start()
            rss0 = gw.rss_kb()
            t0 = time.monotonic()
            with H2Client(gw, REQUESTER) as c:
                for name, b, no200 in cases:
                    try:
                        r = post(c, "/v1/lookup", b)
                    except AssertionError as e:
                        problems.append(f"{name}: {e}")
                        continue
                    note(f"/v1/lookup, {name}: {_fmt(r)}")
                    if r[0] >= 500:
                        problems.append(f"{name}: {_fmt(r)}")
                    elif no200 and r[0] == 200:
                        problems.append(f"{name}: answered 200 (the node read the string "
                                        f"only up to the NUL or took the bytes as they "
                                        f"are; purpose echoed {r[2].get('purpose')!r}, "
                                        f"records {json.dumps(r[2].get('records'))[:80]})")
                    elif r[0] not in (400, 403, 404):
                        problems.append(f"{name}: {_fmt(r)}, expected 400 or a 403/404 "
                                        f"refusal")
            t1 = time.monotonic()
            settle(gw)
            rss_report(gw, "json_invalid_utf8_and_nul", rss0, RSS_BOUND_KB)
            comp.stop()
            comp.check_healthy(t0, t1, "invalid UTF-8 and NUL bytes")
        try:
            check_audit(nf)
        except AssertionError as e:
            problems.append(str(e))
    with gateway() as gw, H2Client(gw) as c:
        for name, b, _ in cases:
            r = post(c, "/v1/aggregate", b)
            note(f"/v1/aggregate (plain, parse-only), {name}: {_fmt(r)}")
            if r[0] not in (400, 501):
                problems.append(f"aggregate, {name}: {_fmt(r)}")
    if problems:
        fail("; ".join(problems))


# --------------------------------------------------------------------------
# Numbers beyond int64
# --------------------------------------------------------------------------

def test_json_numbers_beyond_int64():
    """1e400, -1e400, 99999999999999999999 and friends where the lookup
    expects a string or a list of names: 400 naming the member; in a member
    the node does not know: 400 (unknown members are refused, issue 10). A
    20-digit BSN string: 400 naming the BSN. Never a 5xx or a crash."""
    bsn = known_bsn()
    big = ["1e400", "-1e400", "99999999999999999999", "-99999999999999999999",
           "1e-400", "18446744073709551616", "9223372036854775808"]
    problems = []
    with NodeFiles() as nf:
        with node_gateway(nf) as gw:
            comp = Companion(gw, REQUESTER).start()
            rss0 = gw.rss_kb()
            t0 = time.monotonic()
            with H2Client(gw, REQUESTER) as c:
                for n in big:
                    for where, b, member in (
                            ("subject.bsn", body_of(bsn).replace(json.dumps(bsn), n), "subject"),
                            ("purpose", body_of(bsn).replace(json.dumps(PURPOSE), n), "purpose"),
                            ("fields[0]", body_of(bsn, fields=["X"]).replace('"X"', n), "fields"),
                            ("identifiers", body_of(bsn, identifiers=n), "identifiers")):
                        r = post(c, "/v1/lookup", b)
                        msg = (r[2] or {}).get("error", {}).get("message", "")
                        if r[0] != 400 or member not in msg:
                            problems.append(f"{where} = {n}: {_fmt(r)}, expected 400 "
                                            f"naming '{member}'")
                    r = post(c, "/v1/lookup", body_of(bsn, x=n))
                    if (r[0], r[1]) != (400, "bad_request"):
                        problems.append(f"unknown member x = {n}: {_fmt(r)}, expected 400 bad_request")
                note("numbers beyond int64 in subject.bsn, purpose, fields[0], "
                     "identifiers: " + ("400 naming the member each time" if not problems
                                        else f"{len(problems)} deviations"))
                for s in ("99999999999999999999", "1" * 400, "-123456782", "1e400"):
                    r = post(c, "/v1/lookup", body_of(s))
                    note(f"/v1/lookup, bsn string {s[:24]!r}: {_fmt(r)}")
                    if r[0] != 400 or r[0] >= 500:
                        problems.append(f"bsn string {s[:24]!r}: {_fmt(r)}, expected 400")
            t1 = time.monotonic()
            settle(gw)
            rss_report(gw, "json_numbers_beyond_int64", rss0, RSS_BOUND_KB)
            comp.stop()
            comp.check_healthy(t0, t1, "numbers beyond int64")
        check_audit(nf)
    with gateway() as gw, H2Client(gw) as c:
        for n in big:
            r = post(c, "/v1/aggregate", '{"purpose": "p", "population": "d", '
                     '"filters": {"d.f": [%s]}, "n": %s}' % (n, n))
            if r[0] != 501:
                problems.append(f"aggregate (parse-only) with {n}: {_fmt(r)}")
        note("/v1/aggregate (plain, parse-only) with each number: "
             + ("501 each" if not any("aggregate" in p for p in problems) else "see failures"))
    if problems:
        fail("; ".join(problems))


if __name__ == "__main__":
    run(globals(), label="abuse")
