"""Connections straight to the FastCGI socket: idle, stalled or slow ones never hold a worker (the
front door parks them until their request has arrived) and are cut off at
server.read_timeout_seconds; kept-alive connections (FCGI_KEEP_CONN) through the shipped nginx and
Apache snippets; TCP peers outside server.allow_from are refused; a request whose client went away
gets no certificate."""
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time

import pytest

import fcgi_client
import harness
from harness import SCEP_FCGI


def test_idle_and_trickling_connections_are_cut_at_the_read_deadline():
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


def start_site(transport, extra=""):
    """nginx in front of scep-fcgi with two workers, on the Unix socket or on TCP; returns the
    site and the address to reach scep-fcgi directly."""
    site = harness.Site("nginx", extra="workers = 2\n" + extra)
    if transport == "unix":
        site.start()
        return site, site.socket
    port = harness.free_port()
    address = f"127.0.0.1:{port}"
    site.start_scep_fcgi(address)
    site.start_nginx([address])
    harness.wait_for(lambda: harness.port_open(site.port), "nginx")
    return site, ("127.0.0.1", port)


def prepared(site, count, tag):
    return [harness.make_request(site, tempfile.mkdtemp(dir=site.root), subject=f"CN={tag}-{i}") for i in range(count)]


def enrollment_median(site, works):
    """Enrolls each prepared request through nginx, one at a time; all must succeed. The median latency."""
    times = []
    for work in works:
        body = open(os.path.join(work, "request.der"), "rb").read()
        start = time.monotonic()
        status, _, data = site.request("POST", "operation=PKIOperation", body)
        times.append(time.monotonic() - start)
        assert status == 200 and harness.open_reply(work, data)["status"] == "success"
    return statistics.median(times)


def parked_connections(address, count, first=b""):
    conns = []
    for _ in range(count):
        s = fcgi_client.connect(address)
        if first:
            s.sendall(first)
        conns.append(s)
    return conns


def still_open(s):
    s.setblocking(False)
    try:
        return s.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_idle_and_stalled_connections_never_hold_a_worker(transport):
    """64 idle and 64 one-byte-stalled connections (more than 60 times the two workers) straight to
    scep-fcgi's socket: enrollments through nginx go on at the latency they had without them."""
    site, address = start_site(transport)
    parked = []
    try:
        works = prepared(site, 16, f"door-{transport}")
        enrollment_median(site, works[:2])  # warm-up
        base = enrollment_median(site, works[2:9])
        parked = parked_connections(address, 64) + parked_connections(address, 64, first=b"\x01")
        time.sleep(0.5)
        loaded = enrollment_median(site, works[9:])
        # Medians compared, no absolute bound: before the front door each of these waited for
        # the parked connections' 30 s read deadline.
        print(f"{transport}: median enrollment {base * 1000:.1f} ms alone, {loaded * 1000:.1f} ms beside 128 parked connections")
        assert loaded < 3 * base + 0.25, (base, loaded)
        assert all(still_open(s) for s in parked), "parked, not cut: they hold a descriptor, not a worker"
        assert site.scep_fcgi_alive()
    finally:
        for s in parked:
            s.close()
        site.stop()


def test_a_steady_stream_of_new_idle_connections():
    """New idle connections, 16 a second, each cut at its 2 s deadline: enrollments go on."""
    site, address = start_site("unix", extra="read_timeout_seconds = 2\n")
    stop = threading.Event()
    opened = []

    def flood():
        while not stop.is_set():
            opened.extend(parked_connections(address, 8))
            time.sleep(0.5)
    try:
        works = prepared(site, 14, "stream")
        enrollment_median(site, works[:2])
        base = enrollment_median(site, works[2:8])
        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        time.sleep(3)  # past the first deadlines: connections now open and close all the time
        loaded = enrollment_median(site, works[8:])
        stop.set()
        flooder.join()
        print(f"median enrollment {base * 1000:.1f} ms alone, {loaded * 1000:.1f} ms under a stream of idle connections")
        assert loaded < 3 * base + 0.25, (base, loaded)
        assert "cut off" in open(os.path.join(site.log_dir, "scep-fcgi.log")).read()
    finally:
        stop.set()
        for s in opened:
            s.close()
        site.stop()


def test_slow_bodies():
    """Two small requests sent slowly (below the peek bound) hold no worker: an enrollment through
    nginx is served meanwhile. A large body sent slowly is read at its pace and answered."""
    site, address = start_site("unix")
    try:
        work = prepared(site, 1, "beside-slow")[0]
        results = {}

        def slow(name):
            with fcgi_client.connect(address) as s:
                results[name] = fcgi_client.request(s, "operation=PKIOperation", "POST", b"\x30" * 4000, pieces=10, pause=0.3)[0]
        senders = [threading.Thread(target=slow, args=(f"slow-{i}",)) for i in range(2)]
        for t in senders:
            t.start()
        time.sleep(0.5)
        enrollment_median(site, [work])
        assert all(t.is_alive() for t in senders), "served while both slow requests were still arriving"
        for t in senders:
            t.join()
        assert results == {"slow-0": 400, "slow-1": 400}, results  # not a pkiMessage
        with fcgi_client.connect(address) as s:
            status, _, body = fcgi_client.request(s, "operation=PKIOperation", "POST", b"\x30" * 300_000, pieces=10, pause=0.1)
        assert status == 413, (status, body)  # past server.max_body_bytes: drained at the sender's pace, then refused
        assert site.scep_fcgi_alive()
    finally:
        site.stop()


def test_fcgi_keep_conn_and_shutdown():
    """FCGI_KEEP_CONN: requests one after another on one connection; without it the connection
    closes after the response; SIGTERM closes a kept connection that waits for its next request."""
    site, address = start_site("unix")
    try:
        with fcgi_client.connect(address) as s:
            for _ in range(3):
                status, _, body = fcgi_client.request(s, "operation=GetCACaps", keep=True)
                assert status == 200 and b"POSTPKIOperation" in body
            status, _, _ = fcgi_client.request(s, "operation=GetCACaps", keep=False)
            assert status == 200
            s.settimeout(5)
            assert s.recv(1) == b"", "closed after a request without FCGI_KEEP_CONN"
        kept = fcgi_client.connect(address)
        assert fcgi_client.request(kept, "operation=GetCACert", keep=True)[0] == 200
        # In flight at the signal: a body past the front door's 64 KiB peek bound, its worker
        # reading the rest, which arrives after SIGTERM.
        body = b"\x30" * 100_000
        payload = fcgi_client.head(fcgi_client.params_for("operation=PKIOperation", "POST", body)) + fcgi_client.stdin(body)
        busy = fcgi_client.connect(address)
        busy.sendall(payload[:80_000])
        time.sleep(0.5)
        proc = next(p for p in site.procs if p.args[0] == harness.SCEP_FCGI)
        proc.send_signal(signal.SIGTERM)
        kept.settimeout(10)
        assert kept.recv(1) == b"", "a draining server closes parked connections"
        busy.sendall(payload[80_000:])
        assert fcgi_client.read_response(busy)[0] == 413, "the request in flight is finished"
        assert proc.wait(timeout=40) == 0
        kept.close()
        busy.close()
    finally:
        site.stop()


def upstream_connections(path):
    """scep-fcgi's established connections on the Unix socket at `path` (ss -x)."""
    out = subprocess.run(["ss", "-xHn", "state", "established"], capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if len(line.split()) >= 6 and line.split()[3] == path)


@pytest.mark.parametrize("kind", ["nginx", "apache-proxy-fcgi"])
def test_kept_alive_through_the_shipped_snippets(kind):
    """The committed nginx (keepalive, fastcgi_keep_conn) and Apache (enablereuse) snippets reuse
    FastCGI connections: 40 requests and 3 enrollments leave a few connections open, not 43."""
    site = harness.Site(kind).start()
    try:
        works = prepared(site, 3, f"kept-{kind}")
        for _ in range(40):
            status, _, _ = site.request("GET", "operation=GetCACaps")
            assert status == 200
        enrollment_median(site, works)
        kept = upstream_connections(site.socket)
        print(f"{kind}: {kept} FastCGI connection(s) open after 43 requests")
        assert 1 <= kept <= 8, kept
    finally:
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
