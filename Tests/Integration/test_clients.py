"""Real SCEP clients enroll through each web front end; every certificate is checked with openssl."""
import os
import subprocess
import tempfile

import harness
from harness import CHALLENGE, CLIENTS


def fresh_dir(site, name):
    d = tempfile.mkdtemp(prefix=name + "-", dir=site.root)
    os.chmod(d, 0o755)
    return d


def assert_issued(site, cert_pem, *, method, cipher, digest):
    assert harness.openssl_verify(site.ca_pem, cert_pem)
    serial = harness.cert_serial(cert_pem)
    assert serial in site.issued_serials()
    assert any(row[3] == serial and row[0] == "V" for row in site.index_lines())
    issued = [e for e in site.wait_audit(1) if e.get("serial") == serial]
    assert len(issued) == 1, "exactly one audit line names the certificate"
    event = issued[0]
    assert event["outcome"] == "issued" and event["operation"] == "PKIOperation"
    assert event["method"] == method and event["cipher"] == cipher and event["digest"] == digest
    assert event["sha256"] == harness.cert_fingerprint(cert_pem, "sha256")
    assert event["sha1"] == harness.cert_fingerprint(cert_pem, "sha1")
    assert event["remoteAddr"] == "127.0.0.1"
    return event


def test_micromdm_scepclient_enrolls(site):
    """scepclient: POST, single DES + SHA-1 (answered in 3DES), BER envelope."""
    work = fresh_dir(site, "scepclient")
    out = subprocess.run(
        ["scepclient", "-server-url", site.url, "-challenge", CHALLENGE, "-cn", f"scepclient-{site.kind}",
         "-private-key", "client.key", "-certificate", "client.pem"],
        cwd=work, capture_output=True, text=True, timeout=60)
    assert "pkiStatus=SUCCESS" in out.stdout + out.stderr, out.stdout + out.stderr
    event = assert_issued(site, os.path.join(work, "client.pem"), method="POST", cipher="DES-CBC", digest="SHA-1")
    assert event["subject"] == f"CN=scepclient-{site.kind},OU=MDM,O=scep-client,C=US"


def test_certmonger_enrolls(site):
    """certmonger daemon + scep-submit: GET PKIOperation, AES-256 + SHA-256."""
    work = fresh_dir(site, "certmonger")
    out = subprocess.run(
        [os.path.join(CLIENTS, "certmonger_enroll.sh"), site.url, CHALLENGE, f"certmonger-{site.kind}", work, site.ca_pem],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr + open(os.path.join(work, "daemon.log")).read()[-2000:]
    event = assert_issued(site, os.path.join(work, "cert.pem"), method="GET", cipher="AES-256-CBC", digest="SHA-256")
    assert event["subject"] == f"CN=certmonger-{site.kind}"


def test_pyscep_enrolls(site):
    """PyScep: POST, AES-256 + SHA-512 (it picks the best digest GetCACaps lists)."""
    work = fresh_dir(site, "pyscep")
    out = subprocess.run(
        ["python3", "-W", "ignore", os.path.join(CLIENTS, "pyscep_enroll.py"), site.url, CHALLENGE, f"pyscep-{site.kind}", work],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "status: SUCCESS" in out.stdout, out.stdout + out.stderr
    assert_issued(site, os.path.join(work, "cert.pem"), method="POST", cipher="AES-256-CBC", digest="SHA-512")


def test_wrong_challenge_is_failure_without_certificate(site):
    harness.register_secret("not-the-challenge")
    before = set(site.issued_serials())
    lines_before = len(site.audit_lines())
    work = fresh_dir(site, "wrong")
    sc = subprocess.run(
        ["scepclient", "-server-url", site.url, "-challenge", "not-the-challenge", "-cn", "intruder",
         "-private-key", "client.key", "-certificate", "client.pem"],
        cwd=work, capture_output=True, text=True, timeout=60)
    assert "failInfo: badRequest" in sc.stdout + sc.stderr
    py = subprocess.run(
        ["python3", "-W", "ignore", os.path.join(CLIENTS, "pyscep_enroll.py"), site.url, "not-the-challenge", "intruder",
         os.path.join(work, "py")], capture_output=True, text=True, timeout=120)
    assert py.returncode == 2 and "FAILURE" in py.stdout, py.stdout + py.stderr
    cm = subprocess.run(
        [os.path.join(CLIENTS, "certmonger_enroll.sh"), site.url, "not-the-challenge", "intruder", os.path.join(work, "cm"),
         site.ca_pem], capture_output=True, text=True, timeout=120)
    assert cm.returncode == 2
    assert "CA_REJECTED" in open(os.path.join(work, "cm", "list.log")).read()
    assert set(site.issued_serials()) == before
    rejected = [e for e in site.wait_audit(lines_before + 3)[lines_before:] if e.get("reason") == "challenge-mismatch"]
    assert len(rejected) == 3 and all(e["outcome"] == "rejected" and e["failInfo"] == "badRequest" for e in rejected)
    with open(site.audit) as f:
        text = f.read()
    assert CHALLENGE not in text and "not-the-challenge" not in text
