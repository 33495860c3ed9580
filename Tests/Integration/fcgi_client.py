"""A minimal FastCGI client (FastCGI 1.0 §3, §5) for talking to scep-fcgi's socket directly, as a
web server does: requests on one connection (kept alive with FCGI_KEEP_CONN or not), bodies sent
in slow pieces, and the response read back to its FCGI_END_REQUEST."""
import socket
import struct
import time

BEGIN_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR = 1, 3, 4, 5, 6, 7
RESPONDER, KEEP_CONN = 1, 1


def record(kind, content, request_id=1):
    padding = (8 - len(content) % 8) % 8
    return struct.pack(">BBHHBB", 1, kind, request_id, len(content), padding, 0) + content + b"\0" * padding


def name_value(name, value):
    def length(n):
        return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    name, value = name.encode(), value.encode()
    return length(len(name)) + length(len(value)) + name + value


def head(params, keep=False):
    """BEGIN_REQUEST and the params (through the empty PARAMS record)."""
    body = b"".join(name_value(k, v) for k, v in params.items())
    return (record(BEGIN_REQUEST, struct.pack(">HB5x", RESPONDER, KEEP_CONN if keep else 0))
            + b"".join(record(PARAMS, body[i:i + 65535]) for i in range(0, len(body), 65535)) + record(PARAMS, b""))


def stdin(body):
    return b"".join(record(STDIN, body[i:i + 65535]) for i in range(0, len(body), 65535)) + record(STDIN, b"")


def params_for(query, method="GET", body=b""):
    params = {"REQUEST_METHOD": method, "QUERY_STRING": query, "SCRIPT_NAME": "/scep", "REMOTE_ADDR": "127.0.0.1",
              "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1"}
    if method == "POST":
        params["CONTENT_LENGTH"] = str(len(body))
        params["CONTENT_TYPE"] = "application/x-pki-message"
    return params


def read_response(sock, timeout=30):
    """(status, headers text, body) of one response, read through its END_REQUEST."""
    sock.settimeout(timeout)
    data, out = b"", b""
    while True:
        while len(data) < 8:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before FCGI_END_REQUEST")
            data += chunk
        _, kind, _, length, padding, _ = struct.unpack(">BBHHBB", data[:8])
        while len(data) < 8 + length + padding:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-record")
            data += chunk
        content, data = data[8:8 + length], data[8 + length + padding:]
        if kind == STDOUT:
            out += content
        elif kind == END_REQUEST:
            break
    header, _, body = out.partition(b"\r\n\r\n")
    status = 200
    for line in header.decode("latin-1").split("\r\n"):
        if line.lower().startswith("status:"):
            status = int(line.split(":", 1)[1].split()[0])
    return status, header.decode("latin-1"), body


def connect(address):
    """A connection to a Unix socket path or (host, port)."""
    if isinstance(address, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect(address)
    return s


def request(sock, query, method="GET", body=b"", keep=False, pieces=1, pause=0.0):
    """Sends one request (its body in `pieces` writes `pause` seconds apart) and reads the response."""
    sock.sendall(head(params_for(query, method, body), keep=keep))
    payload = stdin(body)
    size = max(1, len(payload) // pieces)
    for i in range(0, len(payload), size):
        sock.sendall(payload[i:i + size])
        if pause and i + size < len(payload):
            time.sleep(pause)
    return read_response(sock)
