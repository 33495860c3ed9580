"""The file store against the PostgreSQL store, and two hosts on one database (issue 16, items 4-6).

Three stacks of nginx + scep-fcgi with one CA: `file` (the CA directory), `pg-a` and `pg-b` (each
its own copy of the CA directory, both on one PostgreSQL server from Debian started here). Rounds
interleave: the file store at concurrency C, the PostgreSQL store at C, then both PostgreSQL hosts
at once (C each). Reported per round and as medians: enrollments/s, p50/p99 latency, and CPU per
enrollment of scep-fcgi plus, for the database stacks, of every PostgreSQL process.

usage: python3 bench/stores.py [--requests 300] [--rounds 3] [--concurrency 16]
"""
import argparse
import concurrent.futures
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from benchmark import CHALLENGE, REPO, SCEP_CLIENT, SCEP_FCGI, cpu_seconds, run  # noqa: E402
from store_age import Stack  # noqa: E402

SCRATCH = os.path.join(REPO, "scripts", "postgresql-scratch.sh")


def postgres_cpu():
    """CPU seconds of every process of the postgres user (the scratch server is the only one)."""
    uid = pwd.getpwnam("postgres").pw_uid
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                total += cpu_seconds(int(pid))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
    return total


def load(stack, directory, concurrency):
    return json.loads(run([SCEP_CLIENT, "load", "--url", stack.url, "--requests-dir", directory, "--concurrency", str(concurrency)]))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="scep-stores-")
    os.chmod(root, 0o755)
    stacks = {}
    pg_dir = os.path.join(root, "pg")
    try:
        with open(os.path.join(root, "challenge"), "w") as f:
            f.write(CHALLENGE)
        os.chmod(os.path.join(root, "challenge"), 0o600)
        dsn = subprocess.run([SCRATCH, "start", pg_dir], capture_output=True, text=True, check=True).stdout.strip()
        dsn_file = os.path.join(root, "dsn")
        with open(dsn_file, "w") as f:
            f.write(dsn + "\n")
        os.chmod(dsn_file, 0o600)
        ca = os.path.join(root, "file", "ca")
        os.makedirs(os.path.dirname(ca))
        run([SCEP_FCGI, "ca", "init", "--dir", ca, "--subject", "CN=Stores CA,O=scep-fcgi bench", "--key-bits", "2048", "--days", "30"])
        for name in ["pg-a", "pg-b"]:
            os.makedirs(os.path.join(root, name))
            shutil.copytree(ca, os.path.join(root, name, "ca"))
        reqs = os.path.join(root, "requests")
        # Rounds: 1 warm-up + per measured round: file, pg-a, and pg-a + pg-b together.
        per_round = 4
        run([SCEP_CLIENT, "prebuild", "--ca", os.path.join(ca, "ca.pem"), "--challenge-file", os.path.join(root, "challenge"),
             "--count", str(args.requests), "--out-dir", reqs, "--rounds", str(1 + per_round * args.rounds)])
        for name in ["file", "pg-a", "pg-b"]:
            stack = Stack(os.path.join(root, name), os.path.join(root, name, "ca"))
            if name != "file":
                with open(stack.config, "a") as f:
                    f.write(f"[store]\nbackend = postgresql\npostgresql_dsn_file = {dsn_file}\n")
            stacks[name] = stack
        run([SCEP_FCGI, "store", "migrate", "--config", stacks["pg-a"].config])
        for stack in stacks.values():
            stack.start()
        next_round = iter(range(0, 1 + per_round * args.rounds))
        first = next(next_round)
        # Warm-up (first-request costs are not measured): one round on each stack.
        for name in ["file", "pg-a", "pg-b"]:
            load(stacks[name], os.path.join(reqs, f"round-{first}"), 4)
        rows = {"file": [], "pg": [], "two hosts": []}
        for _ in range(args.rounds):
            for label in ["file", "pg"]:
                stack = stacks["file" if label == "file" else "pg-a"]
                directory = os.path.join(reqs, f"round-{next(next_round)}")
                cpu0, db0 = cpu_seconds(stack.server.pid), postgres_cpu()
                r = load(stack, directory, args.concurrency)
                r["cpu_ms"] = (cpu_seconds(stack.server.pid) - cpu0) * 1000 / r["requests"]
                r["db_cpu_ms"] = (postgres_cpu() - db0) * 1000 / r["requests"] if label == "pg" else 0.0
                rows[label].append(r)
            dirs = [os.path.join(reqs, f"round-{next(next_round)}"), os.path.join(reqs, f"round-{next(next_round)}")]
            cpu0 = [cpu_seconds(stacks[n].server.pid) for n in ["pg-a", "pg-b"]]
            db0 = postgres_cpu()
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                both = list(pool.map(lambda p: load(stacks[p[0]], p[1], args.concurrency), zip(["pg-a", "pg-b"], dirs)))
            seconds = max(b["seconds"] for b in both)
            total = sum(b["requests"] for b in both)
            rows["two hosts"].append({
                "enrollments_per_second": (total - sum(b["failures"] for b in both)) / seconds,
                "p50_ms": statistics.median(b["p50_ms"] for b in both), "p99_ms": max(b["p99_ms"] for b in both),
                "failures": sum(b["failures"] for b in both),
                "cpu_ms": sum(cpu_seconds(stacks[n].server.pid) - c for n, c in zip(["pg-a", "pg-b"], cpu0)) * 1000 / total,
                "db_cpu_ms": (postgres_cpu() - db0) * 1000 / total,
            })
    finally:
        for stack in stacks.values():
            stack.close()
        subprocess.run([SCRATCH, "stop", pg_dir], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    med = lambda label, key: statistics.median(r[key] for r in rows[label])  # noqa: E731
    spread = lambda label, key: f"{min(r[key] for r in rows[label]):.0f}–{max(r[key] for r in rows[label]):.0f}"  # noqa: E731
    lines = [
        f"| store (concurrency {args.concurrency} per host) | enrollments/s (median, spread) | p50 | p99 | scep-fcgi CPU/enrollment | PostgreSQL CPU/enrollment | failures |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label in ["file", "pg", "two hosts"]:
        name = {"file": "file (one host)", "pg": "PostgreSQL (one host)", "two hosts": "PostgreSQL (two hosts at once)"}[label]
        lines.append(f"| {name} | {med(label, 'enrollments_per_second'):.0f} ({spread(label, 'enrollments_per_second')}) | "
                     f"{med(label, 'p50_ms'):.1f} ms | {med(label, 'p99_ms'):.1f} ms | {med(label, 'cpu_ms'):.2f} ms | "
                     f"{med(label, 'db_cpu_ms'):.2f} ms | {sum(r['failures'] for r in rows[label])} |")
    ratio = med("pg", "enrollments_per_second") / med("file", "enrollments_per_second")
    lines += ["", f"PostgreSQL / file throughput at concurrency {args.concurrency}: {ratio:.2f}."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
