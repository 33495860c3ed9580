"""Does the file store's cost grow with the CA's age? (issue 16, item 2)

Two stacks (nginx + scep-fcgi, one worker process each, the same CA): one with an empty store,
one aged with COUNT certificates (bench/aged_store.py: 200,000 by default). Measured, in one run:
- `scep-fcgi ca list` and `ca crl` wall time (median of 3);
- a server's start: spawn to the first GetCert answered (the first lookup after a start);
- enrollment through nginx at concurrency 8, rounds interleaved between the two stacks: server
  CPU per enrollment, p50 and p99 latency (median over the rounds).

usage: python3 bench/store_age.py [--count 200000] [--requests 200] [--rounds 3] [--out FILE]
Prints a Markdown table (and writes it to --out if given).
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import aged_store  # noqa: E402
from benchmark import CHALLENGE, SCEP_CLIENT, SCEP_FCGI, cpu_seconds, free_port, nginx_conf, run, wait_port  # noqa: E402


class Stack:
    def __init__(self, root, ca_dir):
        self.root, self.ca = root, ca_dir
        self.socket = os.path.join(root, "scep.sock")
        self.audit = os.path.join(root, "audit.jsonl")
        self.config = os.path.join(root, "scep-fcgi.conf")
        with open(self.config, "w") as f:
            f.write(f"[ca]\ndir = {ca_dir}\n[challenge]\nstatic_password_file = {os.path.dirname(root)}/challenge\n"
                    f"[audit]\npath = {self.audit}\n[server]\nsocket = {self.socket}\nsocket_mode = 0666\n")
        self.port = free_port()
        self.nginx_conf = nginx_conf(root, self.port, self.socket)
        self.nginx = subprocess.Popen(["nginx", "-c", self.nginx_conf, "-e", f"{root}/nginx-error.log"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port(self.port)
        self.server = None
        self.url = f"http://127.0.0.1:{self.port}/scep"

    def start(self):
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        log = open(os.path.join(self.root, "scep-fcgi.log"), "a")
        started = time.time()
        self.server = subprocess.Popen([SCEP_FCGI, "serve", "--config", self.config], stdout=log, stderr=log, start_new_session=True)
        while not os.path.exists(self.socket):
            if time.time() - started > 60:
                raise RuntimeError("scep-fcgi did not start")
            time.sleep(0.005)
        return started

    def stop(self):
        if self.server:
            os.killpg(self.server.pid, signal.SIGTERM)
            self.server.wait(timeout=30)
            self.server = None

    def close(self):
        self.stop()
        os.killpg(self.nginx.pid, signal.SIGTERM)
        self.nginx.wait(timeout=10)


def wall(cmd):
    started = time.time()
    run(cmd)
    return time.time() - started


def first_getcert(stack, query_dir):
    """Spawn to the first GetCert answered (status 200 with a CertRep), in seconds."""
    started = stack.start()
    body = open(os.path.join(query_dir, "request.der"), "rb").read()
    while True:
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", "@-", "-H",
                              "Content-Type: application/x-pki-message", stack.url + "?operation=PKIOperation"],
                             input=body, capture_output=True)
        if out.stdout == b"200":
            return time.time() - started
        if time.time() - started > 60:
            raise RuntimeError("no GetCert answer")
        time.sleep(0.002)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="scep-store-age-")
    os.chmod(root, 0o755)
    stacks = {}
    try:
        with open(os.path.join(root, "challenge"), "w") as f:
            f.write(CHALLENGE)
        os.chmod(os.path.join(root, "challenge"), 0o600)
        empty_ca = os.path.join(root, "empty", "ca")
        os.makedirs(os.path.dirname(empty_ca))
        run([SCEP_FCGI, "ca", "init", "--dir", empty_ca, "--subject", "CN=Store Age CA,O=scep-fcgi bench", "--key-bits", "2048", "--days", "30"])
        aged_ca = os.path.join(root, "aged", "ca")
        os.makedirs(os.path.dirname(aged_ca))
        shutil.copytree(empty_ca, aged_ca)
        t = time.time()
        aged_store.age(aged_ca, args.count)
        print(f"aged store: {args.count} certificates in {time.time() - t:.1f} s", file=sys.stderr)
        reqs = os.path.join(root, "requests")
        run([SCEP_CLIENT, "prebuild", "--ca", os.path.join(empty_ca, "ca.pem"), "--challenge-file", os.path.join(root, "challenge"),
             "--count", str(args.requests), "--out-dir", reqs, "--rounds", str(args.rounds + 1)])
        results = {name: {"cpu": [], "p50": [], "p99": [], "failures": 0} for name in ["empty", "aged"]}
        for name, ca in [("empty", empty_ca), ("aged", aged_ca)]:
            stacks[name] = Stack(os.path.join(root, name), ca)
            stacks[name].start()
            # Warm-up round: also leaves real certificates to look up.
            json.loads(run([SCEP_CLIENT, "load", "--url", stacks[name].url, "--requests-dir", os.path.join(reqs, "round-0"), "--concurrency", "4"]))
        for round_index in range(1, args.rounds + 1):
            for name in ["empty", "aged"]:
                s = stacks[name]
                cpu = cpu_seconds(s.server.pid)
                r = json.loads(run([SCEP_CLIENT, "load", "--url", s.url, "--requests-dir", os.path.join(reqs, f"round-{round_index}"),
                                    "--concurrency", "8"]))
                results[name]["cpu"].append((cpu_seconds(s.server.pid) - cpu) * 1000 / r["requests"])
                results[name]["p50"].append(r["p50_ms"])
                results[name]["p99"].append(r["p99_ms"])
                results[name]["failures"] += r["failures"]
        # The first lookup after a start: GetCert of a certificate issued above.
        for name, s in stacks.items():
            s.stop()
            serial = next(json.loads(l)["serial"] for l in open(s.audit) if '"outcome":"issued"' in l)
            query = os.path.join(root, name, "query")
            run([SCEP_CLIENT, "query", "--kind", "getcert", "--ca", os.path.join(s.ca, "ca.pem"), "--serial", serial, "--out-dir", query])
            starts = []
            for _ in range(3):
                starts.append(first_getcert(s, query))
                s.stop()
            results[name]["first_getcert"] = statistics.median(starts)
            results[name]["ca_list"] = statistics.median(wall([SCEP_FCGI, "ca", "list", "--dir", s.ca]) for _ in range(3))
            results[name]["ca_crl"] = statistics.median(wall([SCEP_FCGI, "ca", "crl", "--dir", s.ca]) for _ in range(3))
    finally:
        for s in stacks.values():
            s.close()
        shutil.rmtree(root, ignore_errors=True)
    e, a = results["empty"], results["aged"]
    med = statistics.median
    lines = [
        f"| measure | empty store | {args.count:,} certificates | aged / empty |",
        "| --- | --- | --- | --- |",
        f"| server CPU per enrollment, c=8 (median of {args.rounds} rounds) | {med(e['cpu']):.2f} ms | {med(a['cpu']):.2f} ms | {med(a['cpu']) / med(e['cpu']):.2f} |",
        f"| enrollment p50 latency, c=8 | {med(e['p50']):.1f} ms | {med(a['p50']):.1f} ms | {med(a['p50']) / med(e['p50']):.2f} |",
        f"| enrollment p99 latency, c=8 | {med(e['p99']):.1f} ms | {med(a['p99']):.1f} ms | {med(a['p99']) / med(e['p99']):.2f} |",
        f"| start to first GetCert answered (median of 3) | {e['first_getcert']:.3f} s | {a['first_getcert']:.3f} s | |",
        f"| `scep-fcgi ca list` (median of 3) | {e['ca_list']:.3f} s | {a['ca_list']:.3f} s | |",
        f"| `scep-fcgi ca crl` (median of 3) | {e['ca_crl']:.3f} s | {a['ca_crl']:.3f} s | |",
        f"| failed enrollments | {e['failures']} | {a['failures']} | |",
        "",
        f"Spread, CPU per enrollment (ms): empty {min(e['cpu']):.2f}–{max(e['cpu']):.2f}, aged {min(a['cpu']):.2f}–{max(a['cpu']):.2f}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
