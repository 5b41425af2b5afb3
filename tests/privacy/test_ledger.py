#!/usr/bin/python3
"""Privacy tests: the budget ledger cannot vanish (issue 11, attack 5;
docs/ledger.md, "The ledger cannot vanish").

A coordinator's budget is only as good as the ledger that counts it. The
attack: move or delete the ledger file and the old hub made a new, empty
one, silently: the budget was whole again. Now `serve` never creates a
ledger (`noordpoort ledger init` does), and a hub whose ledger is missing,
replaced by another (a different ledger id than its audit log records) or
rolled back (a last debit behind the audit log's) answers every aggregate
question with 503 budget_unavailable and logs why.

One real hub and one node on loopback (tests/integration/harness.py), the
test policies of tests/integration/data/federation/federation.yaml
(test-fed-budget: epsilon 0.5, a budget of 1.5 per year).

Run: /usr/bin/python3 tests/privacy/test_ledger.py [NAME-SUBSTRING...]
"""
import os
import shutil
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import (  # noqa: E402
    REPO, Federation, check, check_error_body, note, run, run_cli, synth_data,
)

POLICY = REPO / "tests" / "integration" / "data" / "federation" / "federation.yaml"
TEK = "opleidingsfonds-techniek/inschrijvingen"
Q = {"purpose": "test-fed-budget", "population": TEK, "group_by": [f"{TEK}.programme"]}

_FED = None


def fed():
    global _FED
    if _FED is None:
        data = synth_data(seed=7, scale=0.05)
        _FED = Federation({"opleidingsfonds-techniek": [(TEK, data / (TEK + ".csv"))]}, [POLICY])
        _FED.start()
    return _FED


def remove_ledger(path):
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            p.unlink()


def ask_refused(f, what):
    st, hdrs, obj, raw = f.ask(Q)
    check_error_body(st, hdrs, raw, 503, "budget_unavailable", what)
    check(obj and "cells" not in obj, f"{what}: a table came back: {raw[:200]!r}")


def hub_logged(f, event):
    return any(o.get("event") == event for o in f.hub.log_json())


def test_a_deleted_ledger_gives_503():
    """Answered, then the ledger is deleted under the running hub: the next
    question is 503 budget_unavailable (logged), and no ledger file comes
    back. Restarting the hub does not create one either."""
    f = fed()
    f.ask_ok(Q, "first question, the ledger in place")
    remove_ledger(f.ledger)
    ask_refused(f, "the ledger deleted under the running hub")
    check(hub_logged(f, "budget_ledger_unavailable"), "the hub did not log the vanished ledger")
    check(not Path(f.ledger).exists(), "the running hub made a new ledger file")
    f.restart_hub()
    ask_refused(f, "a hub started without its ledger")
    check(hub_logged(f, "budget_ledger_missing"), "the restarted hub did not log the missing ledger")
    check(not Path(f.ledger).exists(), "serve created a ledger")


def test_a_new_ledger_in_its_place_is_refused():
    """`ledger init` at the old path makes a ledger with another id: the
    audit log records the old one, so the hub refuses it (503, logged)."""
    f = fed()
    remove_ledger(f.ledger)
    r = run_cli("ledger", "init", f.ledger)
    check(r.returncode == 0, f"ledger init: {r.stderr}")
    f.restart_hub()
    ask_refused(f, "a new, empty ledger in place of the recorded one")
    check(any(o.get("event") == "budget_ledger_refused" and "replaced" in str(o.get("message"))
              for o in f.hub.log_json()), "the hub did not log the replaced ledger")


def test_a_rolled_back_ledger_is_refused():
    """A fresh federation (its own ledger and audit log); a copy of the
    ledger taken after one answer, restored after a second: its last debit
    is behind the audit log's, so the hub refuses it; `ledger verify` finds
    the audit line whose debit the copy lacks, and passes on the real one."""
    global _FED
    if _FED is not None:
        _FED.stop(check_rc=False)
        _FED = None
    f = fed()
    f.ask_ok(Q, "answer 1")
    f.hub.stop()
    f.hub = None
    saved = Path(str(f.ledger) + ".saved")
    shutil.copy(f.ledger, saved)
    f.start_hub()
    f.ask_ok(Q, "answer 2")
    f.hub.stop()
    f.hub = None
    r = run_cli("ledger", "verify", f.ledger, f.hub_audit)
    check(r.returncode == 0 and "ok: 2 debit(s)" in r.stdout,
          f"ledger verify on the real ledger: rc {r.returncode}: {r.stdout} {r.stderr}")
    real = Path(str(f.ledger) + ".real")
    shutil.copy(f.ledger, real)
    remove_ledger(f.ledger)
    shutil.copy(saved, f.ledger)
    r = run_cli("ledger", "verify", f.ledger, f.hub_audit)
    check(r.returncode == 1 and "which the ledger does not hold" in r.stdout,
          f"ledger verify on the rolled-back copy: rc {r.returncode}: {r.stdout} {r.stderr}")
    f.start_hub()
    ask_refused(f, "a ledger restored from an older copy")
    check(any(o.get("event") == "budget_ledger_refused" and "rolled back" in str(o.get("message"))
              for o in f.hub.log_json()), "the hub did not log the rolled-back ledger")
    # the newest ledger back: answered again
    f.hub.stop()
    f.hub = None
    remove_ledger(f.ledger)
    shutil.copy(real, f.ledger)
    f.start_hub()
    obj = f.ask_ok(Q, "the newest ledger back")
    check(obj["budget"]["spent"] == 1.5, f"budget after three answers: {obj['budget']}")
    note("rolled back: refused; verify found the missing debit; the newest ledger answers")


def test_serve_never_creates_a_ledger():
    """A hub configured with a ledger path that does not exist starts (its
    other roles serve), leaves the path alone and answers 503."""
    f = fed()
    missing = f.dir / "never-made.sqlite"
    if f.hub is not None:
        f.hub.stop(expect_rc=None)
        f.hub = None
    f.hub_extra = {"hub": {"ledger": str(missing)}}
    f.start_hub()
    ask_refused(f, "a hub whose ledger was never made")
    check(not missing.exists(), "serve created a ledger")
    f.hub.stop()
    f.hub = None
    f.hub_extra = {}
    f.start_hub()


def test_a_ledger_rolled_back_under_the_running_hub():
    """The budget given back through SQL while the hub runs (the no-delete
    trigger dropped, the last debit deleted, in the same file): the hub has
    seen a later debit than the ledger now holds, so it answers 503."""
    global _FED
    if _FED is not None:
        _FED.stop(check_rc=False)
        _FED = None
    f = fed()
    f.ask_ok(Q, "answer 1")
    f.ask_ok(Q, "answer 2")
    con = sqlite3.connect(str(f.ledger), timeout=5)
    con.execute("DROP TRIGGER ledger_no_delete")
    con.execute("DELETE FROM ledger_debit WHERE id = (SELECT max(id) FROM ledger_debit)")
    con.commit()
    n = con.execute("SELECT COUNT(*) FROM ledger_debit").fetchone()[0]
    con.close()
    check(n == 1, f"fixture: {n} debits left, expected 1")
    ask_refused(f, "a ledger rolled back in place under the running hub")
    check(hub_logged(f, "budget_ledger_unavailable"), "the hub did not log the rolled-back ledger")


if __name__ == "__main__":
    run(globals())
