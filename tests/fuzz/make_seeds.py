#!/usr/bin/python3
"""Writes the generated seeds of tests/fuzz/corpus/ (issue 10, section 7):
inputs a default libFuzzer run does not grow by itself because they are
big or structured -- objects with many keys, YAML anchors and aliases, long
fields across the fuzz build's CSV buffers, HTTP/2 requests per route and
peer. Deterministic; run it again after changing it:

    /usr/bin/python3 tests/fuzz/make_seeds.py

Every file it writes is named gen-*, so the hand-written and minimised
seeds stay apart. Needs python3-h2 (Debian's) for the HTTP/2 frames."""
import os

import h2.config
import h2.connection

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(ROOT, target, "gen-" + name), "wb") as f:
        f.write(data)


# ---- JSON: the coordinator's question (fuzz_question) ----
keys = ",".join('"k%d":%d' % (i, i) for i in range(1500))
put("question", "many-keys", '{"purpose":"exact",%s,"population":"fonds-a/inschrijvingen"}' % keys)
put("question", "many-members-nested",
    '{"purpose":"exact","population":"fonds-a/inschrijvingen","filters":{%s}}'
    % ",".join('"fonds-a/inschrijvingen.f%d":["v%d"]' % (i, i) for i in range(300)))
put("question", "long-strings",
    '{"purpose":"%s","population":"fonds-a/inschrijvingen","group_by":["%s"]}' % ("p" * 3000, "g" * 3000))
put("question", "deep-arrays", '{"purpose":"exact","x":' + "[" * 200 + "1" + "]" * 200 + "}")

# ---- YAML: config and policy files (fuzz_config, fuzz_policy) ----
bomb = ["a0: &a0 [x, x, x, x]"]
for i in range(1, 6):
    bomb.append("a%d: &a%d [*a%d, *a%d, *a%d, *a%d]" % (i, i, i - 1, i - 1, i - 1, i - 1))
put("config", "aliases", "\n".join(bomb) + "\nlisten: *a5\n")
put("policy", "aliases", "purposes:\n  - id: p\n    x: &x {a: 1}\n    y: *x\n" + "\n".join(bomb) + "\n")
put("policy", "merge-keys", "base: &b {description: d, legal_basis: {text: t}}\npurposes:\n  - <<: *b\n    id: p\n")
put("config", "many-keys", "".join("k%d: %d\n" % (i, i) for i in range(800)))
put("policy", "many-grants",
    "purposes:\n  - id: p\n    description: d\n    legal_basis: {text: t}\n"
    "    valid: {from: 2024-01-01, until: 2030-01-01}\n    grants:\n"
    + "".join("      - id: g%d\n        requesters: [r%d]\n        operations: [lookup]\n"
              "        datasets: {a/b: {f: exact}}\n" % (i, i) for i in range(120)))
put("config", "long-scalar", "listen: \"" + "l" * 8000 + "\"\n")

# ---- CSV (fuzz_csv; the fuzz build has a 256-byte buffer and 64-byte fields) ----
head = "bsn,cat,n,d,b,s\n"
put("csv", "field-at-cap", b"\x04" + (head + '111222333,a,1,2024-01-01,true,"%s"\n' % ("q" * 64)).encode())
put("csv", "field-past-cap", b"\x04" + (head + '111222333,a,1,2024-01-01,true,"%s"\n' % ("q" * 65)).encode())
put("csv", "unquoted-past-cap", b"\x00" + (head + "111222333,a,1,2024-01-01,true,%s\n" % ("u" * 65)).encode())
put("csv", "line-longer-than-buffer", b"\x04" + (head + "111222333,a,1,2024-01-01,true," + "y" * 300
                                                + "\n111222333,bb,2,2024-01-02,false,z\n").encode())
rows = [head.rstrip("\n")]
for i in range(40):
    rows.append("111222333,%s,%d,2024-01-%02d,%s,%s" % (["a", "bb", "ccc", ""][i % 4], i, 1 + i % 28,
                                                       "true" if i % 2 else "false", "x" * (i % 11)))
    if i == 12:
        rows.append('111222333,a,1,2024-01-01,true,"quoted, across\nthe ""edge"""')
put("csv", "rows-across-buffer", b"\x00" + ("\n".join(rows) + "\n").encode())
put("csv", "crlf-bom", b"\x01\xef\xbb\xbf" + (head + "111222333,a,1,2024-01-01,true,s\r\n").encode())

# ---- HTTP/2 (fuzz_h2): byte 0 = peer and gateway state, then the frames ----


def h2_requests(reqs):
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    out = c.data_to_send()
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    out = out[len(preface):] if out.startswith(preface) else out
    for method, path, body, extra in reqs:
        sid = c.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "https"), (":authority", "localhost"), (":path", path)] + extra
        if body is not None:
            hdrs.append(("content-type", "application/json"))
            hdrs.append(("content-length", str(len(body))))
        c.send_headers(sid, hdrs, end_stream=body is None)
        if body is not None:
            for i in range(0, len(body), 16384):
                c.send_data(sid, body[i:i + 16384], end_stream=i + 16384 >= len(body))
            if not body:
                c.send_data(sid, b"", end_stream=True)
        out += c.data_to_send()
    return out


NODE, HUB, COORD, CATALOG, EXPIRED, NODESTATE = 1, 2, 4, 0x10, 0x20, 0x40
lookup = b'{"purpose":"fuzz-lookup","dataset":"fonds-a/inschrijvingen","subject":{"bsn":"111222333"},' \
         b'"fields":["programme","start_year","birth_date"],"identifiers":"pseudonym"}'
put("h2", "node-lookup", bytes([NODESTATE | NODE]) + h2_requests([("POST", "/v1/lookup", lookup, [])]))
put("h2", "node-lookup-unknown-bsn", bytes([NODESTATE | 5]) +
    h2_requests([("POST", "/v1/lookup", lookup.replace(b"111222333", b"441205069"), [])]))
sub = b'{"query_id":"00112233445566778899aabbccddeeff","requester":"amt","purpose":"exact",' \
      b'"operation":"linked_aggregate","dataset":"fonds-a/inschrijvingen","mode":"tokens",' \
      b'"fields":["programme"],"filters":{}}'
put("h2", "node-subquery-from-hub", bytes([NODESTATE | HUB]) +
    h2_requests([("POST", "/v1/federation/subquery", sub, [])]))
put("h2", "catalog-and-whoami", bytes([CATALOG | COORD]) +
    h2_requests([("GET", "/v1/catalog", None, []), ("GET", "/v1/whoami", None, []),
                 ("GET", "/metrics", None, []), ("GET", "/healthz", None, [])]))
agg = b'{"purpose":"exact","population":"fonds-a/inschrijvingen","group_by":["fonds-a/inschrijvingen.programme"]}'
put("h2", "aggregate-coordinator", bytes([CATALOG | COORD]) + h2_requests([("POST", "/v1/aggregate", agg, [])]))
put("h2", "expired-peer", bytes([EXPIRED | NODESTATE | NODE]) + h2_requests([("POST", "/v1/lookup", lookup, [])]))
put("h2", "many-headers", bytes([NODE]) + h2_requests(
    [("GET", "/v1/whoami", None, [("x-h%d" % i, "v" * 40) for i in range(90)])]))
put("h2", "long-path", bytes([NODE]) + h2_requests([("GET", "/v1/" + "p" * 300, None, [])]))
put("h2", "head-and-options", bytes([NODE]) + h2_requests(
    [("HEAD", "/v1/whoami", None, []), ("OPTIONS", "/v1/lookup", None, []), ("DELETE", "/v1/catalog", None, [])]))
big = ("{" + ",".join('"k%d":%d' % (i, i) for i in range(2000)) + "}").encode()
put("h2", "many-keys-body", bytes([NODESTATE | NODE]) + h2_requests([("POST", "/v1/lookup", big, [])]))
