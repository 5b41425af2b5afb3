#!/usr/bin/python3
"""Privacy tests: a per-dataset budget (issue 11; docs/ledger.md,
"Per-dataset budgets"; docs/policy.md, "Per-dataset budgets").

A requester × purpose budget bounds what one coordinator learns under one
purpose, not what is learnt about a person: the same dataset asked under
several purposes (or by several coordinators) adds up. The owner of a
dataset caps the ε spent on it per period by everyone together; a question
debits every dataset it touches in the purpose debit's own transaction.

One real hub and one node on loopback (tests/integration/harness.py) with
tests/privacy/data/dataset_budget.yaml: two purposes of 1.5 per year each
at ε 0.5, over opleidingsfonds-techniek/inschrijvingen, which its owner
caps at 2 per year.

Run: /usr/bin/python3 tests/privacy/test_dataset_budget.py [NAME-SUBSTRING...]
"""
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import (  # noqa: E402
    Federation, check, check_error_body, note, run, run_cli, synth_data,
)

POLICY = Path(__file__).resolve().parent / "data" / "dataset_budget.yaml"
TEK = "opleidingsfonds-techniek/inschrijvingen"


def q(purpose):
    return {"purpose": purpose, "population": TEK, "group_by": [f"{TEK}.programme"]}


def test_two_purposes_exhaust_one_dataset_budget():
    """Two answers under each purpose spend 2 on the dataset, exactly its
    limit; the third question under either purpose (whose own budget still
    has 0.5) is 429 dataset_budget_exhausted naming the dataset, what is
    left (0) and the reset, with nothing debited; the intent and answer
    audit lines name the dataset, and `ledger verify` passes."""
    data = synth_data(seed=7, scale=0.05)
    f = Federation({"opleidingsfonds-techniek": [(TEK, data / (TEK + ".csv"))]}, [POLICY])
    f.start()
    seen = []
    for i, purpose in enumerate(["test-ds-monitoring", "test-ds-evaluatie"] * 2):
        obj = f.ask_ok(q(purpose), f"answer {i + 1} ({purpose})")
        dsb = obj.get("dataset_budgets")
        check(isinstance(dsb, list) and len(dsb) == 1 and dsb[0].get("dataset") == TEK,
              f"answer {i + 1}: dataset_budgets {dsb!r}")
        seen.append(dsb[0]["spent"])
        check(dsb[0]["limit"] == 2 and dsb[0]["per"] == "year",
              f"answer {i + 1}: dataset budget {dsb[0]!r}")
    check(seen == [0.5, 1, 1.5, 2], f"dataset spent after each answer: {seen}")
    for purpose in ("test-ds-evaluatie", "test-ds-monitoring"):
        st, hdrs, obj, raw = f.ask(q(purpose))
        body = check_error_body(st, hdrs, raw, 429, "dataset_budget_exhausted",
                                f"third question under {purpose}")
        e = body["error"]
        check(e.get("dataset") == TEK, f"{purpose}: the 429 does not name the dataset: {e!r}")
        check(TEK in e["message"] and "0 of 2 is left this year" in e["message"]
              and "resets at" in e["message"], f"{purpose}: message {e['message']!r}")
        check(e.get("budget_spent") is False, f"{purpose}: budget_spent {e.get('budget_spent')!r}")
        dsb = body.get("dataset_budgets")
        check(isinstance(dsb, list) and dsb and dsb[0]["remaining"] == 0
              and dsb[0]["resets"].endswith("-01-01T00:00:00Z"),
              f"{purpose}: dataset_budgets in the 429: {dsb!r}")
        check(body.get("budget", {}).get("remaining") == 0.5,
              f"{purpose}: its own budget should still have 0.5: {body.get('budget')!r}")
        check("retry-after" in hdrs, f"{purpose}: no Retry-After on the 429")
        check(obj and "cells" not in obj, f"{purpose}: a table came back")
    f.hub.stop()
    f.hub = None
    lines = [json.loads(x) for x in Path(f.hub_audit).read_text().splitlines() if x.strip()]
    intents = [o for o in lines if o.get("operation") == "budget_intent"]
    answers = [o for o in lines if o.get("operation") == "aggregate" and o.get("budget_debit")]
    check(len(intents) == 4 and all(o.get("dataset_debits") == [TEK] for o in intents),
          f"intent lines: {intents!r}")
    check(len(answers) == 4 and all(o.get("dataset_debits") == [TEK] for o in answers),
          f"answer lines with a debit: {answers!r}")
    r = run_cli("ledger", "verify", f.ledger, f.hub_audit)
    check(r.returncode == 0 and "ok: 4 debit(s)" in r.stdout,
          f"ledger verify: rc {r.returncode}: {r.stdout} {r.stderr}")
    import sqlite3
    con = sqlite3.connect(f"file:{f.ledger}?mode=ro", uri=True)
    total, n = con.execute("SELECT sum(amount_micro), count(*) FROM ledger_dataset_debit"
                           " WHERE dataset = ?", (TEK,)).fetchone()
    con.close()
    check(total == 2_000_000 and n == 4, f"ledger: {n} dataset debits, {total} micro-epsilon")
    f.stop()
    note("two purposes shared one dataset budget of 2: four answers, then 429 naming it")


if __name__ == "__main__":
    run(globals())
