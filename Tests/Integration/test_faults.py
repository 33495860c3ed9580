"""Faults around the server: a full disk under the audit log and under the CA directory (small
tmpfs mounts). FAILURE and no certificate delivered, no torn line in the audit log or index.txt, no
issued/ file without its index line, the server keeps serving and issues again once space returns;
a certificate stored while its audit record could not be written is recorded as withheld later."""
import json
import os
import shutil
import signal
import subprocess
import tempfile

import harness
from harness import SCEP_FCGI, run


def fill(directory):
    filler = os.path.join(directory, "filler")
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)
    return filler


def enroll(site, subject):
    work = harness.make_request(site, tempfile.mkdtemp(dir=site.root), subject=subject)
    status, _, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
    assert status == 200, status
    return harness.open_reply(work, body)


def assert_whole_lines(path):
    data = open(path, "rb").read()
    assert data == b"" or data.endswith(b"\n"), f"{path} ends in a torn line"
    return data.decode().splitlines()


def test_audit_disk_full():
    site = harness.Site("nginx")
    audit_dir = os.path.join(site.root, "auditfs")
    os.makedirs(audit_dir)
    run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", audit_dir], check=True)
    site.audit = os.path.join(audit_dir, "audit.jsonl")
    with open(site.config, "a") as f:
        f.write(f"[audit]\npath = {site.audit}\n")
    try:
        site.start()
        assert enroll(site, "CN=before-full")["status"] == "success"
        filler = fill(audit_dir)
        # The log's last page still has room for a few lines (tmpfs); the first line that does not
        # fit, whole or in part, must withhold its certificate.
        replies = []
        for i in range(16):
            replies.append(enroll(site, f"CN=while-full-{i}")["status"])
            if replies[-1] == "failure":
                break
        assert replies[-1] == "failure", "no certificate is delivered without its audit record"
        assert site.request("GET", "operation=GetCACaps")[0] == 200 and site.scep_fcgi_alive()
        lines = assert_whole_lines(site.audit)
        assert all(json.loads(line) for line in lines)
        # The certificate was stored, then withheld: marked, and noted for its late audit record.
        withheld = [f[:-9] for f in os.listdir(os.path.join(site.ca_dir, "issued")) if f.endswith(".withheld")]
        # (SERIAL.failed: its audit write failed; the note is eligible for housekeeping at once.)
        assert len(withheld) == 1 and os.listdir(os.path.join(site.ca_dir, "unaudited")) == [withheld[0] + ".failed"]
        os.unlink(filler)
        assert enroll(site, "CN=after-full")["status"] == "success"
        # Housekeeping (every minute, or at SIGHUP) writes the missing record.
        os.kill(next(p.pid for p in site.procs if p.args[0] == SCEP_FCGI), signal.SIGHUP)
        harness.wait_for(lambda: any(json.loads(l).get("serial") == withheld[0] and json.loads(l)["outcome"] == "withheld"
                                     for l in assert_whole_lines(site.audit)), "the withheld record")
        assert os.listdir(os.path.join(site.ca_dir, "unaudited")) == []
        verify = run([SCEP_FCGI, "audit", "verify", site.audit])
        assert verify.returncode == 0, verify.stdout  # the chain survived the failed writes
    finally:
        site.stop()
        run(["umount", audit_dir])


def test_ca_directory_disk_full():
    site = harness.Site("nginx")
    saved = site.ca_dir + ".saved"
    shutil.copytree(site.ca_dir, saved, symlinks=True)
    run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", site.ca_dir], check=True)
    try:
        subprocess.run(["cp", "-a", saved + "/.", site.ca_dir], check=True)
        site.start()
        assert enroll(site, "CN=ca-before-full")["status"] == "success"
        filler = fill(site.ca_dir)
        for i in range(3):
            reply = enroll(site, f"CN=ca-while-full-{i}")
            assert reply["status"] == "failure", reply
        assert site.request("GET", "operation=GetCACaps")[0] == 200 and site.scep_fcgi_alive()
        index = assert_whole_lines(os.path.join(site.ca_dir, "index.txt"))
        assert all(len(line.split("\t")) == 6 for line in index), index
        indexed = {line.split("\t")[3] for line in index}
        assert set(site.issued_serials()) == indexed, "every issued/ file has its index line"
        assert not [f for f in os.listdir(site.ca_dir) if f.startswith(".tmp-")], "no temporary file left"
        failures = [e for e in site.audit_lines() if e.get("reason") == "store-failed"]
        assert len(failures) == 3 and all("serial" not in e for e in failures)
        os.unlink(filler)
        assert enroll(site, "CN=ca-after-full")["status"] == "success"
        # openssl's own reader accepts the index after all that.
        conf = os.path.join(site.root, "openssl-ca.cnf")
        with open(conf, "w") as f:
            f.write(f"[ca]\ndefault_ca = d\n[d]\ndatabase = {site.ca_dir}/index.txt\ncertificate = {site.ca_pem}\n"
                    f"private_key = {site.ca_dir}/ca.key\ndefault_md = sha256\ndefault_crl_days = 1\ncrlnumber = {site.root}/crlnumber\n")
        open(os.path.join(site.root, "crlnumber"), "w").write("01\n")
        crl = run(["openssl", "ca", "-config", conf, "-gencrl", "-out", os.path.join(site.root, "test.crl")])
        assert crl.returncode == 0, crl.stderr
    finally:
        site.stop()
        run(["umount", site.ca_dir])
