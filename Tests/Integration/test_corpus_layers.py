"""The bad-input corpus, second slice (issue [3/5] item 1): one field broken at a time in each layer
of a pkiMessage, built by scepcraft.py (our own builder, from RFC 8894 §3, RFC 5652, RFC 2986 and
RFC 5280) and sent through the web server to the running server.

Families: the outer SignedData, the signer certificate, the signed attributes, the EnvelopedData,
the CSR, the lifecycle messages (RenewalReq, CertPoll, GetCert, GetCRL) with wrong issuer or
serial, and a GET over nginx's request-line limit. The cases run behind nginx and behind Apache
with mod_proxy_fcgi and with mod_fcgid. Every case has its documented answer: an HTTP 4xx with fixed text, a signed CertRep FAILURE with failInfo and an audit reason, or SUCCESS where
the RFCs make the input valid (no keyUsage, several recipients, the allowed clock skew...). For
every case: one audit line (none for nginx's own 414), no 5xx, the server keeps serving, and no
certificate unless SUCCESS is the documented answer, in which case it is real and audited.
"""
import datetime
import os

import pytest
from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

import harness
import scepcraft as c

HUGE_MODULUS = (1 << 19999) | (1 << 1000) | 1  # 20,000 bits: over OpenSSL's 16,384-bit limit


@pytest.fixture(scope="module", params=["nginx", "apache-proxy-fcgi", "apache-fcgid"])
def ctx(request):
    site = harness.Site(request.param)
    site.start()
    with open(site.ca_pem, "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    context = {"site": site, "ca": c.der(ca), "ca_cert": ca, "kind": request.param}
    # A certificate of ours, for the lifecycle family: enrolled with the builder itself.
    enrollment = c.pkcs_req(context["ca"], harness.CHALLENGE, "CN=corpus-lifecycle", csr_key=c.rsa_key(2048, 3))
    status, _, data = site.request("POST", "operation=PKIOperation", enrollment.encode())
    reply = c.read_reply(data, enrollment)
    assert status == 200 and reply["status"] == "success", reply
    context["issued"] = reply["certificates"][0]
    context["issued_key"] = c.rsa_key(2048, 3)
    context["issued_transaction"] = enrollment.transaction_id
    yield context
    site.stop()


def pkcs(ctx, subject="CN=corpus-layer", challenge=harness.CHALLENGE, csr_key=None, **options):
    return c.pkcs_req(ctx["ca"], challenge, subject, csr_key=csr_key, **options)


def with_(request, change):
    change(request)
    return request


def rebuilt_envelope(ctx, request, **options):
    """The request with its envelope replaced (and its messageDigest matching it again)."""
    content = options.pop("content", None) or c.csr(c.rsa_key(2048, 0), "CN=corpus-layer", harness.CHALLENGE)
    request.envelope = c.envelope(content, options.pop("recipient", ctx["ca"]), **options)
    request.redigest()
    return request


def lifecycle(ctx, message_type, message_data, signer="self", transaction_id=None):
    """A CertPoll/GetCert/GetCRL/RenewalReq enveloped to the CA, signed by a self-signed
    certificate or by the certificate the fixture enrolled."""
    if signer == "issued":
        request = c.Request(ctx["ca"], message_data, message_type, signer_key=ctx["issued_key"], signer_cert=ctx["issued"])
    else:
        request = c.Request(ctx["ca"], message_data, message_type)
    if transaction_id:
        request.transaction_id = transaction_id
        request.attributes[c.TRANSACTION_ID] = [c.printable(transaction_id)]
    return request


def issuer_and_serial(issuer_der, serial):
    return c.seq(issuer_der, c.integer(serial))


def other_name_der():
    return c.name("Not Our CA").public_bytes()


def our_issuer_der(ctx):
    return ctx["ca_cert"].subject.public_bytes()


def forged_of_ours(ctx):
    """A certificate naming our CA as issuer, signed by another key."""
    key = c.rsa_key(2048, 4)
    return key, c.certificate(key, "CN=corpus-forged", issuer_key=c.rsa_key(2048, 5), issuer_name=ctx["ca_cert"].subject)


HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)
CA_TRUE = (x509.BasicConstraints(ca=True, path_length=None), True)
CA_FALSE = (x509.BasicConstraints(ca=False, path_length=None), True)
UNKNOWN_CRITICAL = (x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.7.1"), b"\x05\x00"), True)
UNKNOWN_PLAIN = (x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.7.2"), b"\x05\x00"), False)
KEY_USAGE = (x509.KeyUsage(True, False, True, False, False, False, False, False, False), True)
TEMPLATE_NAME = (x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.311.20.2"), b"\x1e\x08\x00U\x00s\x00e\x00r"), False)


def signer_request(ctx, key=None, **cert_options):
    key = key or c.rsa_key(2048, 1)
    return pkcs(ctx, signer_key=key, signer_cert=c.certificate(key, **cert_options))


def huge_key_request(ctx, modulus, exponent):
    request = pkcs(ctx)
    request.certificates = [c.certificate_with_public_key(request.signer_cert, modulus, exponent)]
    request.signer_cert = request.certificates[0]
    return request


def two_recipients(ctx, first_transport="pkcs1", ours_transport="pkcs1"):
    cek = os.urandom(16)
    other = c.certificate(c.rsa_key(2048, 6), "CN=someone else")
    infos = [c.recipient_info(other, cek, first_transport), c.recipient_info(ctx["ca"], cek, ours_transport)]
    return rebuilt_envelope(ctx, pkcs(ctx), recipients=infos, cek=cek)


def ski_recipient(ctx):
    ski = ctx["ca_cert"].extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    cek = os.urandom(16)
    return rebuilt_envelope(ctx, pkcs(ctx), recipients=[c.recipient_info(ctx["ca"], cek, rid=c.tlv(0x80, ski))], cek=cek)


def bad_padding(ctx):
    key, iv = os.urandom(16), os.urandom(16)
    content = c.csr(c.rsa_key(2048, 0), "CN=corpus-layer", harness.CHALLENGE)
    raw = content + bytes(16 - len(content) % 16)  # zero bytes: not PKCS#7 padding
    infos = [c.recipient_info(ctx["ca"], key)]
    return rebuilt_envelope(ctx, pkcs(ctx), recipients=infos, cek=key, iv=iv, encrypted=c.encrypt_content(raw, "aes128", key, iv, pad=False))


def truncated_ciphertext(ctx):
    key, iv = os.urandom(16), os.urandom(16)
    content = c.csr(c.rsa_key(2048, 0), "CN=corpus-layer", harness.CHALLENGE)
    encrypted = c.encrypt_content(content, "aes128", key, iv)[:-5]
    return rebuilt_envelope(ctx, pkcs(ctx), recipients=[c.recipient_info(ctx["ca"], key)], cek=key, iv=iv, encrypted=encrypted)


def wrong_key_transport(ctx, encrypted_key):
    cek = os.urandom(16)
    info = c.recipient_info(ctx["ca"], cek, encrypted_key=encrypted_key(ctx))
    return rebuilt_envelope(ctx, pkcs(ctx), recipients=[info], cek=cek)


def garbage_content(ctx):
    return rebuilt_envelope(ctx, pkcs(ctx), content=os.urandom(300))


def flipped_last_byte(data):
    return data[:-1] + bytes([data[-1] ^ 1])  # the last byte of a PKCS#10 is in its signature


def attr(request, oid, *values):
    request.attributes[oid] = list(values)
    return request


def drop(request, oid):
    del request.attributes[oid]
    return request


def repeat(request, oid, value=None):
    if value is None:
        request.repeat.append(oid)
    else:
        request.attributes[oid] = request.attributes[oid] + [value]  # one attribute, two values
    return request


def resign_other_content(request):
    request.attributes[c.MESSAGE_DIGEST] = [c.octets(bytes(32))]
    return request


def flip_signature(request):
    attributes_set = c.encode_attributes(request.attributes)
    signature = bytearray(c.sign(request.signer_key, attributes_set, request.digest))
    signature[10] ^= 1
    request.signature = bytes(signature)
    return request


def ec_signer(ctx):
    key = c.ec_key()
    return pkcs(ctx, signer_key=key, signer_cert=c.certificate(key))


F, H, S = "failure", "http", "success"
# What the audit line names as the cipher of each unsupported-cipher case.
UNSUPPORTED_CIPHERS = {"env-unknown-cipher": "1.3.6.1.4.1.55555.3", "env-camellia": "1.2.392.200011.61.1.1.1.2",
                       "env-aes-gcm": "2.16.840.1.101.3.4.1.6", "env-unknown-key-transport": "AES-128-CBC"}

# (case id, expected kind, failInfo or HTTP status, audit reason, builder)
CASES = [
    # -- outer SignedData (RFC 5652 §5, RFC 8894 §3.2) --
    ("sd-contentinfo-data", H, 400, "malformed-message", lambda x: with_(pkcs(x), lambda r: setattr(r, "content_type", c.DATA))),
    ("sd-contentinfo-enveloped", H, 400, "malformed-message", lambda x: pkcs(x).envelope),
    ("sd-no-signer", H, 400, "malformed-message", lambda x: with_(pkcs(x), lambda r: setattr(r, "signer_infos", []))),
    ("sd-two-signers", H, 400, "malformed-message", lambda x: with_(pkcs(x), lambda r: setattr(r, "second_signer", {}))),
    ("sd-two-signers-two-ids", H, 400, "malformed-message",
     lambda x: with_(pkcs(x), lambda r: setattr(r, "second_signer", {c.TRANSACTION_ID: [c.printable("other-id")]}))),
    ("sd-digest-sha3", F, "badAlg", "unsupported-digest", lambda x: pkcs(x, digest="sha3-256")),
    ("sd-bad-signature", F, "badMessageCheck", "bad-signature", lambda x: flip_signature(pkcs(x))),
    ("sd-message-digest-wrong", F, "badMessageCheck", "bad-signature", lambda x: resign_other_content(pkcs(x))),
    ("sd-no-signer-certificate", F, "badMessageCheck", "bad-signature", lambda x: with_(pkcs(x), lambda r: setattr(r, "certificates", []))),
    ("sd-signer-certificate-of-another-key", F, "badMessageCheck", "bad-signature",
     lambda x: with_(pkcs(x), lambda r: setattr(r, "certificates", [c.certificate(c.rsa_key(2048, 2))]))),
    ("sd-detached", F, "badMessageCheck", "bad-signature", lambda x: with_(pkcs(x), lambda r: setattr(r, "detached", True))),
    ("sd-sha512", S, None, None, lambda x: pkcs(x, digest="sha512")),
    # -- signer certificate (RFC 8894 §2.3; issue.signer_clock_skew_minutes = 1440) --
    ("signer-expired", F, "badTime", "signer-not-valid",
     lambda x: signer_request(x, not_before=c.now() - 400 * DAY, not_after=c.now() - 35 * DAY)),
    ("signer-not-yet-valid", F, "badTime", "signer-not-valid",
     lambda x: signer_request(x, not_before=c.now() + 30 * DAY, not_after=c.now() + 400 * DAY)),
    ("signer-expired-within-skew", S, None, None,
     lambda x: signer_request(x, not_before=c.now() - 30 * DAY, not_after=c.now() - HOUR)),
    ("signer-starts-within-skew", S, None, None,  # certmonger: 00:00 of a local date ahead of UTC
     lambda x: signer_request(x, not_before=c.now() + 10 * HOUR, not_after=c.now() + 400 * DAY)),
    ("signer-huge-modulus", F, "badMessageCheck", "bad-signature", lambda x: huge_key_request(x, HUGE_MODULUS, 65537)),
    ("signer-huge-exponent", F, "badMessageCheck", "bad-signature",
     lambda x: huge_key_request(x, c.rsa_key(2048, 1).public_key().public_numbers().n, (1 << 4000) + 1)),
    ("signer-ec", F, "badAlg", "signer-key-not-rsa", ec_signer),
    ("signer-no-key-usage", S, None, None, lambda x: signer_request(x, key_usage=None)),
    ("signer-key-usage-without-signature", F, "badMessageCheck", "signer-key-usage",
     lambda x: signer_request(x, key_usage=("key_encipherment",))),
    ("signer-other-subject", S, None, None, lambda x: signer_request(x, subject="CN=SCEP SIGNER")),  # micromdm scepclient
    ("signer-4096", S, None, None, lambda x: signer_request(x, key=c.rsa_key(4096, 0))),
    ("signing-time-now", S, None, None, lambda x: attr(pkcs(x), c.SIGNING_TIME, c.utc_time(c.now()))),
    ("signing-time-generalized", S, None, None, lambda x: attr(pkcs(x), c.SIGNING_TIME, c.generalized_time(c.now()))),
    ("signing-time-two-days-ago", F, "badTime", "signing-time-skew", lambda x: attr(pkcs(x), c.SIGNING_TIME, c.utc_time(c.now() - 2 * DAY))),
    ("signing-time-next-week", F, "badTime", "signing-time-skew", lambda x: attr(pkcs(x), c.SIGNING_TIME, c.utc_time(c.now() + 7 * DAY))),
    ("signing-time-not-a-time", F, "badTime", "signing-time-skew", lambda x: attr(pkcs(x), c.SIGNING_TIME, c.printable("yesterday"))),
    # -- signed attributes (RFC 8894 §3.2.1) --
    ("attr-transaction-id-missing", H, 400, "missing-transaction-id", lambda x: drop(pkcs(x), c.TRANSACTION_ID)),
    ("attr-transaction-id-twice", H, 400, "missing-transaction-id", lambda x: repeat(pkcs(x), c.TRANSACTION_ID)),
    ("attr-transaction-id-two-values", H, 400, "missing-transaction-id", lambda x: repeat(pkcs(x), c.TRANSACTION_ID, c.printable("second"))),
    ("attr-transaction-id-octets", H, 400, "missing-transaction-id", lambda x: attr(pkcs(x), c.TRANSACTION_ID, c.octets(b"abc"))),
    ("attr-transaction-id-integer", H, 400, "missing-transaction-id", lambda x: attr(pkcs(x), c.TRANSACTION_ID, c.integer(42))),
    ("attr-transaction-id-257", H, 400, "missing-transaction-id", lambda x: attr(pkcs(x), c.TRANSACTION_ID, c.printable("t" * 257))),
    ("attr-transaction-id-newline", H, 400, "missing-transaction-id", lambda x: attr(pkcs(x), c.TRANSACTION_ID, c.tlv(0x0C, b"a\nb"))),
    ("attr-transaction-id-empty", H, 400, "missing-transaction-id", lambda x: attr(pkcs(x), c.TRANSACTION_ID, c.printable(""))),
    ("attr-transaction-id-40k", H, 400, "missing-transaction-id", lambda x: attr(pkcs(x), c.TRANSACTION_ID, c.printable("t" * 40000))),
    ("attr-message-type-missing", H, 400, "missing-message-type", lambda x: drop(pkcs(x), c.MESSAGE_TYPE)),
    ("attr-message-type-twice", H, 400, "missing-message-type", lambda x: repeat(pkcs(x), c.MESSAGE_TYPE)),
    ("attr-message-type-two-values", H, 400, "missing-message-type", lambda x: repeat(pkcs(x), c.MESSAGE_TYPE, c.printable("17"))),
    ("attr-message-type-integer", H, 400, "missing-message-type", lambda x: attr(pkcs(x), c.MESSAGE_TYPE, c.integer(19))),
    ("attr-message-type-plus", H, 400, "missing-message-type", lambda x: attr(pkcs(x), c.MESSAGE_TYPE, c.printable("+19"))),
    ("attr-message-type-space", H, 400, "missing-message-type", lambda x: attr(pkcs(x), c.MESSAGE_TYPE, c.printable(" 19"))),
    ("attr-message-type-long", H, 400, "missing-message-type", lambda x: attr(pkcs(x), c.MESSAGE_TYPE, c.printable("1" * 1000))),
    ("attr-message-type-undefined", F, "badRequest", "unsupported-message-type", lambda x: attr(pkcs(x), c.MESSAGE_TYPE, c.printable("99"))),
    ("attr-nonce-missing", H, 400, "missing-sender-nonce", lambda x: drop(pkcs(x), c.SENDER_NONCE)),
    ("attr-nonce-twice", H, 400, "missing-sender-nonce", lambda x: repeat(pkcs(x), c.SENDER_NONCE)),
    ("attr-nonce-printable", H, 400, "missing-sender-nonce", lambda x: attr(pkcs(x), c.SENDER_NONCE, c.printable("0123456789abcdef"))),
    ("attr-nonce-65", H, 400, "missing-sender-nonce", lambda x: attr(pkcs(x), c.SENDER_NONCE, c.octets(os.urandom(65)))),
    ("attr-message-digest-missing", F, "badMessageCheck", "bad-signature", lambda x: drop(pkcs(x), c.MESSAGE_DIGEST)),
    ("attr-message-digest-twice", F, "badMessageCheck", "bad-signature", lambda x: repeat(pkcs(x), c.MESSAGE_DIGEST)),
    ("attr-content-type-missing", F, "badMessageCheck", "bad-signature", lambda x: drop(pkcs(x), c.CONTENT_TYPE)),
    ("attr-unknown-30k", S, None, None, lambda x: attr(pkcs(x), "1.3.6.1.4.1.55555.9", c.octets(os.urandom(30000)))),
    ("attr-pki-status-in-request", S, None, None, lambda x: attr(pkcs(x), c.PKI_STATUS, c.printable("2"))),
    ("attr-transaction-id-utf8", S, None, None, lambda x: with_(pkcs(x), lambda r: attr(r, c.TRANSACTION_ID, c.tlv(0x0C, r.transaction_id.encode())))),
    # -- EnvelopedData (RFC 5652 §6, RFC 8894 §3.2.2) --
    ("env-other-recipient", F, "badMessageCheck", "decrypt-failed",
     lambda x: rebuilt_envelope(x, pkcs(x), recipient=c.certificate(c.rsa_key(2048, 6), "CN=someone else"))),
    ("env-two-recipients", S, None, None, lambda x: two_recipients(x)),
    ("env-two-recipients-ours-oaep", S, None, None, lambda x: two_recipients(x, "pkcs1", "oaep-sha256")),
    ("env-recipient-by-ski", S, None, None, ski_recipient),
    ("env-unknown-cipher", F, "badAlg", "unsupported-cipher", lambda x: rebuilt_envelope(x, pkcs(x), cipher_oid="1.3.6.1.4.1.55555.3")),
    ("env-camellia", F, "badAlg", "unsupported-cipher", lambda x: rebuilt_envelope(x, pkcs(x), cipher_oid="1.2.392.200011.61.1.1.1.2")),
    ("env-aes-gcm", F, "badAlg", "unsupported-cipher", lambda x: rebuilt_envelope(x, pkcs(x), cipher_oid="2.16.840.1.101.3.4.1.6")),
    ("env-unknown-key-transport", F, "badAlg", "unsupported-cipher",
     lambda x: rebuilt_envelope(x, pkcs(x), recipients=[c.recipient_info(x["ca"], os.urandom(16), algorithm_der=c.algorithm("1.3.6.1.4.1.55555.4"))])),
    ("env-bad-padding", F, "badMessageCheck", "decrypt-failed", bad_padding),
    ("env-truncated-ciphertext", F, "badMessageCheck", "decrypt-failed", truncated_ciphertext),
    ("env-not-enveloped", F, "badMessageCheck", "malformed-envelope", lambda x: with_(pkcs(x), lambda r: (setattr(r, "envelope", c.seq(c.oid(c.DATA))), r.redigest()))),
    ("env-garbage", F, "badMessageCheck", "malformed-envelope", lambda x: with_(pkcs(x), lambda r: (setattr(r, "envelope", os.urandom(200)), r.redigest()))),
    ("env-3des", S, None, None, lambda x: rebuilt_envelope(x, pkcs(x), cipher="3des")),
    ("env-aes256-oaep", S, None, None, lambda x: rebuilt_envelope(x, pkcs(x), cipher="aes256", transport="oaep-sha256")),
    # -- CSR (RFC 2986, RFC 5280 §4.2) --
    ("csr-ca-true", F, "badRequest", "csr-ca-requested", lambda x: rebuilt_envelope(x, pkcs(x), content=c.csr(c.rsa_key(2048, 0), "CN=corpus-ca", harness.CHALLENGE, [CA_TRUE]))),
    ("csr-ca-false-critical", S, None, None, lambda x: rebuilt_envelope(x, pkcs(x), content=c.csr(c.rsa_key(2048, 0), "CN=corpus-leaf", harness.CHALLENGE, [CA_FALSE]))),
    ("csr-unknown-critical", F, "badRequest", "csr-critical-extension",
     lambda x: rebuilt_envelope(x, pkcs(x), content=c.csr(c.rsa_key(2048, 0), "CN=corpus-crit", harness.CHALLENGE, [UNKNOWN_CRITICAL]))),
    ("csr-unknown-noncritical", S, None, None, lambda x: rebuilt_envelope(x, pkcs(x), content=c.csr(c.rsa_key(2048, 0), "CN=corpus-plain", harness.CHALLENGE, [UNKNOWN_PLAIN]))),
    ("csr-key-usage-critical-template", S, None, None,  # Windows: KU critical, certificate template name
     lambda x: rebuilt_envelope(x, pkcs(x), content=c.csr(c.rsa_key(2048, 0), "CN=corpus-win", harness.CHALLENGE, [KEY_USAGE, TEMPLATE_NAME]))),
    ("csr-ec-key", S, None, None, lambda x: rebuilt_envelope(x, pkcs(x), content=c.csr(c.ec_key(), "CN=corpus-ec", harness.CHALLENGE))),
    ("csr-3000-sans", F, "badRequest", "too-many-names",
     lambda x: rebuilt_envelope(x, pkcs(x), content=c.csr(c.rsa_key(2048, 0), "CN=corpus-many", harness.CHALLENGE, sans=[f"h{i}.example" for i in range(3000)]))),
    ("csr-garbage", F, "badMessageCheck", "malformed-csr", garbage_content),
    ("csr-bad-signature", F, "badMessageCheck", "bad-csr-signature", lambda x: rebuilt_envelope(x, pkcs(x), content=flipped_last_byte(
        c.csr(c.rsa_key(2048, 0), "CN=corpus-badsig", harness.CHALLENGE)))),
    ("csr-san-nul", F, "badRequest", "name-invalid",
     lambda x: rebuilt_envelope(x, pkcs(x), content=c.csr(c.rsa_key(2048, 0), "CN=corpus-nul", harness.CHALLENGE, sans=["good.example.com\x00.evil.example"]))),
    ("csr-san-newline", F, "badRequest", "name-invalid",
     lambda x: rebuilt_envelope(x, pkcs(x), content=c.csr(c.rsa_key(2048, 0), "CN=corpus-nl", harness.CHALLENGE, sans=["line1\nline2.example"]))),
    ("csr-cn-newline", F, "badRequest", "subject-invalid", lambda x: rebuilt_envelope(x, pkcs(x), content=c.csr(c.rsa_key(2048, 0), "CN=two\nlines", harness.CHALLENGE))),
    ("csr-cn-nul", F, "badRequest", "subject-invalid", lambda x: rebuilt_envelope(x, pkcs(x), content=c.csr(c.rsa_key(2048, 0), "CN=nul\x00byte", harness.CHALLENGE))),
    ("csr-cn-tab", F, "badRequest", "subject-invalid", lambda x: rebuilt_envelope(x, pkcs(x), content=c.csr(c.rsa_key(2048, 0), "CN=tab\there", harness.CHALLENGE))),
    # -- lifecycle messages with a wrong issuer or serial (RFC 8894 §3.3.1.2, §3.3.3, §3.3.4) --
    ("getcert-unknown-serial", F, "badCertId", "unknown-certificate", lambda x: lifecycle(x, "21", issuer_and_serial(our_issuer_der(x), 0x5C3F00D1))),
    ("getcert-wrong-issuer", F, "badCertId", "unknown-issuer", lambda x: lifecycle(x, "21", issuer_and_serial(other_name_der(), x["issued"].serial_number))),
    ("getcert-garbage", F, "badMessageCheck", "malformed-payload", lambda x: lifecycle(x, "21", os.urandom(40))),
    ("getcert-ours", S, None, None, lambda x: lifecycle(x, "21", issuer_and_serial(our_issuer_der(x), x["issued"].serial_number), signer="issued")),
    ("getcrl-wrong-issuer", F, "badCertId", "unknown-issuer", lambda x: lifecycle(x, "22", issuer_and_serial(other_name_der(), x["issued"].serial_number))),
    ("getcrl-ours", S, None, None, lambda x: lifecycle(x, "22", issuer_and_serial(our_issuer_der(x), x["issued"].serial_number), signer="issued")),
    ("certpoll-unknown-transaction", F, "badCertId", "unknown-transaction",
     lambda x: lifecycle(x, "20", c.seq(our_issuer_der(x), c.name("corpus-lifecycle").public_bytes()))),
    ("certpoll-wrong-issuer-known-transaction", F, "badCertId", "unknown-issuer",
     lambda x: lifecycle(x, "20", c.seq(other_name_der(), c.name("corpus-lifecycle").public_bytes()), transaction_id=x["issued_transaction"])),
    ("renewal-self-signed", F, "badRequest", "renewal-signer-unknown", lambda x: pkcs(x, message_type="17")),
    ("renewal-forged-signer", F, "badMessageCheck", "renewal-signer-invalid",
     lambda x: (lambda key, cert: pkcs(x, message_type="17", signer_key=key, signer_cert=cert))(*forged_of_ours(x))),
    ("renewal-ours", S, None, None,
     lambda x: pkcs(x, "CN=corpus-lifecycle", None, c.rsa_key(2048, 7), message_type="17", signer_key=x["issued_key"], signer_cert=x["issued"])),
]


def send(site, body):
    return site.request("POST", "operation=PKIOperation", body)


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_layer_case(ctx, case):
    name, kind, expected, reason, build = case
    site = ctx["site"]
    built = build(ctx)
    request = built if isinstance(built, c.Request) else None
    body = built.encode() if request else built
    lines = len(site.audit_lines())
    before = set(site.issued_serials())
    status, content_type, data = send(site, body)
    events = site.audit_lines()[lines:]
    assert len(events) == 1, (name, events)
    event = events[0]
    if kind == H:
        assert status == expected and content_type.startswith("text/plain") and len(data) < 200, (name, status, data[:100])
        assert event["reason"] == reason, (name, event)
    else:
        assert status == 200, (name, status, data[:100])
        reply = c.read_reply(data, request)
        if kind == F:
            assert reply["status"] == "failure" and reply["failInfo"] == expected, (name, reply, event)
            assert event["reason"] == reason and event["failInfo"] == expected, (name, event)
            if reason == "unsupported-cipher":
                assert event["cipher"] == UNSUPPORTED_CIPHERS[name], (name, event)
        else:
            assert reply["status"] == "success", (name, reply, event)
    issued = set(site.issued_serials()) - before
    if kind == S and event["outcome"] == "issued":
        assert issued == {event["serial"]}, (name, issued, event)
        assert int(event["serial"], 16) in {cert.serial_number for cert in reply["certificates"]}
    else:
        assert not issued, (name, issued)
    assert site.request("GET", "operation=GetCACaps")[0] == 200


def test_two_recipients_reply_mirrors_ours(ctx):
    """The reply's key transport is that of the recipient addressed to us, not the first one."""
    request = two_recipients(ctx, "pkcs1", "oaep-sha256")
    status, _, data = send(ctx["site"], request.encode())
    reply = c.read_reply(data, request)
    assert status == 200 and reply["status"] == "success" and reply["replyTransport"] == "rsaes_oaep", reply


def test_envelope_failures_look_alike(ctx):
    """No padding oracle (Bleichenbacher): an encryptedKey that is not PKCS#1, one that is a valid
    PKCS#1 block of a wrong key, a bad content padding and content that decrypts to garbage all
    get the same failInfo and text. The audit log keeps the difference for the operator."""
    site = ctx["site"]
    builders = [
        lambda: wrong_key_transport(ctx, lambda x: os.urandom(256)),
        lambda: wrong_key_transport(ctx, lambda x: c.encrypt_key(x["ca"], os.urandom(16))),
        lambda: wrong_key_transport(ctx, lambda x: c.encrypt_key(x["ca"], os.urandom(7))),
        lambda: bad_padding(ctx),
        lambda: garbage_content(ctx),
    ]
    answers, reasons = set(), set()
    for build in builders:
        for _ in range(4):
            request = build()
            lines = len(site.audit_lines())
            status, _, data = send(site, request.encode())
            reply = c.read_reply(data, request)
            answers.add((status, reply["status"], reply["failInfo"], reply["failInfoText"]))
            reasons.add(site.audit_lines()[lines]["reason"])
    assert answers == {(200, "failure", "badMessageCheck", "pkcsPKIEnvelope cannot be decrypted, or its content is malformed")}, answers
    assert reasons <= {"decrypt-failed", "malformed-csr"} and "decrypt-failed" in reasons, reasons


def test_get_over_nginx_limit(ctx):
    """A GET whose request line passes large_client_header_buffers (64k) is nginx's 414, and never
    reaches scep-fcgi; one just under it is ours to answer. (Apache's long GETs are
    test_protocol.py::test_long_get_query: mod_proxy_fcgi drops a query string over 16 KiB.)"""
    if ctx["kind"] != "nginx":
        pytest.skip("nginx's large_client_header_buffers")
    site = ctx["site"]
    lines = len(site.audit_lines())
    status, _, _ = site.request("GET", "operation=PKIOperation&message=" + "A" * 70000)
    assert status == 414
    assert len(site.audit_lines()) == lines
    status, content_type, _ = site.request("GET", "operation=PKIOperation&message=" + "A" * 60000)
    assert status == 400 and content_type.startswith("text/plain")
    assert len(site.audit_lines()) == lines + 1
    assert site.request("GET", "operation=GetCACaps")[0] == 200


def test_layer_corpus_size():
    assert len(CASES) >= 80, len(CASES)
