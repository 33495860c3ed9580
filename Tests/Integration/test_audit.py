"""The audit log: one JSON line per request, fixed fields, parseable with jq-like tools."""
import os
import tempfile

import harness

REQUIRED = {"v", "ts", "requestID", "method", "remoteAddr", "outcome", "httpStatus"}


def test_one_line_per_request(site):
    before = len(site.audit_lines())
    site.request("GET", "operation=GetCACaps")
    site.request("GET", "operation=GetCACert")
    site.request("GET", "operation=Bogus")
    work = harness.make_request(site, tempfile.mkdtemp(dir=site.root), subject="CN=audit-one")
    _, _, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
    rep = harness.open_reply(work, body)
    lines = site.wait_audit(before + 4)
    new = lines[before:]
    assert len(new) == 4
    for event in new:
        assert REQUIRED <= set(event), event
        assert event["ts"].endswith("Z") and "T" in event["ts"]
    assert [e["outcome"] for e in new] == ["served", "served", "rejected", "issued"]
    assert new[2]["reason"] == "unknown-operation"
    issued = new[3]
    assert issued["serial"] == rep["serial"] and issued["transactionID"] == rep["transactionID"]
    for key in ["subject", "sha1", "sha256", "notAfter", "messageType"]:
        assert key in issued
    with open(site.audit) as f:
        assert harness.CHALLENGE not in f.read()
