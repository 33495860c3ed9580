"""Intune challenge validation end to end: scep-fcgi behind nginx, calling a faithful local mock of
Entra ID, Microsoft Graph and Intune ScepActions over HTTPS (intune_mock.py), with real clients."""
import base64
import concurrent.futures
import datetime
import http.client
import json
import os
import ssl
import subprocess
import tempfile
import time

import pytest

import harness
from harness import CLIENTS, SCEP_FCGI, run

TENANT = "contoso.onmicrosoft.com"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SECRET = "mock-client-secret~with.special_chars"


class Mock:
    def __init__(self, root):
        self.root = root
        self.port = harness.free_port()
        pki = os.path.join(root, "mock-pki")
        os.makedirs(pki)
        self.ca = os.path.join(pki, "ca.pem")
        # A test CA and a loopback server certificate for the mock's TLS.
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=Intune Mock Test CA", "-days", "2",
             "-keyout", f"{pki}/ca.key", "-out", self.ca, "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign"])
        run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", f"{pki}/server.key",
             "-out", f"{pki}/server.csr"])
        with open(f"{pki}/ext.cnf", "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        run(["openssl", "x509", "-req", "-in", f"{pki}/server.csr", "-CA", self.ca, "-CAkey", f"{pki}/ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", f"{pki}/ext.cnf", "-out", f"{pki}/server.pem"])
        harness.register_secret(SECRET)
        self.secret_file = os.path.join(root, "client-secret")
        with open(self.secret_file, "w") as f:
            f.write(SECRET + "\n")
        os.chmod(self.secret_file, 0o600)
        self.proc = subprocess.Popen(
            ["python3", os.path.join(os.path.dirname(__file__), "intune_mock.py"), str(self.port), f"{pki}/server.pem",
             f"{pki}/server.key", TENANT, CLIENT_ID, self.secret_file], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True)
        assert self.proc.stdout.readline().strip() == b"ready"
        self.base = f"https://127.0.0.1:{self.port}/"

    def call(self, method, path, payload=None):
        context = ssl.create_default_context(cafile=self.ca)
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=10)
        conn.request(method, path, body=json.dumps(payload) if payload is not None else None)
        data = json.loads(conn.getresponse().read())
        conn.close()
        return data

    def state(self):
        return self.call("GET", "/_mock/state")

    def configure(self, **knobs):
        self.call("POST", "/_mock/config", knobs)

    def reset(self):
        self.call("POST", "/_mock/reset", {})

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def intune_section(mock, **overrides):
    values = {"tenant": TENANT, "client_id": CLIENT_ID, "client_secret_file": mock.secret_file, "authority": mock.base,
              "graph": mock.base.rstrip("/"),  # no trailing slash on purpose: scep-fcgi normalises it
              "ca_bundle": mock.ca, "timeout_seconds": "3"}
    values.update(overrides)
    return "[challenge]\nmode = intune\n[intune]\n" + "".join(f"{k} = {v}\n" for k, v in values.items() if v is not None)


def start_intune_site(prefix="scep-it-intune-", extra=""):
    """A running nginx site validating with a fresh mock: (site, mock)."""
    root = tempfile.mkdtemp(prefix=prefix)
    os.chmod(root, 0o755)
    mock = Mock(root)
    site = harness.Site("nginx", challenge_section=intune_section(mock), extra=extra)
    site.start()
    return site, mock


@pytest.fixture(scope="module")
def env():
    site, mock = start_intune_site()
    yield site, mock
    site.stop()
    mock.stop()


def enroll(site, challenge, subject="CN=intune-device"):
    work = harness.make_request(site, tempfile.mkdtemp(dir=site.root), subject=subject, challenge=challenge)
    status, _, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
    assert status == 200
    return harness.open_reply(work, body), work


def ops(state, op):
    return [r for r in state["requests"] if r["op"] == op]


def test_success_validates_issues_and_notifies(env):
    site, mock = env
    mock.reset()
    work = tempfile.mkdtemp(dir=site.root)
    out = subprocess.run(["scepclient", "-server-url", site.url, "-challenge", "ok-scepclient", "-cn", "intune-scepclient",
                          "-private-key", "client.key", "-certificate", "client.pem"], cwd=work, capture_output=True,
                         text=True, timeout=60)
    assert "pkiStatus=SUCCESS" in out.stdout + out.stderr, out.stdout + out.stderr
    cert = os.path.join(work, "client.pem")
    assert harness.openssl_verify(site.ca_pem, cert)
    state = mock.state()
    [validate] = ops(state, "validateRequest")
    [notify] = ops(state, "successNotification")
    assert not ops(state, "failureNotification")
    event = [e for e in site.audit_lines() if e.get("outcome") == "issued"][-1]
    # validateRequest: exact shape and headers.
    body = validate["body"]["request"]
    assert set(body) == {"transactionId", "certificateRequest", "callerInfo"}
    assert body["transactionId"] == event["transactionID"]
    assert body["callerInfo"].startswith("scep-fcgi/")
    csr = subprocess.run(["openssl", "req", "-inform", "DER", "-noout", "-subject"], input=base64.b64decode(body["certificateRequest"]),
                         capture_output=True).stdout.decode()
    assert "intune-scepclient" in csr
    h = validate["headers"]
    assert h["api-version"] == "2018-02-20" and h["authorization"].startswith("Bearer ey")
    claims = json.loads(base64.urlsafe_b64decode(h["authorization"].split(".")[1] + "=="))
    assert claims["aud"] == "https://api.manage.microsoft.com/" and claims["roles"] == ["scep_challenge_provider"]
    # The audit line names each call with its client-request-id and how long it took.
    assert [c["op"] for c in event["validatorCalls"]][-2:] == ["validateRequest", "successNotification"]
    assert all(isinstance(c["durationMs"], int) and c["clientRequestID"] for c in event["validatorCalls"])
    assert h["content-type"] == "application/json" and h["useragent"].startswith("scep-fcgi/")
    # successNotification matches the certificate that was delivered.
    n = notify["body"]["notification"]
    assert n["transactionId"] == event["transactionID"]
    assert n["certificateThumbprint"] == harness.cert_fingerprint(cert, "sha1").upper()
    assert n["certificateSerialNumber"] == harness.cert_serial(cert)
    not_after = run(["openssl", "x509", "-in", cert, "-noout", "-enddate"]).stdout.strip().split("=", 1)[1]
    expected = datetime.datetime.strptime(not_after, "%b %d %H:%M:%S %Y %Z").strftime("%Y-%m-%dT%H:%M:%S")
    assert n["certificateExpirationDateUtc"].startswith(expected) and n["certificateExpirationDateUtc"].endswith("Z")
    assert "Integration nginx CA" in n["issuingCertificateAuthority"]
    # The audit line carries the result code and every client-request-id.
    assert event["challengeMode"] == "intune" and event["challengeResult"] == "Success"
    calls = {c["op"]: c for c in event["validatorCalls"]}
    assert calls["validateRequest"]["clientRequestID"] == h["client-request-id"]
    assert calls["successNotification"]["clientRequestID"] == notify["headers"]["client-request-id"]
    assert calls["validateRequest"]["code"] == "Success" and calls["validateRequest"]["status"] == 200
    with open(site.audit) as f:
        assert "ok-scepclient" not in f.read()


def test_certmonger_and_pyscep_enroll_with_intune(env):
    site, mock = env
    work = tempfile.mkdtemp(dir=site.root)
    cm = subprocess.run([os.path.join(CLIENTS, "certmonger_enroll.sh"), site.url, "ok-certmonger", "intune-certmonger",
                         os.path.join(work, "cm"), site.ca_pem], capture_output=True, text=True, timeout=120)
    assert cm.returncode == 0, cm.stdout
    py = subprocess.run(["python3", "-W", "ignore", os.path.join(CLIENTS, "pyscep_enroll.py"), site.url, "ok-pyscep",
                         "intune-pyscep", os.path.join(work, "py")], capture_output=True, text=True, timeout=120)
    assert py.returncode == 0, py.stdout + py.stderr
    for cert in [os.path.join(work, "cm", "cert.pem"), os.path.join(work, "py", "cert.pem")]:
        assert harness.openssl_verify(site.ca_pem, cert)


@pytest.mark.parametrize("code", ["ChallengeExpired", "SubjectNameMismatch", "SubjectAltNameMismatch", "ChallengeDecryptionError",
                                  "ScepProfileNoLongerTargetedToTheClient", "BadTenantIdInChallenge", "SomethingNewFromIntune"])
def test_rejection_codes(env, code):
    site, mock = env
    mock.reset()
    before = set(site.issued_serials())
    rep, _ = enroll(site, f"code-{code}-1")
    assert rep["status"] == "failure" and rep["failInfo"] == "badRequest"
    assert code in rep["failInfoText"]
    assert set(site.issued_serials()) == before
    event = site.audit_lines()[-1]
    assert event["outcome"] == "rejected" and event["reason"] == "challenge-rejected" and event["challengeResult"] == code
    state = mock.state()
    assert len(ops(state, "validateRequest")) == 1 and not ops(state, "successNotification")


@pytest.mark.parametrize("challenge,error", [
    ("http500-x", "intune-http-error"),
    ("hang-x", "intune-timeout"),
    ("nonjson-x", "intune-bad-response"),
])
def test_service_failures_never_issue_and_recover(env, challenge, error):
    site, mock = env
    mock.reset()
    before = set(site.issued_serials())
    rep, _ = enroll(site, challenge)
    assert rep["status"] == "failure" and rep["failInfo"] == "badRequest"
    assert set(site.issued_serials()) == before
    event = site.audit_lines()[-1]
    assert event["outcome"] == "failed" and event["reason"] == "challenge-unavailable" and event["challengeError"] == error
    assert event["validatorCalls"], "each attempt is recorded with its client-request-id"
    if error == "intune-http-error":
        assert len(ops(mock.state(), "validateRequest")) > 1, "5xx is retried within the deadline"
    assert enroll(site, "ok-after-" + error)[0]["status"] == "success"


def test_unauthorized_retries_once_with_a_fresh_token(env):
    site, mock = env
    mock.reset()
    mock.configure(unauthorized_once=True)
    assert enroll(site, "ok-401-once")[0]["status"] == "success"
    state = mock.state()
    assert [r["status"] for r in ops(state, "validateRequest")] == [401, 200]
    assert state["token_requests"]["intune"] == 1, "the refused token was replaced by a new one"
    mock.reset()
    mock.configure(scep_status=401)
    rep, _ = enroll(site, "ok-401-always")
    assert rep["status"] == "failure"
    assert site.audit_lines()[-1]["challengeError"] == "intune-unauthorized"
    assert len(ops(mock.state(), "validateRequest")) == 2
    mock.configure(scep_status=None)
    assert enroll(site, "ok-after-401")[0]["status"] == "success"


@pytest.mark.parametrize("discovery,error", [("missing", "intune-service-not-found"), ("403", "intune-discovery-denied"),
                                             ("500", "intune-discovery-failed")])
def test_discovery_failures(env, discovery, error):
    site, mock = env
    site.restart_scep_fcgi()  # empty discovery cache
    mock.reset()
    mock.configure(discovery=discovery)
    rep, _ = enroll(site, "ok-discovery")
    assert rep["status"] == "failure"
    event = site.audit_lines()[-1]
    assert event["reason"] == "challenge-unavailable" and event["challengeError"] == error
    assert not ops(mock.state(), "validateRequest")
    mock.configure(discovery="ok")
    assert enroll(site, "ok-discovery-back")[0]["status"] == "success"


def test_failing_success_notification_withholds_the_certificate(env):
    site, mock = env
    mock.reset()
    rep, _ = enroll(site, "notifyfail-1")
    assert rep["status"] == "failure" and rep["certificates"] == "0"
    event = site.audit_lines()[-1]
    # Stored but never delivered: audited as withheld and marked so in the store.
    assert event["outcome"] == "withheld" and event["reason"] == "notification-failed"
    assert os.path.exists(os.path.join(site.ca_dir, "issued", event["serial"] + ".withheld"))
    assert [c["op"] for c in event["validatorCalls"]][0] == "validateRequest"
    assert ops(mock.state(), "successNotification")


def test_failure_notification_when_issuing_fails(env):
    site, mock = env
    mock.reset()
    issued = os.path.join(site.ca_dir, "issued")
    os.rename(issued, issued + ".away")
    open(issued, "w").close()  # a file where the directory should be: the store cannot write
    try:
        rep, _ = enroll(site, "ok-store-broken")
    finally:
        os.remove(issued)
        os.rename(issued + ".away", issued)
    assert rep["status"] == "failure"
    assert site.audit_lines()[-1]["reason"] == "store-failed"
    [failure] = ops(mock.state(), "failureNotification")
    n = failure["body"]["notification"]
    assert n["hResult"] == 2147500037 and isinstance(n["hResult"], int)
    assert 0 < len(n["errorDescription"]) <= 255 and n["transactionId"] and n["callerInfo"].startswith("scep-fcgi/")
    assert enroll(site, "ok-store-back")[0]["status"] == "success"


def test_one_token_and_one_discovery_for_many_enrollments(env):
    site, mock = env
    site.restart_scep_fcgi()
    mock.reset()
    for i in range(6):
        assert enroll(site, f"ok-reuse-{i}")[0]["status"] == "success"
    state = mock.state()
    assert state["token_requests"] == {"intune": 1, "graph": 1}
    assert state["discoveries"] == 1
    assert len({r["headers"]["authorization"] for r in state["requests"]}) == 1


def test_concurrent_enrollments_overlap_their_intune_calls(env):
    """With 200 ms of Intune latency, 32 concurrent enrollments are in Intune at the same time
    (measured by the mock), rather than one after another."""
    site, mock = env
    mock.reset()
    works = [harness.make_request(site, tempfile.mkdtemp(dir=site.root), subject=f"CN=burst-{i}", challenge=f"slow-200-{i}")
             for i in range(32)]

    def post(work):
        status, _, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
        return harness.open_reply(work, body)["status"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(post, works))
    assert statuses == ["success"] * 32
    assert mock.state()["max_in_flight"] >= 16


def test_check_intune(env):
    site, mock = env
    ok = run([SCEP_FCGI, "check", "--intune", "--config", site.config])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "intune: Intune token: ok" in ok.stdout and "ScepRequestValidationFEService: https://127.0.0.1" in ok.stdout
    assert "intune: Intune token roles: scep_challenge_provider" in ok.stdout

    def check_with(environment=None, knobs=None):
        # Overrides through SCEP_INTUNE_* variables, which win over the file.
        if knobs:
            mock.configure(**knobs)
        try:
            return run([SCEP_FCGI, "check", "--intune", "--config", site.config], env=dict(os.environ, **(environment or {})))
        finally:
            mock.configure(discovery="ok")

    bad_secret = os.path.join(site.root, "bad-secret")
    with open(bad_secret, "w") as f:
        f.write("wrong")
    os.chmod(bad_secret, 0o600)
    out = check_with({"SCEP_INTUNE_CLIENT_SECRET_FILE": bad_secret})
    assert out.returncode == 1 and "AADSTS7000215" in out.stdout and "intune-credentials-rejected" in out.stdout
    out = check_with(knobs={"discovery": "403"})
    assert out.returncode == 1 and "Application.Read.All" in out.stdout
    out = check_with(knobs={"discovery": "missing"})
    assert out.returncode == 1 and "not in the Graph discovery list" in out.stdout
    out = check_with({"SCEP_INTUNE_CA_BUNDLE": ""})  # system trust store: the mock's test CA is not in it
    assert out.returncode == 1 and "intune-tls" in out.stdout
    out = check_with({"SCEP_INTUNE_TENANT": "fabrikam.onmicrosoft.com"})
    assert out.returncode == 1 and "AADSTS90002" in out.stdout
    # The app has no admin-consented scep_challenge_provider: Entra still issues a token, without
    # the role; check names the missing consent before any enrollment meets a 403.
    for roles, shown in [([], "empty"), (["Other.Permission"], "Other.Permission")]:
        out = check_with(knobs={"intune_roles": roles})
        assert out.returncode == 1 and "intune-consent-missing" in out.stdout, out.stdout
        assert f"roles claim ({shown}) lacks scep_challenge_provider" in out.stdout and CLIENT_ID in out.stdout
    mock.configure(intune_roles=["scep_challenge_provider"])


def test_slow_entra_renewal_keeps_enrollments_moving(env):
    """A token due for renewal is renewed once, in the background, while enrollments keep using it:
    with Entra taking 2.5 s to answer, the enrollments made meanwhile reach Intune during that renewal."""
    site, mock = env
    mock.reset()
    mock.configure(token_expires_in=302)  # renewal due 2 s after issue (5 min margin), valid for 5 min
    site.restart_scep_fcgi()
    try:
        assert enroll(site, "ok-renewal-0")[0]["status"] == "success"
        time.sleep(2.5)
        mock.configure(token_delay_ms=2500)  # slow, but inside intune.timeout_seconds (3 s here)
        for i in range(3):
            assert enroll(site, f"ok-renewal-{i + 1}")[0]["status"] == "success"
        harness.wait_for(lambda: len([t for t in mock.state()["token_log"] if t["kind"] == "intune" and "end" in t]) == 2,
                         "the background renewal to finish", timeout=15)
        state = mock.state()
        first, renewal = [t for t in state["token_log"] if t["kind"] == "intune"]
        during = ops(state, "validateRequest")[1:]
        # The three enrollments made once the token was due were all validated before the renewal
        # came back: none waited on it (the first of them triggered it, in the background).
        assert len(during) == 3 and all(r["t"] < renewal["end"] for r in during), (renewal, [r["t"] for r in during])
        assert sum(1 for r in during if r["t"] > renewal["start"]) >= 2
        tokens = {r["headers"]["authorization"] for r in during}
        assert len(tokens) == 1, "they all used the token they had"
        assert state["token_requests"]["intune"] == 2, "one renewal, however many requests saw it due"
        mock.configure(token_delay_ms=0)
        assert enroll(site, "ok-renewal-after")[0]["status"] == "success"
        last = ops(mock.state(), "validateRequest")[-1]["headers"]["authorization"]
        assert last not in tokens, "the renewed token is used once it arrived"
    finally:
        mock.reset()
        site.restart_scep_fcgi()
