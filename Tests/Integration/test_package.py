"""The Debian package: built by scripts/package.sh, installed with `dpkg -i` on this machine, started
the way its units start it (systemd is not PID 1 here: systemd-socket-activate creates the unit's
socket, setpriv drops to the unit's user), and enrolled through nginx with the installed snippets.

It changes the machine (/usr/bin, /etc, /lib/systemd, the scep-fcgi user) and purges the package at
the end; the CA and audit log it made are removed too (the package itself keeps them on purge).
"""
import configparser
import grp
import os
import pwd
import shutil
import signal
import subprocess
import tempfile

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
    run(["dpkg", "--purge", "scep-fcgi"])
    for path in ["/var/lib/scep-fcgi", "/var/log/scep-fcgi", "/etc/scep-fcgi", "/run/scep-fcgi"]:
        shutil.rmtree(path, ignore_errors=True)


def test_package_installs_user_directories_and_files(installed):
    user = pwd.getpwnam("scep-fcgi")
    assert user.pw_dir == "/var/lib/scep-fcgi" and user.pw_shell == "/usr/sbin/nologin"
    for path, owner, group, mode in [("/var/lib/scep-fcgi", "scep-fcgi", "scep-fcgi", 0o750),
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
    verify = run(["systemd-analyze", "verify", "/lib/systemd/system/scep-fcgi.service", "/lib/systemd/system/scep-fcgi.socket"])
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_installed_service_enrolls_through_nginx(installed):
    as_service = ["setpriv", "--reuid=scep-fcgi", "--regid=scep-fcgi", "--init-groups"]
    out = run(as_service + ["/usr/bin/scep-fcgi", "ca", "init", "--dir", "/var/lib/scep-fcgi/ca",
                            "--subject", "CN=Packaged SCEP CA,O=scep-fcgi tests", "--key-bits", "2048"])
    assert out.returncode == 0, out.stderr
    with open("/etc/scep-fcgi/challenge", "w") as f:
        f.write(CHALLENGE + "\n")
    os.chown("/etc/scep-fcgi/challenge", 0, grp.getgrnam("scep-fcgi").gr_gid)
    os.chmod("/etc/scep-fcgi/challenge", 0o640)
    check = run(as_service + ["/usr/bin/scep-fcgi", "check", "--config", CONF])
    assert check.returncode == 0, check.stdout + check.stderr

    # What scep-fcgi.socket and scep-fcgi.service would do, read from the installed units.
    socket_unit, service_unit = unit("scep-fcgi.socket")["Socket"], unit("scep-fcgi.service")["Service"]
    sock = socket_unit["ListenStream"]
    root = tempfile.mkdtemp(prefix="scep-pkg-")
    os.chmod(root, 0o755)
    log = open(os.path.join(root, "service.log"), "w")
    server = subprocess.Popen(["systemd-socket-activate", "-l", sock, *as_service, *service_unit["ExecStart"].split()],
                              stdout=log, stderr=log, start_new_session=True)
    nginx = None
    try:
        harness.wait_for(lambda: os.path.exists(sock), "the unit's socket")
        os.chown(sock, pwd.getpwnam(socket_unit["SocketUser"]).pw_uid, grp.getgrnam(socket_unit["SocketGroup"]).gr_gid)
        os.chmod(sock, int(socket_unit["SocketMode"], 8))
        port = harness.free_port()
        conf = os.path.join(root, "nginx.conf")
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
        listen 127.0.0.1:{port};
        include /usr/share/scep-fcgi/nginx/scep-fcgi-locations.conf;
    }}
}}
""")
        nginx = subprocess.Popen(["nginx", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        harness.wait_for(lambda: harness.port_open(port), "nginx")
        work = tempfile.mkdtemp(dir=root)
        out = subprocess.run(["scepclient", "-server-url", f"http://127.0.0.1:{port}/scep", "-challenge", CHALLENGE,
                              "-cn", "packaged", "-private-key", "client.key", "-certificate", "client.pem"],
                             cwd=work, capture_output=True, text=True, timeout=60)
        assert "pkiStatus=SUCCESS" in out.stdout + out.stderr, out.stdout + out.stderr + open(os.path.join(root, "service.log")).read()
        assert harness.openssl_verify("/var/lib/scep-fcgi/ca/ca.pem", os.path.join(work, "client.pem"))
        audit = "/var/log/scep-fcgi/audit.jsonl"
        assert pwd.getpwuid(os.stat(audit).st_uid).pw_name == "scep-fcgi"
        assert '"outcome":"issued"' in open(audit).read()
        assert "serving on systemd socket (fd 3)" in open(os.path.join(root, "service.log")).read()
        # `systemctl reload` sends SIGHUP: the service reopens its log and serves on.
        os.kill(server.pid, signal.SIGHUP)
        assert harness.port_open(port) and server.poll() is None
    finally:
        for proc in [nginx, server]:
            if proc and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
