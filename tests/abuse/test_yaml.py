#!/usr/bin/python3
"""Abuse battery, YAML files (issue 10, "YAML alias bombs"): a few KB of
nested anchors and aliases, handed to the privacy officer's own tool
(`policy check`), to `serve` at start (policy, config, members, catalog) and
at a SIGHUP reload; a FIFO put where a policy file belongs. Each must be
refused at once with file:line:col, and the gateway must stay killable by
SIGTERM. Expected behaviour: docs/abuse.md, "YAML files".

On code without the fix these attacks take minutes and gigabytes; every run
here is bounded (a timeout, and an address-space limit of 1 GiB for a
release build) so such a run fails fast instead of eating the machine.

Run: /usr/bin/python3 tests/abuse/test_yaml.py [NAME-SUBSTRING...]
"""

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from abuselib import server_env  # noqa: E402
from harness import (  # noqa: E402
    BIN, REPO, Gateway, H2Client, NodeFiles, check, fail, is_asan_binary,
    post_json, read_csv, run, synth_data, wait_for,
)

ASAN = is_asan_binary()
DS = "opleidingsfonds-techniek/inschrijvingen"
POLICY = REPO / "tests" / "integration" / "data" / "node" / "lookup.yaml"
PURPOSE = "test-scholingscheck"
# Well above what a refusal takes (milliseconds), well below what the bomb
# takes without the fix (minutes).
QUICK_S = 5.0
POS = r":\d+:\d+: error: YAML (aliases|anchors) are not allowed"


def bomb(requesters=300, grants=100, purposes=100):
    """A policy file of about 2 KB whose tree, walked, is purposes x grants
    x requesters visits (3 million here): every requester list is the same
    aliased list, every grant and purpose the same aliased mapping."""
    return "\n".join([
        "x:",
        "  m: &m gemeente-groningen",
        "  r: &r [" + ", ".join(["*m"] * requesters) + "]",
        f"  g: &g {{requesters: *r, operations: [lookup], datasets: {{{DS}: {{programme: exact}}}}}}",
        "  gs: &gs [" + ", ".join(["*g"] * grants) + "]",
        "  p: &p {id: p, description: d, legal_basis: b, "
        "valid: {from: 2020-01-01, until: 2099-12-31}, grants: *gs}",
        "purposes: [" + ", ".join(["*p"] * purposes) + "]",
    ]) + "\n"


def limits():
    """preexec_fn: 1 GiB of address space (not under ASan, whose shadow
    memory alone reserves terabytes)."""
    if not ASAN:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def bounded(args, term_after=None, kill_after=20.0, env=None):
    """Runs |args|; SIGTERM after |term_after| s if still running, SIGKILL
    after |kill_after| s. Returns (rc, output, seconds, killed)."""
    t0 = time.monotonic()
    p = subprocess.Popen([str(a) for a in args], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=env, preexec_fn=limits, cwd="/")
    killed = False
    try:
        out, _ = p.communicate(timeout=term_after or kill_after)
    except subprocess.TimeoutExpired:
        if term_after:
            p.send_signal(signal.SIGTERM)
            try:
                out, _ = p.communicate(timeout=max(kill_after - term_after, 0.1))
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
                killed = True
        else:
            p.kill()
            out, _ = p.communicate()
            killed = True
    return p.returncode, out.decode("utf-8", "replace"), time.monotonic() - t0, killed


def data_csv():
    return synth_data() / "opleidingsfonds-techniek" / "inschrijvingen.csv"


def node_config(nf, policies, **top):
    return nf.config([str(p) for p in policies], [nf.csv_dataset(DS, data_csv())],
                     require_signed_policies=False, **top)


def serve_expect_refusal(gw, what, name_re, start_failed=True):
    """Starts |gw| (not via start(): it must not listen), sends SIGTERM after
    2 s should it still be loading; it must be gone within QUICK_S with a
    start_failed line naming the file:line:col."""
    env = dict(gw.env)
    rc, out, secs, killed = bounded([BIN, "serve", "-c", gw.config_path],
                                    term_after=2.0, kill_after=QUICK_S + 10, env=env)
    check(not killed, f"{what}: the gateway ignored SIGTERM while loading and had to be "
          f"killed after {secs:.1f}s; output: {out[-400:]}")
    check(secs < QUICK_S, f"{what}: took {secs:.1f}s to stop (refusal expected within "
          f"{QUICK_S}s); output: {out[-400:]}")
    check(rc != 0, f"{what}: exit status {rc}")
    check(re.search(name_re + POS, out) or re.search(name_re + r": error: not a regular file", out),
          f"{what}: no file:line:col refusal in the output: {out[-600:]}")
    if start_failed:  # the config itself is refused before the server starts
        check("start_failed" in out, f"{what}: no start_failed line: {out[-400:]}")
    return out


def test_policy_check_refuses_alias_bomb_quickly():
    with NodeFiles() as nf:
        p = nf.dir / "bomb.yaml"
        p.write_text(bomb())
        check(p.stat().st_size < 4096, f"the bomb is {p.stat().st_size} bytes")
        rc, out, secs, killed = bounded([BIN, "policy", "check", p], kill_after=QUICK_S + 10)
        check(not killed and secs < QUICK_S,
              f"policy check ran {secs:.1f}s{' and was killed' if killed else ''}")
        check(rc == 1, f"policy check: exit status {rc}: {out[-400:]}")
        check(re.search(r"bomb\.yaml:2:6: error: YAML anchors are not allowed", out),
              f"no anchor refusal at 2:6: {out[:600]}")
        check(re.search(r"bomb\.yaml:3:10: error: YAML aliases are not allowed", out),
              f"no alias refusal at 3:10: {out[:600]}")
        # reading stopped after a bounded number of problems
        check(len(out.splitlines()) <= 20, f"{len(out.splitlines())} lines of output")


def test_policy_check_refuses_one_alias():
    """Not only bombs: a single harmless-looking alias is refused too (every
    file is read the same way, whatever its size)."""
    with NodeFiles() as nf:
        text = POLICY.read_text()
        check("requesters:" in text, "test policy changed")
        p = nf.dir / "one.yaml"
        p.write_text("shared: &who [gemeente-groningen]\n" +
                     text.replace("requesters: [gemeente-groningen, gemeente-leeuwarden]",
                                  "requesters: *who", 1))
        rc, out, _, _ = bounded([BIN, "policy", "check", p])
        check(rc == 1 and re.search(r"one\.yaml:1:9: error: YAML anchors are not allowed", out)
              and re.search(r"one\.yaml:\d+:\d+: error: YAML aliases are not allowed", out),
              f"policy check: rc {rc}: {out[-600:]}")


def test_serve_refuses_policy_bomb_at_start():
    with NodeFiles() as nf:
        p = nf.dir / "bomb.yaml"
        p.write_text(bomb())
        gw = Gateway(config=node_config(nf, [p]), env=server_env())
        try:
            serve_expect_refusal(gw, "policy bomb at start", r"bomb\.yaml")
        finally:
            gw.cleanup()


def test_serve_refuses_anchor_in_config_members_and_catalog():
    with NodeFiles() as nf:
        # config: an anchor on an ordinary value
        gw = Gateway(config=node_config(nf, [POLICY]), env=server_env())
        try:
            text = gw.config_path.read_text()
            check("workers: 2" in text, "harness config changed")
            gw.config_path.write_text(text.replace("workers: 2", "workers: &w 2", 1))
            serve_expect_refusal(gw, "anchor in the config", r"noordpoort\.yaml",
                                 start_failed=False)
        finally:
            gw.cleanup()
        # members: an alias bomb in the members file
        gw = Gateway(config=node_config(nf, [POLICY]), env=server_env())
        try:
            m = gw.members_path.read_text()
            gw.members_path.write_text(
                "x: &x [" + ", ".join(["a"] * 10) + "]\ny: [" + ", ".join(["*x"] * 10) + "]\n" + m)
            serve_expect_refusal(gw, "alias bomb in members", r"members\.yaml")
        finally:
            gw.cleanup()
        # catalog
        cat = nf.dir / "catalog-anchor.yaml"
        text = nf.catalog.read_text()
        check("datasets:" in text, "catalog changed")
        cat.write_text(text.replace("datasets:", "datasets: &all", 1))
        gw = Gateway(config=node_config(nf, [POLICY], catalog=str(cat)), env=server_env())
        try:
            serve_expect_refusal(gw, "anchor in the catalog", r"catalog-anchor\.yaml")
        finally:
            gw.cleanup()


def test_serve_refuses_fifo_policy_without_blocking():
    """A FIFO where a policy file belongs: a blocking open would hang the
    start (and, at a reload, the main thread that also handles SIGTERM)."""
    with NodeFiles() as nf:
        p = nf.dir / "fifo.yaml"
        os.mkfifo(p)
        gw = Gateway(config=node_config(nf, [p]), env=server_env())
        try:
            serve_expect_refusal(gw, "FIFO policy at start", r"fifo\.yaml")
        finally:
            gw.cleanup()


def wait_event(gw, event, after):
    import json

    def find():
        for line in gw.log_lines()[after:]:
            try:
                o = json.loads(line)
            except ValueError:
                continue
            if isinstance(o, dict) and o.get("event") == event:
                return o
        return None
    return wait_for(find, QUICK_S, 0.05, f"log event {event}")


def test_sighup_bomb_and_fifo_keep_old_policy_and_sigterm_works():
    with NodeFiles() as nf:
        pol = nf.dir / "lookup.yaml"
        shutil.copyfile(POLICY, pol)
        bsn = read_csv(data_csv())[0]["bsn"]
        body = {"purpose": PURPOSE, "dataset": DS, "subject": {"bsn": bsn},
                "fields": ["programme"]}
        gw = Gateway(config=node_config(nf, [pol]), env=server_env(), rlimits=(
            {} if ASAN else {resource.RLIMIT_AS: (2 << 30, 2 << 30)}))
        with gw, H2Client(gw, "gemeente-groningen") as c:
            st, _, _, raw = post_json(c, "/v1/lookup", body)
            check(st == 200, f"before: {st} {raw[:200]!r}")
            for what in ("bomb", "fifo"):
                if what == "bomb":
                    tmp = nf.dir / "lookup.yaml.new"
                    tmp.write_text(bomb())
                    os.replace(tmp, pol)
                else:
                    os.unlink(pol)
                    os.mkfifo(pol)
                before = len(gw.log_lines())
                t0 = time.monotonic()
                gw.signal(signal.SIGHUP)
                ev = wait_event(gw, "policy_reload_failed", before)
                secs = time.monotonic() - t0
                msg = ev.get("message", "")
                check(secs < QUICK_S, f"{what}: reload refused after {secs:.1f}s")
                check(re.search(r"lookup\.yaml" + POS, msg) if what == "bomb"
                      else "lookup.yaml: error: not a regular file" in msg,
                      f"{what}: log line {ev}")
                st, _, _, raw = post_json(c, "/v1/lookup", body)
                check(st == 200, f"{what}: old policy not in force: {st} {raw[:200]!r}")
            t0 = time.monotonic()
            gw.signal(signal.SIGTERM)
            try:
                gw.proc.wait(timeout=QUICK_S)
            except subprocess.TimeoutExpired:
                fail("the gateway did not stop on SIGTERM after the refused reloads")
            check(time.monotonic() - t0 < QUICK_S, "slow stop")


if __name__ == "__main__":
    run(globals())
