"""Two scep-fcgi processes behind one nginx, many concurrent enrollments: nothing lost."""
import concurrent.futures
import os
import tempfile

import harness


def test_concurrent_enrollments_two_processes():
    site = harness.Site("nginx")
    try:
        site.start_two_processes()
        works = [harness.make_request(site, tempfile.mkdtemp(dir=site.root), subject=f"CN=concurrent-{i}") for i in range(40)]

        def enroll(work):
            status, _, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
            return harness.open_reply(work, body) if status == 200 else {"status": f"http {status}"}

        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            replies = list(pool.map(enroll, works))
        assert [r["status"] for r in replies] == ["success"] * len(works)
        serials = {r["serial"] for r in replies}
        assert len(serials) == len(works)
        assert serials == set(site.issued_serials())
        assert serials == {row[3] for row in site.index_lines()}
        issued = [e for e in site.audit_lines() if e["outcome"] == "issued"]
        assert {e["serial"] for e in issued} == serials and len(issued) == len(works)
        assert site.scep_fcgi_alive()
        # Two processes appended to one file: still one unbroken prev chain.
        verify = harness.run([harness.SCEP_FCGI, "audit", "verify", site.audit])
        assert verify.returncode == 0, verify.stdout + verify.stderr
        # Any edit is found: the line after a changed one names the original.
        lines = open(site.audit).readlines()
        lines[5] = lines[5].replace('"outcome":"issued"', '"outcome":"failed"')
        tampered = os.path.join(site.root, "tampered.jsonl")
        open(tampered, "w").writelines(lines)
        out = harness.run([harness.SCEP_FCGI, "audit", "verify", tampered])
        assert out.returncode == 1 and f"tampered.jsonl:7: prev does not name {tampered}:6" in out.stdout, out.stdout
    finally:
        site.stop()
