"""The certificate lifecycle through nginx and the running server: retransmission, renewal,
polling after manual approval, GetCert/GetCRL, revocation and published CRLs, rollover, RA mode.
Real clients where they can do it (scepclient, certmonger, PyScep), our scep-client for the rest."""
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import harness
from harness import CHALLENGE, CLIENTS, SCEP_CLIENT, run


def workdir(site, name):
    d = tempfile.mkdtemp(prefix=name + "-", dir=site.root)
    os.chmod(d, 0o755)
    return d


def post(site, work):
    status, ctype, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
    assert status == 200 and ctype == "application/x-pki-message", (status, body[:200])
    return harness.open_reply(work, body)


def query(site, work, kind, **options):
    argv = [SCEP_CLIENT, "query", "--kind", kind, "--ca", options.pop("ca", site.ca_pem), "--out-dir", work]
    for key, value in options.items():
        argv += ["--" + key.replace("_", "-"), str(value)]
    out = run(argv)
    assert out.returncode == 0, out.stderr
    return post(site, work)


def pyscep(*args):
    out = subprocess.run(["python3", "-W", "ignore", os.path.join(CLIENTS, "pyscep_lifecycle.py"), *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def scepclient(site, work, cn, challenge=CHALLENGE):
    cmd = ["scepclient", "-server-url", site.url, "-cn", cn, "-private-key", "client.key", "-certificate", "client.pem"]
    if challenge is not None:
        cmd += ["-challenge", challenge]
    out = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=60)
    return out.stdout + out.stderr


def make_site(extra="", kind="nginx"):
    return harness.Site(kind, extra=extra).start()


@pytest.fixture(scope="module")
def lsite():
    s = make_site("[issue]\ncrl_url = http://127.0.0.1/crl/ca.crl\naia_url = http://127.0.0.1/crl/ca.cer\n")
    yield s
    s.stop()


# -- retransmission (RFC 8894 §3.3.3) --------------------------------------------------------------

def test_retransmission_returns_the_same_certificate_once(lsite):
    work = harness.make_request(lsite, workdir(lsite, "replay"), subject="CN=replay-1", transaction_id="replay-tid-1")
    first = post(lsite, work)
    # The same transactionID and key, a new message (new nonce, new envelope): what a client whose
    # reply was lost sends again.
    again = harness.make_request(lsite, workdir(lsite, "replay2"), subject="CN=replay-1", transaction_id="replay-tid-1",
                                 key=os.path.join(work, "key.pem"))
    second = post(lsite, again)
    assert first["status"] == second["status"] == "success" and first["serial"] == second["serial"]
    lines = [e for e in lsite.audit_lines() if e.get("transactionID") == "replay-tid-1"]
    assert [e["outcome"] for e in lines] == ["issued", "delivered"]
    assert lsite.issued_serials().count(first["serial"]) == 1
    # Another key under the same transactionID is refused.
    other = harness.make_request(lsite, workdir(lsite, "replay3"), subject="CN=replay-1", transaction_id="replay-tid-1")
    rep = post(lsite, other)
    assert rep["status"] == "failure" and rep["failInfo"] == "badRequest"
    assert lsite.audit_lines()[-1]["reason"] == "transaction-key-mismatch"


def test_retransmissions_across_two_processes_issue_once():
    site = harness.Site("nginx")
    try:
        site.start_two_processes()
        base = harness.make_request(site, workdir(site, "multi"), subject="CN=multi", transaction_id="multi-tid")
        works = [base] + [harness.make_request(site, workdir(site, f"multi{i}"), subject="CN=multi", transaction_id="multi-tid",
                                               key=os.path.join(base, "key.pem")) for i in range(7)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            replies = list(pool.map(lambda w: post(site, w), works))
        # Each is SUCCESS with the one certificate, or PENDING while another process held the claim.
        assert all(r["status"] in ("success", "pending") for r in replies), replies
        serials = {r["serial"] for r in replies if r["status"] == "success"}
        assert len(serials) == 1 and site.issued_serials() == sorted(serials)
        issued = [e for e in site.audit_lines() if e["outcome"] == "issued"]
        assert len(issued) == 1
        # Once settled, a retry anywhere gets the certificate.
        retry = harness.make_request(site, workdir(site, "multi-retry"), subject="CN=multi", transaction_id="multi-tid",
                                     key=os.path.join(base, "key.pem"))
        assert post(site, retry)["serial"] in serials
    finally:
        site.stop()


# -- renewal (RFC 8894 §3.3.1.2) ------------------------------------------------------------------

def test_scepclient_renews_with_renewalreq(lsite):
    work = workdir(lsite, "sc-renew")
    assert "pkiStatus=SUCCESS" in scepclient(lsite, work, "renew-me")
    old = harness.cert_serial(os.path.join(work, "client.pem"))
    # With its certificate and key present, scepclient sends a RenewalReq signed by them, no challenge.
    out = scepclient(lsite, work, "renew-me", challenge=None)
    assert "pkiStatus=SUCCESS" in out, out
    new = harness.cert_serial(os.path.join(work, "client.pem"))
    assert new != old and harness.openssl_verify(lsite.ca_pem, os.path.join(work, "client.pem"))
    event = [e for e in lsite.audit_lines() if e.get("serial") == new][0]
    assert event["messageType"] == "RenewalReq" and event["renews"] == old and event["challengeMode"] == "renewal"


def test_certmonger_renews_with_the_old_certificate(lsite):
    work = workdir(lsite, "cm-renew")
    out = subprocess.run([os.path.join(CLIENTS, "certmonger_enroll.sh"), lsite.url, CHALLENGE, "cm-renew", work, lsite.ca_pem, "renew"],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr + open(os.path.join(work, "daemon.log")).read()[-3000:]
    first = harness.cert_serial(os.path.join(work, "cert-first.pem"))
    renewed = harness.cert_serial(os.path.join(work, "cert.pem"))
    assert first != renewed
    event = [e for e in lsite.audit_lines() if e.get("serial") == renewed][0]
    # certmonger renews with a PKCSReq signed by the old certificate when GetCACaps lists Renewal.
    assert event["outcome"] == "issued" and event["renews"] == first and event["messageType"] == "PKCSReq"


def test_renewal_refusals_through_the_server(lsite):
    work = harness.make_request(lsite, workdir(lsite, "rr"), subject="CN=renew-rules", san=["DNS:a.example"])
    rep = post(lsite, work)
    old_cert, old_key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    def renew(name, **options):
        w = harness.make_request(lsite, workdir(lsite, name), challenge=None, message_type=17, signer_cert=old_cert,
                                 signer_key=old_key, **options)
        return post(lsite, w), lsite.audit_lines()[-1]
    r, e = renew("rr-subject", subject="CN=someone-else")
    assert r["failInfo"] == "badRequest" and e["reason"] == "renewal-subject-changed"
    r, e = renew("rr-sans", subject="CN=renew-rules", san=["DNS:a.example", "DNS:b.example"])
    assert r["failInfo"] == "badRequest" and e["reason"] == "renewal-names-widened"
    r, e = renew("rr-ok", subject="CN=renew-rules", san=["DNS:a.example"])
    assert r["status"] == "success" and e["renews"] == rep["serial"]
    lsite.ca("revoke", rep["serial"], "--reason", "superseded")
    r, e = renew("rr-revoked", subject="CN=renew-rules")
    assert r["failInfo"] == "badRequest" and e["reason"] == "renewal-signer-revoked"


# -- GetCert, GetCRL, revocation, published CRL ----------------------------------------------------

def test_pyscep_get_cert_and_get_crl_after_revocation(lsite):
    got = pyscep("enrol-getcert-getcrl", lsite.url, CHALLENGE, "pyscep-lifecycle", workdir(lsite, "py-gc"))
    assert got["status"] == "SUCCESS" and got["getcert_serial"] == got["serial"]
    assert got["serial"] not in got["crl_serials_before"]
    out = lsite.ca("revoke", got["serial"].lower(), "--reason", "keyCompromise")
    assert f"revoked {got['serial']}" in out.stdout
    after = pyscep("getcrl", lsite.url, got["workdir"], got["serial"])
    assert got["serial"] in after["crl_serials"]
    listed = [json.loads(line) for line in lsite.ca("list", "--status", "revoked", "--json").stdout.splitlines()]
    assert any(e["serial"] == got["serial"] and e["reason"] == "keyCompromise" for e in listed)


def test_published_crl_and_distribution_point(lsite):
    work = harness.make_request(lsite, workdir(lsite, "cdp"), subject="CN=cdp-device")
    rep = post(lsite, work)
    cert = os.path.join(work, "cert.pem")
    text = run(["openssl", "x509", "-in", cert, "-noout", "-text"]).stdout
    assert "URI:http://127.0.0.1/crl/ca.crl" in text and "CA Issuers - URI:http://127.0.0.1/crl/ca.cer" in text
    lsite.ca("revoke", rep["serial"], "--reason", "cessationOfOperation")
    status, ctype, crl = lsite.get("/crl/ca.crl")
    assert status == 200 and ctype == "application/pkix-crl"
    crl_file = os.path.join(work, "ca.crl")
    open(crl_file, "wb").write(crl)
    out = run(["openssl", "crl", "-inform", "DER", "-in", crl_file, "-CAfile", lsite.ca_pem, "-noout", "-text"])
    assert "verify OK" in out.stdout + out.stderr and rep["serial"] in out.stdout.replace(":", "").upper()
    assert "X509v3 CRL Number" in out.stdout and "Cessation Of Operation" in out.stdout
    pem = os.path.join(work, "crl.pem")
    run(["openssl", "crl", "-inform", "DER", "-in", crl_file, "-out", pem])
    chain = os.path.join(work, "chain+crl.pem")
    open(chain, "w").write(open(lsite.ca_pem).read() + open(pem).read())
    verify = run(["openssl", "verify", "-crl_check", "-CAfile", chain, cert])
    assert verify.returncode != 0 and "certificate revoked" in verify.stdout + verify.stderr
    status, ctype, der = lsite.get("/crl/ca.cer")
    assert status == 200 and ctype == "application/pkix-cert"
    assert der == subprocess.run(["openssl", "x509", "-in", lsite.ca_pem, "-outform", "DER"], capture_output=True).stdout


def test_openssl_ca_reads_the_index(lsite):
    """index.txt stays an OpenSSL `ca` database: `openssl ca -gencrl` lists our revocations."""
    work = workdir(lsite, "openssl-ca")
    conf = os.path.join(work, "ca.cnf")
    open(conf, "w").write(f"""[ca]
default_ca = scep
[scep]
database = {lsite.ca_dir}/index.txt
certificate = {lsite.ca_pem}
private_key = {lsite.ca_dir}/ca.key
default_md = sha256
default_crl_days = 1
""")
    out = run(["openssl", "ca", "-config", conf, "-gencrl", "-out", os.path.join(work, "crl.pem")])
    assert out.returncode == 0, out.stderr
    text = run(["openssl", "crl", "-in", os.path.join(work, "crl.pem"), "-noout", "-text"]).stdout
    revoked = [row[3] for row in lsite.index_lines() if row[0] == "R"]
    assert revoked and all(serial in text.replace(":", "").upper() for serial in revoked)


def test_getcert_getcrl_unknown_is_badcertid(lsite):
    rep = query(lsite, workdir(lsite, "gc-unknown"), "getcert", serial="0102030405")
    assert rep["status"] == "failure" and rep["failInfo"] == "badCertId"
    assert lsite.audit_lines()[-1]["reason"] == "unknown-certificate"
    rep = query(lsite, workdir(lsite, "poll-unknown"), "certpoll", transaction_id="nobody-asked")
    assert rep["failInfo"] == "badCertId" and lsite.audit_lines()[-1]["reason"] == "unknown-transaction"


# -- every failInfo through the server -------------------------------------------------------------

def test_every_failinfo_is_reachable():
    site = make_site("[issue]\nrenewal_window_days = 3\nallow_des_requests = false\n")
    try:
        seen = {}
        md5 = post(site, harness.make_request(site, workdir(site, "fi-md5"), digest="md5"))
        seen[md5["failInfo"]] = site.audit_lines()[-1]["reason"]
        csr_md5 = post(site, harness.make_request(site, workdir(site, "fi-csrmd5"), csr_digest="md5"))
        assert csr_md5["failInfo"] == "badAlg" and site.audit_lines()[-1]["reason"] == "csr-digest"
        des = post(site, harness.make_request(site, workdir(site, "fi-des"), cipher="des"))
        assert des["failInfo"] == "badAlg" and site.audit_lines()[-1]["reason"] == "cipher-policy"
        # Encrypted to a certificate that is not ours.
        stranger = os.path.join(site.root, "stranger")
        run([SCEP_CLIENT, "pkcsreq", "--ca", site.ca_pem, "--subject", "CN=x", "--out-dir", stranger])
        wrong = post(site, harness.make_request(site, workdir(site, "fi-wrong"), ca=os.path.join(stranger, "signer.pem")))
        seen[wrong["failInfo"]] = site.audit_lines()[-1]["reason"]
        bad = post(site, harness.make_request(site, workdir(site, "fi-chal"), challenge="nope"))
        seen[bad["failInfo"]] = site.audit_lines()[-1]["reason"]
        # A renewal 7 days before expiry with a 3-day window: not yet.
        first = harness.make_request(site, workdir(site, "fi-time"), subject="CN=early")
        assert post(site, first)["status"] == "success"
        early = post(site, harness.make_request(site, workdir(site, "fi-time2"), subject="CN=early", challenge=None, message_type=17,
                                                signer_cert=os.path.join(first, "cert.pem"), signer_key=os.path.join(first, "key.pem")))
        seen[early["failInfo"]] = site.audit_lines()[-1]["reason"]
        unknown = query(site, workdir(site, "fi-certid"), "getcert", serial="0A0B")
        seen[unknown["failInfo"]] = site.audit_lines()[-1]["reason"]
        assert seen == {"badAlg": "unsupported-digest", "badMessageCheck": "decrypt-failed", "badRequest": "challenge-mismatch",
                        "badTime": "renewal-too-early", "badCertId": "unknown-certificate"}
        assert site.scep_fcgi_alive()
    finally:
        site.stop()


# -- manual approval and polling -------------------------------------------------------------------

@pytest.fixture(scope="module")
def manual_site():
    s = make_site("[issue]\napproval = manual\n")
    yield s
    s.stop()


def test_manual_approval_pyscep_polls(manual_site):
    site = manual_site
    got = pyscep("enrol-pending", site.url, CHALLENGE, "pyscep-pending", workdir(site, "py-pending"))
    assert got["status"] == "PENDING"
    pending = [json.loads(line) for line in site.ca("pending", "--json").stdout.splitlines()]
    mine = [p for p in pending if p["transactionID"] == got["transaction_id"]]
    assert mine and mine[0]["subject"] == "CN=pyscep-pending" and mine[0]["remoteAddr"] == "127.0.0.1"
    assert pyscep("poll", site.url, got["workdir"], got["transaction_id"])["status"] == "PENDING"
    assert "issued" in site.ca("approve", got["transaction_id"]).stdout
    polled = pyscep("poll", site.url, got["workdir"], got["transaction_id"])
    assert polled["status"] == "SUCCESS" and harness.openssl_verify(site.ca_pem, polled["cert"])
    outcomes = [e["outcome"] for e in site.audit_lines() if e.get("transactionID") == got["transaction_id"]]
    assert outcomes == ["pending", "pending", "approved", "delivered"]


def test_manual_reject_and_certmonger_polls_pending(manual_site):
    site = manual_site
    work = workdir(site, "cm-pending")
    out = subprocess.run([os.path.join(CLIENTS, "certmonger_enroll.sh"), site.url, CHALLENGE, "cm-pending", work, site.ca_pem,
                          "pending", harness.SCEP_FCGI, site.config],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr + open(os.path.join(work, "daemon.log")).read()[-3000:]
    assert "CA_WORKING" in open(os.path.join(work, "list-pending.log")).read()
    assert harness.openssl_verify(site.ca_pem, os.path.join(work, "cert.pem"))
    # A rejected request: its poll is FAILURE badRequest.
    got = pyscep("enrol-pending", site.url, CHALLENGE, "pyscep-reject", workdir(site, "py-reject"))
    site.ca("reject", got["transaction_id"])
    assert pyscep("poll", site.url, got["workdir"], got["transaction_id"])["status"] == "FAILURE"


def test_approved_certificate_survives_reconciliation_and_renews(manual_site):
    """`ca approve` issues through the one issuance path: once the CLI has exited, the server's
    reconciliation (here forced by SIGHUP) finds nothing to mark withheld, and the approved
    certificate is delivered and renews like any other."""
    site = manual_site
    work = harness.make_request(site, workdir(site, "approve-renew"), subject="CN=approve-renew", transaction_id="approve-renew-tid")
    assert post(site, work)["status"] == "pending"
    approved = site.ca("approve", "approve-renew-tid").stdout.split()[1]
    log = os.path.join(site.log_dir, "scep-fcgi.log")
    reopened = open(log).read().count("reopened the audit log")
    for proc in site.procs:
        if proc.args[0] == harness.SCEP_FCGI:
            os.kill(proc.pid, signal.SIGHUP)
    harness.wait_for(lambda: open(log).read().count("reopened the audit log") > reopened, "SIGHUP reconciliation")
    assert not [e for e in site.audit_lines() if e.get("serial") == approved and e["outcome"] == "withheld"]
    assert not os.listdir(os.path.join(site.ca_dir, "unaudited"))
    listed = [json.loads(line) for line in site.ca("list", "--json").stdout.splitlines()]
    assert [c["status"] for c in listed if c["serial"] == approved] == ["valid"]
    # The retransmission delivers it; the certificate then renews (no second approval).
    delivered = post(site, work)
    assert delivered["status"] == "success" and delivered["serial"] == approved
    renewal = harness.make_request(site, workdir(site, "approve-renewed"), subject="CN=approve-renew", challenge=None, message_type=17,
                                   signer_cert=os.path.join(work, "cert.pem"), signer_key=os.path.join(work, "key.pem"))
    renewed = post(site, renewal)
    assert renewed["status"] == "success", renewed
    assert site.audit_lines()[-1]["renews"] == approved and site.audit_lines()[-1]["outcome"] == "issued"


# -- rollover (RFC 8894 §3.5.2, §4.7) --------------------------------------------------------------

def test_rollover_get_next_ca_cert_then_activate():
    site = make_site()
    try:
        caps = lambda: site.request("GET", "operation=GetCACaps")[2].decode().split("\n")
        assert "GetNextCACert" not in caps() and site.request("GET", "operation=GetNextCACert")[0] == 404
        old_ca = os.path.join(site.root, "old-ca.pem")
        shutil.copy(site.ca_pem, old_ca)
        before = harness.make_request(site, workdir(site, "ro-before"), subject="CN=before-rollover")
        issued_before = post(site, before)
        site.ca("rollover", "--subject", "CN=Integration nginx CA 2,O=scep-fcgi tests", "--key-bits", "2048", "--days", "60")
        time.sleep(1.5)  # servers look for new key material at most once a second
        assert "GetNextCACert" in caps()
        status, ctype, _ = site.request("GET", "operation=GetNextCACert")
        assert status == 200 and ctype == "application/x-x509-next-ca-cert"
        got = pyscep("rollover", site.url)
        next_pem = os.path.join(site.ca_dir, "next", "ca.pem")
        assert harness.cert_fingerprint(next_pem) in got["fingerprints"]
        site.ca("rollover", "--activate")
        time.sleep(1.5)
        assert "GetNextCACert" not in caps()
        # New enrollments come from the new CA; a client that still encrypts to the old CA is answered.
        work = workdir(site, "ro-new")
        assert "pkiStatus=SUCCESS" in scepclient(site, work, "after-rollover")
        assert harness.openssl_verify(site.ca_pem, os.path.join(work, "client.pem"))
        late = post(site, harness.make_request(site, workdir(site, "ro-late"), subject="CN=late", ca=old_ca))
        assert late["status"] == "success"
        # The previous CA still answers GetCert and GetCRL for what it issued, and verifies renewals.
        rep = query(site, workdir(site, "ro-getcert"), "getcert", issuer=old_ca, serial=issued_before["serial"])
        assert rep["status"] == "success" and rep["serial"] == issued_before["serial"]
        crl = query(site, workdir(site, "ro-getcrl"), "getcrl", issuer=old_ca, serial=issued_before["serial"])
        assert crl["status"] == "success" and crl["crls"] == "1"
        renewed = post(site, harness.make_request(site, workdir(site, "ro-renew"), subject="CN=before-rollover", challenge=None,
                                                  message_type=17, signer_cert=os.path.join(before, "cert.pem"),
                                                  signer_key=os.path.join(before, "key.pem")))
        assert renewed["status"] == "success"
        assert os.path.exists(os.path.join(site.ca_dir, "previous", "ca.pem"))
        assert os.path.exists(os.path.join(site.ca_dir, "crl", "previous.crl"))
    finally:
        site.stop()


# -- RA mode ---------------------------------------------------------------------------------------

def test_ra_mode_scepclient_and_check():
    site = make_site()
    try:
        out = site.ca("ra", "--subject", "CN=Integration RA,O=scep-fcgi tests")
        assert "created RA" in out.stdout
        time.sleep(1.5)
        status, ctype, body = site.request("GET", "operation=GetCACert")
        assert status == 200 and ctype == "application/x-x509-ca-ra-cert"
        work = workdir(site, "ra-sc")
        assert "pkiStatus=SUCCESS" in scepclient(site, work, "through-ra")
        assert harness.openssl_verify(site.ca_pem, os.path.join(work, "client.pem"))
        # CertReps are signed by the RA; requests encrypted to the RA or to the CA both open.
        ra_pem = os.path.join(site.ca_dir, "ra.pem")
        for recipient in [ra_pem, site.ca_pem]:
            rep = post(site, harness.make_request(site, workdir(site, "ra-own"), subject="CN=ra-own", ca=recipient))
            assert rep["status"] == "success" and rep["signer"] == "CN=Integration RA,O=scep-fcgi tests"
        check = run([harness.SCEP_FCGI, "check", "--config", site.config])
        assert check.returncode == 0, check.stdout
        # An RA certificate that does not chain to the CA is reported.
        stranger = os.path.join(site.root, "stranger-ra")
        run([SCEP_CLIENT, "pkcsreq", "--ca", site.ca_pem, "--subject", "CN=fake RA", "--out-dir", stranger])
        shutil.copy(ra_pem, ra_pem + ".good")
        shutil.copy(os.path.join(stranger, "signer.pem"), ra_pem)
        check = run([harness.SCEP_FCGI, "check", "--config", site.config])
        assert check.returncode == 1 and "ra.pem: does not chain to ca.pem" in check.stdout
        assert "ra.key does not match" in check.stdout
        shutil.copy(ra_pem + ".good", ra_pem)
    finally:
        site.stop()


def test_check_refuses_an_index_rewritten_by_openssl_ca(lsite):
    old = os.path.join(lsite.ca_dir, "index.txt.old")
    open(old, "w").close()
    try:
        check = run([harness.SCEP_FCGI, "check", "--config", lsite.config])
        assert check.returncode == 1 and "rewritten by `openssl ca`" in check.stdout
    finally:
        os.remove(old)


def test_revocations_while_two_processes_issue():
    site = harness.Site("nginx")
    try:
        site.start_two_processes()
        first = [post(site, harness.make_request(site, workdir(site, f"rv{i}"), subject=f"CN=rv-{i}"))["serial"] for i in range(4)]
        works = [harness.make_request(site, workdir(site, f"rw{i}"), subject=f"CN=rw-{i}") for i in range(24)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
            issuing = [pool.submit(post, site, w) for w in works]
            for serial in first:
                site.ca("revoke", serial)
            replies = [f.result() for f in issuing]
        assert all(r["status"] == "success" for r in replies)
        rows = site.index_lines()
        assert len(rows) == 28 and {row[3] for row in rows} == set(site.issued_serials())
        assert sorted(row[3] for row in rows if row[0] == "R") == sorted(first)
    finally:
        site.stop()


def test_apache_publishes_the_crl():
    site = harness.Site("apache-proxy-fcgi").start()
    try:
        rep = post(site, harness.make_request(site, workdir(site, "ap-crl"), subject="CN=apache-crl"))
        site.ca("revoke", rep["serial"])
        status, ctype, crl = site.get("/crl/ca.crl")
        assert status == 200 and ctype == "application/pkix-crl"
        path = os.path.join(site.root, "apache.crl")
        open(path, "wb").write(crl)
        out = run(["openssl", "crl", "-inform", "DER", "-in", path, "-CAfile", site.ca_pem, "-noout", "-text"])
        assert "verify OK" in out.stdout + out.stderr and rep["serial"] in out.stdout.replace(":", "").upper()
        assert site.get("/crl/ca.cer")[1] == "application/pkix-cert"
        # The number file and the lock beside the CRL are not published.
        assert site.get("/crl/ca.crlnumber")[0] == 403
    finally:
        site.stop()


def test_polling_across_two_processes():
    site = harness.Site("nginx", extra="[issue]\napproval = manual\n")
    try:
        site.start_two_processes()
        got = pyscep("enrol-pending", site.url, CHALLENGE, "two-process-poll", workdir(site, "tp-poll"))
        assert got["status"] == "PENDING"
        site.ca("approve", got["transaction_id"])
        # nginx spreads the polls over both processes; each finds the approval in the shared store.
        for _ in range(4):
            polled = pyscep("poll", site.url, got["workdir"], got["transaction_id"])
            assert polled["status"] == "SUCCESS" and harness.openssl_verify(site.ca_pem, polled["cert"])
        delivered = [e for e in site.audit_lines() if e.get("transactionID") == got["transaction_id"] and e["outcome"] == "delivered"]
        assert len(delivered) == 4
        assert len(site.issued_serials()) == 1
    finally:
        site.stop()


def test_server_publishes_its_crl_itself():
    """A running server publishes a missing CRL (its first housekeeping round), under the CRL lock."""
    site = harness.Site("nginx")
    try:
        site.start_two_processes()
        crl = os.path.join(site.ca_dir, "crl", "ca.crl")
        harness.wait_for(lambda: os.path.exists(crl), "a CRL published by the servers", timeout=20)
        out = run(["openssl", "crl", "-inform", "DER", "-in", crl, "-CAfile", site.ca_pem, "-noout", "-crlnumber"])
        assert out.returncode == 0 and "crlNumber=" in out.stdout
        status, ctype, body = site.get("/crl/ca.crl")
        assert status == 200 and body == open(crl, "rb").read()
    finally:
        site.stop()
