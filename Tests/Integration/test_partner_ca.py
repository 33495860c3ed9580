"""What an Intune and Active Directory estate expects of a partner CA, through nginx and the
running server: strong certificate mapping (the SID extension, and who may name a SID) and the
profile's validity carried in the CSR."""
import datetime
import os
import subprocess
import tempfile

import pytest
from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

import harness
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
