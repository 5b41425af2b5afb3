#!/usr/bin/python3
"""The docs name only what exists: README.md and docs/*.md.

Checks, each printed as "ok - NAME" or "not ok - NAME: REASON":

- paths: every file path named in a backtick span or a markdown link
  exists, relative to the repository root or to the doc's own folder
  (docs/), or, for a bare file name, as the name of some tracked file.
  A span or link target is a path when it is one token that contains a
  "/" or ends in a known extension (KNOWN_EXT), and its first component is
  a top-level entry of the repository (for names with a "/") — so field
  references such as `uwv/ww-uitkeringen.end_reason`, media types
  (`application/json`) and routes are not paths. Skipped:
    * URLs (anything with "://", "mailto:") and in-page anchors ("#...");
    * globs: "*", "?", "[", "{";
    * placeholders: any component in capitals (FILE, PREFIX, NAME, DIR,
      P.key, FILE.sig), "…", "...", "<", "$", "%", "~";
    * absolute system paths ("/etc/...", "/var/...", routes "/v1/...");
    * generated paths: under build/, certs/dev/, and the demo's and
      synth's output folders (GENERATED);
    * bare names (no "/") of data, key and config files (x.csv, tls.key,
      whoami.json): they name a file the reader or a script makes; bare
      names of source, test and doc files (SOURCE_EXT) must be the name of
      some tracked file; a bare extension (".sig") is no path;
    * files a how-to tells the reader to create (TO_CREATE);
    * paths that lead out of the repository (../shared/DESIGN.md, the
      project's design notes beside the checkout).
- commands: every `noordpoort SUBCOMMAND [SUBSUBCOMMAND]` that appears as
  a command (first word of a backtick span or of a line in a fenced code
  block, optionally after "$ ", a path such as build/noordpoort, or a
  "&&", ";", "|" separator; a "#" comment in a code block is not a
  command; a signing-context string such as `noordpoort audit checkpoint
  v1`, whose last word is a version, is not a command) is a command in cli/main.c's dispatch
  table; for audit, ledger and policy the second word is checked against
  their own tables (cli/audit_cli.c, cli/ledger_cli.c,
  cli/policy_cli.c).
- make: every `make TARGET` used the same way names a target of the
  Makefile (explicit targets, or a pattern rule such as build/asan/tests/%).
  VAR=value arguments and options are not targets.
- examples: docs/policy.md names every file in policies/examples/.
- history: no doc tells its development history ("issue 10", "(issue",
  "a later issue", "TODO", "to-do", "Before the fix"); references to
  another project's tracker ("libevent issue 1212") are allowed.

Each check must find something to check: a check that finds no path,
command or target fails, so the test cannot pass by checking nothing.
"""
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KNOWN_EXT = (".c", ".h", ".py", ".sh", ".md", ".yaml", ".yml", ".json",
             ".csv", ".service", ".conf", ".txt", ".1", ".5", ".sql",
             ".sig", ".pub", ".pem", ".crt", ".key", ".cnf", ".mk")
SOURCE_EXT = (".c", ".h", ".py", ".sh", ".md")
GENERATED = ("build/", "certs/dev", "demo/", "data/", "out/")
TO_CREATE = {"adapters/pg.c"}  # docs/adapters.md, "Writing the next adapter"
UPSTREAM = ("libevent", "openssl", "nghttp2", "cjson", "libyaml", "sqlite",
            "libsodium", "curl", "h2o", "nginx", "python")

failures = 0


def report(ok, name, reason=""):
    global failures
    if ok:
        print("ok - %s" % name)
    else:
        failures += 1
        print("not ok - %s: %s" % (name, reason))


def docs():
    files = [os.path.join(ROOT, "README.md")]
    files += sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    return files


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def rel(path):
    return os.path.relpath(path, ROOT)


def code_blocks(text):
    """(line number, line) for every line inside a ``` fence."""
    out, inside = [], False
    for n, line in enumerate(text.split("\n"), 1):
        if line.lstrip().startswith("```"):
            inside = not inside
            continue
        if inside:
            out.append((n, line))
    return out


def spans(text):
    """(line number, text) of every `span` outside code fences."""
    out, inside = [], False
    for n, line in enumerate(text.split("\n"), 1):
        if line.lstrip().startswith("```"):
            inside = not inside
            continue
        if inside:
            continue
        for m in re.finditer(r"(`+)(.+?)\1", line):
            out.append((n, m.group(2).strip()))
    return out


def links(text):
    out = []
    for n, line in enumerate(text.split("\n"), 1):
        for m in re.finditer(r"\]\(([^)\s]+)\)", line):
            out.append((n, m.group(1)))
    return out


# ---------------------------------------------------------------- paths

TOP = set(os.listdir(ROOT)) - {".git"}
TRACKED = subprocess.run(["git", "-C", ROOT, "ls-files"], capture_output=True,
                         text=True, check=True).stdout.split("\n")
BASENAMES = {os.path.basename(p) for p in TRACKED if p}


def placeholder(tok):
    if any(c in tok for c in "…<>$%~") or "..." in tok:
        return True
    for comp in re.split(r"[/._-]", tok):
        if re.fullmatch(r"[A-Z][A-Z0-9_]*", comp) and comp not in (
                "README", "DESIGN", "STYLE", "THREATS", "Makefile"):
            return True
    return False


def path_candidate(tok):
    """The path a span or link names, or None."""
    tok = tok.split("#", 1)[0].rstrip(":,.;")
    if not tok or re.search(r"\s", tok):
        return None
    if "://" in tok or tok.startswith(("mailto:", "#")):
        return None
    if not re.fullmatch(r"[A-Za-z0-9_./@+-]+/?|[A-Za-z0-9_./@+-]*[…<>$%~][^\s]*",
                        tok):
        return None
    if any(c in tok for c in "*?[{"):
        return None
    if tok.startswith(("/", "~")):
        return None
    if placeholder(tok):
        return None
    if "/" in tok:
        first = tok.split("/", 1)[0]
        if first in (".", ".."):
            return tok
        if first not in TOP and not os.path.exists(
                os.path.join(ROOT, "docs", first)):
            return None
        return tok
    if tok.endswith(SOURCE_EXT) and not re.fullmatch(r"[0-9.]+|\.\w+", tok):
        return tok
    return None


def path_exists(tok, doc):
    if tok.startswith(GENERATED) or tok in TO_CREATE:
        return True
    if not any((os.path.normpath(os.path.join(b, tok)) + "/").startswith(
            ROOT + "/") for b in (ROOT, os.path.dirname(doc))):
        return True  # outside the repository: not ours to check
    cands = [os.path.join(ROOT, tok), os.path.join(os.path.dirname(doc), tok),
             os.path.join(ROOT, "docs", tok)]
    if any(os.path.exists(c) for c in cands):
        return True
    if "/" not in tok and tok in BASENAMES:
        return True
    return False


def check_paths():
    seen = 0
    for doc in docs():
        text = read(doc)
        bad = []
        items = spans(text) + links(text)
        for n, tok in items:
            p = path_candidate(tok)
            if p is None:
                continue
            seen += 1
            if not path_exists(p, doc):
                bad.append("%s:%d: %s" % (rel(doc), n, p))
        report(not bad, "paths named in %s exist" % rel(doc), "; ".join(bad))
    report(seen >= 50, "paths: the docs name paths to check (%d)" % seen,
           "found only %d" % seen)


# ------------------------------------------------------------- commands

def table(path, pattern):
    return set(re.findall(pattern, read(os.path.join(ROOT, path))))


def commands():
    main = table("cli/main.c", r'strcmp\(argv\[1\], "([a-z-]+)"\)')
    main -= {"help"}
    subs = {
        "audit": table("cli/audit_cli.c",
                       r'strcmp\(argv\[1\], "([a-z-]+)"\)') - {"help"},
        "ledger": table("cli/ledger_cli.c",
                        r'strcmp\(argv\[1\], "([a-z-]+)"\)') - {"help"},
        "policy": table("cli/policy_cli.c", r'\{ "([a-z-]+)", cmd_'),
    }
    return main, subs


CMD_START = r"(?:^|&&|;|\||\$\()\s*(?:[A-Z_]+=\S+\s+)*(?:sudo\s+)?"


def command_uses(text, prog):
    """(line, words after prog) where prog is used as a command."""
    pat = re.compile(CMD_START + r"(?:\S*/)?" + prog +
                     r"((?:\s+[A-Za-z0-9_./%=-]+)*)")
    out = []
    lines = [(n, re.sub(r"\s#.*$|^\s*#.*$", "", l))
             for n, l in code_blocks(text)] + spans(text)
    for n, line in lines:
        line = re.sub(r"^\s*\$\s+", "", line)
        for m in pat.finditer(line):
            out.append((n, m.group(1).split()))
    return out


def check_commands():
    main, subs = commands()
    ok_tables = len(main) >= 8 and all(len(v) >= 2 for v in subs.values())
    report(ok_tables, "commands: read the command tables (%s)" % sorted(main),
           "tables look empty: %r %r" % (main, subs))
    seen = 0
    for doc in docs():
        bad = []
        for n, words in command_uses(read(doc), "noordpoort"):
            if not words or words[0].startswith("-"):
                continue
            cmd = words[0].rstrip(":")
            if not re.fullmatch(r"[a-z][a-z-]*", cmd):
                continue
            if any(re.fullmatch(r"v[0-9]+", w) for w in words[1:4]):
                continue  # a signing context, not a command
            seen += 1
            if cmd not in main:
                bad.append("%s:%d: noordpoort %s" % (rel(doc), n, cmd))
                continue
            if cmd in subs and len(words) > 1 and \
                    re.fullmatch(r"[a-z][a-z-]*", words[1]):
                if words[1] not in subs[cmd]:
                    bad.append("%s:%d: noordpoort %s %s" %
                               (rel(doc), n, cmd, words[1]))
        report(not bad, "noordpoort commands named in %s exist" % rel(doc),
               "; ".join(bad))
    report(seen >= 20, "commands: the docs name commands to check (%d)" % seen,
           "found only %d" % seen)


# ----------------------------------------------------------------- make

def make_targets():
    explicit, patterns = set(), []
    for line in read(os.path.join(ROOT, "Makefile")).split("\n"):
        m = re.match(r"^([^\s:=#][^:=]*?)\s*::?(?!=)", line)
        if not m or line.startswith("\t"):
            continue
        for t in m.group(1).split():
            if t == ".PHONY":
                continue
            if "%" in t:
                patterns.append(re.compile(
                    re.escape(t).replace("%", ".+") + "$"))
            else:
                explicit.add(t)
    return explicit, patterns


def check_make():
    explicit, patterns = make_targets()
    report({"test", "install", "certs"} <= explicit,
           "make: read the Makefile's targets", "got %r" % sorted(explicit))
    seen = 0
    for doc in docs():
        bad = []
        for n, words in command_uses(read(doc), "make"):
            for w in words:
                if "=" in w or w.startswith("-"):
                    continue
                if not re.fullmatch(r"[A-Za-z0-9_./%-]+", w):
                    break
                seen += 1
                if w not in explicit and not any(p.match(w) for p in patterns):
                    bad.append("%s:%d: make %s" % (rel(doc), n, w))
        report(not bad, "make targets named in %s exist" % rel(doc),
               "; ".join(bad))
    report(seen >= 10, "make: the docs name targets to check (%d)" % seen,
           "found only %d" % seen)


# -------------------------------------------------------------- history

HISTORY = re.compile(
    r"\b(?:(\w+)\s+)?issues?\s+\d+|\(issue\b|\ba (?:later|future|next) issue"
    r"|\bTODO\b|\bto-do\b|\bbefore the fix\b", re.I)


def check_history():
    seen = 0
    for doc in docs():
        bad = []
        for n, line in enumerate(read(doc).split("\n"), 1):
            for m in HISTORY.finditer(line):
                if m.group(1) and m.group(1).lower() in UPSTREAM:
                    continue
                seen += 1
                bad.append("%s:%d: %s" % (rel(doc), n, m.group(0)))
        report(not bad, "%s tells no development history" % rel(doc),
               "; ".join(bad))
    # The regex itself must catch what it is for.
    probe = ["since issue 10 the scan refuses", "(issue 11 #2)",
             "hub: a later issue", "TODO: document", "Before the fix: 33 s"]
    up = HISTORY.search("libevent issue 1212")
    report(all(HISTORY.search(s) for s in probe) and up and
           up.group(1) == "libevent",
           "history: the pattern catches history lines", "regex misses one")


def check_examples():
    text = read(os.path.join(ROOT, "docs", "policy.md"))
    files = sorted(os.listdir(os.path.join(ROOT, "policies", "examples")))
    missing = [f for f in files if "`%s`" % f not in text]
    report(len(files) >= 2 and not missing,
           "docs/policy.md lists every example in policies/examples/ (%d)" %
           len(files), "not listed: %s" % ", ".join(missing or ["(none found)"]))


def main():
    check_examples()
    check_paths()
    check_commands()
    check_make()
    check_history()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
