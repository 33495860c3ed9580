"""The job the certificates are for: EAP-TLS (Wi-Fi and VPN 802.1X) with FreeRADIUS from Debian,
checking revocation through scep-fcgi's OCSP responder, driven by wpa_supplicant's eapol_test.
A device certificate enrolled through nginx authenticates; after `ca revoke` the same certificate
is refused through OCSP without reloading FreeRADIUS (docs/eap-tls.md)."""
import os
import subprocess
import tempfile
import time

import pytest

import harness
from harness import run

SECRET = "radius-test-secret"


def radius_config(root, ca_pem, ocsp_url, port):
    """A FreeRADIUS configuration directory of the test's own: one client, EAP-TLS only, the
    device CA as the trust anchor for client certificates, OCSP mandatory (softfail = no)."""
    raddb = os.path.join(root, "raddb")
    for d in ["raddb", "log", "run", "radacct"]:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    server_key, server_pem = os.path.join(raddb, "server.key"), os.path.join(raddb, "server.pem")
    out = run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=radius.test", "-days", "2",
               "-keyout", server_key, "-out", server_pem, "-addext", "extendedKeyUsage=serverAuth"])
    assert out.returncode == 0, out.stderr
    with open(os.path.join(raddb, "dictionary"), "w") as f:
        f.write("$INCLUDE /usr/share/freeradius/dictionary\n")
    with open(os.path.join(raddb, "radiusd.conf"), "w") as f:
        f.write(f"""
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {root}/log
raddbdir = {raddb}
radacctdir = {root}/radacct
name = freeradius
confdir = ${{raddbdir}}
modconfdir = ${{confdir}}/mods-config
certdir = ${{confdir}}
cadir = ${{confdir}}
run_dir = {root}/run
db_dir = ${{raddbdir}}
libdir = /usr/lib/freeradius
pidfile = ${{run_dir}}/${{name}}.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 1024
hostname_lookups = no
log {{
    destination = stdout
    auth = yes
}}
security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = no
}}
thread pool {{
    start_servers = 2
    max_servers = 4
    min_spare_servers = 1
    max_spare_servers = 3
}}
client localhost {{
    ipaddr = 127.0.0.1
    secret = {SECRET}
}}
modules {{
    eap {{
        default_eap_type = tls
        timer_expire = 60
        max_sessions = 64
        tls-config tls-common {{
            private_key_file = {server_key}
            certificate_file = {server_pem}
            ca_file = {ca_pem}
            cipher_list = "DEFAULT"
            tls_min_version = "1.2"
            tls_max_version = "1.2"
            ocsp {{
                enable = yes
                override_cert_url = yes
                url = "{ocsp_url}"
                use_nonce = yes
                timeout = 5
                softfail = no
            }}
        }}
        tls {{
            tls = tls-common
        }}
    }}
}}
server default {{
    listen {{
        type = auth
        ipaddr = 127.0.0.1
        port = {port}
    }}
    authorize {{
        eap {{
            ok = return
        }}
    }}
    authenticate {{
        eap
    }}
}}
""")
    return raddb


def eapol(work, cert, key, port):
    """One EAP-TLS authentication with eapol_test; True on Access-Accept."""
    conf = os.path.join(work, "eapol.conf")
    with open(conf, "w") as f:
        f.write(f'network={{\n    key_mgmt=WPA-EAP\n    eap=TLS\n    identity="device"\n    client_cert="{cert}"\n'
                f'    private_key="{key}"\n    eapol_flags=0\n}}\n')
    out = subprocess.run(["eapol_test", "-c", conf, "-a", "127.0.0.1", "-p", str(port), "-s", SECRET, "-t", "20"],
                         capture_output=True, text=True, timeout=60)
    return out.returncode == 0 and "SUCCESS" in out.stdout.splitlines()[-1], out.stdout[-3000:]


def test_eap_tls_with_freeradius_and_ocsp():
    site = harness.Site("nginx").start()
    radius = None
    try:
        root = tempfile.mkdtemp(prefix="scep-it-radius-", dir=site.root)
        port = harness.free_port()
        raddb = radius_config(root, site.ca_pem, f"http://127.0.0.1:{site.port}/ocsp", port)
        log = open(os.path.join(root, "freeradius.log"), "w")
        radius = subprocess.Popen(["freeradius", "-X", "-d", raddb], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        harness.wait_for(lambda: "Ready to process requests" in open(os.path.join(root, "freeradius.log")).read() or radius.poll() is not None,
                         "FreeRADIUS", timeout=20)
        assert radius.poll() is None, open(os.path.join(root, "freeradius.log")).read()[-3000:]
        # A device certificate enrolled through nginx, with its key.
        work = harness.make_request(site, tempfile.mkdtemp(dir=site.root), subject="CN=wifi-laptop")
        status, _, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
        rep = harness.open_reply(work, body)
        assert rep["status"] == "success"
        cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
        ok, output = eapol(work, cert, key, port)
        assert ok, output + open(os.path.join(root, "freeradius.log")).read()[-4000:]
        # Revoked: refused through OCSP at once, FreeRADIUS untouched.
        site.ca("revoke", rep["serial"], "--reason", "keyCompromise")
        ok, output = eapol(work, cert, key, port)
        assert not ok, output
        radius_log = open(os.path.join(root, "freeradius.log")).read()
        assert "revoked" in radius_log.lower(), radius_log[-4000:]
        assert radius.poll() is None
    finally:
        if radius is not None:
            radius.terminate()
            radius.wait(timeout=10)
        site.stop()
