import CurlHTTP
import Foundation
import Testing

/// A real HTTP server on loopback (Python's http.server) that echoes what it received.
final class EchoServer {
    let process = Process()
    let port: Int

    init(delaySeconds: Double = 0) throws {
        let script = """
            import http.server, json, sys, time
            class H(http.server.BaseHTTPRequestHandler):
                def handle_one(self):
                    n = int(self.headers.get('Content-Length') or 0)
                    body = self.rfile.read(n).decode()
                    time.sleep(\(delaySeconds))
                    if self.path.startswith('/missing'):
                        self.send_response(404); self.send_header('Content-Length', '0'); self.end_headers(); return
                    out = json.dumps({'method': self.command, 'path': self.path, 'body': body,
                                      'auth': self.headers.get('Authorization'), 'expect': self.headers.get('Expect')}).encode()
                    self.send_response(200)
                    self.send_header('Content-Type', 'application/json')
                    self.send_header('client-request-id', 'abc-123')
                    self.send_header('Content-Length', str(len(out)))
                    self.end_headers(); self.wfile.write(out)
                do_GET = do_POST = handle_one
                def log_message(self, *a): pass
            s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
            print(s.server_address[1], flush=True)
            s.serve_forever()
            """
        let pipe = Pipe()
        self.process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        self.process.arguments = ["python3", "-c", script]
        self.process.standardOutput = pipe
        // Never inherit the test runner's stderr: a child holding it open stalls `swift test`.
        self.process.standardError = FileHandle.nullDevice
        self.process.standardInput = FileHandle.nullDevice
        try self.process.run()
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        self.port = Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    func stop() {
        // SIGKILL, not terminate(): a child spawned from a libdispatch worker thread inherits its
        // blocked signal mask and would ignore SIGTERM.
        if self.process.isRunning {
            kill(self.process.processIdentifier, SIGKILL)
            self.process.waitUntilExit()
        }
    }

    deinit { self.stop() }
}

@Suite("CurlHTTP against a real loopback server")
struct CurlHTTPTransportTests {
    init() throws { try CurlHTTPTransport.bootstrap() }

    @Test("POST with headers and a body; response status, headers and body come back")
    func post() throws {
        let server = try EchoServer()
        defer { server.stop() }
        let response = try CurlHTTPTransport().send(
            HTTPRequest(
                method: "POST", url: "http://127.0.0.1:\(server.port)/ScepActions/validateRequest",
                headers: [("Authorization", "Bearer t0ken"), ("Content-Type", "application/json")],
                body: Array(#"{"request":{}}"#.utf8)))
        #expect(response.status == 200)
        #expect(response.header("Client-Request-Id") == "abc-123")
        let echo = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
        #expect(echo?["method"] as? String == "POST")
        #expect(echo?["body"] as? String == #"{"request":{}}"#)
        #expect(echo?["auth"] as? String == "Bearer t0ken")
        #expect(echo?["expect"] is NSNull)
    }

    @Test("a 404 is a response, not an error")
    func notFound() throws {
        let server = try EchoServer()
        defer { server.stop() }
        #expect(try CurlHTTPTransport().send(HTTPRequest(url: "http://127.0.0.1:\(server.port)/missing")).status == 404)
    }

    @Test("a closed port is a connect error; a slow server a timeout")
    func failures() throws {
        #expect(throws: HTTPTransportError(.connect, "")) {
            try CurlHTTPTransport(connectTimeout: 1).send(HTTPRequest(url: "http://127.0.0.1:1/"))
        }
        let slow = try EchoServer(delaySeconds: 2)
        defer { slow.stop() }
        #expect(throws: HTTPTransportError(.timeout, "")) {
            try CurlHTTPTransport(totalTimeout: 0.5).send(HTTPRequest(url: "http://127.0.0.1:\(slow.port)/"))
        }
    }
}
