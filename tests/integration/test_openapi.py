#!/usr/bin/python3
"""Contract tests for docs/openapi.yaml (issue 17).

- The document: OpenAPI 3.1's required structure (Debian 12 ships no
  OpenAPI validator, so its shape is checked here by hand: openapi 3.1.x,
  info, paths, every operation with responses, every response with a
  description, the mutualTLS scheme), every $ref resolves, every schema is
  a valid JSON Schema 2020-12 (python3-jsonschema's
  Draft202012Validator.check_schema), and every example validates against
  its own schema.
- The routes and error codes: every route of the route tables (gateway/, node/, hub/) is
  documented with its method (and HEAD for GET routes); every error code
  the gateway's C code can send is in the ErrorCode enum.
- Real answers: a hub and two nodes (`noordpoort serve`, the dev
  certificates, synthetic data); every answer (whoami, catalog, lookup,
  aggregate, subquery, healthz, metrics; 200s and refusals) is validated
  against the schema the document gives for its route, method and status.
  Request bodies the gateway accepts validate against the request schema;
  bodies with an unknown member fail it, and the gateway refuses them too.

Run: /usr/bin/python3 tests/integration/test_openapi.py [NAME-SUBSTRING...]
"""

import json
import os
import re
import secrets
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (  # noqa: E402
    REPO, Federation, check, curl, fail, note, read_csv, run, synth_data,
)

try:
    import yaml
    import jsonschema
    from jsonschema import Draft202012Validator, RefResolver
except ImportError as e:  # scripts/deps.sh test installs python3-jsonschema
    print(f"not ok - test_openapi.py: setup: {e} (sh scripts/deps.sh test)", flush=True)
    sys.exit(1)

DOC_PATH = REPO / "docs" / "openapi.yaml"
POLICY = REPO / "tests" / "integration" / "data" / "openapi" / "policy.yaml"
TEK = "opleidingsfonds-techniek/inschrijvingen"
UWV = "uwv/ww-uitkeringen"
P_AGG = "test-oa-monitoring"
P_LOOKUP = "test-oa-check"
METHODS = ("get", "head", "post", "put", "delete", "patch", "options", "trace")

_DOC = None
_FED = None


def doc():
    global _DOC
    if _DOC is None:
        _DOC = yaml.safe_load(DOC_PATH.read_text(encoding="utf-8"))
    return _DOC


def resolver():
    return RefResolver(base_uri="", referrer=doc())


def validate(instance, schema, what):
    """Raises TestFailure naming |what| when |instance| does not fit."""
    errors = sorted(Draft202012Validator(schema, resolver=resolver()).iter_errors(instance),
                    key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        fail(f"{what}: {e.message} at {'/'.join(map(str, e.absolute_path)) or '(root)'} "
             f"(schema {'/'.join(map(str, e.absolute_schema_path))}); "
             f"instance {json.dumps(instance)[:300]}")


def walk(node, path=()):
    """Every (path, dict) in the document."""
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from walk(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, path + (i,))


def deref(node):
    while isinstance(node, dict) and "$ref" in node and len(node) == 1:
        node = resolver().resolve(node["$ref"])[1]
    return node


def operation(path, method):
    item = doc()["paths"].get(path)
    check(item is not None, f"{path} is not in docs/openapi.yaml")
    op = item.get(method.lower())
    check(op is not None, f"{method} {path} is not in docs/openapi.yaml")
    return op


def response_schema(path, method, status, ctype):
    op = operation(path, method)
    resp = op["responses"].get(str(status))
    check(resp is not None, f"{method} {path}: status {status} is not documented "
          f"(documented: {sorted(op['responses'])})")
    resp = deref(resp)
    content = resp.get("content", {})
    check(ctype in content, f"{method} {path} {status}: content type {ctype!r} is not "
          f"documented ({sorted(content)})")
    return content[ctype].get("schema", {})


def request_schema(path):
    body = deref(operation(path, "post")["requestBody"])
    return body["content"]["application/json"]["schema"]


# --------------------------------------------------------------------------
# The document
# --------------------------------------------------------------------------

def test_document_structure():
    """OpenAPI 3.1's required members, operations with responses, responses
    with descriptions, and the mutualTLS scheme applied to every operation."""
    d = doc()
    check(isinstance(d, dict), "docs/openapi.yaml is not a mapping")
    check(re.fullmatch(r"3\.1\.\d+", str(d.get("openapi", ""))), f"openapi: {d.get('openapi')!r}")
    check(isinstance(d.get("info"), dict) and d["info"].get("title") and d["info"].get("version"),
          "info needs title and version")
    allowed = {"openapi", "info", "jsonSchemaDialect", "servers", "paths", "webhooks",
               "components", "security", "tags", "externalDocs"}
    extra = {k for k in d if k not in allowed and not k.startswith("x-")}
    check(not extra, f"unknown top-level members: {extra}")
    check(isinstance(d.get("paths"), dict) and d["paths"], "no paths")
    schemes = d.get("components", {}).get("securitySchemes", {})
    mtls = [n for n, s in schemes.items() if s.get("type") == "mutualTLS"]
    check(mtls, "no securityScheme of type mutualTLS")
    top = d.get("security")
    nops = 0
    for p, item in d["paths"].items():
        check(p.startswith("/"), f"path {p!r} does not start with /")
        for m, op in item.items():
            if m not in METHODS:
                continue
            nops += 1
            check(op.get("operationId"), f"{m} {p}: no operationId")
            check(isinstance(op.get("responses"), dict) and op["responses"],
                  f"{m} {p}: no responses")
            sec = op.get("security", top)
            check(sec and any(n in s for s in sec for n in mtls),
                  f"{m} {p}: not under the mutualTLS scheme")
            for st, r in op["responses"].items():
                check(re.fullmatch(r"[1-5]\d\d|default", st), f"{m} {p}: status {st!r}")
                check(deref(r).get("description"), f"{m} {p} {st}: no description")
    check(nops >= 9, f"only {nops} operations")


def test_refs_resolve_and_schemas_are_2020_12():
    """Every $ref resolves; every schema (components, request and response
    bodies) is a valid JSON Schema 2020-12."""
    d = doc()
    check(d.get("jsonSchemaDialect", "https://spec.openapis.org/oas/3.1/dialect/base")
          in ("https://json-schema.org/draft/2020-12/schema",
              "https://spec.openapis.org/oas/3.1/dialect/base"), "jsonSchemaDialect")
    nrefs = 0
    for path, node in walk(d):
        ref = node.get("$ref")
        if isinstance(ref, str):
            nrefs += 1
            check(ref.startswith("#/"), f"{'/'.join(map(str, path))}: external $ref {ref}")
            try:
                resolver().resolve(ref)
            except jsonschema.RefResolutionError as e:
                fail(f"{'/'.join(map(str, path))}: $ref {ref} does not resolve: {e}")
    check(nrefs >= 20, f"only {nrefs} $refs: the schemas are not shared")
    schemas = list(d["components"]["schemas"].items())
    for p, node in walk(d["paths"]):
        if "schema" in node and isinstance(node["schema"], dict):
            schemas.append(("/".join(map(str, p)), node["schema"]))
    check(len(schemas) >= 20, f"only {len(schemas)} schemas")
    for name, s in schemas:
        try:
            Draft202012Validator.check_schema(s)
        except jsonschema.SchemaError as e:
            fail(f"schema {name}: not JSON Schema 2020-12: {e.message}")


def test_examples_validate():
    """Every example in the document fits the schema beside it."""
    n = 0
    for path, node in walk(doc()["paths"]):
        if "schema" not in node or not isinstance(node.get("examples"), dict):
            continue
        for name, ex in node["examples"].items():
            ex = deref(ex)
            check("value" in ex, f"{'/'.join(map(str, path))}: example {name} has no value")
            validate(ex["value"], node["schema"], f"example {'/'.join(map(str, path))}/{name}")
            n += 1
    check(n >= 15, f"only {n} examples validated")


def test_request_schemas_are_strict():
    """Every request body schema refuses unknown members
    (additionalProperties: false, down to nested objects)."""
    n = 0
    for p, item in doc()["paths"].items():
        if "post" not in item:
            continue
        n += 1
        seen = set()

        def strict(s, where):
            s = deref(s)
            if id(s) in seen or not isinstance(s, dict):
                return
            seen.add(id(s))
            if s.get("type") == "object" and "properties" in s:
                check(s.get("additionalProperties") is False,
                      f"POST {p}: {where} allows unknown members")
            for k in ("properties",):
                for name, sub in s.get(k, {}).items():
                    strict(sub, f"{where}.{name}")
            for k in ("items", "additionalProperties"):
                if isinstance(s.get(k), dict):
                    strict(s[k], f"{where}[]")
            for k in ("oneOf", "anyOf", "allOf"):
                for sub in s.get(k, []):
                    strict(sub, where)
        strict(request_schema(p), "body")
    check(n == 3, f"{n} POST routes documented, expected 3")


SERVING = ("gateway", "node", "hub", "audit")


def c_sources():
    """The C files of the folders that serve requests (the gateway and the roles)."""
    for d in SERVING:
        yield from sorted((REPO / d).glob("*.c"))


def route_table():
    """(path, method) of every route the gateway and the roles register:
    the entries of their route tables, { "/path", "METHOD", ... }."""
    out = []
    for f in c_sources():
        out += re.findall(r'\{\s*"(/[a-z0-9/]*)",\s*"(GET|POST)"', f.read_text())
    check(len(out) >= 7, f"the route tables were not found ({out})")
    return sorted(set(out))


def test_every_route_documented():
    """Every route of the route tables with its method, HEAD beside GET, and
    nothing the gateway does not serve."""
    want = set()
    for path, method in route_table():
        want.add((path, method.lower()))
        if method == "GET":
            want.add((path, "head"))
    have = {(p, m) for p, item in doc()["paths"].items() for m in item if m in METHODS}
    check(want == have, f"missing {sorted(want - have)}, not served {sorted(have - want)}")
    for path, method in route_table():
        for m in (method, "HEAD") if method == "GET" else (method,):
            check("405" in operation(path, m)["responses"], f"{m} {path}: 405 not documented")


def source_errors():
    """(status, code) of every error the C code sends with a literal code."""
    out = set()
    pat = re.compile(r'(?:gw_error|fail|refuse|sq_refuse)\([^;]*?\b([1-5]\d\d),\s*"([a-z_]+)"', re.S)
    for f in c_sources():
        for st, code in pat.findall(f.read_text()):
            out.add((int(st), code))
    # a code chosen by a condition: gw_error(resp, 400, kind == X ? "a" : "b", ...)
    pat2 = re.compile(r'gw_error\([^;]*?\b([1-5]\d\d),[^;"]*\?\s*"([a-z_]+)"\s*:\s*"([a-z_]+)"', re.S)
    for f in c_sources():
        for st, a, b in pat2.findall(f.read_text()):
            out.add((int(st), a))
            out.add((int(st), b))
    h2 = (REPO / "gateway" / "h2.c").read_text()
    for code in re.findall(r'\{\s*"([a-z_]+)",\s*"[^"]*"\s*\}', h2):
        out.add((403, code))
    decide = (REPO / "policies" / "decide.c").read_text()
    for code in re.findall(r'\] = "([a-z_]+)"', decide):
        if code != "ok":
            out.add((403, code))
    return out


def test_every_error_code_documented():
    """Every error code the gateway sends is in ErrorCode; every status it
    sends them with is documented on some operation."""
    errs = source_errors()
    check(len(errs) >= 40, f"only {len(errs)} error codes found in the source")
    enum = set(deref(doc()["components"]["schemas"]["ErrorCode"])["enum"])
    missing = sorted({c for _, c in errs} - enum)
    check(not missing, f"error codes not in ErrorCode: {missing}")
    statuses = {st for item in doc()["paths"].values() for m, op in item.items()
                if m in METHODS for st in op["responses"]}
    # 414 uri_too_long answers only a path longer than any route: no
    # documented operation can get it (the document's description says so)
    missing = sorted({str(s) for s, _ in errs} - statuses - {"414"})
    check(not missing, f"statuses not documented on any operation: {missing}")


# --------------------------------------------------------------------------
# Real answers
# --------------------------------------------------------------------------

def fed():
    global _FED
    if _FED is None:
        data = synth_data()
        _FED = Federation({"opleidingsfonds-techniek": [(TEK, data / (TEK + ".csv"))],
                           "uwv": [(UWV, data / (UWV + ".csv"))]},
                          [POLICY], node_timeout="10s").start()
        harness.at_end(_FED.stop)
    return _FED


def known_bsn():
    return read_csv(synth_data() / (TEK + ".csv"))[0]["bsn"]


def subquery_body(**extra):
    b = {"query_id": secrets.token_hex(16), "requester": "arbeidsmarkttafel",
         "purpose": P_AGG, "operation": "aggregate", "dataset": TEK, "mode": "counts",
         "fields": [{"field": "programme", "gen": "exact"}], "filters": [],
         "max_cells_per_person": 1}
    b.update(extra)
    return b


def exchange(gw, path, org, method="GET", body=None):
    """One request; (status, content type, parsed body, raw)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body))
    hdrs = ["content-type: application/json"] if data is not None else []
    r = curl(gw, path, org=org, method=method if method not in ("GET", "POST") else None,
             data=data, headers=hdrs, extra=["-I"] if method == "HEAD" else [])
    check(r.rc == 0 and r.status, f"{method} {path} as {org}: curl failed: {r.err}")
    ctype = r.headers.get("content-type", "").split(";")[0].strip()
    return r.status, ctype, r.body


def conforms(gw, path, org, method="GET", body=None, want=None, code=None):
    """Asks, checks status (and error code) and validates the answer against
    the document; returns the parsed answer."""
    st, ctype, raw = exchange(gw, path, org, method, body)
    what = f"{method} {path} as {org} -> {st}"
    if want is not None:
        check(st == want, f"{what}, expected {want}: {raw[:300]!r}")
    if method == "HEAD":
        op = operation(path, "head")
        check(str(st) in op["responses"], f"{what}: status not documented for HEAD")
        return None
    if ctype == "application/json":
        obj = json.loads(raw)
    else:
        obj = raw.decode("utf-8")
    if os.environ.get("OPENAPI_DUMP"):  # real answers, for the document's examples
        with open(os.environ["OPENAPI_DUMP"], "a") as f:
            f.write(json.dumps({"what": what, "body": obj}) + "\n")
    validate(obj, response_schema(path, method, st, ctype), what)
    if code is not None:
        check(isinstance(obj, dict) and obj.get("error", {}).get("code") == code,
              f"{what}: error code {obj!r}, expected {code}")
    CHECKED.append((path, method, st))
    return obj


CHECKED = []


def test_real_answers_conform():
    """Every route's answers, 200 and refusals, from a running federation,
    validated against the document."""
    f = fed()
    hub, tek = f.hub, f.nodes["opleidingsfonds-techniek"]
    CHECKED.clear()
    conforms(hub, "/healthz", "arbeidsmarkttafel", want=200)
    conforms(hub, "/healthz", "arbeidsmarkttafel", method="HEAD", want=200)
    conforms(hub, "/v1/whoami", "arbeidsmarkttafel", want=200)
    conforms(tek, "/v1/whoami", "gemeente-groningen", want=200)
    conforms(hub, "/v1/catalog", "arbeidsmarkttafel", want=200)
    conforms(tek, "/v1/catalog", "gemeente-groningen", want=200)
    m = conforms(hub, "/metrics", "provincie-groningen", want=200)
    check("noordpoort_" in m, "metrics: no noordpoort_ series")
    conforms(hub, "/metrics", "arbeidsmarkttafel", want=403, code="not_an_operator")
    # a path that is no route: the document's common Error shape
    st, ctype, raw = exchange(hub, "/v1/nothing", "arbeidsmarkttafel")
    check(st == 404 and ctype == "application/json", f"/v1/nothing: {st} {ctype}")
    validate(json.loads(raw), {"$ref": "#/components/schemas/Error"}, "GET /v1/nothing -> 404")
    # another method: 405, the shape the document gives GET's 405
    st, ctype, raw = exchange(hub, "/v1/whoami", "arbeidsmarkttafel", "POST", {})
    check(st == 405, f"POST /v1/whoami: {st}")
    validate(json.loads(raw), response_schema("/v1/whoami", "GET", 405, ctype), "POST /v1/whoami")
    CHECKED.append(("/v1/whoami", "POST", 405))

    # lookup at the node
    good = {"purpose": P_LOOKUP, "dataset": TEK, "subject": {"bsn": known_bsn()},
            "fields": ["programme", "completed"]}
    validate(good, request_schema("/v1/lookup"), "lookup request")
    conforms(tek, "/v1/lookup", "gemeente-groningen", "POST", good, want=200)
    bad = dict(good, colour="blue")
    conforms(tek, "/v1/lookup", "gemeente-groningen", "POST", bad, want=400, code="bad_request")
    conforms(tek, "/v1/lookup", "gemeente-groningen", "POST", b"{", want=400,
             code="invalid_json")
    conforms(tek, "/v1/lookup", "gemeente-groningen", "POST",
             dict(good, subject={"bsn": "123456789"}), want=400, code="invalid_bsn")
    conforms(tek, "/v1/lookup", "uwv", "POST", good, want=403, code="requester_not_listed")
    conforms(tek, "/v1/lookup", "gemeente-groningen", "POST", dict(good, fields=["sector"]),
             want=403, code="field_not_granted")

    # aggregate at the hub: two answers, then the purpose's budget is spent
    q = {"purpose": P_AGG, "population": TEK, "group_by": [f"{TEK}.programme"]}
    validate(q, request_schema("/v1/aggregate"), "aggregate request")
    for _ in range(2):
        a = conforms(hub, "/v1/aggregate", "arbeidsmarkttafel", "POST", q, want=200)
        check(a.get("budget") and a.get("dataset_budgets"),
              f"fixture: the answer has no budget or dataset_budgets: {a!r}")
    conforms(hub, "/v1/aggregate", "arbeidsmarkttafel", "POST", q, want=429,
             code="budget_exhausted")
    conforms(hub, "/v1/aggregate", "arbeidsmarkttafel", "POST", dict(q, colour="blue"),
             want=400, code="bad_request")
    conforms(hub, "/v1/aggregate", "arbeidsmarkttafel", "POST",
             dict(q, population="nobody/nothing"), want=400, code="unknown_dataset")
    conforms(hub, "/v1/aggregate", "arbeidsmarkttafel", "POST",
             dict(q, population=UWV, group_by=[f"{UWV}.end_reason"]), want=403,
             code="dataset_not_granted")
    conforms(hub, "/v1/aggregate", "uwv", "POST", q, want=403, code="not_a_coordinator")

    # subquery at the node: the hub is answered, nobody else
    sq = subquery_body()
    validate(sq, request_schema("/v1/federation/subquery"), "subquery request")
    conforms(tek, "/v1/federation/subquery", "hub", "POST", sq, want=200)
    conforms(tek, "/v1/federation/subquery", "arbeidsmarkttafel", "POST", subquery_body(),
             want=403, code="not_a_hub")
    conforms(tek, "/v1/federation/subquery", "hub", "POST", subquery_body(mode="sideways"),
             want=400, code="bad_request")

    # a test that validated nothing is not a test
    statuses = {(p, s) for p, _, s in CHECKED}
    for p, s in [("/healthz", 200), ("/metrics", 200), ("/metrics", 403), ("/v1/whoami", 200),
                 ("/v1/catalog", 200), ("/v1/lookup", 200), ("/v1/lookup", 400),
                 ("/v1/lookup", 403), ("/v1/aggregate", 200), ("/v1/aggregate", 400),
                 ("/v1/aggregate", 403), ("/v1/aggregate", 429),
                 ("/v1/federation/subquery", 200), ("/v1/federation/subquery", 403)]:
        check((p, s) in statuses, f"no {s} answer of {p} was validated")
    check(len(CHECKED) >= 24, f"only {len(CHECKED)} answers validated")
    note(f"{len(CHECKED)} real answers validated against docs/openapi.yaml")


def test_unknown_members_refused_everywhere():
    """An unknown member anywhere in a POST body fails the document's request
    schema and is refused by the gateway with 400 bad_request: the lookup,
    the hub's question, and the subquery (top level, a field, a filter)."""
    f = fed()
    hub, tek = f.hub, f.nodes["opleidingsfonds-techniek"]
    good_sq = subquery_body(filters=[{"field": "completed", "gen": "exact", "values": ["true"]}])
    conforms(tek, "/v1/federation/subquery", "hub", "POST", good_sq, want=200)
    cases = [
        (tek, "/v1/lookup", "gemeente-groningen",
         {"purpose": P_LOOKUP, "dataset": TEK, "subject": {"bsn": known_bsn(), "x": 1},
          "fields": ["programme"]}),
        (hub, "/v1/aggregate", "arbeidsmarkttafel",
         {"purpose": P_AGG, "population": TEK, "measure": {"count": "persons", "x": 1}}),
        (tek, "/v1/federation/subquery", "hub", subquery_body(colour="blue")),
        (tek, "/v1/federation/subquery", "hub",
         subquery_body(fields=[{"field": "programme", "gen": "exact", "colour": "blue"}])),
        (tek, "/v1/federation/subquery", "hub",
         subquery_body(filters=[{"field": "completed", "values": ["true"], "colour": "blue"}])),
    ]
    for gw, path, org, body in cases:
        try:
            validate(body, request_schema(path), "unknown member")
        except harness.TestFailure:
            pass
        else:
            fail(f"{path}: the request schema accepts {body!r}")
        obj = conforms(gw, path, org, "POST", body, want=400, code="bad_request")
        check("unknown member" in obj["error"]["message"] or path == "/v1/aggregate",
              f"{path}: {obj!r}")


if __name__ == "__main__":
    run(globals())
