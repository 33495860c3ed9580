"""Audit log rotation with the real logrotate and the shipped snippet: no line lost, none twice,
the server keeps serving; SIGHUP never stops it; a deleted audit file is noticed."""
import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import harness
from harness import REPO, run

SNIPPET = os.path.join(REPO, "packaging", "logrotate", "scep-fcgi")


def enroll(site, n, tag):
    for i in range(n):
        work = harness.make_request(site, tempfile.mkdtemp(dir=site.root), subject=f"CN={tag}-{i}")
        status, _, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
        assert status == 200 and harness.open_reply(work, body)["status"] == "success"


def all_lines(site):
    """Every audit line in the live file and its rotated siblings."""
    lines = []
    for path in sorted(glob.glob(site.audit + "*")):
        with open(path) as f:
            lines += [json.loads(line) for line in f if line.strip()]
    return lines


def logrotate(site, variant):
    """The shipped snippet with only the site's constants replaced: the log path and the user that
    owns the log directory (the package's scep-fcgi user does not exist on the test machine)."""
    text = open(SNIPPET).read().replace("/var/log/scep-fcgi/audit.jsonl", site.audit).replace("su scep-fcgi adm", "su root root")
    if variant == "copytruncate":
        text = text.replace("    create 0640\n", "    copytruncate\n")
    conf = os.path.join(site.root, f"logrotate-{variant}.conf")
    open(conf, "w").write(text)
    out = run(["logrotate", "-f", "-v", "-s", os.path.join(site.root, "logrotate.state"), conf])
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def server_pid(site):
    return next(p.pid for p in site.procs if p.args[0] == harness.SCEP_FCGI)


def check_rotation(variant):
    site = harness.Site("nginx").start()
    try:
        enroll(site, 3, "before")
        before = len(all_lines(site))
        logrotate(site, variant)
        rotated = [p for p in glob.glob(site.audit + "*") if p != site.audit]
        assert rotated, "logrotate produced no rotated file"
        enroll(site, 3, "after")
        lines = all_lines(site)
        ids = [e["requestID"] for e in lines]
        assert len(ids) == len(set(ids)), "a line was written twice"
        assert len(lines) == before + 3, "a line was lost"  # one POST, one line, per enrollment
        with open(site.audit) as f:
            live = [json.loads(line) for line in f if line.strip()]
        assert [e["subject"] for e in live if e.get("outcome") == "issued"] == [f"CN=after-{i}" for i in range(3)]
        assert site.scep_fcgi_alive()
        # The prev chain runs on from the rotated file into the new one, from the log's first line.
        verify = run([harness.SCEP_FCGI, "audit", "verify", *sorted(rotated), site.audit])
        assert verify.returncode == 0 and "chained from the log's first line" in verify.stdout, verify.stdout + verify.stderr
        alone = run([harness.SCEP_FCGI, "audit", "verify", site.audit])
        assert alone.returncode == 0 and "(an earlier file)" in alone.stdout
    finally:
        site.stop()


def test_logrotate_create_and_postrotate():
    check_rotation("create")


def test_logrotate_copytruncate():
    check_rotation("copytruncate")


def test_sighup_and_sigusr1_reopen_and_keep_serving():
    site = harness.Site("nginx").start()
    try:
        pid = server_pid(site)
        os.rename(site.audit, site.audit + ".old")
        open(site.audit, "w").close()
        os.kill(pid, signal.SIGHUP)
        os.kill(pid, signal.SIGUSR1)
        time.sleep(0.3)
        assert site.scep_fcgi_alive()
        enroll(site, 1, "after-hup")
        assert any(e.get("subject") == "CN=after-hup-0" for e in (json.loads(l) for l in open(site.audit)))
        assert "reopened the audit log" in open(os.path.join(site.log_dir, "scep-fcgi.log")).read()
    finally:
        site.stop()


def test_a_deleted_audit_file_is_recreated():
    site = harness.Site("nginx").start()
    try:
        enroll(site, 1, "first")
        os.remove(site.audit)
        enroll(site, 1, "second")
        with open(site.audit) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        assert [e["subject"] for e in lines] == ["CN=second-0"]
        assert "was deleted while open" in open(os.path.join(site.log_dir, "scep-fcgi.log")).read()
    finally:
        site.stop()


def test_journal_priorities_when_stderr_is_the_journal():
    """With JOURNAL_STREAM naming its stderr (as systemd sets it), lines carry <N> priorities."""
    site = harness.Site("nginx")
    try:
        log = os.path.join(site.log_dir, "journal.log")
        open(log, "w").close()
        info = os.stat(log)
        env = dict(os.environ, JOURNAL_STREAM=f"{info.st_dev}:{info.st_ino}")
        with open(log, "a") as out:
            proc = subprocess.Popen([harness.SCEP_FCGI, "serve", "--config", site.config], stdout=out, stderr=out, env=env,
                                    start_new_session=True)
        site.procs.append(proc)
        harness.wait_for(lambda: os.path.exists(site.socket), "scep-fcgi socket")
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        lines = open(log).read().splitlines()
        assert lines and all(line.startswith(("<3>", "<4>", "<5>", "<6>")) for line in lines), lines
        assert any(line.startswith("<5>notice: scep-fcgi") for line in lines)
    finally:
        site.stop()
