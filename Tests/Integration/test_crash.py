"""kill -9 of serving processes in the middle of a load, repeated: no torn audit line, and after a
restart every issued/ file has its index line, every stored certificate is in the audit log
(certificates a dead process stored without auditing are recorded as withheld, never delivered as
new), no temporary file is left, and clients that retry get a fresh answer."""
import concurrent.futures
import json
import os
import random
import signal
import tempfile
import threading
import time

import harness
from harness import SCEP_FCGI, run


def test_kill_9_under_load_loses_nothing():
    # Intune mode, with a successNotification that takes 300 ms: most of each enrollment is spent
    # with its certificate stored but not yet audited, the window a crash must not lose.
    from test_intune import Mock, intune_section
    root = tempfile.mkdtemp(prefix="scep-it-crash-")
    os.chmod(root, 0o755)
    mock = Mock(root)
    site = harness.Site("nginx", challenge_section=intune_section(mock, timeout_seconds="5"))
    site.start_two_processes()
    second = os.path.join(site.root, "scep2.sock")
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        works = list(pool.map(lambda i: harness.make_request(site, tempfile.mkdtemp(dir=site.root), subject=f"CN=crash-{i}",
                                                             challenge=f"notifyslow-300-{i}"), range(120)))
    replies, lock, stop = {}, threading.Lock(), threading.Event()

    def load(chunk):
        for work in chunk:
            if stop.is_set():
                return
            body = open(os.path.join(work, "request.der"), "rb").read()
            try:
                status, _, data = site.request("POST", "operation=PKIOperation", body)
                reply = harness.open_reply(work, data)["status"] if status == 200 else f"http {status}"
            except Exception as error:  # the connection died with the process
                reply = f"error {type(error).__name__}"
            with lock:
                replies[work] = reply

    threads = [threading.Thread(target=load, args=(works[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    try:
        rng = random.Random(8)
        for round_ in range(10):
            time.sleep(rng.uniform(0.3, 0.8))
            victim = [p for p in site.procs if p.args[0] == SCEP_FCGI][round_ % 2]
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
            site.procs.remove(victim)
            site.start_scep_fcgi(site.socket if round_ % 2 == 0 else second, f"scep-fcgi-restart-{round_}.log")
        for t in threads:
            t.join(timeout=120)
    finally:
        stop.set()
    succeeded = [w for w, r in replies.items() if r == "success"]
    print("replies:", sorted(__import__("collections").Counter(replies.values()).items()))
    assert len(succeeded) > 30, replies

    # A restart reconciles what the killed processes left (housekeeping runs at start).
    site.stop()
    site.start_two_processes()
    harness.wait_for(lambda: not os.listdir(os.path.join(site.ca_dir, "unaudited")), "the unaudited notes to be recorded")

    data = open(site.audit, "rb").read()
    assert data.endswith(b"\n")
    events = [json.loads(line) for line in data.decode().splitlines()]
    verify = run([SCEP_FCGI, "audit", "verify", site.audit])
    assert verify.returncode == 0, verify.stdout
    issued_files = set(site.issued_serials())
    indexed = {row[3] for row in site.index_lines()}
    assert issued_files == indexed, "every issued/ file has its index line and every line its file"
    audited = {e["serial"] for e in events if e.get("serial") and e["outcome"] in ("issued", "withheld", "delivered")}
    assert indexed <= audited, f"stored but never audited: {sorted(indexed - audited)}"
    delivered = {e["serial"] for e in events if e["outcome"] == "issued"}
    for work in succeeded:
        assert harness.cert_serial(os.path.join(work, "cert.pem")) in delivered
    recovered = [e for e in events if e.get("reason") == "crash-recovered"]
    print("crash-recovered:", len(recovered), "audit lines:", len(events))
    for e in recovered:  # withheld, so never handed out later as if new
        assert os.path.exists(os.path.join(site.ca_dir, "issued", e["serial"] + ".withheld"))
    # Housekeeping at start removes what the killed writers left (it runs after the notes are recorded).
    def leftovers():
        return [os.path.join(d, f) for d, _, fs in os.walk(site.ca_dir) for f in fs if ".tmp-" in f]
    harness.wait_for(lambda: not leftovers(), "the temporary files of killed writers to be removed")

    # A client whose request died retries: a fresh answer.
    lost = [w for w, r in replies.items() if r != "success"][:5]
    for work in lost:
        status, _, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
        assert status == 200 and harness.open_reply(work, body)["status"] == "success"
    site.stop()
    mock.stop()
