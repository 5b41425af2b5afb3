#!/usr/bin/python3
"""Privacy tests: contribution bounding without bias (issue 11, attack 6;
docs/disclosure.md, "Contribution bounding").

With one cell per person, the old node kept each person's *first* row in
file order: every programme count came out biased toward what the file
lists first, and the answer did not say so. Now a person with more rows
than max_cells_per_person counts in a uniformly random choice of them,
drawn afresh per question, and the answer states the bound.

One real hub and one node on loopback (tests/integration/harness.py), the
fault-exact purpose of tests/faults/data/faults.yaml (epsilon 10, min_cell
1, round_to 1, one cell per person), over a dataset where every person has
two rows: programme A first, programme B second.

Run: /usr/bin/python3 tests/privacy/test_bound.py [NAME-SUBSTRING...]
"""
import csv
import math
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import REPO, Federation, check, note, run, synth_data  # noqa: E402

POLICY = REPO / "tests" / "faults" / "data" / "faults.yaml"
TEK = "opleidingsfonds-techniek/inschrijvingen"
A, B = "noorden-leert-door-1", "kansrijk-verzilveren"
Q = {"purpose": "fault-exact", "population": TEK, "group_by": [f"{TEK}.programme"]}


def bsn(i):
    """The i-th valid BSN (the eleven-test) from 100000000 up."""
    v = 10000000 + i * 7
    while True:
        d = f"{v:08d}"
        s = sum(int(c) * w for c, w in zip(d, range(9, 1, -1)))
        if s % 11 != 10:
            return d + str(s % 11)
        v += 1


def two_rows_each(path, n=2000):
    """|n| persons, each twice: programme A first, then B; the other fields
    as in the synthetic fund data's first row."""
    src = synth_data(seed=7, scale=0.05) / (TEK + ".csv")
    with open(src, newline="") as fh:
        rd = csv.DictReader(fh)
        fields, template = rd.fieldnames, next(rd)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for i in range(n):
            row = dict(template, bsn=bsn(i))
            w.writerow(dict(row, programme=A))
            w.writerow(dict(row, programme=B))
    return n


def test_first_row_is_not_favoured():
    """N persons, each with rows A then B, one cell per person: A and B are
    each counted about N/2 times (binomial, sd sqrt(N)/2; bound 5 sd plus
    the noise's 95% margin), and their sum is N. The first-row code gave
    A = N, B = 0. Three questions, each drawn afresh: the counts differ."""
    with tempfile.TemporaryDirectory(prefix="noordpoort-bound-") as td:
        data = Path(td) / "two-rows.csv"
        n = two_rows_each(data)
        check(n >= 400, f"only {n} persons in the synthetic data")
        f = Federation({"opleidingsfonds-techniek": [(TEK, data)]}, [POLICY])
        f.start()
        try:
            seen = []
            for _ in range(3):
                a = f.ask_ok(Q, "programme, one cell per person")
                d = a["disclosure"]
                check(d.get("max_cells_per_person") == 1,
                      f"the answer does not state the bound: {d}")
                cells = {c["key"][0]: c for c in a["cells"]}
                ca, cb = cells.get(A, {}), cells.get(B, {})
                check("persons" in ca and "persons" in cb, f"A {ca}, B {cb}")
                margin = d.get("margin_95", 0)
                bound = 5 * math.sqrt(n) / 2 + margin
                note(f"{n} persons with rows A then B: A {ca['persons']}, B {cb['persons']} "
                     f"(expected {n / 2:g} +- {bound:.0f}; first-row code: A {n}, B 0)")
                for name, c in ((A, ca), (B, cb)):
                    check(abs(c["persons"] - n / 2) <= bound,
                          f"{name}: {c['persons']} persons, expected {n / 2:g} +- {bound:.0f}: "
                          f"the bound favours a row by its place in the file")
                check(abs(ca["persons"] + cb["persons"] - n) <= 2 * margin + 2,
                      f"A + B = {ca['persons'] + cb['persons']}, expected {n}")
                seen.append(ca["persons"])
            check(len(set(seen)) > 1, f"three questions gave A = {seen}: not drawn afresh")
        finally:
            f.stop()
            f.cleanup()


if __name__ == "__main__":
    run(globals())
