"""Side-by-side SCEP benchmark: scep-fcgi and micromdm's scepserver behind the same nginx.

One run, one machine: for each CA key size both servers get the same prebuilt PKCSReqs (distinct
RSA keys, AES-256/SHA-256) at each concurrency, then GetCACert/GetCACaps load; server CPU comes from
/proc, the RSA floor from `openssl speed`. scep-fcgi is measured twice in each round: through the
shipped snippets (kept-alive FastCGI connections) and through the same locations without keep-alive
(a connection per request). Writes a Markdown report (default BENCHMARKS.md).

usage: python3 bench/benchmark.py [--requests N] [--rounds 3] [--key-sizes 2048[,4096]] [--concurrency 1,4,16,64] [--out FILE]
Everything listens on 127.0.0.1 except scepserver, which has no listen-address flag and binds all
interfaces on its port; the benchmark only ever connects to 127.0.0.1.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.environ.get("SCEP_FCGI_BIN_DIR", os.path.join(REPO, ".build", "release"))
SCEP_FCGI = os.path.join(BIN, "scep-fcgi")
SCEP_CLIENT = os.path.join(BIN, "scep-client")
CHALLENGE = "bench-challenge-Zq9"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {out.stderr or out.stdout}")
    return out.stdout


def cpu_seconds(pid):
    """utime + stime of a process (all threads), in seconds."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kb(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rsa_sign_seconds(bits):
    out = run(["openssl", "speed", "-seconds", "3", f"rsa{bits}"])
    for line in out.splitlines():
        m = re.match(rf"rsa\s+{bits}\s+bits\s+([\d.]+)s", line.strip())
        if m:
            return float(m.group(1))
    raise RuntimeError("cannot read openssl speed output")


class Deployment:
    """scep-fcgi (FastCGI) and scepserver (HTTP) behind one nginx, for one CA."""

    def __init__(self, root, bits):
        self.root = os.path.join(root, f"rsa{bits}")
        os.makedirs(self.root)
        os.chmod(self.root, 0o755)
        self.procs = []
        ca = os.path.join(self.root, "ca")
        run([SCEP_FCGI, "ca", "init", "--dir", ca, "--subject", f"CN=Benchmark RSA-{bits} CA,O=scep-fcgi bench",
             "--key-bits", str(bits), "--days", "30"])
        self.ca_pem = os.path.join(ca, "ca.pem")
        with open(os.path.join(self.root, "challenge"), "w") as f:
            f.write(CHALLENGE)
        os.chmod(os.path.join(self.root, "challenge"), 0o600)
        self.audit = os.path.join(self.root, "audit.jsonl")
        self.socket = os.path.join(self.root, "scep.sock")
        config = os.path.join(self.root, "scep-fcgi.conf")
        with open(config, "w") as f:
            f.write(f"[ca]\ndir = {ca}\n[challenge]\nstatic_password_file = {self.root}/challenge\n"
                    f"[audit]\npath = {self.audit}\n[server]\nsocket = {self.socket}\nsocket_mode = 0666\n")
        # The same CA for micromdm: its depot wants a PKCS#1 key with PEM encryption (DEK-Info);
        # it only takes the password as a flag (-capass), acceptable for a throwaway benchmark CA.
        depot = os.path.join(self.root, "depot")
        os.makedirs(depot)
        shutil.copy(self.ca_pem, os.path.join(depot, "ca.pem"))
        run(["openssl", "rsa", "-in", os.path.join(ca, "ca.key"), "-traditional", "-des3", "-passout", "pass:bench",
             "-out", os.path.join(depot, "ca.key")])

        log = open(os.path.join(self.root, "scep-fcgi.log"), "w")
        self.ours = subprocess.Popen([SCEP_FCGI, "serve", "--config", config], stdout=log, stderr=log, start_new_session=True)
        self.procs.append(self.ours)
        self.micromdm_port = free_port()
        mlog = open(os.path.join(self.root, "scepserver.log"), "w")
        self.theirs = subprocess.Popen(["scepserver", "-depot", depot, "-port", str(self.micromdm_port), "-challenge", CHALLENGE,
                                        "-allowrenew", "0", "-capass", "bench"], cwd=self.root, stdout=mlog, stderr=mlog, start_new_session=True)
        self.procs.append(self.theirs)
        wait_port(self.micromdm_port)
        deadline = time.time() + 10
        while not os.path.exists(self.socket) and time.time() < deadline:
            time.sleep(0.05)

        self.port = free_port()
        self.plain_port = free_port()
        conf = nginx_conf(self.root, self.port, self.socket, workers=2, plain_port=self.plain_port,
                          upstreams=f"upstream micromdm {{ server 127.0.0.1:{self.micromdm_port}; keepalive 64; }}",
                          locations="""# micromdm behind the same nginx, as it would be deployed for TLS.
        location = /micromdm/scep {
            proxy_pass http://micromdm/scep;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            client_max_body_size 1m;
        }""")
        self.nginx = subprocess.Popen(["nginx", "-c", conf, "-e", f"{self.root}/nginx-error.log"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(self.nginx)
        wait_port(self.port)
        self.urls = {"scep-fcgi": f"http://127.0.0.1:{self.port}/scep", PLAIN: f"http://127.0.0.1:{self.plain_port}/scep",
                     "micromdm": f"http://127.0.0.1:{self.port}/micromdm/scep"}
        self.pids = {"scep-fcgi": self.ours.pid, PLAIN: self.ours.pid, "micromdm": self.theirs.pid}

    def stop(self):
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)

    def issued_audit_lines(self):
        if not os.path.exists(self.audit):
            return 0
        return sum(1 for line in open(self.audit) if '"outcome":"issued"' in line)


PLAIN = "scep-fcgi, no keep-alive"


def nginx_conf(root, port, socket_path, workers=1, upstreams="", locations="", plain_port=None):
    """Writes ROOT/nginx.conf: nginx on 127.0.0.1:PORT with the shipped scep-fcgi locations in
    front of the FastCGI socket (kept-alive connections, as the upstream snippet has them), and on
    PLAIN_PORT the same locations with a connection per request; returns its path."""
    tmp = os.path.join(root, "nginx-tmp")
    os.makedirs(tmp, exist_ok=True)
    conf = os.path.join(root, "nginx.conf")
    shipped = os.path.join(REPO, "nginx", "scep-fcgi-locations.conf")
    plain = os.path.join(root, "scep-fcgi-locations-plain.conf")
    with open(plain, "w") as f:
        f.write(open(shipped).read().replace("fastcgi_pass scep_fcgi;", "fastcgi_pass scep_fcgi_plain;")
                .replace("fastcgi_keep_conn on;", "fastcgi_keep_conn off;"))
    plain_server = "" if plain_port is None else f"""
    server {{
        listen 127.0.0.1:{plain_port} backlog=1024;
        include {plain};
    }}"""
    with open(conf, "w") as f:
        f.write(f"""daemon off;
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body; fastcgi_temp_path {tmp}/fastcgi; proxy_temp_path {tmp}/proxy;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    upstream scep_fcgi {{ server unix:{socket_path}; keepalive 32; }}
    upstream scep_fcgi_plain {{ server unix:{socket_path}; }}
    {upstreams}
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        include {shipped};
        {locations}
    }}{plain_server}
}}
""")
    return conf


def load(url, requests_dir, concurrency):
    return json.loads(run([SCEP_CLIENT, "load", "--url", url, "--requests-dir", requests_dir, "--concurrency", str(concurrency)]))


def get_load(url, operation, seconds=3):
    return json.loads(run([SCEP_CLIENT, "get-load", "--url", url, "--operation", operation, "--concurrency", "16",
                           "--duration", str(seconds)]))


def rotated(names, i):
    """NAMES starting at the i-th (modulo): round i's order, so that each server goes first in turn."""
    return names[i % len(names):] + names[:i % len(names)]


def benchmark(bits, args, root):
    d = Deployment(root, bits)
    try:
        reqs = os.path.join(d.root, "requests")
        # One round of transactionIDs per measured run plus the warm-up: scep-fcgi answers a
        # repeated transactionID with the certificate it already issued (RFC 8894 §3.3.3), which
        # is not what is being measured. Each key gets a fresh transactionID per round.
        rounds = 1 + 2 * len(args.concurrency) * args.rounds
        run([SCEP_CLIENT, "prebuild", "--ca", d.ca_pem, "--challenge-file", os.path.join(d.root, "challenge"),
             "--count", str(args.requests), "--out-dir", reqs, "--rounds", str(rounds)])
        round_dir = lambda i: os.path.join(reqs, f"round-{i}")
        # Warm both servers (first-request costs are not what is measured).
        for name in d.urls:
            load(d.urls[name], round_dir(0), 4)
        result = {"bits": bits, "rows": [], "memory": {}, "gets": {}}
        result["memory"]["idle_kb"] = memory_kb(d.pids["scep-fcgi"], "VmRSS")
        next_round = 1
        for concurrency in args.concurrency:
            row = {"concurrency": concurrency, "runs": {name: [] for name in d.urls}}
            # Rounds interleave the servers, and rotate which goes first, so that what else the
            # machine does meanwhile falls on all of them. scep-fcgi without keep-alive gets
            # transactionIDs of its own (else it would answer retransmissions from the store).
            for i in range(args.rounds):
                order = rotated(list(d.urls), i)
                directories = {name: round_dir(next_round + (1 if name == PLAIN else 0)) for name in d.urls}
                next_round += 2
                for name in order:
                    requests = directories[name]
                    issued_before = d.issued_audit_lines()
                    cpu_before = cpu_seconds(d.pids[name])
                    r = load(d.urls[name], requests, concurrency)
                    r["cpu_ms_per_enrollment"] = (cpu_seconds(d.pids[name]) - cpu_before) * 1000 / max(1, r["requests"])
                    if name != "micromdm":
                        r["audit_issued"] = d.issued_audit_lines() - issued_before
                    row["runs"][name].append(r)
            result["rows"].append(row)
        result["memory"]["peak_kb"] = memory_kb(d.pids["scep-fcgi"], "VmHWM")
        result["memory"]["micromdm_peak_kb"] = memory_kb(d.pids["micromdm"], "VmHWM")
        # GETs: as many rounds as the enrollments, rotating the servers; the report takes medians.
        for operation in ["GetCACert", "GetCACaps"]:
            runs = {name: [] for name in d.urls}
            for i in range(args.rounds):
                for name in rotated(list(d.urls), i):
                    runs[name].append(get_load(d.urls[name], operation))
            result["gets"][operation] = runs
        result["sign_seconds"] = rsa_sign_seconds(bits)
        return result
    finally:
        d.stop()


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    versions = {
        "OpenSSL": run(["openssl", "version"]).strip(),
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().replace("nginx version: ", ""),
        "scepserver": subprocess.run(["scepserver", "-version"], capture_output=True, text=True).stdout.strip() or "2.x",
        "scep-fcgi": run([SCEP_FCGI, "--version"]).strip().splitlines()[0],
    }
    return cpu, os.cpu_count(), mem, platform.release(), versions


def summarise(row):
    """Medians and spreads of one concurrency's rounds."""
    ours, theirs = row["runs"]["scep-fcgi"], row["runs"]["micromdm"]
    ratios = [o["enrollments_per_second"] / max(m["enrollments_per_second"], 1e-9) for o, m in zip(ours, theirs)]
    pick = lambda runs, key: [r[key] for r in runs]
    return {
        "ours": pick(ours, "enrollments_per_second"), "theirs": pick(theirs, "enrollments_per_second"), "ratios": ratios,
        "ours_cpu": pick(ours, "cpu_ms_per_enrollment"), "theirs_cpu": pick(theirs, "cpu_ms_per_enrollment"),
        "ours_p50": statistics.median(pick(ours, "p50_ms")), "ours_p99": statistics.median(pick(ours, "p99_ms")),
        "theirs_p50": statistics.median(pick(theirs, "p50_ms")), "theirs_p99": statistics.median(pick(theirs, "p99_ms")),
        "ours_failures": sum(pick(ours, "failures")), "theirs_failures": sum(pick(theirs, "failures")),
        "client_cpu": max(r.get("client_cpu_ms_per_request", 0) for r in ours),
        "ok": all(r["failures"] == 0 and r["unique_serials"] == r["requests"] and r["audit_issued"] == r["requests"] for r in ours),
        "requests": sum(pick(ours, "requests")), "audit": sum(r["audit_issued"] for r in ours),
    }


def keepalive_table(result):
    """scep-fcgi through the shipped snippets (kept-alive FastCGI connections) against the same
    locations with a connection per request, per concurrency."""
    rows = [row for row in result["rows"] if PLAIN in row["runs"]]
    if not rows:
        return []
    lines = ["", "Kept-alive FastCGI connections (the shipped snippets: `keepalive 32`, `fastcgi_keep_conn on`) against a "
             "connection per request, same scep-fcgi process, same rounds:", "",
             "| concurrency | enroll/s kept alive | enroll/s per-request connection | gain | CPU ms/enroll kept alive "
             "| CPU ms/enroll per-request connection | failures (kept / per-request) |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        kept, plain = row["runs"]["scep-fcgi"], row["runs"][PLAIN]
        gains = [k["enrollments_per_second"] / max(p["enrollments_per_second"], 1e-9) for k, p in zip(kept, plain)]
        lines.append(f"| {row['concurrency']} | {spread([r['enrollments_per_second'] for r in kept])} "
                     f"| {spread([r['enrollments_per_second'] for r in plain])} | {spread(gains, '{:.2f}')}× "
                     f"| {spread([r['cpu_ms_per_enrollment'] for r in kept], '{:.2f}')} "
                     f"| {spread([r['cpu_ms_per_enrollment'] for r in plain], '{:.2f}')} "
                     f"| {sum(r['failures'] for r in kept)} / {sum(r['failures'] for r in plain)} |")
    return lines


def spread(values, fmt="{:.0f}"):
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def report(results, args):
    cpu, cores, mem, kernel, versions = machine()
    lines = ["# Benchmarks", "",
             f"Run {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} with "
             f"`python3 bench/benchmark.py --requests {args.requests} --rounds {args.rounds} --key-sizes "
             f"{','.join(map(str, args.key_sizes))}` (see `scripts/benchmark.sh`).", "",
             f"Machine: {cpu}, {cores} cores, {mem} MiB RAM, Linux {kernel}. "
             + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".", "",
             "Both servers sit behind the same nginx on 127.0.0.1 (scep-fcgi over FastCGI on a Unix socket with the shipped "
             "snippets, kept-alive connections included, and once more without keep-alive; micromdm's "
             "`scepserver -allowrenew 0` through `proxy_pass` with keep-alive), share one CA, and get the same "
             f"{args.requests} prebuilt PKCSReqs (distinct RSA-2048 client keys, AES-256-CBC, SHA-256) by POST at each concurrency. "
             f"Each concurrency runs {args.rounds} rounds, each with fresh transactionIDs, interleaving the servers and "
             "rotating which goes first; the tables give the median and, in brackets, the lowest and highest round. "
             "The load generator (`scep-client load`, libcurl with kept-alive connections) runs on the same cores; its CPU per "
             "request while sending is in the last column and must stay below the server's (it is not the ceiling). It decrypts "
             "and verifies every reply after the timed phase; any non-SUCCESS, unverifiable or mismatched reply counts as a "
             "failure. Server CPU is the server process's utime+stime over the run (nginx and the client excluded); the floor "
             "is three RSA private-key operations (decrypt the envelope, sign the certificate, sign the reply) at `openssl "
             "speed` sign time.", ""]
    verdicts = []
    for r in results:
        floor_ms = 3 * r["sign_seconds"] * 1000
        fast_rsa = r["sign_seconds"] <= 0.00035
        lines += [f"## RSA-{r['bits']} CA", "",
                  f"`openssl speed rsa{r['bits']}`: {r['sign_seconds'] * 1000:.3f} ms per sign, so the floor is "
                  f"{floor_ms:.3f} ms of CPU per enrollment"
                  + ("." if fast_rsa or r["bits"] != 2048 else
                     " (a slow-RSA host: above 0.35 ms per sign, RSA dominates both servers and caps the ratio)."), "",
                  "| concurrency | scep-fcgi enroll/s | micromdm enroll/s | ratio | failures (ours / theirs) "
                  "| scep-fcgi p50 / p99 ms | micromdm p50 / p99 ms | scep-fcgi CPU ms/enroll | micromdm CPU ms/enroll "
                  "| scep-fcgi CPU / floor | generator CPU ms/req |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in r["rows"]:
            c = row["concurrency"]
            x = summarise(row)
            ratio = statistics.median(x["ratios"])
            cpu_ratio = statistics.median(x["ours_cpu"]) / floor_ms
            lines.append(
                f"| {c} | {spread(x['ours'])} | {spread(x['theirs'])} | {spread(x['ratios'], '{:.2f}')}× "
                f"| {x['ours_failures']} / {x['theirs_failures']} | {x['ours_p50']:.1f} / {x['ours_p99']:.1f} "
                f"| {x['theirs_p50']:.1f} / {x['theirs_p99']:.1f} | {spread(x['ours_cpu'], '{:.2f}')} "
                f"| {spread(x['theirs_cpu'], '{:.2f}')} | {cpu_ratio:.2f}× | {x['client_cpu']:.2f} |")
            if r["bits"] != 2048:
                continue
            verdicts.append((f"RSA-2048 c={c}: enroll/s ≥ 2× micromdm (median)", ratio >= 2.0, f"{ratio:.2f}×"))
            if c in (16, 64):
                if fast_rsa:
                    verdicts.append((f"RSA-2048 c={c}: enroll/s ≥ 3.5× micromdm on a fast-RSA host", ratio >= 3.5, f"{ratio:.2f}×"))
                else:
                    verdicts.append((f"RSA-2048 c={c}: ≥ 3.5× micromdm on a fast-RSA host", None,
                                     f"not applicable: this host signs in {r['sign_seconds'] * 1000:.3f} ms (> 0.35)"))
            verdicts.append((f"RSA-2048 c={c}: zero failed enrollments, unique serials, one audit line each", x["ok"],
                             f"{x['ours_failures']} failures, {x['audit']} audit lines for {x['requests']} requests"))
            verdicts.append((f"RSA-2048 c={c}: CPU per enrollment ≤ 1.5× floor (median)", cpu_ratio <= 1.5, f"{cpu_ratio:.2f}×"))
            verdicts.append((f"RSA-2048 c={c}: the generator uses less CPU than the server", x["client_cpu"] < min(x["ours_cpu"]),
                             f"{x['client_cpu']:.2f} vs {min(x['ours_cpu']):.2f} ms"))
        lines += keepalive_table(r)
        g = r["gets"]
        plain = PLAIN in g["GetCACert"]
        lines += ["", "| GET, concurrency 16, 3 s per round | scep-fcgi req/s | micromdm req/s | ratio |"
                  + (" scep-fcgi without keep-alive req/s | keep-alive gain |" if plain else ""),
                  "|---|---:|---:|---:|" + ("---:|---:|" if plain else "")]
        for op in ["GetCACert", "GetCACaps"]:
            rates = {name: [x["requests_per_second"] for x in (runs if isinstance(runs, list) else [runs])] for name, runs in g[op].items()}
            ours, theirs = statistics.median(rates["scep-fcgi"]), statistics.median(rates["micromdm"])
            extra = ""
            if plain:
                without = statistics.median(rates[PLAIN])
                extra = f" {spread(rates[PLAIN])} | {ours / max(without, 1e-9):.2f}× |"
            lines.append(f"| {op} | {spread(rates['scep-fcgi'])} | {spread(rates['micromdm'])} | {ours / max(theirs, 1e-9):.2f}× |{extra}")
            if op == "GetCACert":
                verdicts.append((f"RSA-{r['bits']}: GetCACert ≥ 1.0× micromdm", ours >= theirs, f"{ours / max(theirs, 1e-9):.2f}×"))
        mem = r["memory"]
        lines += ["", f"scep-fcgi resident memory: {mem['idle_kb'] / 1024:.1f} MB idle (after warm-up), "
                      f"{mem['peak_kb'] / 1024:.1f} MB peak over the whole run (micromdm peak: {mem['micromdm_peak_kb'] / 1024:.1f} MB).", ""]
        verdicts.append((f"RSA-{r['bits']}: RSS ≤ 30 MB idle", mem["idle_kb"] <= 30 * 1024, f"{mem['idle_kb'] / 1024:.1f} MB"))
        verdicts.append((f"RSA-{r['bits']}: RSS ≤ 60 MB under concurrency 64", mem["peak_kb"] <= 60 * 1024, f"{mem['peak_kb'] / 1024:.1f} MB"))
    lines += ["## Targets", "", "| target | met | measured |", "|---|---|---|"]
    lines += [f"| {name} | {'n/a' if ok is None else 'yes' if ok else '**no**'} | {value} |" for name, ok, value in verdicts]
    # The hand-written profile analysis (bench/analysis.md) explains the numbers.
    analysis = os.path.join(os.path.dirname(__file__), "analysis.md")
    if os.path.exists(analysis):
        lines += ["", open(analysis).read().rstrip()]
    return "\n".join(lines) + "\n", all(ok is not False for _, ok, _ in verdicts)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--key-sizes", default="2048", help="the targets are RSA-2048's; add 4096 for its table")
    parser.add_argument("--concurrency", default="1,4,16,64")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per concurrency, interleaving the servers")
    parser.add_argument("--out", default=os.path.join(REPO, "BENCHMARKS.md"))
    parser.add_argument("--report-only", metavar="RESULTS_JSON", help="re-render the report from a saved results.json")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.key_sizes = [int(bits) for bits in args.key_sizes.split(",")]
    if args.report_only:
        results = json.load(open(args.report_only))
        args.requests = results[0]["rows"][0]["runs"]["scep-fcgi"][0]["requests"]
        args.rounds = len(results[0]["rows"][0]["runs"]["scep-fcgi"])
        text, _ = report(results, args)
        with open(args.out, "w") as f:
            f.write(text)
        print(text)
        return 0
    root = tempfile.mkdtemp(prefix="scep-bench-")
    os.chmod(root, 0o755)
    results = [benchmark(bits, args, root) for bits in args.key_sizes]
    text, all_met = report(results, args)
    with open(args.out, "w") as f:
        f.write(text)
    with open(os.path.join(root, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(text)
    print(f"raw results: {root}/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
