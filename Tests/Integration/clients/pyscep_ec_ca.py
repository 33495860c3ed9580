"""Lets PyScep 0.0.14 check an RA certificate issued by an EC CA.

PyScep's CACertificates.verify checks that the RA certificates were issued by the CA with RSA-only
calls (`public_key().verify(signature, data, PKCS1v15(), hash)`); an ECDSA signature then raises a
TypeError that PyScep reports as "RA is not issued by CA". This replaces that method with the same
two checks made with cryptography's `verify_directly_issued_by`, which handles RSA and ECDSA alike.
Nothing is loosened: a certificate the CA did not sign still fails. Import before enrolling.
See docs/workarounds.md.
"""
from scep.Client import responses


def _verify(self):
    assert self.issuer is not None and self.signer is not None and self.recipient is not None
    issuer = self.issuer.to_crypto_certificate()
    for leaf in (self.recipient, self.signer):
        if leaf != self.issuer:
            try:
                leaf.to_crypto_certificate().verify_directly_issued_by(issuer)
            except Exception as error:
                raise Exception("RA is not issued by CA") from error


responses.CACertificates.verify = _verify
