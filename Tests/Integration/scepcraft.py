"""Builds SCEP pkiMessages one field at a time, so that the bad-input corpus can break exactly one
thing per case. Written for this suite from RFC 8894 §3 (pkiMessage), RFC 5652 (CMS SignedData
and EnvelopedData), RFC 2986 (PKCS#10) and RFC 5280 (certificates): a small DER writer for the
CMS layers, `cryptography` for keys, certificates, CSRs and ciphers, and `asn1crypto` only to
read the replies.
"""
import datetime
import hashlib
import os

from asn1crypto import cms as acms, keys as akeys, x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding as sympadding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import AttributeOID, NameOID

try:  # cryptography 43 moved single/triple DES to "decrepit"
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:
    TripleDES = algorithms.TripleDES

# RFC 8894 §3.2.1 attribute OIDs (id-VeriSign 2.16.840.1.113733.1.9) and failInfoText (§3.2.1.4.5).
MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
PKI_STATUS = "2.16.840.1.113733.1.9.3"
FAIL_INFO = "2.16.840.1.113733.1.9.4"
SENDER_NONCE = "2.16.840.1.113733.1.9.5"
RECIPIENT_NONCE = "2.16.840.1.113733.1.9.6"
TRANSACTION_ID = "2.16.840.1.113733.1.9.7"
FAIL_INFO_TEXT = "1.3.6.1.5.5.7.24.1"
# RFC 5652 §11 and the content types.
CONTENT_TYPE = "1.2.840.113549.1.9.3"
MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
SIGNING_TIME = "1.2.840.113549.1.9.5"
DATA = "1.2.840.113549.1.7.1"
SIGNED_DATA = "1.2.840.113549.1.7.2"
ENVELOPED_DATA = "1.2.840.113549.1.7.3"
RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
RSAES_OAEP = "1.2.840.113549.1.1.7"

DIGESTS = {"sha1": ("1.3.14.3.2.26", hashes.SHA1), "sha256": ("2.16.840.1.101.3.4.2.1", hashes.SHA256),
           "sha512": ("2.16.840.1.101.3.4.2.3", hashes.SHA512), "sha3-256": ("2.16.840.1.101.3.4.2.8", hashes.SHA3_256)}
CIPHERS = {"aes128": ("2.16.840.1.101.3.4.1.2", 16), "aes256": ("2.16.840.1.101.3.4.1.42", 32),
           "3des": ("1.2.840.113549.3.7", 24)}
FAIL_INFO_NAMES = {"0": "badAlg", "1": "badMessageCheck", "2": "badRequest", "3": "badTime", "4": "badCertId"}


# -- a DER writer (X.690 §8, definite lengths) -------------------------------------------------------

def tlv(tag, content):
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def seq(*items):
    return tlv(0x30, b"".join(items))


def set_of(*items):
    return tlv(0x31, b"".join(sorted(items)))  # DER: SET OF sorted by encoding (X.690 §11.6)


def oid(dotted):
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([40 * parts[0] + parts[1]])
    for value in parts[2:]:
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        body += bytes(reversed(chunk))
    return tlv(0x06, bytes(body))


def integer(value):
    raw = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True)
    return tlv(0x02, raw)


def octets(data):
    return tlv(0x04, data)


def printable(text):
    return tlv(0x13, text.encode())


def explicit(number, content):
    return tlv(0xA0 + number, content)


NULL = b"\x05\x00"


def algorithm(dotted, parameters=NULL):
    return seq(oid(dotted), parameters) if parameters is not None else seq(oid(dotted))


def attribute(dotted, *values):
    return seq(oid(dotted), set_of(*values))


def utc_time(when):
    return tlv(0x17, when.strftime("%y%m%d%H%M%SZ").encode())


def generalized_time(when):
    return tlv(0x18, when.strftime("%Y%m%d%H%M%SZ").encode())


def now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


# -- keys, certificates, CSRs ------------------------------------------------------------------------

_KEYS = {}


def rsa_key(bits=2048, slot=0):
    """RSA keys are cached per (bits, slot): generating them is the slow part of a corpus run."""
    if (bits, slot) not in _KEYS:
        _KEYS[(bits, slot)] = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _KEYS[(bits, slot)]


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def certificate(key, subject="CN=corpus signer", issuer_key=None, issuer_name=None, not_before=None, not_after=None,
                key_usage=("digital_signature", "key_encipherment"), serial=None):
    """A certificate for `key`: self-signed unless `issuer_key` is given; `key_usage=None` leaves
    the extension out (RFC 5280 §4.2.1.3: then any use is allowed)."""
    subject_name = name(subject[3:]) if subject.startswith("CN=") else name(subject)
    start = not_before or now() - datetime.timedelta(minutes=5)
    builder = (x509.CertificateBuilder().subject_name(subject_name).issuer_name(issuer_name or subject_name)
               .public_key(key.public_key()).serial_number(serial or x509.random_serial_number())
               .not_valid_before(start).not_valid_after(not_after or start + datetime.timedelta(days=365)))
    if key_usage is not None:
        flags = {f: f in key_usage for f in ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                                             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"]}
        builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    return builder.sign(issuer_key or key, hashes.SHA256())


def certificate_with_public_key(template, modulus, exponent):
    """`template` with its subjectPublicKeyInfo replaced by an RSA key nobody holds (a 20,000-bit
    modulus, a huge exponent): the signature over it is left as it was, which is all the server
    needs to meet such a key. Returns DER."""
    der = template.public_bytes(serialization.Encoding.DER)
    parsed = ax509.Certificate.load(der)
    tbs = parsed["tbs_certificate"]
    tbs["subject_public_key_info"] = akeys.PublicKeyInfo({
        "algorithm": {"algorithm": "rsa", "parameters": None},
        "public_key": akeys.RSAPublicKey({"modulus": modulus, "public_exponent": exponent})})
    return ax509.Certificate({"tbs_certificate": tbs, "signature_algorithm": parsed["signature_algorithm"],
                              "signature_value": parsed["signature_value"]}).dump(force=True)


def csr(key, subject="CN=corpus-crafted", challenge=None, extensions=(), sans=(), digest=hashes.SHA256):
    """A PKCS#10 request: `extensions` are (cryptography extension, critical) pairs."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(name(subject[3:]))
    if challenge is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(key, digest()).public_bytes(serialization.Encoding.DER)


def der(cert):
    return cert if isinstance(cert, bytes) else cert.public_bytes(serialization.Encoding.DER)


def issuer_and_serial(cert):
    parsed = x509.load_der_x509_certificate(der(cert))
    return seq(parsed.issuer.public_bytes(), integer(parsed.serial_number))


# -- EnvelopedData (RFC 5652 §6; RFC 8894 §3.2.2) ----------------------------------------------------

def encrypt_key(recipient, cek, transport="pkcs1"):
    public = x509.load_der_x509_certificate(der(recipient)).public_key()
    if transport == "oaep-sha256":
        return public.encrypt(cek, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    return public.encrypt(cek, padding.PKCS1v15())


def key_transport_algorithm(transport):
    if transport == "oaep-sha256":
        sha256 = algorithm(DIGESTS["sha256"][0])
        params = seq(explicit(0, sha256), explicit(1, algorithm("1.2.840.113549.1.1.8", sha256)))
        return algorithm(RSAES_OAEP, params)
    return algorithm(RSA_ENCRYPTION)


def recipient_info(recipient, cek, transport="pkcs1", encrypted_key=None, rid=None, algorithm_der=None):
    """KeyTransRecipientInfo v0 by issuerAndSerialNumber (or v2 with `rid` = [0] SKI)."""
    version = 2 if rid is not None else 0
    return seq(integer(version), rid or issuer_and_serial(recipient), algorithm_der or key_transport_algorithm(transport),
               octets(encrypted_key if encrypted_key is not None else encrypt_key(recipient, cek, transport)))


def encrypt_content(content, cipher, key, iv, pad=True):
    if pad:
        padder = sympadding.PKCS7(64 if cipher == "3des" else 128).padder()
        content = padder.update(content) + padder.finalize()
    block = TripleDES(key) if cipher == "3des" else algorithms.AES(key)
    encryptor = Cipher(block, modes.CBC(iv)).encryptor()
    return encryptor.update(content) + encryptor.finalize()


def envelope(content, recipient, cipher="aes128", transport="pkcs1", recipients=None, cipher_oid=None, iv=None,
             encrypted=None, cek=None):
    """ContentInfo(EnvelopedData) of `content` to `recipient`. `recipients` replaces the list of
    RecipientInfos (callers build them with the same `cek`); `encrypted` replaces the ciphertext."""
    oid_text, key_length = CIPHERS[cipher]
    cek = cek or os.urandom(key_length)
    iv = iv or os.urandom(8 if cipher == "3des" else 16)
    infos = recipients if recipients is not None else [recipient_info(recipient, cek, transport)]
    ciphertext = encrypted if encrypted is not None else encrypt_content(content, cipher, cek, iv)
    encrypted_content_info = seq(oid(DATA), algorithm(cipher_oid or oid_text, octets(iv)), tlv(0x80, ciphertext))
    enveloped = seq(integer(0), set_of(*infos), encrypted_content_info)
    return seq(oid(ENVELOPED_DATA), explicit(0, enveloped))


# -- SignedData (RFC 5652 §5; RFC 8894 §3.2.1) -------------------------------------------------------

def message_digest(content, digest):
    """The messageDigest attribute value (RFC 5652 §11.2) of `content` under a DIGESTS name."""
    return octets(hashlib.new(digest.replace("-", "_"), content).digest())


def scep_attributes(content, message_type="19", transaction_id=None, nonce=None, digest="sha256", signing_time=None):
    """The signed attributes of a request, as a dict OID → list of encoded values, so that a case
    can drop, repeat, retype or resize any one of them."""
    return {
        CONTENT_TYPE: [oid(DATA)],
        MESSAGE_DIGEST: [message_digest(content, digest)],
        MESSAGE_TYPE: [printable(message_type)],
        TRANSACTION_ID: [printable(transaction_id or os.urandom(10).hex())],
        SENDER_NONCE: [octets(nonce if nonce is not None else os.urandom(16))],
        **({SIGNING_TIME: [signing_time]} if signing_time is not None else {}),
    }


def encode_attributes(attributes, repeat=()):
    """Attributes as a DER SET: each OID once with its values, plus one more copy of those in `repeat`."""
    encoded = [attribute(o, *values) for o, values in attributes.items()]
    encoded += [attribute(o, *attributes[o]) for o in repeat]
    return set_of(*encoded)


def sign(key, data, digest="sha256"):
    hash_class = DIGESTS[digest][1]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hash_class()))
    return key.sign(data, padding.PKCS1v15(), hash_class())


def signer_info(key, cert, attributes_set, digest="sha256", signature=None):
    """SignerInfo v1: the signature is over the attributes' DER SET (RFC 5652 §5.4), stored as [0] IMPLICIT."""
    signature_algorithm = algorithm("1.2.840.10045.4.3.2", None) if isinstance(key, ec.EllipticCurvePrivateKey) \
        else algorithm(RSA_ENCRYPTION)
    value = signature if signature is not None else sign(key, attributes_set, digest)
    return seq(integer(1), issuer_and_serial(cert), algorithm(DIGESTS[digest][0]), b"\xa0" + attributes_set[1:],
               signature_algorithm, octets(value))


def signed_data(content, signer_infos, certificates, digest="sha256", content_type=SIGNED_DATA, detached=False):
    encapsulated = seq(oid(DATA)) if detached else seq(oid(DATA), explicit(0, octets(content)))
    body = seq(integer(1), set_of(algorithm(DIGESTS[digest][0])), encapsulated,
               tlv(0xA0, b"".join(der(c) for c in certificates)), set_of(*signer_infos))
    return seq(oid(content_type), explicit(0, body))


class Request:
    """One request, built from parts any case may replace before `encode()`."""

    def __init__(self, ca, message_data, message_type="19", digest="sha256", signer_key=None, signer_cert=None,
                 cipher="aes128", transport="pkcs1"):
        self.ca = ca
        self.digest = digest
        self.signer_key = signer_key or rsa_key(2048, 1)
        self.signer_cert = signer_cert or certificate(self.signer_key)
        self.envelope = envelope(message_data, ca, cipher=cipher, transport=transport)
        self.nonce = os.urandom(16)
        self.transaction_id = os.urandom(12).hex()
        self.attributes = scep_attributes(self.envelope, message_type, self.transaction_id, self.nonce, digest)
        self.repeat = []
        self.certificates = [self.signer_cert]
        self.second_signer = None  # None, or a dict of attribute overrides for a second SignerInfo
        self.signer_infos = None
        self.signature = None
        self.content_type = SIGNED_DATA
        self.detached = False

    def redigest(self):
        """After the envelope changed: a messageDigest that matches it again."""
        self.attributes[MESSAGE_DIGEST] = [message_digest(self.envelope, self.digest)]

    def encode(self):
        attributes_set = encode_attributes(self.attributes, self.repeat)
        infos = self.signer_infos
        certificates = list(self.certificates)
        if infos is None:
            infos = [signer_info(self.signer_key, self.signer_cert, attributes_set, self.digest, self.signature)]
            if self.second_signer is not None:
                key = rsa_key(2048, 2)
                cert = certificate(key, "CN=second signer")
                second = encode_attributes({**self.attributes, **self.second_signer})
                infos.append(signer_info(key, cert, second, self.digest))
                certificates.append(cert)
        return signed_data(self.envelope, infos, certificates, self.digest, self.content_type, self.detached)


def pkcs_req(ca, challenge, subject="CN=corpus-crafted", csr_key=None, **options):
    key = csr_key or rsa_key(2048, 0)
    return Request(ca, csr(key, subject, challenge), **options)


# -- replies (RFC 8894 §3.3.2) -----------------------------------------------------------------------

def read_reply(data, request=None):
    """The CertRep's status, failInfo name and text, nonces and transactionID; for SUCCESS, the
    certificates, decrypted with the request's signer key. Checks that the reply answers `request`
    (transactionID, recipientNonce = our senderNonce) and that its signature verifies."""
    info = acms.ContentInfo.load(data)
    assert info["content_type"].native == "signed_data"
    signed = info["content"]
    signer = signed["signer_infos"][0]
    values = {}
    for attr in signer["signed_attrs"]:
        values[attr["type"].dotted] = attr["values"][0]
    def text(o):
        return values[o].contents.decode() if o in values else None
    certs = {c.chosen["tbs_certificate"]["serial_number"].native: c.chosen for c in signed["certificates"]}
    signer_cert = x509.load_der_x509_certificate(certs[signer["sid"].chosen["serial_number"].native].dump())
    to_verify = b"\x31" + signer["signed_attrs"].dump()[1:]
    digest_name = signer["digest_algorithm"]["algorithm"].native
    hash_class = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha512": hashes.SHA512}[digest_name]
    signer_cert.public_key().verify(signer["signature"].native, to_verify, padding.PKCS1v15(), hash_class())
    reply = {"status": {"0": "success", "2": "failure", "3": "pending"}[text(PKI_STATUS)],
             "failInfo": FAIL_INFO_NAMES.get(text(FAIL_INFO)), "failInfoText": text(FAIL_INFO_TEXT),
             "transactionID": text(TRANSACTION_ID), "recipientNonce": values[RECIPIENT_NONCE].contents,
             "signer": signer_cert}
    if request is not None:
        assert reply["transactionID"] == request.transaction_id and reply["recipientNonce"] == request.nonce, reply
    if reply["status"] == "success" and request is not None:
        reply.update(open_success(signed["encap_content_info"]["content"].native, request.signer_key))
    return reply


def open_success(envelope_der, key):
    enveloped = acms.ContentInfo.load(envelope_der)["content"]
    ktri = enveloped["recipient_infos"][0].chosen
    transport = ktri["key_encryption_algorithm"]["algorithm"].native
    if transport == "rsaes_oaep":
        params = ktri["key_encryption_algorithm"]["parameters"]
        hash_class = {"sha1": hashes.SHA1, "sha256": hashes.SHA256}[params["hash_algorithm"]["algorithm"].native]
        cek = key.decrypt(ktri["encrypted_key"].native, padding.OAEP(mgf=padding.MGF1(hash_class()), algorithm=hash_class(), label=None))
    else:
        cek = key.decrypt(ktri["encrypted_key"].native, padding.PKCS1v15())
    content_info = enveloped["encrypted_content_info"]
    cipher = content_info["content_encryption_algorithm"]
    iv = cipher["parameters"].native
    block = TripleDES(cek) if "des" in cipher["algorithm"].native else algorithms.AES(cek)
    plain = Cipher(block, modes.CBC(iv)).decryptor()
    padded = plain.update(content_info["encrypted_content"].native) + plain.finalize()
    unpadder = sympadding.PKCS7(block.block_size).unpadder()
    degenerate = acms.ContentInfo.load(unpadder.update(padded) + unpadder.finalize())["content"]
    certificates = [x509.load_der_x509_certificate(c.chosen.dump()) for c in degenerate["certificates"] or []]
    return {"certificates": certificates, "replyTransport": transport, "replyCipher": cipher["algorithm"].native}
