"""The OCSP responder (RFC 6960, RFC 5019 profile) through nginx with `openssl ocsp` as the client:
POST and GET, good / revoked / unknown, nonce, caching headers, a delegated responder, refusals."""
import base64
import http.client
import os
import tempfile
import urllib.parse

import pytest

import harness
from harness import run

OCSP_URL = "http://ocsp.example.test/ocsp"


@pytest.fixture(scope="module", params=["nginx", "apache-proxy-fcgi"])
def site(request):
    s = harness.Site(request.param, extra=f"[issue]\nocsp_url = {OCSP_URL}\n[metrics]\npath = /scep-metrics\n").start()
    yield s
    s.stop()


def enroll(site, cn):
    work = harness.make_request(site, tempfile.mkdtemp(dir=site.root), subject=f"CN={cn}")
    status, _, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
    rep = harness.open_reply(work, body)
    assert rep["status"] == "success"
    return os.path.join(work, "cert.pem"), rep["serial"], work


def ocsp(site, *args):
    """`openssl ocsp` POSTing to the responder, verifying the answer against the CA."""
    out = run(["openssl", "ocsp", "-url", f"http://127.0.0.1:{site.port}/ocsp", "-CAfile", site.ca_pem, "-resp_text", *args])
    return out.stdout + out.stderr


def get(site, target):
    conn = http.client.HTTPConnection("127.0.0.1", site.port, timeout=30)
    conn.request("GET", target)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response, body


def test_post_good_then_revoked_with_nonce(site):
    cert, serial, _ = enroll(site, "ocsp-device")
    assert f"OCSP - URI:{OCSP_URL}" in run(["openssl", "x509", "-in", cert, "-noout", "-text"]).stdout
    good = ocsp(site, "-issuer", site.ca_pem, "-cert", cert)
    assert f"{cert}: good" in good and "Response verify OK" in good, good
    assert "WARNING: no nonce" not in good and "OCSP Nonce" in good  # openssl sends one; it is echoed
    assert "This Update" in good and "Next Update" in good
    site.ca("revoke", serial, "--reason", "keyCompromise")
    revoked = ocsp(site, "-issuer", site.ca_pem, "-cert", cert)
    assert f"{cert}: revoked" in revoked and "Reason: keyCompromise" in revoked and "Response verify OK" in revoked, revoked
    # No audit line per query.
    assert not [e for e in site.audit_lines() if "ocsp" in str(e.get("operation", "")).lower()]


def test_unknown_serial_and_a_foreign_issuer(site):
    unknown = ocsp(site, "-issuer", site.ca_pem, "-serial", "0x0123456789ABCDEF")
    assert "0x0123456789ABCDEF: unknown" in unknown and "Response verify OK" in unknown, unknown
    other = os.path.join(site.root, "other-ca.pem")
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=Someone Else's CA", "-days", "2",
         "-keyout", os.path.join(site.root, "other-ca.key"), "-out", other])
    foreign = ocsp(site, "-issuer", other, "-serial", "0x01")
    assert "Responder Error: unauthorized (6)" in foreign, foreign


def test_get_with_caching_headers(site):
    cert, _, work = enroll(site, "ocsp-get")
    request = os.path.join(work, "ocsp-req.der")
    run(["openssl", "ocsp", "-issuer", site.ca_pem, "-cert", cert, "-no_nonce", "-reqout", request])
    encoded = base64.b64encode(open(request, "rb").read()).decode()
    for target in ["/ocsp/" + urllib.parse.quote(encoded, safe=""), "/ocsp/" + encoded]:  # encoded, and raw / + = as some clients send
        response, body = get(site, target)
        assert response.status == 200 and response.getheader("Content-Type") == "application/ocsp-response", target
        assert "max-age=" in response.getheader("Cache-Control") and response.getheader("Expires") and response.getheader("ETag")
        assert response.getheader("Last-Modified").endswith(" GMT")
        answer = os.path.join(work, "ocsp-resp.der")
        open(answer, "wb").write(body)
        out = run(["openssl", "ocsp", "-respin", answer, "-issuer", site.ca_pem, "-cert", cert, "-CAfile", site.ca_pem, "-no_nonce"])
        assert f"{cert}: good" in out.stdout and "Response verify OK" in out.stdout + out.stderr, out.stdout + out.stderr


@pytest.mark.parametrize("method,target,body", [
    ("POST", "/ocsp", b"not an OCSP request"),
    ("POST", "/ocsp", b"\x30\x03\x02\x01\x00"),
    ("GET", "/ocsp/%%%", None),
    ("GET", "/ocsp/bm90IGJhc2U2NCBvY3NwCg==", None),
    ("POST", "/ocsp", b"\x30" * 20000),
])
def test_malformed_requests_get_malformedrequest_never_500(site, method, target, body):
    conn = http.client.HTTPConnection("127.0.0.1", site.port, timeout=30)
    conn.request(method, target, body=body, headers={"Content-Type": "application/ocsp-request"} if body else {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    # 400 and 413 come from nginx itself (an invalid percent-encoding, a body over the snippet's 16k).
    assert response.status in (200, 400, 413), response.status
    if response.status == 200:
        assert data == bytes([0x30, 0x03, 0x0A, 0x01, 0x01])  # OCSPResponse { responseStatus malformedRequest }
    assert site.scep_fcgi_alive()


def test_delegated_responder_and_metrics(site):
    cert, _, _ = enroll(site, "ocsp-delegated")
    out = site.ca("ocsp-signer", "--days", "7")
    assert "created OCSP responder" in out.stdout
    signer = run(["openssl", "x509", "-in", os.path.join(site.ca_dir, "ocsp.pem"), "-noout", "-text"]).stdout
    assert "OCSP Signing" in signer and "OCSP No Check" in signer
    import time
    time.sleep(1.5)  # servers look for new material at most once a second
    answer = ocsp(site, "-issuer", site.ca_pem, "-cert", cert)
    assert f"{cert}: good" in answer and "Response verify OK" in answer, answer
    assert "OCSP Responder" in answer.split("Responder Id:", 1)[1].splitlines()[0]
    response, body = get(site, "/scep-metrics")
    text = body.decode()
    good = [line for line in text.splitlines() if line.startswith('scep_ocsp_responses_total{status="good"}')]
    assert good and float(good[0].split()[1]) >= 3
    assert "scep_ocsp_response_duration_seconds_count" in text


# -- The OCSP corpus of broken requests: each answered with an OCSP response, never an HTTP 500 ---

def post_ocsp(site, body):
    conn = http.client.HTTPConnection("127.0.0.1", site.port, timeout=30)
    conn.request("POST", "/ocsp", body=body, headers={"Content-Type": "application/ocsp-request"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def response_status(site, data, work):
    """The OCSPResponseStatus openssl reads from an answer (successful, malformedrequest, …)."""
    path = os.path.join(work, "answer.der")
    open(path, "wb").write(data)
    out = run(["openssl", "ocsp", "-respin", path, "-resp_text", "-noverify"])
    text = out.stdout + out.stderr
    for line in text.splitlines():
        if "OCSP Response Status:" in line:
            return line.split(":", 1)[1].strip().split()[0]
        if "Responder Error:" in line:
            return line.split(":", 1)[1].strip().split()[0]
    raise AssertionError(text[-500:])


def test_ocsp_corpus(site):
    cert, _, work = enroll(site, "ocsp-corpus")
    valid = os.path.join(work, "valid-req.der")
    run(["openssl", "ocsp", "-issuer", site.ca_pem, "-cert", cert, "-reqout", valid])
    der = open(valid, "rb").read()
    cases = {"empty": b"", "one byte": der[:1]}
    for n in (2, 10, len(der) // 2, len(der) - 1):
        cases[f"truncated to {n}"] = der[:n]
    for i in range(0, len(der), max(1, len(der) // 12)):
        flipped = bytearray(der)
        flipped[i] ^= 0xFF
        cases[f"byte {i} flipped"] = bytes(flipped)
    cases["trailing garbage"] = der + b"\x00\x01"
    many = os.path.join(work, "many-req.der")
    run(["openssl", "ocsp", "-issuer", site.ca_pem, *sum((["-serial", f"0x{i:02X}"] for i in range(1, 18)), []), "-reqout", many])
    cases["17 CertIDs"] = open(many, "rb").read()
    before = site.scep_fcgi_alive()
    for name, body in cases.items():
        status, data = post_ocsp(site, body)
        assert status == 200, (name, status)
        kind = response_status(site, data, work)
        # A flipped byte may still leave a readable request (a changed serial or nonce): then any
        # OCSP answer is right; everything else must be malformedRequest.
        if name.startswith("byte"):
            assert kind in ("successful", "malformedrequest", "unauthorized"), (name, kind)
        else:
            assert kind == "malformedrequest", (name, kind)
    assert before and site.scep_fcgi_alive()
    # SHA-256 CertIDs (not RFC 5019's SHA-1) are answered too.
    sha256 = ocsp(site, "-issuer", site.ca_pem, "-sha256", "-cert", cert)
    assert f"{cert}: good" in sha256 and "Response verify OK" in sha256, sha256
    # Sixteen CertIDs is the bound: answered, each serial unknown.
    sixteen = ocsp(site, "-issuer", site.ca_pem, *sum((["-serial", f"0x{i:02X}"] for i in range(1, 17)), []))
    assert sum(1 for line in sixteen.splitlines() if line.startswith("0x") and line.endswith(": unknown")) == 16, sixteen
    assert "Response verify OK" in sixteen


def test_previous_ca_answers_for_its_certificates_after_a_rollover():
    """OCSP answers for the current and the previous CA: after a rollover, a certificate of the old
    CA is still good, then revoked, signed by the old CA (which is what its relying parties trust)."""
    site = harness.Site("nginx").start()
    try:
        cert, serial, work = enroll(site, "before-rollover")
        old_ca = os.path.join(work, "old-ca.pem")
        open(old_ca, "w").write(open(site.ca_pem).read())
        site.ca("rollover", "--subject", "CN=Integration OCSP CA 2,O=scep-fcgi tests", "--key-bits", "2048", "--days", "20")
        site.ca("rollover", "--activate")
        import time
        time.sleep(1.5)  # servers look for new material at most once a second
        out = run(["openssl", "ocsp", "-url", f"http://127.0.0.1:{site.port}/ocsp", "-issuer", old_ca, "-cert", cert,
                   "-CAfile", old_ca, "-resp_text"])
        assert f"{cert}: good" in out.stdout and "Response verify OK" in out.stdout + out.stderr, out.stdout + out.stderr
        assert "CN = Integration nginx CA" in out.stdout.split("Responder Id:", 1)[1].splitlines()[0]
        site.ca("revoke", serial)
        out = run(["openssl", "ocsp", "-url", f"http://127.0.0.1:{site.port}/ocsp", "-issuer", old_ca, "-cert", cert,
                   "-CAfile", old_ca, "-resp_text"])
        assert f"{cert}: revoked" in out.stdout, out.stdout
        # A new certificate is answered by the new CA.
        new_cert, _, _ = enroll(site, "after-rollover")
        fresh = ocsp(site, "-issuer", site.ca_pem, "-cert", new_cert)
        assert f"{new_cert}: good" in fresh and "Response verify OK" in fresh, fresh
    finally:
        site.stop()
