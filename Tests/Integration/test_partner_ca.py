"""What an Intune and Active Directory estate expects of a partner CA, through nginx and the
running server: strong certificate mapping (the SID extension, and who may name a SID) and the
profile's validity carried in the CSR."""
import datetime
import os
import shutil
import subprocess
import tempfile
import time

import pytest
from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

import harness
import test_intune
from test_intune import start_intune_site

SID = "S-1-5-21-3623811015-3361044348-30300820-1013"
SID_URI = "URI:tag:microsoft.com,2022-09-14:sid:" + SID
SID_EXTENSION = ObjectIdentifier("1.3.6.1.4.1.311.25.2")


def expected_extension(sid):
    """MS-WCCE 2.2.2.7.7.4, written out from the specification's layout (docs/partner-ca.md §1),
    not from scep-fcgi's encoder: GeneralNames { otherName { 1.3.6.1.4.1.311.25.2.1, [0] { OCTET STRING sid } } }."""
    def tlv(tag, content):
        assert len(content) < 128
        return bytes([tag, len(content)]) + content
    oid = bytes.fromhex("060A2B060104018237190201")
    return tlv(0x30, tlv(0xA0, oid + tlv(0xA0, tlv(0x04, sid.encode()))))


def enroll(site, challenge, **options):
    work = harness.make_request(site, tempfile.mkdtemp(dir=site.root), challenge=challenge, **options)
    status, ctype, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
    assert status == 200 and ctype == "application/x-pki-message", (status, body[:200])
    return harness.open_reply(work, body), work, site.audit_lines()[-1]


def load(work):
    with open(os.path.join(work, "cert.pem"), "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


@pytest.fixture(scope="module")
def intune():
    site, mock = start_intune_site(prefix="scep-it-partner-")
    yield site, mock
    site.stop()
    mock.stop()


@pytest.fixture(scope="module")
def static():
    site = harness.Site("nginx").start()
    yield site
    site.stop()


def test_intune_validated_sid_gets_the_extension_byte_for_byte(intune):
    site, mock = intune
    rep, work, event = enroll(site, "sidprofile-" + SID, subject="CN=sid-device", san=[SID_URI, "DNS:sid-device.example"])
    assert rep["status"] == "success", rep
    cert = load(work)
    ext = cert.extensions.get_extension_for_oid(SID_EXTENSION)
    assert ext.critical is False
    assert ext.value.value == expected_extension(SID)
    # The URI the profile asked for stays in the subjectAltName.
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == ["tag:microsoft.com,2022-09-14:sid:" + SID]
    # openssl reads the same layers: otherName, its OID, the OCTET STRING holding the SID text.
    der = os.path.join(work, "sid-ext.der")
    with open(der, "wb") as f:
        f.write(ext.value.value)
    parsed = harness.run(["openssl", "asn1parse", "-inform", "DER", "-in", der]).stdout
    assert ":1.3.6.1.4.1.311.25.2.1" in parsed and "OCTET STRING" in parsed
    assert event["outcome"] == "issued" and event["sid"] == SID and event["challengeResult"] == "Success"


def test_intune_refuses_a_sid_other_than_the_profile_s(intune):
    site, mock = intune
    before = set(site.issued_serials())
    rep, _, event = enroll(site, "sidprofile-" + SID, subject="CN=sid-other", san=["URI:tag:microsoft.com,2022-09-14:sid:S-1-5-21-1-2-3-500"])
    assert rep["status"] == "failure" and event["challengeResult"] == "SubjectAltNameMismatch"
    assert set(site.issued_serials()) == before


def test_intune_sid_extension_alone_is_not_vouched_for(intune):
    """Intune compares subjectAltNames with the profile, not a requested SID extension."""
    site, mock = intune
    mock.reset()
    before = set(site.issued_serials())
    rep, _, event = enroll(site, "ok-sid-extension", subject="CN=sid-ext-only", sid_extension=SID)
    assert rep["status"] == "failure" and rep["failInfo"] == "badRequest" and event["reason"] == "sid-not-validated"
    assert set(site.issued_serials()) == before
    # Validated, then refused: Intune hears that no certificate was issued.
    assert [r["op"] for r in mock.state()["requests"]] == ["validateRequest", "failureNotification"]


def test_static_challenge_refuses_any_requested_sid(static):
    before = set(static.issued_serials())
    for options in [{"san": [SID_URI]}, {"san": ["URI:TAG:MICROSOFT.COM,2022-09-14:SID:" + SID]}, {"sid_extension": SID}]:
        rep, _, event = enroll(static, harness.CHALLENGE, subject="CN=would-be-admin", **options)
        assert rep["status"] == "failure" and rep["failInfo"] == "badRequest", options
        assert event["reason"] == "sid-not-validated" and event["outcome"] == "rejected", options
    rep, _, event = enroll(static, harness.CHALLENGE, subject="CN=bad-sid", san=["URI:tag:microsoft.com,2022-09-14:sid:S-1-5-21-x"])
    assert rep["failInfo"] == "badRequest" and event["reason"] == "sid-invalid"
    assert set(static.issued_serials()) == before


def test_static_renewal_keeps_no_sid_it_did_not_have(static):
    rep, work, _ = enroll(static, harness.CHALLENGE, subject="CN=renew-no-sid")
    renewal = harness.make_request(static, tempfile.mkdtemp(dir=static.root), subject="CN=renew-no-sid", challenge=None, message_type=17,
                                   signer_cert=os.path.join(work, "cert.pem"), signer_key=os.path.join(work, "key.pem"),
                                   sid_extension=SID)
    status, _, body = static.request("POST", "operation=PKIOperation", open(os.path.join(renewal, "request.der"), "rb").read())
    assert harness.open_reply(renewal, body)["failInfo"] == "badRequest"
    assert static.audit_lines()[-1]["reason"] == "sid-not-validated"


def validity_days(cert):
    return (cert.not_valid_after_utc - cert.not_valid_before_utc) / datetime.timedelta(days=1)


@pytest.mark.parametrize("pairs,days,rule", [
    (["ValidityPeriod=Days", "ValidityPeriodUnits=2"], 2, "honored"),
    (["ValidityPeriodUnits=36", "ValidityPeriod=Hours"], 1.5, "honored"),
    (["ValidityPeriod=Years", "ValidityPeriodUnits=1"], 7, "capped"),  # the site's issue.validity_days
    (["ValidityPeriod=Days", "ValidityPeriodUnits=two"], 7, "ignored-bad-units"),
])
def test_profile_validity_honoured_and_capped(static, pairs, days, rule):
    rep, work, event = enroll(static, harness.CHALLENGE, subject="CN=validity", name_value=pairs)
    assert rep["status"] == "success"
    # notBefore is backdated five minutes.
    assert abs(validity_days(load(work)) - days - 5 / 1440) < 2 / 1440, validity_days(load(work))
    assert event["validityRule"] == rule


# -- Intune revocation (PkiConnectorFEService) ------------------------------------------------------

def sync(site):
    return harness.run([harness.SCEP_FCGI, "intune", "sync-revocations", "--config", site.config])


def crl_serials(der, ca_pem, where):
    path = os.path.join(where, "check.crl")
    with open(path, "wb") as f:
        f.write(der)
    out = harness.run(["openssl", "crl", "-inform", "DER", "-in", path, "-CAfile", ca_pem, "-noout", "-text"])
    assert "verify OK" in out.stdout + out.stderr, out.stdout + out.stderr
    return {line.split(":", 1)[1].strip().upper() for line in out.stdout.splitlines() if "Serial Number:" in line}


def get_crl(site, serial):
    """GetCRL (RFC 8894 §3.3.4) through nginx with our scep-client."""
    work = tempfile.mkdtemp(dir=site.root)
    out = harness.run([harness.SCEP_CLIENT, "query", "--kind", "getcrl", "--ca", site.ca_pem, "--serial", serial, "--out-dir", work])
    assert out.returncode == 0, out.stderr
    status, _, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
    reply = os.path.join(work, "reply.der")
    with open(reply, "wb") as f:
        f.write(body)
    crl = os.path.join(work, "crl.der")
    out = harness.run([harness.SCEP_CLIENT, "certrep", "--reply", reply, "--request-dir", work, "--crl-out", crl])
    assert out.returncode == 0, out.stderr
    return crl_serials(open(crl, "rb").read(), site.ca_pem, work)


def test_intune_revocation_sync_revokes_reports_and_publishes(intune):
    site, mock = intune
    mock.reset()
    device, device_work, _ = enroll(site, "ok-wiped-device", subject="CN=wiped-device")
    earlier, _, _ = enroll(site, "ok-earlier-device", subject="CN=earlier-device")
    site.ca("revoke", earlier["serial"], "--reason", "keyCompromise")
    notifications = [r["body"]["notification"] for r in mock.state()["requests"] if r["op"] == "successNotification"]
    ours = notifications[0]["caConfiguration"]
    # Stable and documented: the issuing CA's subject unless intune.ca_configuration says otherwise.
    assert ours == notifications[0]["issuingCertificateAuthority"] == notifications[0]["certificateAuthority"]
    assert "Integration nginx CA" in ours
    queued = [
        # Intune echoes the serial as reported; lower case with a leading zero byte must match too.
        {"requestContext": "ctx-wiped", "serialNumber": "00" + device["serial"].lower(), "issuerName": ours, "caConfiguration": ours},
        {"requestContext": "ctx-unknown", "serialNumber": "0DEADBEEF0DEADBEEF", "issuerName": ours, "caConfiguration": ours},
        {"requestContext": "ctx-already", "serialNumber": earlier["serial"], "issuerName": ours, "caConfiguration": ours},
        {"requestContext": "ctx-by-issuer", "serialNumber": "0BADC0DE", "issuerName": ours.replace(",", ", "), "caConfiguration": None},
        {"requestContext": "ctx-foreign", "serialNumber": device["serial"], "issuerName": "CN=Other CA",
         "caConfiguration": "other-ca.example.com\\Other CA"},
    ]
    mock.call("POST", "/_mock/revocations", {"requests": queued})
    lines_before = len(site.audit_lines())
    out = sync(site)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "revoked 1, already revoked 1, unknown 2, failed 0, uploaded 4; left for other CAs 1" in out.stdout, out.stdout
    state = mock.state()
    [upload] = state["revocation_uploads"]
    results = {r["requestContext"]: (r["succeeded"], r["errorCode"]) for r in upload}
    assert results == {"ctx-wiped": (True, "0"), "ctx-unknown": (False, "4004"), "ctx-already": (True, "0"),
                       "ctx-by-issuer": (False, "4004")}
    # The foreign request stays queued for its CA; the second download brought nothing new.
    assert [r["requestContext"] for r in state["revocation_queue"]] == ["ctx-foreign"]
    assert len(state["revocation_downloads"]) == 2
    d = state["revocation_downloads"][0]
    assert d["parameters"] == {"maxRequests": 500, "issuerName": None} and d["headers"]["api-version"] == "5019-05-05"
    # One audit line per request of ours, through the one revocation path.
    lines = [e for e in site.audit_lines()[lines_before:] if e.get("operation") == "IntuneRevocation"]
    by_context = {e["requestContext"]: e for e in lines}
    assert set(by_context) == {"ctx-wiped", "ctx-unknown", "ctx-already", "ctx-by-issuer"}
    assert by_context["ctx-wiped"]["outcome"] == "revoked" and by_context["ctx-wiped"]["serial"] == device["serial"]
    assert by_context["ctx-wiped"]["revocationReason"] == "cessationOfOperation"
    assert by_context["ctx-already"]["reason"] == "already-revoked" and by_context["ctx-already"]["revocationReason"] == "keyCompromise"
    assert by_context["ctx-unknown"]["outcome"] == "rejected" and by_context["ctx-unknown"]["reason"] == "unknown-certificate"
    # Revoked: in the CRL nginx serves, and in GetCRL.
    status, _, der = site.get("/crl/ca.crl")
    assert status == 200 and device["serial"] in crl_serials(der, site.ca_pem, device_work)
    assert {device["serial"], earlier["serial"]} <= get_crl(site, device["serial"])
    # Idempotent: a second run finds only the foreign request and uploads nothing.
    again = sync(site)
    assert again.returncode == 0 and "uploaded 0" in again.stdout, again.stdout
    assert len(mock.state()["revocation_uploads"]) == 1


def test_revocation_queue_full_of_other_cas_does_not_loop(intune):
    site, mock = intune
    mock.reset()
    foreign = [{"requestContext": f"other-{i}", "serialNumber": f"{i:04X}", "issuerName": "CN=Other CA", "caConfiguration": "other\\CA"}
               for i in range(600)]
    mock.call("POST", "/_mock/revocations", {"requests": foreign})
    out = sync(site)
    assert out.returncode == 0 and "downloaded 500 in 2 page(s)" in out.stdout and "uploaded 0" in out.stdout, out.stdout
    state = mock.state()
    assert len(state["revocation_downloads"]) == 2 and not state["revocation_uploads"] and len(state["revocation_queue"]) == 600


def test_revocation_sync_service_failure_and_one_run_at_a_time(intune):
    site, mock = intune
    mock.reset()
    device, _, _ = enroll(site, "ok-locked-device", subject="CN=locked-device")
    ours = [r for r in mock.state()["requests"] if r["op"] == "successNotification"][-1]["body"]["notification"]["caConfiguration"]
    mock.call("POST", "/_mock/revocations", {"requests": [
        {"requestContext": "ctx-locked", "serialNumber": device["serial"], "issuerName": ours, "caConfiguration": ours}]})
    mock.configure(revocation_status=503)
    failed = sync(site)
    assert failed.returncode == 1 and "intune-http-error" in failed.stderr, failed.stdout + failed.stderr
    assert [e["status"] for e in json_lines(site.ca("list", "--json").stdout) if e["serial"] == device["serial"]] == ["valid"]
    # Two runs at once (a slow service): one works, the other does nothing.
    mock.configure(revocation_status=None, revocation_delay_ms=700)
    runs = [subprocess.Popen([harness.SCEP_FCGI, "intune", "sync-revocations", "--config", site.config], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in runs]
    assert sorted(p.returncode for p in runs) == [0, 0], outputs
    assert sum("another sync-revocations is running" in o for o, _ in outputs) == 1, outputs
    assert len(mock.state()["revocation_uploads"]) == 1


def json_lines(text):
    import json
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- Entra certificate credential (client assertion) ------------------------------------------------

def client_certificate(root, name):
    cert, key = os.path.join(root, name + ".pem"), os.path.join(root, name + ".key")
    out = harness.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-days", "2",
                       "-keyout", key, "-out", cert])
    assert out.returncode == 0, out.stderr
    os.chmod(key, 0o600)
    return cert, key


def jwt_parts(assertion):
    import base64
    import json
    decode = lambda part: base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    header, claims, _ = assertion.split(".")
    return json.loads(decode(header)), json.loads(decode(claims))


def post_token(mock, form):
    """A token request straight to the mock's Entra endpoint."""
    import http.client
    import json
    import ssl
    import urllib.parse
    conn = http.client.HTTPSConnection("127.0.0.1", mock.port, context=ssl.create_default_context(cafile=mock.ca), timeout=10)
    conn.request("POST", f"/{test_intune.TENANT}/oauth2/v2.0/token", body=urllib.parse.urlencode(form),
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    return response.status, body


def signed_assertion(key_file, cert_file, **claims):
    """A client assertion made here with cryptography, to show the mock refuses what Entra refuses."""
    import base64
    import hashlib
    import json
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    b64 = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    cert = x509.load_pem_x509_certificate(open(cert_file, "rb").read())
    key = serialization.load_pem_private_key(open(key_file, "rb").read(), password=None)
    header = {"alg": "RS256", "typ": "JWT", "x5t#S256": b64(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest())}
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return signing_input + "." + b64(key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()))


def test_certificate_credential_assertion_rotation_check_and_metrics():
    root = tempfile.mkdtemp(prefix="scep-it-credential-")
    os.chmod(root, 0o755)
    mock = test_intune.Mock(root)
    cert_a, key_a = client_certificate(root, "entra-app-a")
    mock.configure(client_certificates=[open(cert_a).read()])
    # The live files scep-fcgi is configured with; rotation replaces them.
    cert_file, key_file = os.path.join(root, "entra-app.pem"), os.path.join(root, "entra-app.key")
    shutil.copy(cert_a, cert_file)
    shutil.copy(key_a, key_file)
    os.chmod(key_file, 0o600)
    section = test_intune.intune_section(mock, client_secret_file=None, client_certificate_file=cert_file, client_key_file=key_file)
    site = harness.Site("nginx", challenge_section=section, extra="[metrics]\npath = /scep-metrics\n").start()
    try:
        rep, _, event = enroll(site, "ok-certificate-credential", subject="CN=cert-credential")
        assert rep["status"] == "success", (rep, event)
        token_url = f"{mock.base}{test_intune.TENANT}/oauth2/v2.0/token"
        [first] = mock.state()["assertions"][-1:]
        header, claims = jwt_parts(first)
        assert header["alg"] == "RS256" and header["x5t#S256"] == thumbprint_s256(cert_a)
        assert claims["aud"] == token_url and claims["iss"] == claims["sub"] == test_intune.CLIENT_ID and claims["jti"]
        assert 0 < claims["exp"] - claims["nbf"] <= 600
        # What Entra refuses, the mock refuses: a tampered signature, a wrong audience, an expired assertion.
        head, body, signature = first.split(".")
        tampered = head + "." + body + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
        base = {"grant_type": "client_credentials", "client_id": test_intune.CLIENT_ID, "scope": "https://graph.microsoft.com/.default",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
        status, answer = post_token(mock, {**base, "client_assertion": tampered})
        assert status == 401 and answer["error_codes"] == [700027]
        now = int(time.time())
        good = dict(aud=token_url, iss=test_intune.CLIENT_ID, sub=test_intune.CLIENT_ID, nbf=now - 60, exp=now + 300)
        for changed, code in [(dict(aud="https://login.example/other/oauth2/v2.0/token"), 50027), (dict(nbf=now - 900, exp=now - 600), 700024)]:
            assertion = signed_assertion(key_a, cert_a, jti=f"test-{code}", **{**good, **changed})
            status, answer = post_token(mock, {**base, "client_assertion": assertion})
            assert status == 401 and answer["error_codes"] == [code], answer
        status, answer = post_token(mock, {**base, "client_assertion": signed_assertion(key_a, cert_a, jti="test-ok", **good)})
        assert status == 200 and answer["access_token"]
        # check --intune names the credential; the metrics expose its expiry.
        check = harness.run([harness.SCEP_FCGI, "check", "--intune", "--config", site.config])
        assert check.returncode == 0 and "Entra credential: certificate" in check.stdout and "expires" in check.stdout, check.stdout
        not_after = x509.load_pem_x509_certificate(open(cert_a, "rb").read()).not_valid_after_utc.timestamp()
        metrics = site.get("/scep-metrics")[2].decode()
        [value] = [float(line.split()[1]) for line in metrics.splitlines()
                   if line.startswith("scep_intune_client_certificate_expiry_timestamp_seconds ")]
        assert value == not_after
        # Rotation without a restart: new files, Entra knows only the new certificate, and the
        # next token (forced by a 401 from Intune) is asserted with it.
        cert_b, key_b = client_certificate(root, "entra-app-b")
        shutil.copy(key_b, key_file + ".new")
        os.chmod(key_file + ".new", 0o600)
        os.rename(key_file + ".new", key_file)
        shutil.copy(cert_b, cert_file + ".new")
        os.rename(cert_file + ".new", cert_file)
        mock.configure(client_certificates=[open(cert_b).read()], unauthorized_once=True)
        rep, _, event = enroll(site, "ok-after-rotation", subject="CN=cert-credential-rotated")
        assert rep["status"] == "success", event
        header, _ = jwt_parts(mock.state()["assertions"][-1])
        assert header["x5t#S256"] == thumbprint_s256(cert_b)
        # A certificate Entra does not know: the enrollment fails closed, naming the refusal.
        mock.configure(client_certificates=[open(cert_a).read()], unauthorized_once=True)
        rep, _, event = enroll(site, "ok-unknown-certificate", subject="CN=cert-credential-refused")
        assert rep["status"] == "failure" and event["challengeError"] == "intune-credentials-rejected", event
        assert any(c["op"] == "token" and c.get("code") == "AADSTS700027" for c in event["validatorCalls"])
    finally:
        site.stop()
        mock.stop()


def thumbprint_s256(cert_file):
    import base64
    import hashlib
    from cryptography.hazmat.primitives import serialization
    der = x509.load_pem_x509_certificate(open(cert_file, "rb").read()).public_bytes(serialization.Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def test_check_intune_probe_sends_a_junk_validation_and_issues_nothing(intune):
    site, mock = intune
    mock.reset()
    before = set(site.issued_serials())
    audit_before = len(site.audit_lines())
    out = harness.run([harness.SCEP_FCGI, "check", "--intune", "--probe", "--config", site.config])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Entra credential: client secret" in out.stdout
    assert "ScepRequestValidationFEService: https://127.0.0.1" in out.stdout and "PkiConnectorFEService: https://127.0.0.1" in out.stdout
    assert "refused a junk challenge with ChallengeDecryptionError" in out.stdout
    [validate] = [r for r in mock.state()["requests"] if r["op"] == "validateRequest"]
    assert validate["body"]["request"]["transactionId"].startswith("scep-fcgi-probe-")
    assert [r["op"] for r in mock.state()["requests"]] == ["validateRequest"]  # no notification of any kind
    assert set(site.issued_serials()) == before and len(site.audit_lines()) == audit_before
    # Without the Intune permission the probe says so.
    mock.configure(scep_status=403)
    out = harness.run([harness.SCEP_FCGI, "check", "--intune", "--probe", "--config", site.config])
    mock.configure(scep_status=None)
    assert out.returncode == 1 and "intune-unauthorized" in out.stdout, out.stdout
    assert harness.run([harness.SCEP_FCGI, "check", "--probe", "--config", site.config]).returncode != 0
