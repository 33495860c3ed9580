"""Ages a file store: appends COUNT certificates to a CA directory's index.txt, as two years of
renewals for a large fleet would leave them (issue 16: 200,000 lines for 100,000 devices), one in
REVOKED_EVERY revoked, and gives each an issued/SERIAL.pem (hard links to one placeholder, so the
directory has its real size without 200,000 certificates to sign). The CA's real certificates
keep their lines; the aged ones are only ever listed, counted and put in CRLs, never looked up.

usage: python3 bench/aged_store.py CA_DIR [--count 200000] [--revoked-every 100]
"""
import argparse
import hashlib
import os
import random
import subprocess
import time


def issuer_id(ca_pem):
    """SHA-256 of the CA key's SubjectPublicKeyInfo, hex: the store's IssuerID."""
    spki = subprocess.run(["openssl", "x509", "-in", ca_pem, "-noout", "-pubkey"], capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=spki, capture_output=True, check=True).stdout
    return hashlib.sha256(der).hexdigest()


def index_time(t):
    return time.strftime("%y%m%d%H%M%SZ", time.gmtime(t))


def age(ca_dir, count=200_000, revoked_every=100, seed=16):
    rng = random.Random(seed)
    issuer = issuer_id(os.path.join(ca_dir, "ca.pem"))
    issued = os.path.join(ca_dir, "issued")
    os.makedirs(issued, exist_ok=True)
    now = time.time()
    lines = []
    serials = []
    for i in range(count):
        serial = "%032X" % (rng.getrandbits(126) | (1 << 126))
        # Issued over the last two years for a year each: about half still valid.
        issued_at = now - rng.uniform(0, 730 * 86400)
        expiry = index_time(issued_at + 365 * 86400)
        subject = f"/O=Example/CN=device-{i % (count // 2 or 1)}"
        if i % revoked_every == revoked_every - 1:
            revoked = index_time(min(now, issued_at + rng.uniform(0, 300 * 86400))) + ",superseded"
            lines.append(f"R\t{expiry}\t{revoked}\t{serial}\t{issuer}\t{subject}\n")
        else:
            lines.append(f"V\t{expiry}\t\t{serial}\t{issuer}\t{subject}\n")
        serials.append(serial)
    with open(os.path.join(ca_dir, "index.txt"), "a") as f:
        f.writelines(lines)
    for i, serial in enumerate(serials):
        if i % 60_000 == 0:  # ext4 allows 65,000 links to one inode
            placeholder = os.path.join(issued, f".aged-placeholder-{i // 60_000}")
            with open(placeholder, "w") as f:
                f.write("aged store placeholder: not a certificate\n")
        os.link(placeholder, os.path.join(issued, serial + ".pem"))
    return serials


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("ca_dir")
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--revoked-every", type=int, default=100)
    args = parser.parse_args()
    started = time.time()
    age(args.ca_dir, args.count, args.revoked_every)
    print(f"aged {args.ca_dir}: {args.count} certificates in {time.time() - started:.1f} s")
