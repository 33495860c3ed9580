"""Wire behaviour through each front end: exact content types, GET encodings, bad input."""
import base64
import json
import os
import subprocess
import tempfile
import urllib.parse

import harness


def workdir(site, name):
    return tempfile.mkdtemp(prefix=name + "-", dir=site.root)


def test_getcacaps_exact(site):
    status, ctype, body = site.request("GET", "operation=GetCACaps&message=CAIdentifier")
    assert status == 200 and ctype == "text/plain"
    assert body.decode().split("\n") == ["AES", "DES3", "POSTPKIOperation", "Renewal", "SCEPStandard", "SHA-1", "SHA-256", "SHA-512"]


def test_getcacert_is_the_ca_in_der(site):
    status, ctype, body = site.request("GET", "operation=GetCACert&message=0")
    assert status == 200 and ctype == "application/x-x509-ca-cert"
    der = subprocess.run(["openssl", "x509", "-in", site.ca_pem, "-outform", "DER"], capture_output=True).stdout
    assert body == der


def test_get_pkioperation_encodings(site):
    """certmonger, macOS, scepclient and Cisco encodings of the same kind of message all enroll."""
    for variant in ["percent", "raw", "urlsafe", "linebreaks"]:
        work = harness.make_request(site, workdir(site, variant), subject=f"CN=get-{variant}")
        b64 = base64.b64encode(open(os.path.join(work, "request.der"), "rb").read()).decode()
        if variant == "percent":
            message = urllib.parse.quote(b64, safe="")
        elif variant == "raw":
            message = b64
        elif variant == "urlsafe":
            message = b64.replace("+", "-").replace("/", "_").replace("=", "%3D")
        else:
            message = "%0A".join(urllib.parse.quote(b64[i:i + 64], safe="") for i in range(0, len(b64), 64))
        status, ctype, body = site.request("GET", f"message={message}&operation=PKIOperation")
        assert status == 200 and ctype == "application/x-pki-message", variant
        rep = harness.open_reply(work, body)
        assert rep["status"] == "success", variant
        assert harness.openssl_verify(site.ca_pem, os.path.join(work, "cert.pem"))


def test_post_any_content_type_and_algorithms(site):
    for cipher, digest, transport, ctype in [
        ("aes128", "sha256", "oaep-sha256", "application/x-pki-message"),
        ("3des", "sha1", "pkcs1", "application/octet-stream"),
        ("aes192", "sha512", "oaep-sha1", None),
    ]:
        work = harness.make_request(site, workdir(site, cipher), subject=f"CN=post-{cipher}", cipher=cipher, digest=digest,
                                    key_transport=transport)
        headers = {"Content-Type": ctype} if ctype else {}
        status, rtype, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read(), headers)
        assert status == 200 and rtype == "application/x-pki-message"
        rep = harness.open_reply(work, body)
        assert rep["status"] == "success" and rep["digest"] == {"sha1": "SHA-1", "sha256": "SHA-256", "sha512": "SHA-512"}[digest]
        assert rep["cipher"] == {"aes128": "AES-128-CBC", "3des": "DES-EDE3-CBC", "aes192": "AES-192-CBC"}[cipher]


def test_intune_style_sans_are_issued(site):
    sid_uri = "URI:tag:microsoft.com,2022-09-14:sid:S-1-5-21-1004336348-1177238915-682003330-512"
    sans = ["DNS:device.example.com", "email:user@example.com", "IP:192.0.2.10", "otherName:1.3.6.1.4.1.311.20.2.3;UTF8:user@example.com"]
    work = harness.make_request(site, workdir(site, "sans"), subject="CN=intune-device", san=sans)
    status, _, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
    assert harness.open_reply(work, body)["status"] == "success"
    text = subprocess.run(["openssl", "x509", "-in", os.path.join(work, "cert.pem"), "-noout", "-ext", "subjectAltName"],
                          capture_output=True, text=True).stdout
    for expected in ["DNS:device.example.com", "email:user@example.com", "IP Address:192.0.2.10", "UPN:"]:
        assert expected in text
    # The SID URI (here a domain's Administrators RID, 512) is strong mapping: a static challenge
    # vouches for no SID, so it is refused (test_partner_ca.py covers the Intune side).
    work = harness.make_request(site, workdir(site, "sans-sid"), subject="CN=intune-device", san=sans + [sid_uri])
    status, _, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
    rep = harness.open_reply(work, body)
    assert rep["status"] == "failure" and rep["failInfo"] == "badRequest"
    assert [e["reason"] for e in site.audit_lines() if e.get("transactionID") == rep["transactionID"]] == ["sid-not-validated"]


def test_failures_are_signed_certreps(site):
    cases = [
        (dict(digest="md5"), "badAlg"),
        (dict(message_type=17), "badRequest"),  # RenewalReq: not offered
        (dict(key_bits=1024), "badRequest"),
    ]
    for options, fail_info in cases:
        work = harness.make_request(site, workdir(site, "fail"), **options)
        status, ctype, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
        assert status == 200 and ctype == "application/x-pki-message"
        rep = harness.open_reply(work, body)
        assert rep["status"] == "failure" and rep["failInfo"] == fail_info, options


def test_bad_input_gets_4xx_and_server_keeps_serving(site):
    lines_before = len(site.audit_lines())
    cases = [
        ("GET", "", None, 400),
        ("GET", "operation=Nonsense", None, 400),
        ("GET", "operation=GetNextCACert", None, 404),
        ("GET", "operation=PKIOperation", None, 400),
        ("GET", "operation=PKIOperation&message=", None, 400),
        ("GET", "operation=PKIOperation&message=%%%", None, 400),
        ("GET", "operation=PKIOperation&message=bm90IGEgcGtpTWVzc2FnZQ%3D%3D", None, 400),
        ("POST", "operation=PKIOperation", b"", 400),
        ("POST", "operation=PKIOperation", os.urandom(3000), 400),
        ("POST", "operation=PKIOperation", b"\x30\x82\xff\xff" + os.urandom(500), 400),
        ("POST", "operation=PKIOperation", os.urandom(harness.MAX_BODY + 4096), 413),
    ]
    for method, query, body, expected in cases:
        status, ctype, data = site.request(method, query, body)
        assert status == expected, (method, query, status, data[:200])
        assert ctype.startswith("text/plain")
        assert len(data) < 200 and b"Error" not in data
    assert site.request("GET", "operation=GetCACaps")[0] == 200
    audited = site.wait_audit(lines_before + len(cases) + 1)[lines_before:]
    assert len(audited) == len(cases) + 1
    assert [e["httpStatus"] for e in audited[:-1]] == [c[3] for c in cases]
    assert all(e["outcome"] == "rejected" and e["reason"] for e in audited[:-1])


def test_long_get_query(site):
    """A ~20 KB GET: nginx and mod_fcgid pass it; mod_proxy_fcgi drops the whole QUERY_STRING
    silently (AH02536), which scep-fcgi turns into a clear 400 instead of an empty request."""
    sans = [f"DNS:h{i:04d}." + ".".join([chr(97 + j) * 55 for j in range(4)]) + ".example" for i in range(64)]  # the default cap
    work = harness.make_request(site, workdir(site, "long"), subject="CN=long-get", san=sans)
    b64 = base64.b64encode(open(os.path.join(work, "request.der"), "rb").read()).decode()
    query = "operation=PKIOperation&message=" + urllib.parse.quote(b64, safe="")
    assert 18000 < len(query) < 30000
    status, ctype, body = site.request("GET", query)
    if site.kind == "apache-proxy-fcgi":
        # The whole QUERY_STRING is gone, operation included.
        assert status == 400 and body.startswith(b"missing operation parameter")
        assert site.audit_lines()[-1]["reason"] == "missing-operation"
    else:
        assert status == 200 and harness.open_reply(work, body)["status"] == "success"


def test_names_are_validated_and_capped_before_the_challenge(site):
    """RFC 5280 §4.2.1.6 names by type, the SAN count cap (issue.max_subject_alt_names, 64), and an
    audit line bounded whatever the request holds: 1,000 SANs with a wrong challenge used to be
    issued-or-logged name by name (a 780 KB line for 30,000)."""
    many = [f"DNS:h{i:04d}.example.com" for i in range(1000)]
    cases = [(many, "wrong", "too-many-names"), (["DNS:*.*.example"], harness.CHALLENGE, "name-invalid"),
             (["DNS:not a hostname!"], harness.CHALLENGE, "name-invalid"), (["DNS:line1\nline2"], harness.CHALLENGE, "name-invalid")]
    before = set(site.issued_serials())
    for sans, challenge, reason in cases:
        work = harness.make_request(site, workdir(site, "names"), subject="CN=names", challenge=challenge, san=sans)
        status, _, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
        assert status == 200
        reply = harness.open_reply(work, body)
        assert reply["status"] == "failure" and reply["failInfo"] == "badRequest", reply
        site.wait_audit(1)
        with open(site.audit) as f:
            line = f.readlines()[-1]
        event = json.loads(line)
        assert event["reason"] == reason and "challengeMode" not in event and len(line) < 4096, (reason, len(line))
    assert set(site.issued_serials()) == before
    assert site.request("GET", "operation=GetCACaps")[0] == 200
