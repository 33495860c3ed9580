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
