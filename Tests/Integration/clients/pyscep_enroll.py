"""Enrolls one certificate with PyScep 0.0.14 (POST, cipher and digest chosen from GetCACaps).

usage: pyscep_enroll.py URL CHALLENGE CN OUTDIR
Writes OUTDIR/cert.pem and OUTDIR/key.pem on SUCCESS and prints "status: SUCCESS|FAILURE ...".
Exit code 0 only for SUCCESS.
"""
import os
import sys

import oscrypto_openssl3  # noqa: F401  must precede PyScep
import pyscep_ec_ca  # noqa: F401  RA certificates issued by an EC CA (docs/workarounds.md)
from scep import Client
from scep.Client import PKIStatus


def main():
    url, challenge, cn, outdir = sys.argv[1:5]
    os.makedirs(outdir, exist_ok=True)
    client = Client.Client(url)
    caps = client.get_ca_capabilities()
    print("caps:", caps)
    identity, identity_key = Client.SigningRequest.generate_self_signed(
        cn=cn, key_usage={"digital_signature", "key_encipherment"})
    csr, key = Client.SigningRequest.generate_csr(
        cn=cn, key_usage={"digital_signature", "key_encipherment"}, password=challenge)
    result = client.enrol(csr=csr, identity=identity, identity_private_key=identity_key)
    if result.status == PKIStatus.SUCCESS:
        with open(os.path.join(outdir, "cert.pem"), "w") as f:
            f.write(result.certificates[0].to_pem().decode() if isinstance(result.certificates[0].to_pem(), bytes)
                    else result.certificates[0].to_pem())
        with open(os.path.join(outdir, "key.pem"), "w") as f:
            pem = key.to_pem()
            f.write(pem.decode() if isinstance(pem, bytes) else pem)
        print("status: SUCCESS")
        return 0
    print("status:", result.status, "failInfo:", getattr(result, "fail_info", None))
    return 2


if __name__ == "__main__":
    sys.exit(main())
