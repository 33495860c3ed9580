"""A/B of two scep-fcgi binaries on the same machine, alternated, for a change's cost per enrollment.

    python3 bench/ab.py --a OLD/scep-fcgi --b .build/release/scep-fcgi [--rounds 4] [--requests 800] [--concurrency 4] [--syncs] [--no-keepalive]

Each round starts each binary in turn behind the same committed nginx config (Tests/Integration's
harness), with a fresh RSA-2048 CA, warms it with one set of prebuilt PKCSReqs and then measures a
second set (fresh transactionIDs, so nothing is a retransmission): server CPU (utime+stime from
/proc) per enrollment and enrollments per second of `scep-client load`. Alternating A and B inside
each round is what makes the comparison fair on a shared host whose speed drifts by tens of percent
over minutes; read the medians. With `--syncs`, one more round per binary runs the measured set
under `strace -f -c -e trace=fsync,fdatasync,syncfs` (attached to the server, so its CPU and rate are
not reported) and prints the durable writes per enrollment. To get OLD: `git worktree add /tmp/old REV` and build it there with
`swift build -c release --static-swift-stdlib --product scep-fcgi`.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "Tests", "Integration"))
os.environ.setdefault("SCEP_FCGI_BIN_DIR", os.path.join(REPO, ".build", "release"))
import harness  # noqa: E402


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(binary, requests, concurrency, syncs=False, keepalive=True):
    harness.SCEP_FCGI = binary
    site = harness.Site("nginx")
    site.start_scep_fcgi()
    site.start_nginx(keepalive=keepalive)
    harness.wait_for(lambda: harness.port_open(site.port), "nginx")
    try:
        reqs = os.path.join(site.root, "requests")
        subprocess.run([harness.SCEP_CLIENT, "prebuild", "--ca", site.ca_pem, "--challenge-file", site.challenge_file,
                        "--count", str(requests), "--out-dir", reqs, "--rounds", "2"], check=True, capture_output=True)
        pid = next(p.pid for p in site.procs if p.args[0] == binary)

        def load(directory):
            out = subprocess.run([harness.SCEP_CLIENT, "load", "--url", site.url, "--requests-dir", directory,
                                  "--concurrency", str(concurrency)], capture_output=True, text=True, check=True)
            return json.loads(out.stdout)

        load(os.path.join(reqs, "round-0"))
        if syncs:
            return count_syncs(pid, lambda: load(os.path.join(reqs, "round-1")), requests)
        before = cpu_seconds(pid)
        result = load(os.path.join(reqs, "round-1"))
        cpu_ms = (cpu_seconds(pid) - before) * 1000 / requests
        return {"cpu_ms": cpu_ms, "per_second": result["enrollments_per_second"], "failures": result["failures"]}
    finally:
        site.stop()
        shutil.rmtree(site.root, ignore_errors=True)


def count_syncs(pid, run, requests):
    """Calls of each sync system call made by the server (all its threads) while `run` runs, per enrollment."""
    out = os.path.join("/tmp", f"ab-strace-{os.getpid()}-{pid}.txt")
    tracer = subprocess.Popen(["strace", "-f", "-c", "-e", "trace=fsync,fdatasync,syncfs", "-o", out, "-p", str(pid)],
                              stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached to every thread before the load starts
    result = run()
    tracer.send_signal(signal.SIGINT)
    tracer.wait()
    calls = {}
    for line in open(out):
        fields = line.split()
        if len(fields) >= 5 and fields[-1] in ("fsync", "fdatasync", "syncfs"):
            calls[fields[-1]] = int(fields[3])
    os.unlink(out)
    return {"syncs": {k: v / requests for k, v in calls.items()}, "failures": result["failures"]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--a", required=True, help="baseline scep-fcgi binary")
    parser.add_argument("--b", required=True, help="candidate scep-fcgi binary")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--syncs", action="store_true", help="only count sync calls per enrollment (strace)")
    parser.add_argument("--no-keepalive", action="store_true",
                        help="a FastCGI connection per request (for binaries older than the front door, f572de1)")
    args = parser.parse_args()
    if args.syncs:
        print("| binary | sync calls per enrollment | failures |")
        print("|---|---|---:|")
        for name in ("a", "b"):
            r = measure(getattr(args, name), args.requests, args.concurrency, syncs=True, keepalive=not args.no_keepalive)
            text = ", ".join(f"{k} {v:.2f}" for k, v in sorted(r["syncs"].items())) or "none"
            print(f"| {name}: {getattr(args, name)} | {text} (total {sum(r['syncs'].values()):.2f}) | {r['failures']} |")
        return
    runs = {"a": [], "b": []}
    for _ in range(args.rounds):
        for name in ("a", "b"):
            runs[name].append(measure(getattr(args, name), args.requests, args.concurrency, keepalive=not args.no_keepalive))
    print(f"| binary | CPU ms/enrollment (each round) | median | enroll/s (each round) | median | failures |")
    print("|---|---|---:|---|---:|---:|")
    for name in ("a", "b"):
        cpu = [r["cpu_ms"] for r in runs[name]]
        rate = [r["per_second"] for r in runs[name]]
        print(f"| {name}: {getattr(args, name)} | {', '.join(f'{c:.2f}' for c in cpu)} | {statistics.median(cpu):.2f} "
              f"| {', '.join(f'{r:.0f}' for r in rate)} | {statistics.median(rate):.0f} | {sum(r['failures'] for r in runs[name])} |")


if __name__ == "__main__":
    main()
