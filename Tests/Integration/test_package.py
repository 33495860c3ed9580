"""The Debian package: built by scripts/package.sh, installed with `dpkg -i` on this machine, started
the way its units start it (systemd is not PID 1 here: systemd-socket-activate creates the unit's
socket, setpriv drops to the unit's user), and enrolled through nginx and through Debian's own Apache configuration (a2enmod, a2enconf) with
the installed snippets.

It changes the machine (/usr/bin, /etc, /lib/systemd, the scep-fcgi user) and purges the package at
the end; the CA and audit log it made are removed too (the package itself keeps them on purge).
"""
import base64
import configparser
import http.client
import grp
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import urllib.parse

import pytest

import harness
from harness import CHALLENGE, REPO, run

CONF = "/etc/scep-fcgi/scep-fcgi.conf"


def unit(name):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(f"/lib/systemd/system/{name}")
    return parser


@pytest.fixture(scope="module")
def installed():
    deb = os.environ.get("SCEP_FCGI_DEB")
    if not deb:
        out = run([os.path.join(REPO, "scripts", "package.sh"), tempfile.mkdtemp()], timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        deb = out.stdout.strip().splitlines()[-1]
    out = run(["dpkg", "-i", deb])
    assert out.returncode == 0, out.stdout + out.stderr
    yield deb
    harness.scan_logs("/var/log/scep-fcgi")
    run(["dpkg", "--purge", "scep-fcgi"])
    for path in ["/var/lib/scep-fcgi", "/var/log/scep-fcgi", "/etc/scep-fcgi", "/run/scep-fcgi"]:
        shutil.rmtree(path, ignore_errors=True)


def test_package_installs_user_directories_and_files(installed):
    user = pwd.getpwnam("scep-fcgi")
    assert user.pw_dir == "/var/lib/scep-fcgi" and user.pw_shell == "/usr/sbin/nologin"
    for path, owner, group, mode in [("/var/lib/scep-fcgi", "scep-fcgi", "scep-fcgi", 0o751),
                                     ("/var/log/scep-fcgi", "scep-fcgi", "adm", 0o750),
                                     ("/etc/scep-fcgi", "root", "scep-fcgi", 0o750),
                                     (CONF, "root", "scep-fcgi", 0o640)]:
        info = os.stat(path)
        assert (pwd.getpwuid(info.st_uid).pw_name, grp.getgrgid(info.st_gid).gr_name, info.st_mode & 0o777) == (owner, group, mode), path
    status = run(["dpkg", "-s", "scep-fcgi"]).stdout
    assert "Status: install ok installed" in status
    assert run(["/usr/bin/scep-fcgi", "--version"]).stdout.startswith("scep-fcgi ")
    for path in ["/usr/share/man/man1/scep-fcgi.1.gz", "/usr/share/bash-completion/completions/scep-fcgi",
                 "/usr/share/zsh/vendor-completions/_scep-fcgi", "/usr/share/fish/vendor_completions.d/scep-fcgi.fish",
                 "/etc/logrotate.d/scep-fcgi", "/usr/lib/sysusers.d/scep-fcgi.conf", "/usr/lib/tmpfiles.d/scep-fcgi.conf",
                 "/usr/share/scep-fcgi/nginx/scep-fcgi-locations.conf", "/usr/share/scep-fcgi/apache/scep-fcgi-proxy.conf"]:
        assert os.path.exists(path), path
    assert "/etc/scep-fcgi/scep-fcgi.conf" in open("/var/lib/dpkg/info/scep-fcgi.conffiles").read()
    # Installed, the units' `Documentation=man:scep-fcgi(1)` resolves too: a full verify.
    units = ["scep-fcgi.service", "scep-fcgi.socket", "scep-fcgi-revocations.service", "scep-fcgi-revocations.timer"]
    verify = run(["systemd-analyze", "verify", *[f"/lib/systemd/system/{u}" for u in units]])
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # The revocation timer runs the sync command of the installed binary, every 15 minutes.
    assert unit("scep-fcgi-revocations.timer")["Timer"]["OnUnitActiveSec"] == "15min"
    command = unit("scep-fcgi-revocations.service")["Service"]["ExecStart"].split()
    assert command[:3] == ["/usr/bin/scep-fcgi", "intune", "sync-revocations"]
    assert run([*command[:3], "--help"]).returncode == 0


MONITORING = "\n[metrics]\npath = /scep-metrics\n[health]\npath = /scep-health\n"
AS_SERVICE = ["setpriv", "--reuid=scep-fcgi", "--regid=scep-fcgi", "--init-groups"]


@pytest.fixture(scope="module")
def service(installed):
    """The installed service, started as scep-fcgi.socket and scep-fcgi.service would start it."""
    out = run(AS_SERVICE + ["/usr/bin/scep-fcgi", "ca", "init", "--dir", "/var/lib/scep-fcgi/ca",
                            "--subject", "CN=Packaged SCEP CA,O=scep-fcgi tests", "--key-bits", "2048"])
    assert out.returncode == 0, out.stderr
    with open("/etc/scep-fcgi/challenge", "w") as f:
        f.write(CHALLENGE + "\n")
    os.chown("/etc/scep-fcgi/challenge", 0, grp.getgrnam("scep-fcgi").gr_gid)
    os.chmod("/etc/scep-fcgi/challenge", 0o640)
    with open(CONF, "a") as f:
        f.write(MONITORING)  # what an administrator turning metrics on does
    check = run(AS_SERVICE + ["/usr/bin/scep-fcgi", "check", "--config", CONF])
    assert check.returncode == 0, check.stdout + check.stderr

    # What scep-fcgi.socket and scep-fcgi.service would do, read from the installed units.
    socket_unit, service_unit = unit("scep-fcgi.socket")["Socket"], unit("scep-fcgi.service")["Service"]
    sock = socket_unit["ListenStream"]
    root = tempfile.mkdtemp(prefix="scep-pkg-")
    os.chmod(root, 0o755)
    log_path = os.path.join(root, "service.log")
    log = open(log_path, "w")
    server = subprocess.Popen(["systemd-socket-activate", "-l", sock, *AS_SERVICE, *service_unit["ExecStart"].split()],
                              stdout=log, stderr=log, start_new_session=True)
    try:
        harness.wait_for(lambda: os.path.exists(sock), "the unit's socket")
        os.chown(sock, pwd.getpwnam(socket_unit["SocketUser"]).pw_uid, grp.getgrnam(socket_unit["SocketGroup"]).gr_gid)
        os.chmod(sock, int(socket_unit["SocketMode"], 8))
        yield {"root": root, "log": log_path, "server": server}
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=20)
        harness.scan_logs(root)


def scepclient_enroll(url, work, cn):
    out = subprocess.run(["scepclient", "-server-url", url, "-challenge", CHALLENGE, "-cn", cn,
                          "-private-key", "client.key", "-certificate", "client.pem"],
                         cwd=work, capture_output=True, text=True, timeout=60)
    assert "pkiStatus=SUCCESS" in out.stdout + out.stderr, out.stdout + out.stderr
    assert harness.openssl_verify("/var/lib/scep-fcgi/ca/ca.pem", os.path.join(work, "client.pem"))


def http_get(port, path, host="127.0.0.1"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers={"Host": host})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def test_installed_service_enrolls_through_nginx(service):
    root = service["root"]
    port = harness.free_port()
    conf = os.path.join(root, "nginx.conf")
    # The SCEP server{} is deliberately *not* the default server of its port: the request-line
    # limit must still hold for it (it is set at http{} level by the upstream snippet).
    with open(conf, "w") as f:
        f.write(f"""daemon off;
user www-data;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/body;
    fastcgi_temp_path {root}/fastcgi;
    include /usr/share/scep-fcgi/nginx/scep-fcgi-upstream.conf;
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name _;
        return 404;
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name 127.0.0.1 scep.test;
        include /usr/share/scep-fcgi/nginx/scep-fcgi-locations.conf;
        include /usr/share/scep-fcgi/nginx/scep-fcgi-metrics.conf;
    }}
}}
""")
    nginx = subprocess.Popen(["nginx", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        harness.wait_for(lambda: harness.port_open(port), "nginx")
        assert http_get(port, "/scep?operation=GetCACaps", host="other.test")[0] == 404, "the default server is another one"
        scepclient_enroll(f"http://127.0.0.1:{port}/scep", tempfile.mkdtemp(dir=root), "packaged")
        audit = "/var/log/scep-fcgi/audit.jsonl"
        assert pwd.getpwuid(os.stat(audit).st_uid).pw_name == "scep-fcgi"
        assert '"outcome":"issued"' in open(audit).read()
        assert "serving on systemd socket (fd 3)" in open(service["log"]).read()

        # A 20 KB GET PKIOperation to the non-default server: issued, not 414.
        work = tempfile.mkdtemp(dir=root)
        sans = [f"DNS:h{i:04d}." + ".".join([chr(97 + j) * 55 for j in range(4)]) + ".example" for i in range(64)]  # the default cap
        harness.make_request(None, work, subject="CN=packaged-long-get", ca="/var/lib/scep-fcgi/ca/ca.pem", san=sans)
        b64 = base64.b64encode(open(os.path.join(work, "request.der"), "rb").read()).decode()
        query = "operation=PKIOperation&message=" + urllib.parse.quote(b64, safe="")
        assert len(query) > 20000
        status, body = http_get(port, "/scep?" + query, host="scep.test")
        assert status == 200 and harness.open_reply(work, body)["status"] == "success"

        # Metrics and health through the installed snippet; the counters file sits in the CA directory.
        status, body = http_get(port, "/scep-metrics")
        assert status == 200 and b'scep_requests_total{operation="PKIOperation",outcome="issued"} 2' in body
        assert pwd.getpwuid(os.stat("/var/lib/scep-fcgi/ca/metrics.counters").st_uid).pw_name == "scep-fcgi"
        assert http_get(port, "/scep-health")[0] == 200

        # `systemctl reload` sends SIGHUP: the service reopens its log and serves on.
        os.kill(service["server"].pid, signal.SIGHUP)
        assert harness.port_open(port) and service["server"].poll() is None
    finally:
        os.killpg(nginx.pid, signal.SIGTERM)
        nginx.wait(timeout=20)


def stock_apache(root, mods, confs, extra_confs=None):
    """A copy of Debian's own /etc/apache2 (apache2.conf untouched), with modules and the shipped
    drop-ins enabled by a2enmod and a2enconf, listening on a free loopback port."""
    confdir = os.path.join(root, "apache2")
    shutil.copytree("/etc/apache2", confdir, symlinks=True)
    for name, text in (extra_confs or {}).items():
        with open(os.path.join(confdir, "conf-available", name + ".conf"), "w") as f:
            f.write(text)
    port = harness.free_port()
    with open(os.path.join(confdir, "ports.conf"), "w") as f:
        f.write(f"Listen 127.0.0.1:{port}\n")
    env = dict(os.environ, APACHE_CONFDIR=confdir, APACHE_RUN_USER="www-data", APACHE_RUN_GROUP="www-data",
               APACHE_PID_FILE=f"{root}/apache2.pid", APACHE_RUN_DIR=f"{root}/run", APACHE_LOCK_DIR=f"{root}/lock",
               APACHE_LOG_DIR=f"{root}/log", LANG="C")
    for d in ["run", "lock", "log"]:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for command in [["a2enmod", "-q", *mods], ["a2enconf", "-q", *confs, *(extra_confs or {})]]:
        out = run(command, env=env)
        assert out.returncode == 0, out.stdout + out.stderr
    test = run(["apache2", "-d", confdir, "-t"], env=env)
    assert test.returncode == 0, test.stdout + test.stderr
    proc = subprocess.Popen(["apache2", "-d", confdir, "-DFOREGROUND"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    harness.wait_for(lambda: harness.port_open(port), "apache2")
    return proc, port


def test_installed_service_enrolls_through_stock_apache_proxy_fcgi(service):
    root = tempfile.mkdtemp(dir=service["root"])
    os.chmod(root, 0o755)
    proc, port = stock_apache(root, ["proxy_fcgi"], ["scep-fcgi-proxy", "scep-fcgi-metrics-proxy", "scep-fcgi-publish"])
    try:
        scepclient_enroll(f"http://127.0.0.1:{port}/scep/pkiclient.exe", tempfile.mkdtemp(dir=root), "packaged-apache")
        status, body = http_get(port, "/scep-metrics")
        assert status == 200 and b'operation="PKIOperation",outcome="issued"' in body
        assert http_get(port, "/scep-health")[0] == 200
        # The publish snippet's default directory is the package's CA directory.
        status, crl = http_get(port, "/crl/ca.crl")
        assert status == 200
        out = subprocess.run(["openssl", "crl", "-inform", "DER", "-noout", "-issuer"], input=crl, capture_output=True)
        assert b"Packaged SCEP CA" in out.stdout
        # The web server's user reaches what it publishes, and nothing else of the CA.
        as_www = ["setpriv", "--reuid=www-data", "--regid=www-data", "--clear-groups"]
        assert run(as_www + ["test", "-r", "/var/lib/scep-fcgi/ca/ca.pem", "-a", "-r", "/var/lib/scep-fcgi/ca/crl/ca.crl"]).returncode == 0
        for denied in [["cat", "/var/lib/scep-fcgi/ca/ca.key"], ["cat", "/var/lib/scep-fcgi/ca/index.txt"],
                       ["ls", "/var/lib/scep-fcgi/ca"], ["ls", "/var/lib/scep-fcgi/ca/issued"],
                       ["cat", "/var/lib/scep-fcgi/ca/metrics.counters"], ["cat", "/etc/scep-fcgi/challenge"]]:
            assert run(as_www + denied).returncode != 0, denied
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def test_stock_apache_mod_fcgid_with_the_shipped_drop_in(installed):
    """mod_fcgid runs the installed binary itself, as Apache's user: it gets a CA of its own that
    www-data owns (the package's CA stays with the scep-fcgi user), named by a local drop-in."""
    root = tempfile.mkdtemp(prefix="scep-pkg-fcgid-")
    os.chmod(root, 0o755)
    ca_dir, audit, challenge, config = (os.path.join(root, n) for n in ["ca", "audit.jsonl", "challenge", "scep-fcgi.conf"])
    out = run(["/usr/bin/scep-fcgi", "ca", "init", "--dir", ca_dir, "--subject", "CN=fcgid SCEP CA", "--key-bits", "2048"])
    assert out.returncode == 0, out.stderr
    with open(challenge, "w") as f:
        f.write(CHALLENGE + "\n")
    with open(config, "w") as f:
        f.write(f"[ca]\ndir = {ca_dir}\n[challenge]\nstatic_password_file = {challenge}\n[audit]\npath = {audit}\n" + MONITORING)
    open(audit, "w").close()
    for path in [ca_dir, challenge, audit, config]:
        subprocess.run(["chown", "-R", "www-data:www-data", path], check=True)
    os.chmod(challenge, 0o600)
    # Sorted before scep-fcgi-fcgid.conf, so its Define wins over the drop-in's default.
    local = {"scep-fcgi-00-local": f"Define SCEP_FCGI_CONFIG {config}\n"}
    proc, port = stock_apache(root, ["fcgid"], ["scep-fcgi-fcgid", "scep-fcgi-metrics-fcgid"], local)
    try:
        work = tempfile.mkdtemp(dir=root)
        out = subprocess.run(["scepclient", "-server-url", f"http://127.0.0.1:{port}/scep", "-challenge", CHALLENGE,
                              "-cn", "fcgid-device", "-private-key", "client.key", "-certificate", "client.pem"],
                             cwd=work, capture_output=True, text=True, timeout=60)
        assert "pkiStatus=SUCCESS" in out.stdout + out.stderr, out.stdout + out.stderr + open(f"{root}/log/error.log").read()
        assert harness.openssl_verify(os.path.join(ca_dir, "ca.pem"), os.path.join(work, "client.pem"))
        harness.wait_for(lambda: '"outcome":"issued"' in open(audit).read(), "the issued audit line")
        status, body = http_get(port, "/scep-metrics")
        assert status == 200 and b'operation="PKIOperation",outcome="issued"} 1' in body
        assert http_get(port, "/scep-health")[0] == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        harness.scan_logs(root)
        shutil.rmtree(root, ignore_errors=True)
