"""Starting scep-fcgi the way a Debian service does: socket activation through the real
systemd-socket-activate (LISTEN_FDS, fd 3), a socket directory that does not exist yet."""
import os
import subprocess
import tempfile

import harness
from harness import CHALLENGE


def scepclient_enrolls(site, cn):
    work = tempfile.mkdtemp(dir=site.root)
    out = subprocess.run(["scepclient", "-server-url", site.url, "-challenge", CHALLENGE, "-cn", cn,
                          "-private-key", "client.key", "-certificate", "client.pem"], cwd=work, capture_output=True, text=True, timeout=60)
    assert "pkiStatus=SUCCESS" in out.stdout + out.stderr, out.stdout + out.stderr
    assert harness.openssl_verify(site.ca_pem, os.path.join(work, "client.pem"))


def activated(site, argv, env=None):
    """Runs scep-fcgi under systemd-socket-activate on site.socket, as scep-fcgi.socket would."""
    log = open(os.path.join(site.log_dir, "activated.log"), "a")
    proc = subprocess.Popen(["systemd-socket-activate", "-l", site.socket, *(f"-E{k}={v}" for k, v in (env or {}).items()),
                             harness.SCEP_FCGI, *argv], stdout=log, stderr=log, start_new_session=True)
    site.procs.append(proc)
    harness.wait_for(lambda: os.path.exists(site.socket), "the activation socket")
    os.chmod(site.socket, 0o666)  # systemd would set SocketMode/SocketGroup
    site.start_nginx()
    harness.wait_for(lambda: harness.port_open(site.port), "nginx")
    return proc


def test_socket_activation_with_serve():
    site = harness.Site("nginx")
    try:
        activated(site, ["serve", "--config", site.config])
        scepclient_enrolls(site, "activated-serve")
        log = open(os.path.join(site.log_dir, "activated.log")).read()
        assert "serving on systemd socket (fd 3)" in log, log
    finally:
        site.stop()


def test_socket_activation_without_arguments():
    """What used to print the usage: no arguments, configuration from SCEP_CONFIG, socket on fd 3."""
    site = harness.Site("nginx")
    try:
        activated(site, [], env={"SCEP_CONFIG": site.config})
        scepclient_enrolls(site, "activated-bare")
    finally:
        site.stop()


def test_serve_creates_a_missing_socket_directory():
    site = harness.Site("nginx")
    try:
        nested = os.path.join(site.root, "run", "scep-fcgi", "scep-fcgi.sock")
        site.socket = nested
        site.start_scep_fcgi(nested)
        site.start_nginx([nested])
        harness.wait_for(lambda: harness.port_open(site.port), "nginx")
        scepclient_enrolls(site, "nested-socket")
        assert oct(os.stat(os.path.dirname(nested)).st_mode & 0o777) == "0o755"
    finally:
        site.stop()


def test_units_pass_systemd_analyze_verify():
    """The shipped units, with ExecStart pointing at the binary under test. `--man=no`: the man
    page the units name comes with the Debian package, not with a source tree."""
    work = tempfile.mkdtemp()
    for name in ["scep-fcgi.service", "scep-fcgi.socket"]:
        text = open(os.path.join(harness.REPO, "packaging", "systemd", name)).read()
        open(os.path.join(work, name), "w").write(text.replace("/usr/bin/scep-fcgi", harness.SCEP_FCGI))
    out = subprocess.run(["systemd-analyze", "verify", "--man=no", "scep-fcgi.service", "scep-fcgi.socket"], cwd=work,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_socket_group_is_applied():
    import grp
    site = harness.Site("nginx", extra="[server]\nsocket_group = nogroup\n").start()
    try:
        assert os.stat(site.socket).st_gid == grp.getgrnam("nogroup").gr_gid
        scepclient_enrolls(site, "socket-group")
    finally:
        site.stop()


def test_log_level_info_writes_one_line_per_outcome():
    site = harness.Site("nginx", extra="[log]\nlevel = info\n").start()
    try:
        assert site.request("GET", "operation=Nope")[0] == 400
        assert site.request("GET", "operation=GetNextCACert")[0] == 404
        assert site.request("PUT", "operation=GetCACaps", body=b"")[0] == 405
        scepclient_enrolls(site, "info-logged")
        harness.wait_for(lambda: "PKIOperation issued" in open(os.path.join(site.log_dir, "scep-fcgi.log")).read(), "the info line")
        log = open(os.path.join(site.log_dir, "scep-fcgi.log")).read()
        assert "info: request " in log
        for expected in ["rejected http=400 reason=unknown-operation", "GetNextCACert rejected http=404 reason=no-next-ca",
                         "rejected http=405 reason=method-not-allowed", "PKIOperation issued http=200 messageType=PKCSReq"]:
            assert expected in log, expected
        assert CHALLENGE not in log
    finally:
        site.stop()


def test_log_level_error_hides_notices():
    site = harness.Site("nginx", extra="[log]\nlevel = error\n").start()
    try:
        scepclient_enrolls(site, "quiet")
        assert "notice:" not in open(os.path.join(site.log_dir, "scep-fcgi.log")).read()
    finally:
        site.stop()
