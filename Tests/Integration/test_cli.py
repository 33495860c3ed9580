"""The executable itself: `check`, `ca init`, and plain CGI mode (no web server)."""
import os
import subprocess
import tempfile

import harness
from harness import SCEP_FCGI, run


def write(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def config(root, **overrides):
    values = {"ca.dir": f"{root}/ca", "challenge.static_password_file": f"{root}/challenge",
              "audit.path": f"{root}/audit.jsonl"}
    values.update(overrides)
    path = os.path.join(root, "scep.conf")
    write(path, "".join(f"{k} = {v}\n" for k, v in values.items()), 0o644)
    return path


def new_ca(root):
    out = run([SCEP_FCGI, "ca", "init", "--dir", f"{root}/ca", "--subject", "CN=CLI CA", "--key-bits", "2048"])
    assert out.returncode == 0, out.stderr
    write(f"{root}/challenge", "cli-challenge\n")


def test_ca_init_refuses_to_overwrite():
    root = tempfile.mkdtemp()
    new_ca(root)
    assert oct(os.stat(f"{root}/ca/ca.key").st_mode & 0o777) == "0o600"
    again = run([SCEP_FCGI, "ca", "init", "--dir", f"{root}/ca", "--subject", "CN=Other"])
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr
    assert run(["openssl", "x509", "-in", f"{root}/ca/ca.pem", "-noout", "-subject"]).stdout.strip() == "subject=CN = CLI CA"


def test_check_ok_and_each_problem_on_its_own_line():
    root = tempfile.mkdtemp()
    new_ca(root)
    ok = run([SCEP_FCGI, "check", "--config", config(root)])
    assert ok.returncode == 0 and ok.stdout.startswith("ok:"), ok.stdout + ok.stderr

    # Key readable by others, challenge readable by others, audit directory missing.
    os.chmod(f"{root}/ca/ca.key", 0o644)
    os.chmod(f"{root}/challenge", 0o644)
    bad = run([SCEP_FCGI, "check", "--config", config(root, **{"audit.path": f"{root}/missing/audit.jsonl"})])
    lines = bad.stdout.strip().split("\n")
    assert bad.returncode == 1
    assert any("challenge.static_password_file" in l and "readable by others" in l for l in lines), lines
    assert any("audit.path" in l and "missing or not writable" in l for l in lines), lines
    os.chmod(f"{root}/challenge", 0o600)
    bad = run([SCEP_FCGI, "check", "--config", config(root)])
    assert bad.returncode == 1 and any("ca.key" in l and "readable by group or others" in l for l in bad.stdout.split("\n"))
    os.chmod(f"{root}/ca/ca.key", 0o600)

    # A key that is not the certificate's, and a non-RSA key.
    other = tempfile.mkdtemp()
    new_ca(other)
    os.replace(f"{other}/ca/ca.key", f"{root}/ca/ca.key")
    mismatch = run([SCEP_FCGI, "check", "--config", config(root)])
    assert mismatch.returncode == 1 and "does not match" in mismatch.stdout
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=EC CA",
         "-keyout", f"{root}/ca/ca.key", "-out", f"{root}/ca/ca.pem", "-days", "30"])
    os.chmod(f"{root}/ca/ca.key", 0o600)
    ec = run([SCEP_FCGI, "check", "--config", config(root)])
    # An EC CA is fine, but cannot receive requests without an RSA RA (README: An EC issuing CA).
    assert ec.returncode == 1 and "an EC CA needs an RSA RA" in ec.stdout and "scep-fcgi ca ra" in ec.stdout
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-224", "-nodes", "-subj", "/CN=Weak EC CA",
         "-keyout", f"{root}/ca/ca.key", "-out", f"{root}/ca/ca.pem", "-days", "30"])
    weak = run([SCEP_FCGI, "check", "--config", config(root)])
    assert weak.returncode == 1 and "key is EC-224, a CA needs RSA or EC P-256/P-384" in weak.stdout, weak.stdout

    # Missing files and an unknown key.
    missing = run([SCEP_FCGI, "check", "--config", config(root, **{"ca.dir": f"{root}/nowhere"})])
    assert missing.returncode == 1 and "ca.pem: missing" in missing.stdout and "ca.key: missing" in missing.stdout
    typo = run([SCEP_FCGI, "check", "--config", config(root, **{"issue.validity_dayz": "3"})])
    assert typo.returncode == 1 and "unknown key issue.validity_dayz" in typo.stdout


def test_environment_only_configuration_and_serve_refuses_bad_setup():
    root = tempfile.mkdtemp()
    new_ca(root)
    env = dict(os.environ, SCEP_CA_DIR=f"{root}/ca", SCEP_CHALLENGE_STATIC_PASSWORD_FILE=f"{root}/challenge",
               SCEP_AUDIT_PATH=f"{root}/audit.jsonl")
    assert run([SCEP_FCGI, "check"], env=env).returncode == 0
    env["SCEP_CA_DIR"] = f"{root}/nowhere"
    serve = run([SCEP_FCGI, "serve", "--socket", f"{root}/s.sock"], env=env, timeout=20)
    assert serve.returncode == 1 and "ca.pem: missing" in serve.stderr and "Usage" not in serve.stderr
    assert not os.path.exists(f"{root}/s.sock")
    # A corrupt CA key: one clear line naming it, exit 1, no socket.
    env["SCEP_CA_DIR"] = f"{root}/ca"
    with open(f"{root}/ca/ca.key", "w") as f:
        f.write("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    serve = run([SCEP_FCGI, "serve", "--socket", f"{root}/s.sock"], env=env, timeout=20)
    problems = [line for line in serve.stderr.splitlines() if "ca.key" in line]
    assert serve.returncode == 1 and len(problems) == 1 and "cannot be read as a PEM private key" in problems[0], serve.stderr
    assert "Usage" not in serve.stderr and not os.path.exists(f"{root}/s.sock")


def test_plain_cgi_answers_one_request():
    root = tempfile.mkdtemp()
    new_ca(root)
    base = dict(os.environ, GATEWAY_INTERFACE="CGI/1.1", REMOTE_ADDR="192.0.2.9",
                SCEP_CONFIG=config(root))
    caps = subprocess.run([SCEP_FCGI], env=dict(base, REQUEST_METHOD="GET", QUERY_STRING="operation=GetCACaps"),
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
    head, body = caps.stdout.split(b"\r\n\r\n", 1)
    assert head.startswith(b"Status: 200 OK") and b"Content-Type: text/plain" in head
    assert body.startswith(b"AES\n")

    class Site:  # what make_request needs
        ca_pem = f"{root}/ca/ca.pem"
    work = harness.make_request(Site, f"{root}/req", challenge="cli-challenge", subject="CN=cgi-device")
    request = open(f"{work}/request.der", "rb").read()
    post = subprocess.run([SCEP_FCGI], input=request, capture_output=True, timeout=30,
                          env=dict(base, REQUEST_METHOD="POST", QUERY_STRING="operation=PKIOperation",
                                   CONTENT_LENGTH=str(len(request)), CONTENT_TYPE="application/x-pki-message"))
    head, body = post.stdout.split(b"\r\n\r\n", 1)
    assert b"Content-Type: application/x-pki-message" in head and f"Content-Length: {len(body)}".encode() in head
    assert harness.open_reply(work, body)["status"] == "success"
    audit = open(f"{root}/audit.jsonl").read().strip().split("\n")
    assert len(audit) == 2 and '"remoteAddr":"192.0.2.9"' in audit[1] and '"outcome":"issued"' in audit[1]


def test_ca_init_leaves_nothing_behind_when_it_fails():
    root = tempfile.mkdtemp()
    bad = run([SCEP_FCGI, "ca", "init", "--dir", f"{root}/ca", "--subject", "no equals sign", "--key-bits", "2048"])
    assert bad.returncode != 0 and "distinguished name" in bad.stderr
    assert not os.path.exists(f"{root}/ca")


def test_version_names_the_libraries_it_runs_with():
    out = run([SCEP_FCGI, "--version"])
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0].startswith("scep-fcgi ")
    assert any(line.startswith("OpenSSL 3.") for line in lines)
    assert any(line.startswith("libcurl/") for line in lines)
    assert any(line.startswith("libfcgi ") for line in lines)


def test_check_reports_every_configuration_problem_at_once():
    root = tempfile.mkdtemp()
    path = os.path.join(root, "scep.conf")
    write(path, "[ca]\ndri = /x\n[issue]\nvalidity_days = 30 ; a month\nextended_key_usage = clientAuth, bogusEKU\n", 0o644)
    out = run([SCEP_FCGI, "check", "--config", path])
    assert out.returncode == 1
    problems = [line for line in out.stdout.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 2, out.stdout
    assert problems[0].endswith(":2: unknown key ca.dri (did you mean ca.dir?)")
    assert ":5: issue.extended_key_usage: \"bogusEKU\"" in problems[1]


def test_check_warns_when_the_ca_expires_within_the_validity():
    root = tempfile.mkdtemp()
    out = run([SCEP_FCGI, "ca", "init", "--dir", f"{root}/ca", "--subject", "CN=Short CA", "--key-bits", "2048", "--days", "10"])
    assert out.returncode == 0, out.stderr
    write(f"{root}/challenge", "cli-challenge\n")
    checked = run([SCEP_FCGI, "check", "--config", config(root)])  # issue.validity_days defaults to 365
    assert checked.returncode == 0, checked.stdout
    assert "warning: the CA certificate expires on" in checked.stdout and "ca rollover" in checked.stdout
    fine = run([SCEP_FCGI, "check", "--config", config(root, **{"issue.validity_days": "5"})])
    assert fine.returncode == 0 and "warning" not in fine.stdout
