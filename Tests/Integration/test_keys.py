"""Keys a security team accepts: an EC issuing CA behind an RSA RA, through nginx with the real
clients (scepclient, certmonger, PyScep), checked with openssl."""
import os
import subprocess
import tempfile

import pytest

import harness
from harness import CHALLENGE, CLIENTS, run

RA = "CN=Integration EC RA,O=scep-fcgi tests"


def ec_site(curve, separate_encryption=False):
    return harness.Site("nginx", init_args=["--key-type", "ec", "--curve", curve], ra_subject=RA,
                        ra_args=["--separate-encryption"] if separate_encryption else [],
                        extra="[issue]\ncrl_url = http://127.0.0.1/crl/ca.crl\n").start()


@pytest.fixture(scope="module")
def p256():
    """One RSA RA that signs and decrypts: scepclient (pointed at it) and certmonger."""
    site = ec_site("P-256")
    yield site
    site.stop()


@pytest.fixture(scope="module")
def p256_ndes():
    """NDES's layout (`ca ra --separate-encryption`): a keyEncipherment-only RA, which PyScep needs
    (it encrypts to such a certificate, else to the CA)."""
    site = ec_site("P-256", separate_encryption=True)
    yield site
    site.stop()


def workdir(site, name):
    d = tempfile.mkdtemp(prefix=name + "-", dir=site.root)
    os.chmod(d, 0o755)
    return d


def scepclient(site, work, cn):
    """micromdm's scepclient envelopes to every GetCACert certificate unless told which one: with an
    EC CA it must be pointed at the RSA RA (docs/workarounds.md)."""
    fingerprint = run(["openssl", "x509", "-in", os.path.join(site.ca_dir, "ra.pem"), "-noout", "-fingerprint", "-sha256"])
    fingerprint = fingerprint.stdout.strip().split("=", 1)[1]
    out = subprocess.run(["scepclient", "-server-url", site.url, "-challenge", CHALLENGE, "-cn", cn, "-ca-fingerprint", fingerprint,
                          "-private-key", "client.key", "-certificate", "client.pem"], cwd=work, capture_output=True, text=True, timeout=60)
    return out.stdout + out.stderr


def text(cert):
    return run(["openssl", "x509", "-in", cert, "-noout", "-text"]).stdout


def enroll_with(client, site, name):
    """One enrollment with a real client; returns the certificate file."""
    work = workdir(site, name)
    if client in ("scepclient", "scepclient-plain"):
        out = scepclient(site, work, name) if client == "scepclient" else subprocess.run(
            ["scepclient", "-server-url", site.url, "-challenge", CHALLENGE, "-cn", name, "-private-key", "client.key",
             "-certificate", "client.pem"], cwd=work, capture_output=True, text=True, timeout=60)
        out = out if isinstance(out, str) else out.stdout + out.stderr
        assert "pkiStatus=SUCCESS" in out, out
        return os.path.join(work, "client.pem")
    if client == "certmonger":
        cm = subprocess.run([os.path.join(CLIENTS, "certmonger_enroll.sh"), site.url, CHALLENGE, name, work, site.ca_pem],
                            capture_output=True, text=True, timeout=240)
        assert cm.returncode == 0, cm.stdout + cm.stderr
        return os.path.join(work, "cert.pem")
    py = subprocess.run(["python3", "-W", "ignore", os.path.join(CLIENTS, "pyscep_enroll.py"), site.url, CHALLENGE, name, work],
                        capture_output=True, text=True, timeout=120)
    assert py.returncode == 0, py.stdout + py.stderr
    return os.path.join(work, "cert.pem")


def test_all_three_clients_enroll_with_an_ec_ca_and_an_rsa_ra(p256, p256_ndes):
    for site in (p256, p256_ndes):
        ca = text(site.ca_pem)
        assert "ASN1 OID: prime256v1" in ca and "ecdsa-with-SHA256" in ca
        assert "Key Encipherment" not in ca and "Certificate Sign" in ca
        status, ctype, _ = site.request("GET", "operation=GetCACert")
        assert status == 200 and ctype == "application/x-x509-ca-ra-cert"
    certs = [(p256, enroll_with("scepclient", p256, "ec-scepclient")), (p256, enroll_with("certmonger", p256, "ec-certmonger")),
             (p256_ndes, enroll_with("pyscep", p256_ndes, "ec-pyscep")), (p256_ndes, enroll_with("certmonger", p256_ndes, "ec-certmonger-ndes"))]
    for site, cert in certs:
        assert harness.openssl_verify(site.ca_pem, cert), cert
        assert "Signature Algorithm: ecdsa-with-SHA256" in text(cert)
    # Requests reach an RSA key of the RA (RFC 8894 §3.1 key transport); CertReps come from the RA.
    for site in (p256, p256_ndes):
        issued = [e for e in site.audit_lines() if e.get("outcome") == "issued"]
        assert len(issued) == 2 and all(e["keyTransport"].startswith("rsa") for e in issued)


def test_ec_ca_crl_is_ecdsa_and_verifies(p256):
    site = p256
    work = harness.make_request(site, workdir(site, "ec-revoke"), subject="CN=ec-revoke", ca=os.path.join(site.ca_dir, "ra.pem"))
    status, _, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
    rep = harness.open_reply(work, body)
    assert rep["status"] == "success"
    site.ca("revoke", rep["serial"])
    status, _, der = site.get("/crl/ca.crl")
    assert status == 200
    path = os.path.join(work, "ca.crl")
    open(path, "wb").write(der)
    out = run(["openssl", "crl", "-inform", "DER", "-in", path, "-CAfile", site.ca_pem, "-noout", "-text"])
    assert "verify OK" in out.stdout + out.stderr and "ecdsa-with-SHA256" in out.stdout
    assert rep["serial"] in out.stdout.replace(":", "").upper()


def test_ec_ca_answers_ocsp_with_ecdsa(p256):
    site = p256
    work = harness.make_request(site, workdir(site, "ec-ocsp"), subject="CN=ec-ocsp", ca=os.path.join(site.ca_dir, "ra.pem"))
    status, _, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
    assert harness.open_reply(work, body)["status"] == "success"
    cert = os.path.join(work, "cert.pem")
    out = run(["openssl", "ocsp", "-url", f"http://127.0.0.1:{site.port}/ocsp", "-issuer", site.ca_pem, "-cert", cert,
               "-CAfile", site.ca_pem, "-resp_text"])
    text_out = out.stdout + out.stderr
    assert f"{cert}: good" in text_out and "Response verify OK" in text_out and "ecdsa-with-SHA256" in text_out, text_out


def test_p384_ca_signs_with_sha384():
    site = ec_site("P-384")
    try:
        work = workdir(site, "p384")
        out = scepclient(site, work, "p384-device")
        assert "pkiStatus=SUCCESS" in out, out
        cert = os.path.join(work, "client.pem")
        assert harness.openssl_verify(site.ca_pem, cert) and "ecdsa-with-SHA384" in text(cert)
    finally:
        site.stop()


def test_an_ec_ca_without_an_ra_is_refused_with_the_fix():
    root = tempfile.mkdtemp(prefix="scep-it-ec-no-ra-")
    ca = os.path.join(root, "ca")
    out = run([harness.SCEP_FCGI, "ca", "init", "--dir", ca, "--subject", "CN=Lonely EC CA", "--key-type", "ec", "--days", "30"])
    assert out.returncode == 0 and "create its RSA RA next" in out.stdout, out.stdout + out.stderr
    challenge = os.path.join(root, "challenge")
    open(challenge, "w").write("x\n")
    os.chmod(challenge, 0o600)
    config = os.path.join(root, "scep-fcgi.conf")
    open(config, "w").write(f"[ca]\ndir = {ca}\n[challenge]\nstatic_password_file = {challenge}\n[audit]\npath = {root}/audit.jsonl\n"
                            f"[server]\nsocket = {root}/s.sock\n")
    check = run([harness.SCEP_FCGI, "check", "--config", config])
    assert check.returncode == 1 and "needs an RSA RA" in check.stdout and "scep-fcgi ca ra" in check.stdout, check.stdout
    assert run([harness.SCEP_FCGI, "ca", "ra", "--dir", ca, "--subject", "CN=Lonely RA"]).returncode == 0
    check = run([harness.SCEP_FCGI, "check", "--config", config])
    assert check.returncode == 0, check.stdout
    bad = run([harness.SCEP_FCGI, "ca", "init", "--dir", os.path.join(root, "x"), "--subject", "CN=x", "--key-type", "ec", "--curve", "P-521"])
    assert bad.returncode != 0 and "P-256 or P-384" in bad.stderr


# -- The CA key on a PKCS#11 token (SoftHSM2 through OpenSSL's pkcs11 engine) ----------------------

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN_URI = "pkcs11:token=scep-ca;object=ca-key;type=private"


def make_token(root, key_type="rsa:2048"):
    """A SoftHSM2 token of this test's own (its own config and token directory), holding one key pair
    made on the token: the CA key never exists outside it. Returns the PIN file."""
    tokens = os.path.join(root, "tokens")
    os.makedirs(tokens)
    conf = os.path.join(root, "softhsm2.conf")
    with open(conf, "w") as f:
        f.write(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = conf  # inherited by scep-fcgi and the ca commands
    pin = "4711-test-pin"
    harness.register_secret(pin)
    out = run(["softhsm2-util", "--init-token", "--free", "--label", "scep-ca", "--pin", pin, "--so-pin", "so-8642"])
    assert out.returncode == 0, out.stderr
    out = run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", "scep-ca", "--login", "--pin", pin,
               "--keypairgen", "--key-type", key_type, "--id", "01", "--label", "ca-key"])
    assert out.returncode == 0, out.stdout + out.stderr
    pin_file = os.path.join(root, "token-pin")
    with open(pin_file, "w") as f:
        f.write(pin + "\n")
    os.chmod(pin_file, 0o600)
    return pin_file


@pytest.fixture(scope="module")
def hsm():
    root = tempfile.mkdtemp(prefix="scep-it-hsm-")
    os.chmod(root, 0o755)
    pin_file = make_token(root)
    site = harness.Site("nginx", init_args=["--key-uri", TOKEN_URI, "--pin-file", pin_file, "--pkcs11-module", SOFTHSM_MODULE],
                        extra=f"[ca]\nkey_pin_file = {pin_file}\npkcs11_module = {SOFTHSM_MODULE}\n"
                              "[issue]\ncrl_url = http://127.0.0.1/crl/ca.crl\n").start()
    yield site, pin_file
    site.stop()


def test_hsm_ca_key_stays_on_the_token_and_all_clients_enroll(hsm):
    site, _ = hsm
    assert not os.path.exists(os.path.join(site.ca_dir, "ca.key"))
    assert open(os.path.join(site.ca_dir, "ca.key.uri")).read().strip() == TOKEN_URI
    certs = [enroll_with("scepclient-plain", site, "hsm-scepclient"), enroll_with("certmonger", site, "hsm-certmonger"),
             enroll_with("pyscep", site, "hsm-pyscep")]
    for cert in certs:
        assert harness.openssl_verify(site.ca_pem, cert), cert
    check = run([harness.SCEP_FCGI, "check", "--config", site.config])
    assert check.returncode == 0, check.stdout


def test_hsm_80_enrollments_at_concurrency_8_then_revoke_and_crl(hsm):
    site, _ = hsm
    requests = workdir(site, "hsm-load")
    challenge = os.path.join(site.root, "challenge")
    out = run([harness.SCEP_CLIENT, "prebuild", "--ca", site.ca_pem, "--challenge-file", challenge, "--count", "80", "--out-dir", requests])
    assert out.returncode == 0, out.stderr
    out = run([harness.SCEP_CLIENT, "load", "--url", site.url, "--requests-dir", requests, "--concurrency", "8"], timeout=600)
    assert out.returncode == 0, out.stderr
    import json
    report = json.loads(out.stdout)
    assert report["failures"] == 0 and report["unique_serials"] == 80, report
    serial = site.issued_serials()[0]
    site.ca("revoke", serial, "--reason", "keyCompromise")
    status, _, der = site.get("/crl/ca.crl")
    work = workdir(site, "hsm-crl")
    path = os.path.join(work, "ca.crl")
    open(path, "wb").write(der)
    crl = run(["openssl", "crl", "-inform", "DER", "-in", path, "-CAfile", site.ca_pem, "-noout", "-text"])
    assert "verify OK" in crl.stdout + crl.stderr and serial in crl.stdout.replace(":", "").upper()


def test_hsm_wrong_pin_and_missing_token_are_clear_errors(hsm):
    site, pin_file = hsm
    wrong = os.path.join(site.root, "wrong-pin")
    with open(wrong, "w") as f:
        f.write("0000\n")
    os.chmod(wrong, 0o600)
    out = run([harness.SCEP_FCGI, "check", "--config", site.config], env=dict(os.environ, SCEP_CA_KEY_PIN_FILE=wrong))
    assert out.returncode == 1 and "ca.key.uri" in out.stdout and "PIN" in out.stdout, out.stdout
    empty = tempfile.mkdtemp()
    conf = os.path.join(empty, "softhsm2.conf")
    os.makedirs(os.path.join(empty, "tokens"))
    open(conf, "w").write(f"directories.tokendir = {empty}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n")
    out = run([harness.SCEP_FCGI, "check", "--config", site.config], env=dict(os.environ, SOFTHSM2_CONF=conf))
    assert out.returncode == 1 and "no private key for pkcs11:token=scep-ca" in out.stdout, out.stdout


def test_hsm_rollover_to_a_second_token_key(hsm):
    """Runs last on the HSM site: it changes the CA."""
    site, pin_file = hsm
    pin = open(pin_file).read().strip()
    out = run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", "scep-ca", "--login", "--pin", pin,
               "--keypairgen", "--key-type", "rsa:2048", "--id", "02", "--label", "ca-key-2"])
    assert out.returncode == 0, out.stdout + out.stderr
    next_uri = "pkcs11:token=scep-ca;object=ca-key-2;type=private"
    site.ca("rollover", "--subject", "CN=Integration HSM CA 2,O=scep-fcgi tests", "--key-uri", next_uri, "--days", "20")
    assert open(os.path.join(site.ca_dir, "next", "ca.key.uri")).read().strip() == next_uri
    site.ca("rollover", "--activate")
    assert open(os.path.join(site.ca_dir, "ca.key.uri")).read().strip() == next_uri
    assert open(os.path.join(site.ca_dir, "previous", "ca.key.uri")).read().strip() == TOKEN_URI
    import time
    time.sleep(1.5)  # servers look for new material at most once a second
    cert = enroll_with("scepclient-plain", site, "hsm-after-rollover")
    assert harness.openssl_verify(site.ca_pem, cert) and "Integration HSM CA 2" in text(cert)
    check = run([harness.SCEP_FCGI, "check", "--config", site.config])
    assert check.returncode == 0 and check.stdout.count("signs a test message") == 2, check.stdout


def test_hsm_key_shared_by_two_processes():
    """Two `serve` processes, each with its own engine and PKCS#11 session on one token, behind one
    nginx: 60 enrollments at concurrency 8, no failure."""
    root = tempfile.mkdtemp(prefix="scep-it-hsm2-")
    os.chmod(root, 0o755)
    pin_file = make_token(root)
    site = harness.Site("nginx", init_args=["--key-uri", TOKEN_URI, "--pin-file", pin_file, "--pkcs11-module", SOFTHSM_MODULE],
                        extra=f"[ca]\nkey_pin_file = {pin_file}\npkcs11_module = {SOFTHSM_MODULE}\n")
    site.start_processes(2)
    try:
        requests = workdir(site, "hsm2-load")
        out = run([harness.SCEP_CLIENT, "prebuild", "--ca", site.ca_pem, "--challenge-file", site.challenge_file, "--count", "60",
                   "--out-dir", requests])
        assert out.returncode == 0, out.stderr
        out = run([harness.SCEP_CLIENT, "load", "--url", site.url, "--requests-dir", requests, "--concurrency", "8"], timeout=600)
        import json
        report = json.loads(out.stdout)
        assert report["failures"] == 0 and report["unique_serials"] == 60, report
        assert site.scep_fcgi_alive()
    finally:
        site.stop()
