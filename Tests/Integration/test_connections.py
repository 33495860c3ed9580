"""Connections straight to the FastCGI socket: idle or byte-at-a-time ones are cut off at
server.read_timeout_seconds instead of holding workers; TCP peers outside server.allow_from are
refused; a request whose client went away gets no certificate."""
import os
import socket
import subprocess
import tempfile
import threading
import time

import harness
from harness import SCEP_FCGI


def test_idle_and_trickling_connections_do_not_hold_the_workers():
    site = harness.Site("nginx", extra="read_timeout_seconds = 2\nworkers = 2\n")
    site.start()
    idle = []
    try:
        # More idle connections than workers, and one that sends a byte now and then.
        for _ in range(6):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(site.socket)
            idle.append(s)
        trickler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        trickler.connect(site.socket)
        stop = threading.Event()

        def trickle():
            header = bytes([1, 1, 0, 1, 0, 8, 0, 0])  # FCGI_BEGIN_REQUEST, sent one byte at a time
            for i in range(200):
                if stop.is_set():
                    return
                try:
                    trickler.send(header[i % len(header):i % len(header) + 1])
                except OSError:
                    return
                time.sleep(0.3)
        threading.Thread(target=trickle, daemon=True).start()

        # A real request through nginx still gets served (no timed assertion: it must complete).
        status, _, body = site.request("GET", "operation=GetCACaps")
        assert status == 200 and b"POSTPKIOperation" in body
        for s in idle + [trickler]:
            s.settimeout(15)
            try:
                assert s.recv(1) == b"", "the server closes a connection past its deadline"
            except ConnectionResetError:
                pass
        stop.set()
        # And enrollments go on.
        work = harness.make_request(site, tempfile.mkdtemp(dir=site.root), subject="CN=after-idle")
        status, _, body = site.request("POST", "operation=PKIOperation", open(os.path.join(work, "request.der"), "rb").read())
        assert status == 200 and harness.open_reply(work, body)["status"] == "success"
        log = open(os.path.join(site.log_dir, "scep-fcgi.log")).read()
        assert "cut off" in log and "had not sent a request within" in log
        assert site.scep_fcgi_alive()
    finally:
        for s in idle:
            s.close()
        site.stop()


def tcp_probe(port, source):
    """True when the server keeps a connection from `source` open, False when it closes it at once."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    s.settimeout(1.0)
    try:
        return s.recv(1) != b""
    except socket.timeout:
        return True
    except ConnectionResetError:
        return False
    finally:
        s.close()


def test_tcp_peers_outside_the_allow_list_are_refused():
    site = harness.Site("nginx")
    port = harness.free_port()
    log_path = os.path.join(site.log_dir, "tcp.log")
    for allow, allowed, refused in [(None, "127.0.0.1", "127.0.0.2"), ("127.0.0.2", "127.0.0.2", "127.0.0.1")]:
        env = dict(os.environ)
        if allow:
            env["SCEP_SERVER_ALLOW_FROM"] = allow
        with open(log_path, "a") as log:
            proc = subprocess.Popen([SCEP_FCGI, "serve", "--config", site.config, "--socket", f"127.0.0.1:{port}"],
                                    stdout=log, stderr=log, env=env, start_new_session=True)
        try:
            harness.wait_for(lambda: harness.port_open(port), "scep-fcgi on TCP")
            assert tcp_probe(port, allowed), f"{allowed} may connect (allow_from {allow or 'default: loopback'})"
            assert not tcp_probe(port, refused), f"{refused} is refused"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert "not in server.allow_from" in open(log_path).read()


def test_no_certificate_for_a_client_that_gave_up():
    from test_intune import start_intune_site
    site, mock = start_intune_site("scep-it-gone-")
    try:
        work = harness.make_request(site, tempfile.mkdtemp(dir=site.root), subject="CN=gave-up", challenge="slow-2500-gave-up")
        body = open(os.path.join(work, "request.der"), "rb").read()
        # Send the POST, then hang up while Intune is still validating.
        s = socket.create_connection(("127.0.0.1", site.port))
        s.sendall(b"POST /scep?operation=PKIOperation HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
                  + str(len(body)).encode() + b"\r\n\r\n" + body)
        time.sleep(0.8)
        s.close()
        events = site.wait_audit(1, timeout=20)
        event = events[-1]
        assert event["reason"] == "client-gone" and "serial" not in event, event
        assert site.issued_serials() == []
        state = mock.state()
        assert [r["op"] for r in state["requests"]] == ["validateRequest", "failureNotification"], \
            "Intune is told the certificate was not issued"
        # A client that stays gets its certificate.
        assert harness.open_reply(work, site.request("POST", "operation=PKIOperation", body)[2])["status"] == "success"
    finally:
        site.stop()
        mock.stop()
