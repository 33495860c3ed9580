"""Metrics and health (metrics.path, health.path) through the committed nginx and Apache snippets:
totals across processes equal the audit log's counts, checked by hand, by promtool and by a real
Prometheus server scraping through nginx; the allow list; health turning 503 and back; no audit
line for either endpoint."""
import collections
import concurrent.futures
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import pytest

import harness
from harness import run

MONITORING = "[metrics]\npath = /scep-metrics\n[health]\npath = /scep-health\n"


def samples(text):
    """{(name, frozenset(labels)): value} from Prometheus text (label values here never hold `,` or `"`)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name, _, labels = series.partition("{")
        pairs = [p.split("=", 1) for p in labels.rstrip("}").split(",") if p]
        out[(name, frozenset((k, v.strip('"')) for k, v in pairs))] = float(value)
    return out


def series(parsed, name, **labels):
    return parsed.get((name, frozenset(labels.items())), 0.0)


def scrape(site, source=None):
    conn = http.client.HTTPConnection("127.0.0.1", site.port, timeout=30, source_address=(source, 0) if source else None)
    conn.request("GET", "/scep-metrics")
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    return resp.status, resp.getheader("Content-Type"), body


def health(site):
    status, content_type, body = site.get("/scep-health")
    assert content_type == "application/json"
    return status, json.loads(body)


def enroll_many(site, good, bad):
    works = [(harness.make_request(site, tempfile.mkdtemp(dir=site.root), subject=f"CN=metrics-{i}"), True) for i in range(good)]
    works += [(harness.make_request(site, tempfile.mkdtemp(dir=site.root), subject=f"CN=metrics-bad-{i}", challenge="wrong"), False)
              for i in range(bad)]

    def post(item):
        work, _ = item
        status, _, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
        assert status == 200
        return harness.open_reply(work, body)["status"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return collections.Counter(pool.map(post, works))


def audit_counts(lines):
    requests = collections.Counter((e.get("operation", "none"), e["outcome"]) for e in lines if e.get("method") != "CLI")
    commands = collections.Counter((e["operation"], e["outcome"]) for e in lines if e.get("method") == "CLI")
    rejections = collections.Counter(e["reason"] for e in lines if e["outcome"] == "rejected")
    return requests, commands, rejections


def assert_totals_match(parsed, lines):
    requests, commands, rejections = audit_counts(lines)
    for (operation, outcome), count in requests.items():
        assert series(parsed, "scep_requests_total", operation=operation, outcome=outcome) == count, (operation, outcome)
    assert sum(v for (n, _), v in parsed.items() if n == "scep_requests_total") == sum(requests.values())
    for (operation, outcome), count in commands.items():
        assert series(parsed, "scep_ca_operations_total", operation=operation, outcome=outcome) == count, (operation, outcome)
    for reason, count in rejections.items():
        assert series(parsed, "scep_rejections_total", reason=reason) == count, reason
    assert sum(v for (n, _), v in parsed.items() if n == "scep_rejections_total") == sum(rejections.values())


@pytest.fixture(scope="module")
def two_processes():
    site = harness.Site("nginx", extra=MONITORING)
    site.start_two_processes()
    yield site
    site.stop()


def test_metrics_totals_equal_audit_counts_over_two_processes(two_processes):
    site = two_processes
    outcomes = enroll_many(site, good=24, bad=6)
    assert outcomes == {"success": 24, "failure": 6}
    for query in ["operation=GetCACaps", "operation=GetCACert", "operation=Bogus", "operation=PKIOperation&message=%%%"]:
        for _ in range(5):
            site.request("GET", query)
    serial = site.issued_serials()[0]
    site.ca("revoke", serial, "--reason", "superseded")

    lines = site.audit_lines()
    # Two processes answer scrapes in turn: every scrape, whichever process answers it, gives the
    # same totals, and none of them adds an audit line.
    scrapes = [scrape(site) for _ in range(6)]
    assert len(site.audit_lines()) == len(lines)
    assert all(status == 200 and content_type.startswith("text/plain; version=0.0.4") for status, content_type, _ in scrapes)
    counters = [{k: v for k, v in samples(body).items() if k[0].endswith("_total")} for _, _, body in scrapes]
    assert all(c == counters[0] for c in counters)
    parsed = samples(scrapes[0][2])
    assert_totals_match(parsed, lines)
    assert series(parsed, "scep_requests_total", operation="PKIOperation", outcome="issued") == 24
    assert series(parsed, "scep_rejections_total", reason="challenge-mismatch") == 6
    assert series(parsed, "scep_ca_operations_total", operation="ca-revoke", outcome="revoked") == 1

    ca = series(parsed, "scep_certificate_expiry_timestamp_seconds", role="ca", serial=harness.cert_serial(site.ca_pem))
    assert abs(ca - datetime_not_after(site.ca_pem)) < 1
    assert ("scep_build_info", frozenset({("version", run([harness.SCEP_FCGI, "--version"]).stdout.split()[1])})) in parsed
    # The server published its CRL at start: its age is exposed.
    assert 0 <= series(parsed, "scep_crl_age_seconds", crl="ca") < 3600
    assert series(parsed, "scep_pending_requests") == 0

    # Prometheus' own linter accepts the exposition.
    lint = subprocess.run(["promtool", "check", "metrics"], input=scrapes[0][2], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def datetime_not_after(pem):
    out = run(["openssl", "x509", "-in", pem, "-noout", "-enddate", "-dateopt", "iso_8601"]).stdout.strip()
    stamp = out.split("=", 1)[1]
    return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%SZ")) - time.timezone


def test_a_real_prometheus_scrapes_the_same_totals(two_processes):
    site = two_processes
    root = tempfile.mkdtemp(dir=site.root)
    port = harness.free_port()
    with open(os.path.join(root, "prometheus.yml"), "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: scep
    metrics_path: /scep-metrics
    static_configs:
      - targets: ["127.0.0.1:{site.port}"]
""")
    log = open(os.path.join(root, "prometheus.log"), "w")
    proc = subprocess.Popen(["prometheus", f"--config.file={root}/prometheus.yml", f"--storage.tsdb.path={root}/data",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log, start_new_session=True)
    try:
        enroll_many(site, good=3, bad=1)
        requests, _, _ = audit_counts(site.audit_lines())

        def query(expr):
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            with urllib.request.urlopen(url, timeout=5) as resp:
                result = json.loads(resp.read())["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        def settled():
            try:
                return query("sum(scep_requests_total)") == sum(requests.values()) and query("up{job='scep'}") == 1
            except OSError:
                return False
        harness.wait_for(settled, "Prometheus to scrape the totals", timeout=60)
        assert query("sum(scep_requests_total{operation='PKIOperation',outcome='issued'})") == requests[("PKIOperation", "issued")]
        assert query("sum(scep_rejections_total)") == sum(1 for e in site.audit_lines() if e["outcome"] == "rejected")

        # Every query of the shipped Grafana dashboard is valid PromQL over series that exist.
        # (increase() and rate() need two scrapes of a series: wait for them.)
        dashboard = json.load(open(os.path.join(harness.REPO, "grafana", "scep-fcgi-dashboard.json")))

        def answered():
            counts = {}
            for panel in dashboard["panels"]:
                for target in panel["targets"]:
                    expr = target["expr"].replace("$instance", ".*").replace("$__rate_interval", "1m")
                    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
                    with urllib.request.urlopen(url, timeout=5) as resp:
                        answer = json.loads(resp.read())
                    assert answer["status"] == "success", (panel["title"], answer)
                    counts[panel["title"]] = counts.get(panel["title"], 0) + len(answer["data"]["result"])
            return counts
        wanted = ["Issued (24 h)", "CA expires in", "CRL age", "Pending approval", "Rejected (24 h)", "Enrollments", "Requests by operation"]
        harness.wait_for(lambda: all(answered()[title] > 0 for title in wanted), "the dashboard's panels to have data", timeout=30)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def test_metrics_allow_list_in_the_nginx_snippet(two_processes):
    site = two_processes
    # Any address but loopback's 127.0.0.1 and ::1 gets nginx's 403, before scep-fcgi sees it.
    assert scrape(site, source="127.0.0.2")[0] == 403
    allow_dir = os.path.join(site.root, "scep-fcgi")  # beside nginx.conf: nginx's conf prefix
    os.makedirs(allow_dir, exist_ok=True)
    with open(os.path.join(allow_dir, "metrics-allow.conf"), "w") as f:
        f.write("allow 127.0.0.2;  # the Prometheus host\n")
    try:
        pid = int(open(os.path.join(site.log_dir, "nginx.pid")).read())
        os.kill(pid, signal.SIGHUP)
        harness.wait_for(lambda: scrape(site, source="127.0.0.2")[0] == 200, "nginx to load the allow list")
        assert scrape(site, source="127.0.0.3")[0] == 403
    finally:
        shutil.rmtree(allow_dir)
        os.kill(pid, signal.SIGHUP)
    # Health is for load balancers: open to all.
    conn = http.client.HTTPConnection("127.0.0.1", site.port, timeout=30, source_address=("127.0.0.2", 0))
    conn.request("GET", "/scep-health")
    assert conn.getresponse().status == 200
    conn.close()


def test_health_reports_each_problem_and_recovers():
    site = harness.Site("nginx", extra=MONITORING)
    # The audit log in a directory of its own, and a small filesystem to fill.
    audit_dir = os.path.join(site.root, "audit")
    os.makedirs(audit_dir)
    site.audit = os.path.join(audit_dir, "audit.jsonl")
    with open(site.config, "a") as f:
        f.write(f"[audit]\npath = {site.audit}\n")
    site.start()
    try:
        lines = len(site.audit_lines())
        status, body = health(site)
        assert status == 200 and body == {"status": "ok", "checks": {"caKey": "ok", "audit": "ok", "store": "ok"}}
        assert len(site.audit_lines()) == lines, "health writes no audit line"

        # Audit directory gone (unmounted, renamed): 503 naming it; back: 200.
        os.rename(audit_dir, audit_dir + ".away")
        status, body = health(site)
        assert status == 503 and body["status"] == "fail" and body["checks"]["audit"] == "audit-not-writable"
        os.rename(audit_dir + ".away", audit_dir)
        assert health(site)[0] == 200

        # The audit filesystem full: 503 audit-disk-full until space returns.
        run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", audit_dir], check=True)
        try:
            filler = os.path.join(audit_dir, "filler")
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k", "count=64"], capture_output=True)
            status, body = health(site)
            assert status == 503 and body["checks"] == {"caKey": "ok", "audit": "audit-disk-full", "store": "ok"}
            os.unlink(filler)
            assert health(site) == (200, {"status": "ok", "checks": {"caKey": "ok", "audit": "ok", "store": "ok"}})
        finally:
            run(["umount", audit_dir])

        # The store's transactions directory gone: 503 store-not-writable.
        transactions = os.path.join(site.ca_dir, "transactions")
        os.rename(transactions, transactions + ".away")
        status, body = health(site)
        assert status == 503 and body["checks"]["store"] == "store-not-writable"
        os.rename(transactions + ".away", transactions)
        assert health(site)[0] == 200
        # POST is not health's method; neither endpoint audits.
        assert site.request("POST", None, body=b"x", path="/scep-health")[0] == 405
        assert len(site.audit_lines()) == lines
    finally:
        site.stop()


@pytest.mark.parametrize("kind", ["apache-proxy-fcgi", "apache-fcgid"])
def test_metrics_through_apache(kind):
    """mod_fcgid runs one request per process and spawns processes at will: the shared counters
    still give the totals, whichever process answers the scrape."""
    site = harness.Site(kind, extra=MONITORING)
    site.start()
    try:
        assert enroll_many(site, good=6, bad=2) == {"success": 6, "failure": 2}
        for _ in range(4):
            site.request("GET", "operation=GetCACaps")
        lines = site.wait_audit(12)
        status, content_type, body = scrape(site)
        assert status == 200 and content_type.startswith("text/plain; version=0.0.4"), body
        assert_totals_match(samples(body), lines)
        assert scrape(site, source="127.0.0.2")[0] == 403
        status, report = health(site)
        assert status == 200 and report["status"] == "ok", report
        assert len(site.audit_lines()) == len(lines)
    finally:
        site.stop()


def test_check_refuses_a_metrics_path_inside_the_scep_location(tmp_path):
    site = harness.Site("nginx", extra="[metrics]\npath = /scep/metrics\n")
    out = run([harness.SCEP_FCGI, "check", "--config", site.config])
    assert out.returncode == 1 and "metrics.path: /scep/metrics is inside the public SCEP location" in out.stdout + out.stderr


def test_intune_latency_errors_and_health():
    from test_intune import enroll, start_intune_site
    site, mock = start_intune_site("scep-it-intune-metrics-", extra=MONITORING)
    try:
        assert health(site) == (200, {"status": "ok", "checks": {"caKey": "ok", "audit": "ok", "store": "ok", "intune": "ok"}})
        assert enroll(site, "ok-metrics-1")[0]["status"] == "success"
        assert enroll(site, "wrong")[0]["status"] == "failure"  # a rejection is an answer, not a failure
        assert health(site)[0] == 200
        assert enroll(site, "http500-metrics")[0]["status"] == "failure"
        status, body = health(site)
        assert status == 503 and body["checks"]["intune"] == "last-call-failed"
        assert enroll(site, "ok-metrics-2")[0]["status"] == "success"
        assert health(site)[0] == 200

        parsed = samples(scrape(site)[2])
        state = mock.state()
        validations = [r for r in state["requests"] if r["op"] == "validateRequest"]
        assert series(parsed, "scep_intune_call_duration_seconds_count", call="validateRequest") == len(validations)
        assert series(parsed, "scep_intune_call_duration_seconds_bucket", call="validateRequest", le="+Inf") == len(validations)
        failed = sum(1 for r in validations if r["status"] >= 400)
        assert failed > 1, "HTTP 500 is retried"
        assert series(parsed, "scep_intune_call_errors_total", call="validateRequest") == failed
        assert series(parsed, "scep_intune_call_duration_seconds_count", call="successNotification") == 2
        assert series(parsed, "scep_intune_call_duration_seconds_count", call="token") == sum(state["token_requests"].values())
        assert series(parsed, "scep_intune_call_duration_seconds_count", call="discovery") == state["discoveries"]
        assert series(parsed, "scep_intune_last_call_success") == 1
        assert_totals_match(parsed, site.audit_lines())
        lint = subprocess.run(["promtool", "check", "metrics"], input=scrape(site)[2], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr
    finally:
        site.stop()
        mock.stop()
