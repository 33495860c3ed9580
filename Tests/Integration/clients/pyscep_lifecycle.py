"""PyScep 0.0.14 beyond enrolment: GetCert, GetCRL, CertPoll and GetNextCACert.

usage:
  pyscep_lifecycle.py enrol-getcert-getcrl URL CHALLENGE CN WORKDIR   enrol, then GetCert and GetCRL for it
  pyscep_lifecycle.py getcrl URL WORKDIR SERIAL                       GetCRL with the identity saved in WORKDIR
  pyscep_lifecycle.py enrol-pending URL CHALLENGE CN WORKDIR          enrol, expecting PENDING
  pyscep_lifecycle.py poll URL WORKDIR TRANSACTION_ID                 CertPoll for the request saved in WORKDIR
  pyscep_lifecycle.py rollover URL                                    GetNextCACert
The last line printed is one JSON object with the results.
"""
import hashlib
import json
import os
import sys

import oscrypto_openssl3  # noqa: F401  must precede PyScep
from asn1crypto import x509
from scep import Client
from scep.Client import PKIStatus
import requests
from scep.Client.certificate import Certificate
from scep.Client.message import SCEPMessage
from scep.Client.privatekey import PrivateKey


def pem(obj):
    data = obj.to_pem()
    return data.decode() if isinstance(data, bytes) else data


def new_identity(cn, workdir):
    os.makedirs(workdir, exist_ok=True)
    identity, key = Client.SigningRequest.generate_self_signed(cn=cn, key_usage={"digital_signature", "key_encipherment"})
    open(os.path.join(workdir, "identity.pem"), "w").write(pem(identity))
    open(os.path.join(workdir, "identity-key.pem"), "w").write(pem(key))
    open(os.path.join(workdir, "cn"), "w").write(cn)
    return identity, key


def load_identity(workdir):
    identity = Certificate.from_pem(open(os.path.join(workdir, "identity.pem")).read().encode())
    key = PrivateKey.from_pem(open(os.path.join(workdir, "identity-key.pem")).read().encode())
    return identity, key


def enrol(url, challenge, cn, workdir):
    client = Client.Client(url)
    identity, key = new_identity(cn, workdir)
    csr, csr_key = Client.SigningRequest.generate_csr(cn=cn, key_usage={"digital_signature", "key_encipherment"}, password=challenge)
    return client, identity, key, client.enrol(csr=csr, identity=identity, identity_private_key=key)


def crl_serials(result):
    if result.status != PKIStatus.SUCCESS or result.crl is None:
        return None
    entries = result.crl._revocation_list["tbs_cert_list"]["revoked_certificates"]
    return ["%X" % entry["user_certificate"].native for entry in entries] if entries else []


def hexserial(cert):
    text = "%X" % cert.serial_number
    return ("0" + text) if len(text) % 2 else text


def rollover(client):
    """Client.rollover_certificate without its bug: PyScep 0.0.14 passes the Certificate objects
    SCEPMessage.parse already made to Certificate.from_der again (TypeError). Same steps otherwise:
    GetCACert, then GetNextCACert verified against the CA's signer certificate."""
    ca_certs = client.get_ca_certs()
    res = requests.get(client.url, params={"operation": "GetNextCACert", "message": ""})
    assert res.status_code == 200 and res.headers["content-type"] == "application/x-x509-next-ca-cert"
    msg = SCEPMessage.parse(raw=res.content, signer_cert=ca_certs.signer)
    return msg.certificates


def main():
    command, url = sys.argv[1], sys.argv[2]
    out = {}
    if command == "enrol-getcert-getcrl":
        challenge, cn, workdir = sys.argv[3:6]
        client, identity, key, result = enrol(url, challenge, cn, workdir)
        out["status"] = result.status.name
        if result.status == PKIStatus.SUCCESS:
            cert = result.certificates[0]
            out["serial"] = hexserial(cert)
            got = client.get_cert(identity, key, cert.serial_number)
            out["getcert_serial"] = hexserial(got.certificates[0]) if got.status == PKIStatus.SUCCESS else got.status.name
            out["crl_serials_before"] = crl_serials(client.get_crl(identity, key, cert.serial_number))
        out["workdir"] = workdir
    elif command == "getcrl":
        workdir, serial = sys.argv[3:5]
        identity, key = load_identity(workdir)
        out["crl_serials"] = crl_serials(Client.Client(url).get_crl(identity, key, int(serial, 16)))
    elif command == "enrol-pending":
        challenge, cn, workdir = sys.argv[3:6]
        client, identity, key, result = enrol(url, challenge, cn, workdir)
        out["status"] = result.status.name
        out["transaction_id"] = getattr(result, "transaction_id", None)
        out["workdir"] = workdir
    elif command == "poll":
        workdir, transaction_id = sys.argv[3:5]
        identity, key = load_identity(workdir)
        subject = x509.Name.build({"common_name": open(os.path.join(workdir, "cn")).read()})
        result = Client.Client(url).poll(identity, key, subject, transaction_id)
        out["status"] = result.status.name
        if result.status == PKIStatus.SUCCESS:
            path = os.path.join(workdir, "polled.pem")
            open(path, "w").write(pem(result.certificates[0]))
            out["cert"] = path
    elif command == "rollover":
        out["fingerprints"] = [hashlib.sha256(c.to_der()).hexdigest() for c in rollover(Client.Client(url))]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
