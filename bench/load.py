#!/usr/bin/env python3
"""The load proof of issue [3/5] item 5 (not run by CI: minutes on 2 cores; its last result is in
BENCHMARKS.md): ENROLLMENTS enrollments at concurrency 64 through nginx to three `serve`
processes sharing one CA directory and one audit file, while a GET flood of GetCACaps at
concurrency 256 runs, then checks

  zero failures; serials unique; audit `issued` lines = index.txt lines = issued/ files = SUCCESS
  replies; every audit line valid JSON and the prev chain whole (`audit verify`); the flood got
  no failure and at least GETS answers.

usage: SCEP_FCGI_BIN_DIR=.build/release python3 bench/load.py [ENROLLMENTS [GETS]]   (defaults 10000, 100000)
Needs what the integration suite needs (nginx; run scripts/install-deps.sh first) and root.
"""
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Tests", "Integration"))
import harness  # noqa: E402
from harness import SCEP_CLIENT, SCEP_FCGI  # noqa: E402

KEYS = 1000  # RSA keys to generate; each is reused once per round with a fresh transactionID


def main():
    enrollments = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    gets = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    rounds = max(1, enrollments // KEYS)
    site = harness.Site("nginx", extra="workers = 16")
    requests = os.path.join(site.root, "requests")
    t0 = time.time()
    out = subprocess.run([SCEP_CLIENT, "prebuild", "--ca", site.ca_pem, "--challenge-file", site.challenge_file,
                          "--count", str(min(KEYS, enrollments)), "--rounds", str(rounds), "--out-dir", requests],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    print(f"prebuilt {min(KEYS, enrollments) * rounds} requests in {time.time() - t0:.0f} s", flush=True)
    site.start_processes(3)
    try:
        flood = {}
        done = threading.Event()

        def flood_gets():
            total, failures, seconds = 0, 0, 0.0
            while not done.is_set() or total < gets:
                out = subprocess.run([SCEP_CLIENT, "get-load", "--url", site.url, "--operation", "GetCACaps",
                                      "--concurrency", "256", "--duration", "5"], capture_output=True, text=True)
                report = json.loads(out.stdout)
                total += report["requests"]
                failures += report["failures"]
                seconds += report["seconds"]
            flood.update(requests=total, failures=failures, seconds=seconds)

        thread = threading.Thread(target=flood_gets)
        thread.start()
        reports = []
        t0 = time.time()
        for r in range(rounds):
            directory = os.path.join(requests, f"round-{r}") if rounds > 1 else requests
            out = subprocess.run([SCEP_CLIENT, "load", "--url", site.url, "--requests-dir", directory, "--concurrency", "64"],
                                 capture_output=True, text=True)
            assert out.returncode == 0, out.stderr
            reports.append(json.loads(out.stdout))
        enroll_seconds = time.time() - t0
        done.set()
        thread.join()

        total = sum(r["requests"] for r in reports)
        failures = sum(r["failures"] for r in reports)
        serials = sum(r["unique_serials"] for r in reports)
        lines = open(site.audit).read().splitlines()
        events = [json.loads(line) for line in lines]  # every line valid JSON
        issued = [e for e in events if e["outcome"] == "issued"]
        index = site.index_lines()
        files = site.issued_serials()
        verify = harness.run([SCEP_FCGI, "audit", "verify", site.audit], timeout=600)
        result = {
            "enrollments": total, "enrollment_failures": failures, "unique_serials": serials,
            "enrollments_per_second": round(total / enroll_seconds, 1),
            "p50_ms": sorted(r["p50_ms"] for r in reports)[len(reports) // 2],
            "p99_ms": max(r["p99_ms"] for r in reports),
            "failure_reasons": {k: sum(r.get("failure_reasons", {}).get(k, 0) for r in reports)
                                for k in {k for r in reports for k in r.get("failure_reasons", {})}},
            "audit_issued": len(issued), "index_lines": len(index), "issued_files": len(files),
            "gets": flood["requests"], "get_failures": flood["failures"],
            "gets_per_second": round(flood["requests"] / max(flood["seconds"], 0.001), 1),
            "audit_lines": len(events), "audit_verify": verify.stdout.strip().splitlines()[0],
        }
        print(json.dumps(result, indent=1))
        assert failures == 0 and flood["failures"] == 0, "failures"
        assert total == serials == len(issued) == len(index) == len(files), "counts differ"
        assert len({e["serial"] for e in issued}) == len(issued), "a serial twice"
        assert flood["requests"] >= gets, "flood too short"
        assert verify.returncode == 0, verify.stdout
        print("ok")
    finally:
        site.stop()


if __name__ == "__main__":
    main()
