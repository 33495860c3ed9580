"""The benchmark script still runs end to end (tiny sizes). Asserts function, never timing."""
import json
import os
import subprocess
import tempfile

import harness


def test_benchmark_runs_and_scep_fcgi_loses_nothing():
    out = os.path.join(tempfile.mkdtemp(), "BENCH.md")
    run = subprocess.run(
        ["python3", os.path.join(harness.REPO, "bench", "benchmark.py"), "--requests", "12", "--key-sizes", "2048",
         "--concurrency", "1,4", "--rounds", "2", "--out", out],
        capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = open(out).read()
    assert "| GetCACert |" in report and "## Targets" in report and "## Where the time goes" in report
    assert "enroll/s kept alive" in report and "keep-alive gain" in report
    raw = run.stdout.strip().rsplit("raw results: ", 1)[1].strip()
    results = json.load(open(raw))
    for row in results[0]["rows"]:
        assert len(row["runs"]["scep-fcgi"]) == 2 and len(row["runs"]["micromdm"]) == 2
        assert len(row["runs"]["scep-fcgi, no keep-alive"]) == 2
        for ours in row["runs"]["scep-fcgi"] + row["runs"]["scep-fcgi, no keep-alive"]:
            assert ours["failures"] == 0 and ours["unique_serials"] == 12 and ours["audit_issued"] == 12
            assert ours["client_cpu_ms_per_request"] > 0
        assert all(theirs["requests"] == 12 for theirs in row["runs"]["micromdm"])
