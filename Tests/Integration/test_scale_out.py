"""Two hosts, one CA (issue 16, item 5): two nginx + scep-fcgi stacks on their own ports, each with
its own copy of the CA directory, sharing only the key material and a PostgreSQL server from
Debian started here (its own data directory and port). What one host did, the other knows."""
import concurrent.futures
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

import harness
from harness import REPO, SCEP_CLIENT, SCEP_FCGI, run
from test_lifecycle import post, query, workdir

SCRATCH = os.path.join(REPO, "scripts", "postgresql-scratch.sh")


class Database:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="scep-it-pg-")
        os.chmod(self.dir, 0o755)
        out = run([SCRATCH, "start", self.dir])
        assert out.returncode == 0, out.stdout + out.stderr
        self.port = open(os.path.join(self.dir, "port")).read().strip()
        password = open(os.path.join(self.dir, "password")).read().strip()
        harness.register_secret(password)
        # Over TCP with the password, as a deployment would: the DSN lives in a 0600 file.
        self.dsn_file = os.path.join(self.dir, "dsn")
        with open(self.dsn_file, "w") as f:
            f.write(f"host=127.0.0.1 port={self.port} user=scep password={password} dbname=scep connect_timeout=3\n")
        os.chmod(self.dsn_file, 0o600)

    def psql(self, sql):
        out = run(["psql", "-At", "-h", self.dir, "-p", self.port, "-U", "scep", "-d", "scep", "-c", sql])
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def stop(self):
        run([SCRATCH, "stop", self.dir])

    def start(self):
        bin_dir = sorted(d for d in os.listdir("/usr/lib/postgresql"))[-1]
        out = run(["runuser", "-u", "postgres", "--", f"/usr/lib/postgresql/{bin_dir}/bin/pg_ctl", "-D", os.path.join(self.dir, "data"),
                   "-l", os.path.join(self.dir, "server.log"), "-w", "-o",
                   f"-k {self.dir} -p {self.port} -c listen_addresses=127.0.0.1 -c max_connections=200", "start"])
        assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture(scope="module")
def db():
    database = Database()
    yield database
    database.stop()
    shutil.rmtree(database.dir, ignore_errors=True)


def two_hosts(db, extra="", challenge_section=None):
    """Two sites (not started) on the PostgreSQL store: host B gets the CA's key material as a copy
    of host A's CA directory, and nothing else is shared but the database."""
    extra = f"[store]\nbackend = postgresql\npostgresql_dsn_file = {db.dsn_file}\n" + extra
    a = harness.Site("nginx", challenge_section=challenge_section, extra=extra)
    b = harness.Site("nginx", challenge_section=challenge_section, extra=extra)
    shutil.rmtree(b.ca_dir)
    shutil.copytree(a.ca_dir, b.ca_dir)
    return a, b


@pytest.fixture(scope="module")
def hosts(db):
    a, b = two_hosts(db, extra="[ocsp]\npath = /ocsp\n")
    out = run([SCEP_FCGI, "store", "migrate", "--config", a.config])
    assert out.returncode == 0 and "applied schema version" in out.stdout, out.stdout + out.stderr
    # A second migration (host B's, or a re-run) changes nothing.
    out = run([SCEP_FCGI, "store", "migrate", "--config", b.config])
    assert out.returncode == 0 and "already at version" in out.stdout, out.stdout + out.stderr
    a.start()
    b.start()
    yield a, b
    a.stop()
    b.stop()


def enroll(site, name, subject=None):
    work = harness.make_request(site, workdir(site, name), subject=subject or f"CN={name},O=Scale Out")
    return work, post(site, work)


def test_retry_on_the_other_host_replays_the_certificate(hosts, db):
    a, b = hosts
    work, first = enroll(a, "retry")
    assert first["status"] == "success"
    # The client's retry of the very same PKCSReq lands on host B: the same certificate, no new issuance.
    again = post(b, work)
    assert again["status"] == "success" and again["serial"] == first["serial"]
    assert first["transactionID"] == again["transactionID"]
    b_lines = [l for l in b.audit_lines() if l.get("transactionID") == first["transactionID"]]
    assert [l["outcome"] for l in b_lines] == ["delivered"], b_lines
    assert "challengeMode" not in b_lines[0] and "validatorCalls" not in b_lines[0]
    assert db.psql(f"SELECT count(*) FROM scep_certificates WHERE subject = '/O=Scale Out/CN=retry'") == "1"


def test_getcert_and_certpoll_on_the_other_host(hosts):
    a, b = hosts
    work, issued = enroll(a, "fetched")
    got = query(b, workdir(b, "getcert"), "getcert", serial=issued["serial"])
    assert got["status"] == "success" and got["serial"] == issued["serial"]
    tid = next(l["transactionID"] for l in a.audit_lines() if l.get("serial") == issued["serial"] and l.get("outcome") == "issued")
    polled = query(b, workdir(b, "certpoll"), "certpoll", subject="CN=fetched,O=Scale Out", transaction_id=tid)
    assert polled["status"] == "success" and polled["serial"] == issued["serial"]


def test_revocation_on_one_host_is_in_the_others_crl_and_ocsp(hosts, db):
    a, b = hosts
    work, issued = enroll(b, "revoked")
    a.ca("revoke", issued["serial"], "--reason", "keyCompromise")
    # Host A signed a CRL with the revocation and the database keeps it; host B's GetCRL finds its
    # own CRL older than the revocation and serves host A's, without signing one of its own.
    q = workdir(b, "getcrl")
    out = run([SCEP_CLIENT, "query", "--kind", "getcrl", "--ca", b.ca_pem, "--serial", issued["serial"], "--out-dir", q])
    assert out.returncode == 0, out.stderr
    status, _, body = b.request("POST", "operation=PKIOperation", open(os.path.join(q, "request.der"), "rb").read())
    assert status == 200
    with open(os.path.join(q, "reply.der"), "wb") as f:
        f.write(body)
    crl_der = os.path.join(q, "crl.der")
    out = run([SCEP_CLIENT, "certrep", "--reply", os.path.join(q, "reply.der"), "--request-dir", q, "--crl-out", crl_der])
    assert out.returncode == 0 and '"status": "success"' in out.stdout, out.stdout + out.stderr
    text = run(["openssl", "crl", "-inform", "DER", "-in", crl_der, "-noout", "-text"]).stdout
    assert issued["serial"] in text.replace(":", "").upper() and "Key Compromise" in text, text
    signed_by_a = open(os.path.join(a.ca_dir, "crl", "ca.crl"), "rb").read()
    assert open(crl_der, "rb").read() == signed_by_a, "host B serves the CRL host A signed"
    assert open(os.path.join(b.ca_dir, "crl", "ca.crl"), "rb").read() == signed_by_a
    number = run(["openssl", "crl", "-inform", "DER", "-in", crl_der, "-noout", "-crlnumber"]).stdout.strip().split("=")[1]
    assert db.psql("SELECT number FROM scep_crls") == str(int(number, 16))
    out = run(["openssl", "ocsp", "-url", f"http://127.0.0.1:{b.port}/ocsp", "-issuer", b.ca_pem, "-cert", os.path.join(work, "cert.pem"),
               "-CAfile", b.ca_pem])
    assert ": revoked" in out.stdout and "Response verify OK" in out.stdout + out.stderr, out.stdout + out.stderr


def test_crl_numbers_do_not_fork(hosts):
    a, b = hosts
    numbers = []
    for site in [a, b, a, b]:
        out = site.ca("crl")
        numbers.append(int(out.stdout.split(" number ")[1].split()[0], 16))
    assert numbers == sorted(numbers) and len(set(numbers)) == 4, numbers


def prebuild(site, name, keys, rounds):
    """KEYS prebuilt PKCSReqs in each of ROUNDS directories (round-N): the same keys, a fresh
    transactionID each round, so each round is issued anew for a fraction of the key generation."""
    reqs = workdir(site, name)
    challenge = os.path.join(reqs, "challenge")
    with open(challenge, "w") as f:
        f.write(harness.CHALLENGE)
    out = subprocess.run([SCEP_CLIENT, "prebuild", "--ca", site.ca_pem, "--challenge-file", challenge, "--count", str(keys),
                          "--rounds", str(rounds), "--out-dir", reqs], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    return reqs


def test_4000_enrollments_at_concurrency_64_over_both_hosts(hosts, db):
    a, b = hosts
    # 1,000 keys in four rounds: 4,000 PKCSReqs. Rounds 0-1 go to host A, 2-3 to host B.
    reqs = prebuild(a, "load", 1000, 4)
    halves = [os.path.join(reqs, "a"), os.path.join(reqs, "b")]
    for half, rounds in zip(halves, [(0, 1), (2, 3)]):
        os.makedirs(half)
        for r in rounds:
            source = os.path.join(reqs, f"round-{r}")
            for name in os.listdir(source):
                os.rename(os.path.join(source, name), os.path.join(half, f"r{r}-{name}"))
    before = {s: len([l for l in s.audit_lines() if l.get("outcome") == "issued"]) for s in (a, b)}

    def load(site, directory):
        out = run([SCEP_CLIENT, "load", "--url", site.url, "--requests-dir", directory, "--concurrency", "32"])
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(load, [a, b], halves))
    assert [r["failures"] for r in results] == [0, 0], results
    assert sum(r["unique_serials"] for r in results) == 4000
    # Every certificate in exactly one host's audit log, and in the database.
    issued = [l["serial"] for s in (a, b) for l in s.audit_lines() if l.get("outcome") == "issued"]
    assert len(issued) == len(set(issued)) == sum(before.values()) + 4000
    in_db = set(db.psql("SELECT serial FROM scep_certificates").split())
    assert set(issued) <= in_db
    assert db.psql("SELECT count(*) FROM scep_certificates WHERE audit_pending") == "0"


def test_database_down_is_a_failure_and_nothing_is_issued_then_recovery(hosts, db):
    a, b = hosts
    count = db.psql("SELECT count(*) FROM scep_certificates")
    db.stop()
    try:
        work = harness.make_request(a, workdir(a, "down"), subject="CN=down,O=Scale Out")
        status, ctype, body = a.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
        assert status == 200, (status, body[:200])
        rep = harness.open_reply(work, body)
        assert rep["status"] == "failure", rep
        # What needs no database still answers.
        status, _, _ = b.request("GET", "operation=GetCACert")
        assert status == 200
        status, _, body = b.request("GET", "operation=GetCACaps")
        assert status == 200
        line = a.audit_lines()[-1]
        assert line["outcome"] == "failed" and line["reason"] == "store-failed", line
    finally:
        db.start()
    assert db.psql("SELECT count(*) FROM scep_certificates") == count
    # Back: the same request (a client's retry) is issued now, by either host.
    rep = post(b, work)
    assert rep["status"] == "success"


def test_database_restart_under_load(hosts, db):
    """Enrollments keep coming while the database stops for a moment and comes back: each one
    succeeds or gets a signed FAILURE; no certificate is lost, none is issued twice, every one
    the database holds is audited on one host, and the hosts go on issuing afterwards."""
    a, b = hosts
    reqs = prebuild(a, "restart", 150, 2)
    before = set(db.psql("SELECT serial FROM scep_certificates").split())

    def load(site, directory):
        out = run([SCEP_CLIENT, "load", "--url", site.url, "--requests-dir", directory, "--concurrency", "4"], timeout=300)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        runs = [pool.submit(load, a, os.path.join(reqs, "round-0")), pool.submit(load, b, os.path.join(reqs, "round-1"))]
        time.sleep(0.5)
        db.stop()
        time.sleep(1.0)
        db.start()
        results = [r.result() for r in runs]
    # Every reply was a verified CertRep: SUCCESS, or a FAILURE for what the database could not do.
    for r in results:
        assert set(r["failure_reasons"]) <= {"reply not a SUCCESS for this request"}, r
    assert sum(r["failures"] for r in results) > 0, "the database restart went unnoticed: the test proves nothing"
    # Every certificate the database took is in one host's audit log, issued or withheld.
    new = set(db.psql("SELECT serial FROM scep_certificates").split()) - before
    audited = {}
    for site in (a, b):
        for line in site.audit_lines():
            if line.get("serial") in new and line.get("outcome") in ("issued", "withheld"):
                audited.setdefault(line["serial"], []).append(line["outcome"])
    assert set(audited) == new, f"{len(new - set(audited))} certificates in the database without an audit line"
    assert sum(r["unique_serials"] for r in results) == sum(1 for o in audited.values() if "issued" in o)
    # And both hosts issue again.
    for site, name in [(a, "after-a"), (b, "after-b")]:
        _, rep = enroll(site, name)
        assert rep["status"] == "success"


def test_store_import_moves_a_file_store_over_and_is_safe_to_rerun(db):
    """`store import --from-dir`: a CA that served from its directory moves to the database with
    its certificates, revocations and CRL numbers; a second run adds nothing; the server then
    serves what was imported from the database."""
    c = harness.Site("nginx")
    c.start()
    try:
        serials = [enroll(c, f"imported-{i}", subject=f"CN=imported-{i},O=Import")[1]["serial"] for i in range(3)]
        assert c.ca("revoke", serials[0], "--reason", "superseded").returncode == 0
        out = c.ca("crl")
        file_number = int(out.stdout.split(" number ")[1].split()[0], 16)
    finally:
        c.stop()
    with open(c.config, "a") as f:
        f.write(f"[store]\nbackend = postgresql\npostgresql_dsn_file = {db.dsn_file}\n")
    out = run([SCEP_FCGI, "store", "migrate", "--config", c.config])
    assert out.returncode == 0, out.stdout + out.stderr
    first = run([SCEP_FCGI, "store", "import", "--config", c.config, "--from-dir", c.ca_dir])
    assert first.returncode == 0 and "imported 3 new of 3 certificates" in first.stdout, first.stdout + first.stderr
    again = run([SCEP_FCGI, "store", "import", "--config", c.config, "--from-dir", c.ca_dir])
    assert again.returncode == 0 and "imported 0 new of 3 certificates" in again.stdout, again.stdout + again.stderr
    assert db.psql("SELECT count(*) FROM scep_certificates WHERE subject LIKE '%O=Import%'") == "3"

    c.start()
    try:
        # Served from the database: GetCert finds an imported certificate.
        got = query(c, workdir(c, "getcert-imported"), "getcert", serial=serials[1])
        assert got["status"] == "success" and got["serial"] == serials[1]
        # The revocation came over, and the CRL numbers go on after the directory's.
        out = c.ca("crl")
        assert out.returncode == 0, out.stderr
        assert int(out.stdout.split(" number ")[1].split()[0], 16) > file_number, out.stdout
        text = run(["openssl", "crl", "-in", os.path.join(c.ca_dir, "crl", "ca.crl.pem"), "-noout", "-text"]).stdout
        assert serials[0] in text.replace(":", "").upper() and serials[1] not in text.replace(":", "").upper(), text
        # And it goes on issuing, into the database.
        _, issued = enroll(c, "after-import", subject="CN=after-import,O=Import")
        assert issued["status"] == "success"
        assert db.psql("SELECT count(*) FROM scep_certificates WHERE subject LIKE '%O=Import%'") == "4"
    finally:
        c.stop()


def test_intune_retry_on_the_other_host_makes_no_second_intune_call(db):
    """With Intune validating (the local mock of Entra, Graph and ScepActions), a PKCSReq retried on
    the other host is answered from the database: one validateRequest and one successNotification
    in all, whichever host the retry reaches."""
    from test_intune import Mock, intune_section
    root = tempfile.mkdtemp(prefix="scep-it-scale-intune-")
    os.chmod(root, 0o755)
    mock = Mock(root)
    a, b = two_hosts(db, challenge_section=intune_section(mock))
    assert run([SCEP_FCGI, "store", "migrate", "--config", a.config]).returncode == 0
    a.start()
    b.start()
    try:
        mock.reset()
        work = harness.make_request(a, workdir(a, "intune-retry"), subject="CN=intune-retry,O=Scale Out", challenge="ok-scale-out")
        first = post(a, work)
        assert first["status"] == "success", first
        again = post(b, work)
        assert again["status"] == "success" and again["serial"] == first["serial"], again
        calls = [r["op"] for r in mock.state()["requests"] if r["op"] in ("validateRequest", "successNotification", "failureNotification")]
        assert calls == ["validateRequest", "successNotification"], calls
        [replayed] = [l for l in b.audit_lines() if l.get("transactionID") == first["transactionID"]]
        assert replayed["outcome"] == "delivered" and "validatorCalls" not in replayed, replayed
    finally:
        a.stop()
        b.stop()
        mock.stop()


def test_approval_on_one_host_is_delivered_by_the_other(db):
    """issue.approval = manual on two hosts: a request held by host A is listed and approved with
    host B's `ca` commands, and host A then answers the client's CertPoll and its retransmission
    with the approved certificate (the pending request and its approval live in the database)."""
    a, b = two_hosts(db, extra="[issue]\napproval = manual\n")
    assert run([SCEP_FCGI, "store", "migrate", "--config", a.config]).returncode == 0
    a.start()
    b.start()
    try:
        tid = "scale-out-approval-tid"
        work = harness.make_request(a, workdir(a, "approval"), subject="CN=approved-elsewhere,O=Scale Out", transaction_id=tid)
        assert post(a, work)["status"] == "pending"
        listed = [json.loads(line) for line in b.ca("pending", "--json").stdout.splitlines()]
        assert [p["subject"] for p in listed if p["transactionID"] == tid] == ["CN=approved-elsewhere,O=Scale Out"], listed
        out = b.ca("approve", tid)
        assert out.returncode == 0 and "issued" in out.stdout, out.stdout + out.stderr
        serial = out.stdout.split()[1]
        polled = query(a, workdir(a, "approval-poll"), "certpoll", subject="CN=approved-elsewhere,O=Scale Out", transaction_id=tid)
        assert polled["status"] == "success" and polled["serial"] == serial, polled
        again = post(a, work)
        assert again["status"] == "success" and again["serial"] == serial
        assert not [l for l in b.ca("pending", "--json").stdout.splitlines() if tid in l]
        assert [l["outcome"] for l in a.audit_lines() if l.get("transactionID") == tid] == ["pending", "delivered", "delivered"]
        assert [l["outcome"] for l in b.audit_lines() if l.get("transactionID") == tid] == ["approved"]
    finally:
        a.stop()
        b.stop()
