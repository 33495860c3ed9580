"""Writes crafted fuzz seeds (scepcraft.py) into Tests/FuzzRegressionTests/corpus: pkiMessages with
the structures the layered corpus found mishandled (two signers, repeated and retyped attributes,
signingTime, an unknown digest) and envelopes to smallstep's test CA (several recipients, an SKI
recipient, RSA-OAEP, bad padding), so that libFuzzer starts from them. Run from the repository root:
    python3 Tests/Integration/make_fuzz_seeds.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import scepcraft as c  # noqa: E402
from cryptography import x509  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "FuzzRegressionTests", "corpus")
with open(os.path.join(os.path.dirname(__file__), "..", "SCEPTests", "Vectors", "smallstep-scep", "testca", "ca.pem"), "rb") as f:
    CA = c.der(x509.load_pem_x509_certificate(f.read()))


def write(target, name, data):
    with open(os.path.join(ROOT, target, "crafted-" + name + ".der"), "wb") as f:
        f.write(data)


def request():
    return c.pkcs_req(CA, "seed-challenge", "CN=fuzz-seed")


def pkimessages():
    two = request()
    two.second_signer = {c.TRANSACTION_ID: [c.printable("other")]}
    write("pkimessage", "two-signers", two.encode())
    repeated = request()
    repeated.repeat.append(c.TRANSACTION_ID)
    write("pkimessage", "repeated-transaction-id", repeated.encode())
    retyped = request()
    retyped.attributes[c.MESSAGE_TYPE] = [c.integer(19)]
    write("pkimessage", "integer-message-type", retyped.encode())
    timed = request()
    timed.attributes[c.SIGNING_TIME] = [c.generalized_time(c.now())]
    write("pkimessage", "signing-time", timed.encode())
    write("pkimessage", "sha3-digest", c.pkcs_req(CA, "seed-challenge", "CN=fuzz-seed", digest="sha3-256").encode())


def envelopes():
    content = c.csr(c.rsa_key(2048, 0), "CN=fuzz-seed", "seed-challenge")
    cek = os.urandom(16)
    other = c.certificate(c.rsa_key(2048, 6), "CN=someone else")
    write("envelope", "two-recipients", c.envelope(content, CA, recipients=[
        c.recipient_info(other, cek), c.recipient_info(CA, cek, "oaep-sha256")], cek=cek))
    ski = x509.load_der_x509_certificate(CA).extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    write("envelope", "ski-recipient", c.envelope(content, CA, recipients=[c.recipient_info(CA, cek, rid=c.tlv(0x80, ski))], cek=cek))
    write("envelope", "aes256-oaep", c.envelope(content, CA, cipher="aes256", transport="oaep-sha256"))
    iv = os.urandom(16)
    raw = content + bytes(16 - len(content) % 16)
    write("envelope", "bad-padding", c.envelope(content, CA, recipients=[c.recipient_info(CA, cek)], cek=cek, iv=iv,
                                                encrypted=c.encrypt_content(raw, "aes128", cek, iv, pad=False)))


if __name__ == "__main__":
    pkimessages()
    envelopes()
