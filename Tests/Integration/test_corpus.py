"""A generated bad-input corpus (issue [3/5] item 1, first slice), sent through nginx to a running
server. Families and their provenance are in the generators below. For every case: the documented
HTTP status or CertRep failInfo where one is documented, never a 5xx, the server keeps serving, at
most one audit line per request (exactly one when scep-fcgi answered), and no certificate issued
for any case expected to fail.

The second slice, one field broken at a time in every layer (outer SignedData, signer certificate,
signed attributes, envelope, CSR, lifecycle messages, nginx's 414), is test_corpus_layers.py.
"""
import base64
import os
import tempfile
import urllib.parse

import pytest

import harness


@pytest.fixture(scope="module")
def corpus_site():
    site = harness.Site("nginx")
    site.start()
    yield site
    site.stop()


def request_der(site, **options):
    work = harness.make_request(site, tempfile.mkdtemp(dir=site.root), **options)
    return work, open(os.path.join(work, "request.der"), "rb").read()


def query_cases():
    """The query string (RFC 8894 §4.1): operation and message variants. Made here."""
    cases = [("GET", "", None, 400), ("GET", "operation=", None, 400), ("GET", "operation=Nope", None, 400),
             ("GET", "operation=" + "A" * 4000, None, 400), ("GET", "operation=PKIOperation", None, 400),
             ("GET", "operation=PKIOperation&message=", None, 400), ("GET", "operation=PKIOperation&message=%%%", None, 400),
             ("GET", "operation=PKIOperation&message=" + "!" * 100, None, 400),
             ("GET", "operation=PKIOperation&message=" + base64.b64encode(b"\x30\x03\x02\x01\x00").decode(), None, 400),
             ("PUT", "operation=GetCACaps", b"x", 405), ("DELETE", "operation=GetCACaps", None, 405),
             ("POST", "operation=PKIOperation", b"", 400), ("POST", "operation=PKIOperation", b"not base64 or DER at all", 400),
             ("POST", "operation=PKIOperation", os.urandom(harness.MAX_BODY + 1), 413),
             ("GET", "operation=GetCACaps&operation=GetCACert", None, 200), ("GET", "OPERATION=getcacaps", None, 200)]
    for n in [1, 2, 3, 4, 7, 8, 9, 63, 64, 65, 1000]:
        cases.append(("GET", "operation=PKIOperation&message=" + urllib.parse.quote(base64.b64encode(os.urandom(n)).decode()), None, 400))
        cases.append(("POST", "operation=PKIOperation", os.urandom(n), 400))
    for junk in ["%00", "%0a", "%ff%fe", "\u00e9".encode().decode("latin-1"), "+/=", "%2B%2F%3D", "=" * 10]:
        cases.append(("GET", "operation=PKIOperation&message=" + urllib.parse.quote(junk, safe="%+/="), None, 400))
    return cases


def test_query_and_body_family(corpus_site):
    site = corpus_site
    before = set(site.issued_serials())
    cases = query_cases()
    assert len(cases) >= 40
    for method, query, body, expected in cases:
        lines = len(site.audit_lines())
        status, content_type, data = site.request(method, query, body)
        assert status == expected, (method, query[:60], status, data[:100])
        if status != 200:
            assert content_type.startswith("text/plain") and len(data) < 200
        assert len(site.audit_lines()) == lines + 1, (method, query[:60])
    assert set(site.issued_serials()) == before


def structural_mutations(valid):
    """Truncations of a valid PKCSReq at 120 offsets and 120 single-byte flips across it: the outer
    SignedData, its signed attributes, the envelope and the signature. Derived from our own request."""
    n = len(valid)
    truncations = [valid[: (i * n) // 120] for i in range(120)]
    flips = []
    for i in range(120):
        position = (i * (n - 1)) // 119
        mutated = bytearray(valid)
        mutated[position] ^= 0x55
        flips.append(bytes(mutated))
    return truncations, flips


def test_truncated_and_flipped_messages(corpus_site):
    site = corpus_site
    _, valid = request_der(site, subject="CN=corpus-mutation")
    truncations, flips = structural_mutations(valid)
    before = set(site.issued_serials())
    for body in truncations:
        status, _, data = site.request("POST", "operation=PKIOperation", body)
        # Cut short: not a pkiMessage (400), or, when only trailing bytes are missing, a FAILURE reply.
        assert status in (400, 200) and (status == 400 or data[:1] == b"\x30"), (len(body), status, data[:80])
    issued_by_flips = 0
    for body in flips:
        lines = len(site.audit_lines())
        status, _, data = site.request("POST", "operation=PKIOperation", body)
        assert status in (400, 200), status
        events = site.audit_lines()[lines:]
        assert len(events) == 1
        # A flip in a part nothing checks (the self-signed signer certificate's own signature) can
        # still be issued: then it is a real, audited, stored certificate.
        if events[0]["outcome"] == "issued":
            issued_by_flips += 1
            assert events[0]["serial"] in site.issued_serials()
    assert len(set(site.issued_serials()) - before) == issued_by_flips
    assert site.request("GET", "operation=GetCACaps")[0] == 200


# (scep-client options, expected failInfo or None for SUCCESS, expected audit reason)
CLIENT_CASES = [
    ({"digest": "md5"}, "badAlg", "unsupported-digest"),
    ({"csr_digest": "md5"}, "badAlg", "csr-digest"),
    ({"key_bits": 1024}, "badRequest", "key-policy"),
    ({"nonce_length": 0}, "http400", "missing-sender-nonce"),  # no nonce: no reply can be signed
    ({"nonce_length": 1}, "http400", "missing-sender-nonce"),  # RFC 8894 §3.2.1.5: 16 bytes
    ({"nonce_length": 1000}, "http400", "missing-sender-nonce"),
    ({"message_type": 3}, "badRequest", "unsupported-message-type"),  # a CertRep sent as a request
    ({"challenge": None}, "badRequest", "challenge-missing"),
    ({"challenge": "wrong-challenge-x"}, "badRequest", "challenge-mismatch"),
    ({"san": ["DNS:*.*.example"]}, "badRequest", "name-invalid"),
    ({"san": ["DNS:tab\there.example"]}, "badRequest", "name-invalid"),
    ({"san": ["DNS:not a hostname!"]}, "badRequest", "name-invalid"),
    ({"san": ["DNS:-lead.example"]}, "badRequest", "name-invalid"),
    ({"san": ["email:no-at-sign"]}, "badRequest", "name-invalid"),
    ({"san": ["URI:no scheme"]}, "badRequest", "name-invalid"),
    ({"san": [f"DNS:h{i}.example" for i in range(65)]}, "badRequest", "too-many-names"),
    ({"subject": "CN=" + "x" * 60 + ",OU=" + ",OU=".join(["y" * 60] * 20)}, "badRequest", "subject-too-large"),
    ({"san": ["DNS:*.example.com", "IP:192.0.2.7", "email:a@b.example"]}, None, None),
] + [({"cipher": c, "digest": d}, None, None) for c in ["des", "3des", "aes128", "aes192", "aes256"]
     for d in ["sha1", "sha256", "sha512"]] + [
    ({"key_transport": t}, None, None) for t in ["pkcs1", "oaep-sha1", "oaep-sha256"]]


@pytest.mark.parametrize("options,fail_info,reason", CLIENT_CASES, ids=[str(i) for i in range(len(CLIENT_CASES))])
def test_crafted_requests(corpus_site, options, fail_info, reason):
    """Requests our scep-client crafts as real clients would not (digest, key, nonces, type, names,
    challenge), each with its documented answer."""
    site = corpus_site
    options = dict(options)
    challenge = options.pop("challenge", harness.CHALLENGE)
    subject = options.pop("subject", "CN=corpus-crafted")
    work, body = request_der(site, subject=subject, challenge=challenge, **options)
    lines = len(site.audit_lines())
    before = set(site.issued_serials())
    status, _, data = site.request("POST", "operation=PKIOperation", body)
    event = site.audit_lines()[lines:]
    assert len(event) == 1
    if fail_info and fail_info.startswith("http"):
        assert status == int(fail_info[4:]) and event[0]["reason"] == reason, (status, event)
        return
    assert status == 200
    reply = harness.open_reply(work, data)
    if fail_info is None:
        assert reply["status"] == "success", (options, reply)
    else:
        assert reply["status"] == "failure" and reply["failInfo"] == fail_info, (options, reply)
        assert event[0]["reason"] == reason and set(site.issued_serials()) == before


def test_corpus_size():
    """The corpus counts what the three families above send (the issue asks for at least 300)."""
    size = len(query_cases()) + 240 + len(CLIENT_CASES)
    assert size >= 300, size
