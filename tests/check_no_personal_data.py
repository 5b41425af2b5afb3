#!/usr/bin/python3
"""Issue 6: no personal data in any log. Run by tests/run.sh after every
other test, over what the harness archived (NOORDPOORT_TEST_ARTIFACTS):
the BSNs of every CSV dataset the tests used are searched for in every log,
audit log and captured server output. Audit lines carry keyed pseudonyms
(hex), never a BSN. Prints ok/not ok lines like the other tests."""
import csv
import re
import sys
from pathlib import Path

# Digits not inside a longer run of digits or hex (pseudonyms, hashes, OINs).
NUMBER = re.compile(r"(?<![0-9a-fA-F])[0-9]{8,9}(?![0-9a-fA-F])")


def main(root):
    root = Path(root)
    bsns, files = set(), []
    for f in sorted(root.rglob("*")):
        if not f.is_file():
            continue
        if f.suffix == ".csv":
            with f.open(newline="", encoding="utf-8", errors="replace") as fh:
                rows = csv.reader(fh)
                header = next(rows, [])
                if "bsn" in header:
                    i = header.index("bsn")
                    for row in rows:
                        if len(row) > i and row[i].isdigit():
                            b = row[i].zfill(9)
                            bsns.add(b)
                            bsns.add(b.lstrip("0") if b.startswith("0") else b)
        else:
            files.append(f)
    if not bsns or not files:
        print(f"not ok - no personal data in logs: nothing to check "
              f"({len(bsns)} BSNs, {len(files)} log files archived)")
        return 1
    leaks = []
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        for m in NUMBER.finditer(text):
            if m.group(0) in bsns:
                leaks.append(f"{f.name}: {m.group(0)[:3]}...")
                break
    print(f"# searched {len(files)} log and audit files for {len(bsns)} BSN forms "
          f"from {root}")
    if leaks:
        print(f"not ok - no personal data in logs: BSNs found in {len(leaks)} files: "
              f"{leaks[:5]}")
        return 1
    print("ok - no personal data in logs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
