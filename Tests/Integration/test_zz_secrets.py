"""Secrets never reach a log. Runs last (file order): every log, audit line and web server log the
suite wrote, and the output of every scep-fcgi command it ran, were searched (harness.scan_logs /
harness.run) for every secret used: the static challenge, every challenge sent to Intune, the
Intune client secret and a CA key passphrase. Also: key files are created 0600, and check refuses
secrets readable by others or by a group that is not the server's."""
import grp
import os
import stat
import tempfile

import harness
from harness import SCEP_FCGI, run

PASSPHRASE = "ca-Key-Passphrase-9Zk3"


def test_an_encrypted_ca_key_serves_without_its_passphrase_in_any_log():
    site = harness.Site("nginx")
    encrypted = os.path.join(site.root, "ca-encrypted")
    passphrase_file = os.path.join(site.root, "passphrase")
    with open(passphrase_file, "w") as f:
        f.write(PASSPHRASE + "\n")
    os.chmod(passphrase_file, 0o600)
    harness.register_secret(PASSPHRASE)
    out = run([SCEP_FCGI, "ca", "init", "--dir", encrypted, "--subject", "CN=Encrypted CA", "--key-bits", "2048",
               "--passphrase-file", passphrase_file])
    assert out.returncode == 0, out.stderr
    assert PASSPHRASE.encode() not in open(os.path.join(encrypted, "ca.key"), "rb").read()
    with open(site.config, "a") as f:
        f.write(f"[ca]\ndir = {encrypted}\nkey_passphrase_file = {passphrase_file}\n")
    site.ca_pem = os.path.join(encrypted, "ca.pem")
    site.start()
    try:
        work = harness.make_request(site, tempfile.mkdtemp(dir=site.root), subject="CN=encrypted-ca-device")
        status, _, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
        assert status == 200 and harness.open_reply(work, body)["status"] == "success"
        assert run([SCEP_FCGI, "check", "--config", site.config]).returncode == 0
    finally:
        site.stop()


def test_key_files_are_created_0600_and_loose_secrets_are_refused(tmp_path):
    ca = str(tmp_path / "ca")
    assert run([SCEP_FCGI, "ca", "init", "--dir", ca, "--subject", "CN=Modes CA", "--key-bits", "2048"]).returncode == 0
    assert run([SCEP_FCGI, "ca", "ra", "--dir", ca, "--subject", "CN=Modes RA", "--separate-encryption"]).returncode == 0
    for key in ["ca.key", "ra.key", "ra-encrypt.key"]:
        assert stat.S_IMODE(os.stat(os.path.join(ca, key)).st_mode) == 0o600, key
    secret = tmp_path / "challenge"
    secret.write_text(harness.CHALLENGE + "\n")
    config = tmp_path / "scep-fcgi.conf"
    config.write_text(f"[ca]\ndir = {ca}\n[challenge]\nstatic_password_file = {secret}\n[audit]\npath = {tmp_path}/audit.jsonl\n")
    other_group = grp.getgrnam("www-data").gr_gid
    for mode, group, refused in [(0o600, 0, None), (0o640, 0, None), (0o604, 0, "readable by others"),
                                 (0o640, other_group, "readable by group www-data, which is not this server's group")]:
        os.chown(secret, 0, group)
        os.chmod(secret, mode)
        out = run([SCEP_FCGI, "check", "--config", str(config)])
        if refused:
            assert out.returncode == 1 and refused in out.stdout + out.stderr, (oct(mode), out.stdout + out.stderr)
        else:
            assert out.returncode == 0, (oct(mode), out.stdout + out.stderr)


def test_no_secret_in_any_log_of_the_whole_suite():
    assert harness.SECRETS >= {harness.CHALLENGE, PASSPHRASE}
    # The whole suite ran before this file: many logs and many challenges were searched.
    logs = [where for where in harness.SCANNED if "/" in where]
    assert len(logs) >= 10, logs
    if len(harness.SECRETS) < 20:
        print(f"note: only {len(harness.SECRETS)} secrets registered (partial run?)")
    assert harness.LEAKS == [], harness.LEAKS


def test_no_sanitizer_report_in_any_log():
    """With the AddressSanitizer build of the server (scripts/test.sh), any memory error it hit is
    in its log; none may be."""
    assert harness.SANITIZER_REPORTS == [], harness.SANITIZER_REPORTS
