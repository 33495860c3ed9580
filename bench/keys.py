#!/usr/bin/env python3
"""Keys and OCSP, side by side in one run (issue [2/4] item 6), behind nginx on 127.0.0.1:

  - enrollments: an RSA-2048 CA (file key) with micromdm's scepserver on the same CA, an EC P-256
    CA behind an RSA-2048 RA, and an RSA-2048 CA key on a SoftHSM2 token; enrollments/s and server
    CPU per enrollment against the floor of private-key operations each one needs;
  - OCSP: responses/s at concurrency 16 (wrk, one connection per request) from scep-fcgi's /ocsp
    and from `openssl ocsp -index` as responder, the baseline a Debian administrator would run.

Writes the section "## Keys and OCSP" of BENCHMARKS.md (replacing an earlier one).
usage: SCEP_FCGI_BIN_DIR=.build/release python3 bench/keys.py [--requests N] [--concurrency 1,8]
Needs what the integration suite needs (scripts/install-deps.sh), wrk, and root.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "Tests", "Integration"))
import benchmark  # noqa: E402
import harness  # noqa: E402
import test_keys  # noqa: E402
from benchmark import cpu_seconds, free_port, rsa_sign_seconds, run  # noqa: E402


def ecdsa_sign_seconds():
    """From the sign/s column: the seconds column has four decimals, too few for ECDSA."""
    out = run(["openssl", "speed", "-seconds", "3", "ecdsap256"])
    for line in out.splitlines():
        m = re.match(r"256 bits ecdsa \(nistp256\)\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)", line.strip())
        if m:
            return 1 / float(m.group(1))
    raise RuntimeError("cannot read openssl speed ecdsap256")


def scep_fcgi_pid(site):
    return next(p.pid for p in site.procs if p.args[0] == harness.SCEP_FCGI)


def enrollments(url, pid, recipient, challenge_file, root, requests, concurrency):
    """Rows of {concurrency, enroll/s, failures, p50, cpu ms per enrollment} for one server."""
    reqs = tempfile.mkdtemp(dir=root)
    run([benchmark.SCEP_CLIENT, "prebuild", "--ca", recipient, "--challenge-file", challenge_file, "--count", str(requests),
         "--out-dir", reqs, "--rounds", str(1 + len(concurrency))])
    benchmark.load(url, os.path.join(reqs, "round-0"), 4)  # warm-up
    rows = []
    for level, c in enumerate(concurrency, start=1):
        before = cpu_seconds(pid)
        r = benchmark.load(url, os.path.join(reqs, f"round-{level}"), c)
        r["cpu_ms_per_enrollment"] = (cpu_seconds(pid) - before) * 1000 / max(1, r["requests"])
        r["concurrency"] = c
        rows.append(r)
    return rows


def wrk_ocsp(url, request_der, root, seconds=5):
    script = os.path.join(root, "ocsp-post.lua")
    with open(script, "w") as f:
        f.write(f'local f = io.open("{request_der}", "rb")\nwrk.method = "POST"\nwrk.body = f:read("*all")\nf:close()\n'
                'wrk.headers["Content-Type"] = "application/ocsp-request"\nwrk.headers["Connection"] = "close"\n')
    out = run(["wrk", "-t2", "-c16", f"-d{seconds}s", "-s", script, url])
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"requests_per_second": rate, "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else ""}


def ocsp_answer_ok(url, ca_pem, serial, work, tries=20):
    """A real OCSP exchange (also the readiness check: `openssl ocsp` as a responder spins on a
    bare TCP probe), retried while the responder starts."""
    for _ in range(tries):
        out = subprocess.run(["openssl", "ocsp", "-url", url, "-issuer", ca_pem, "-serial", "0x" + serial, "-CAfile", ca_pem, "-no_nonce"],
                             capture_output=True, text=True, cwd=work, timeout=10)
        if ": good" in out.stdout and "Response verify OK" in out.stdout + out.stderr:
            return True
        time.sleep(0.5)
    return False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--out", default=os.path.join(HERE, "..", "BENCHMARKS.md"))
    args = parser.parse_args()
    concurrency = [int(c) for c in args.concurrency.split(",")]
    root = tempfile.mkdtemp(prefix="scep-bench-keys-")
    os.chmod(root, 0o755)
    results = {"requests": args.requests}
    rsa_sign, ec_sign = rsa_sign_seconds(2048), ecdsa_sign_seconds()
    results["floors_ms"] = {"rsa": 3 * rsa_sign * 1000, "ec": (2 * rsa_sign + ec_sign) * 1000, "rsa_sign": rsa_sign * 1000, "ec_sign": ec_sign * 1000}

    # RSA-2048 file key, with micromdm on the same CA (bench/benchmark.py's deployment).
    d = benchmark.Deployment(root, 2048)
    try:
        challenge = os.path.join(d.root, "challenge")
        results["rsa"] = enrollments(d.urls["scep-fcgi"], d.pids["scep-fcgi"], d.ca_pem, challenge, d.root, args.requests, concurrency)
        results["micromdm"] = enrollments(d.urls["micromdm"], d.pids["micromdm"], d.ca_pem, challenge, d.root, args.requests, concurrency)
        # OCSP: scep-fcgi's /ocsp, then `openssl ocsp -index` on the same index and CA.
        ca_dir = os.path.join(d.root, "ca")
        serial = sorted(f[:-4] for f in os.listdir(os.path.join(ca_dir, "issued")) if f.endswith(".pem"))[0]
        request = os.path.join(d.root, "ocsp-req.der")
        run(["openssl", "ocsp", "-issuer", d.ca_pem, "-serial", "0x" + serial, "-no_nonce", "-reqout", request])
        ours = f"http://127.0.0.1:{d.port}/ocsp"
        assert ocsp_answer_ok(ours, d.ca_pem, serial, d.root)
        results["ocsp_scep_fcgi"] = wrk_ocsp(ours, request, d.root)
        port = free_port()
        # -multi 2: two responder processes for the two cores (one process answered nothing under wrk).
        baseline = subprocess.Popen(["openssl", "ocsp", "-index", os.path.join(ca_dir, "index.txt"), "-port", str(port), "-multi", "2", "-rsigner", d.ca_pem,
                                     "-rkey", os.path.join(ca_dir, "ca.key"), "-CA", d.ca_pem], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # in a session of its own it never listened
        try:
            theirs = f"http://127.0.0.1:{port}/"
            assert ocsp_answer_ok(theirs, d.ca_pem, serial, d.root)
            results["ocsp_openssl"] = wrk_ocsp(theirs, request, d.root)
        finally:
            # The -multi parent neither ends on SIGTERM nor takes its children along: kill all three.
            subprocess.run(["pkill", "-KILL", "-f", f"openssl ocsp -index {os.path.join(ca_dir, 'index.txt')}"])
            baseline.wait(timeout=10)
    finally:
        d.stop()

    # EC P-256 CA behind an RSA-2048 RA: requests are encrypted to the RA.
    ec = harness.Site("nginx", init_args=["--key-type", "ec", "--curve", "P-256"], ra_subject="CN=Bench RA,O=scep-fcgi bench").start()
    try:
        results["ec"] = enrollments(ec.url, scep_fcgi_pid(ec), os.path.join(ec.ca_dir, "ra.pem"), ec.challenge_file, ec.root,
                                    args.requests, concurrency)
    finally:
        ec.stop()

    # RSA-2048 CA key on a SoftHSM2 token.
    token_root = tempfile.mkdtemp(prefix="scep-bench-token-")
    os.chmod(token_root, 0o755)
    pin_file = test_keys.make_token(token_root)
    hsm = harness.Site("nginx", init_args=["--key-uri", test_keys.TOKEN_URI, "--pin-file", pin_file, "--pkcs11-module", test_keys.SOFTHSM_MODULE],
                       extra=f"[ca]\nkey_pin_file = {pin_file}\npkcs11_module = {test_keys.SOFTHSM_MODULE}\n").start()
    try:
        results["hsm"] = enrollments(hsm.url, scep_fcgi_pid(hsm), hsm.ca_pem, hsm.challenge_file, hsm.root, args.requests, concurrency)
    finally:
        hsm.stop()

    with open(os.path.join(root, "keys-results.json"), "w") as f:
        json.dump(results, f, indent=1)
    section = render(results, args)
    text = open(args.out).read() if os.path.exists(args.out) else "# Benchmarks\n"
    marker = "## Keys and OCSP"
    if marker in text:
        start = text.index(marker)
        end = text.find("\n## ", start + len(marker))
        text = text[:start] + section + (text[end + 1:] if end != -1 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    with open(args.out, "w") as f:
        f.write(text)
    print(section)
    print(f"raw results: {root}/keys-results.json")


def render(r, args):
    floors = r["floors_ms"]
    lines = ["## Keys and OCSP", "",
             f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `SCEP_FCGI_BIN_DIR=.build/release python3 bench/keys.py "
             f"--requests {args.requests} --concurrency {args.concurrency}`, same machine and load generator as above "
             f"({r['requests']} prebuilt RSA-2048 PKCSReqs per concurrency, AES-256, SHA-256, by POST through nginx). "
             f"`openssl speed`: RSA-2048 sign {floors['rsa_sign']:.3f} ms, ECDSA P-256 sign {floors['ec_sign']:.3f} ms. "
             "Floors: an RSA CA needs three RSA private operations per enrollment (decrypt, sign the certificate, sign the "
             "reply); an EC CA behind an RSA RA needs two RSA operations and one ECDSA signature.", "",
             "| CA | concurrency | enroll/s | failures | p50 ms | server CPU ms/enroll | floor ms | CPU / floor | vs RSA file key |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    names = [("rsa", "RSA-2048, file key", floors["rsa"]), ("ec", "EC P-256 + RSA-2048 RA", floors["ec"]),
             ("hsm", "RSA-2048 on SoftHSM2", floors["rsa"]), ("micromdm", "micromdm, RSA-2048 file key", floors["rsa"])]
    for key, label, floor in names:
        for row, base in zip(r[key], r["rsa"]):
            lines.append(f"| {label} | {row['concurrency']} | {row['enrollments_per_second']:.0f} | {row['failures']} | {row['p50_ms']:.1f} "
                         f"| {row['cpu_ms_per_enrollment']:.2f} | {floor:.2f} | {row['cpu_ms_per_enrollment'] / floor:.2f}× "
                         f"| {row['enrollments_per_second'] / max(base['enrollments_per_second'], 1e-9):.2f}× |")
    ours, theirs = r["ocsp_scep_fcgi"], r["ocsp_openssl"]
    lines += ["", "| OCSP responder, POST, concurrency 16, one connection per request | responses/s | non-2xx | ratio |",
              "|---|---:|---:|---:|",
              f"| scep-fcgi `/ocsp` through nginx (CA-signed, RSA-2048) | {ours['requests_per_second']:.0f} | {ours['non_2xx']} | "
              f"{ours['requests_per_second'] / max(theirs['requests_per_second'], 1e-9):.2f}× |",
              f"| `openssl ocsp -index -multi 2` (same index and CA) | {theirs['requests_per_second']:.0f} | {theirs['non_2xx']} | 1.00× |",
              ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
