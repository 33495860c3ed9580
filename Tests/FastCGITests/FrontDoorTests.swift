import Foundation
import Testing

@testable import FastCGI

/// FastCGI records (FastCGI 1.0 §3.3) as a web server sends them.
enum Records {
    static func record(_ type: UInt8, _ content: [UInt8], padding: Int = 0) -> [UInt8] {
        [1, type, 0, 1, UInt8(content.count >> 8), UInt8(content.count & 0xFF), UInt8(padding), 0] + content + [UInt8](repeating: 0, count: padding)
    }

    /// BEGIN_REQUEST (responder, FCGI_KEEP_CONN when `keep`), one PARAMS record, the body, the empty STDIN.
    static func request(body: [UInt8] = Array("body".utf8), keep: Bool = false) -> [UInt8] {
        let name = Array("REQUEST_METHOD".utf8), value = Array("POST".utf8)
        return record(1, [0, 1, keep ? 1 : 0, 0, 0, 0, 0, 0]) + record(4, [UInt8(name.count), UInt8(value.count)] + name + value, padding: 3)
            + record(4, []) + stride(from: 0, to: body.count, by: 65535).flatMap { record(5, Array(body[$0..<min($0 + 65535, body.count)])) }
            + record(5, [])
    }
}

@Suite("FastCGI front door: when a request has arrived")
struct RecordScannerTests {
    func scan(_ bytes: [UInt8]) -> RecordScanner.Verdict { bytes.withUnsafeBytes { RecordScanner.scan($0) } }

    @Test("complete only through the empty FCGI_STDIN record; every shorter prefix is incomplete")
    func prefixes() {
        let whole = Records.request()
        #expect(self.scan(whole) == .complete)
        for cut in 0..<whole.count {
            if case .incomplete = self.scan(Array(whole[..<cut])) {} else { Issue.record("cut at \(cut): \(self.scan(Array(whole[..<cut])))") }
        }
        // The empty PARAMS record ends the params, not the request.
        #expect(self.scan(Records.record(1, [0, 1, 0, 0, 0, 0, 0, 0]) + Records.record(4, [])) == .incomplete(params: true))
        #expect(self.scan(Records.record(1, [0, 1, 0, 0, 0, 0, 0, 0]) + Records.record(4, [1, 1, 65, 66])) == .incomplete(params: false))
    }

    @Test("handed over: whole, or params complete and the body past its bound, or at the peek bound")
    func readiness() {
        #expect(RecordScanner.ready(.complete, count: 40))
        #expect(!RecordScanner.ready(.incomplete(params: true), count: RecordScanner.bodyBound - 1))
        #expect(RecordScanner.ready(.incomplete(params: true), count: RecordScanner.bodyBound))
        #expect(!RecordScanner.ready(.incomplete(params: false), count: RecordScanner.bodyBound * 2))
        #expect(RecordScanner.ready(.incomplete(params: false), count: RecordScanner.peekBound))
        #expect(!RecordScanner.ready(.malformed, count: RecordScanner.peekBound))
    }

    @Test("not FastCGI (version other than 1) is malformed")
    func malformed() {
        #expect(self.scan(Array("GET / HTTP/1.1\r\n\r\n".utf8)) == .malformed)
        #expect(self.scan(Records.record(4, []) + [2, 5, 0, 1, 0, 0, 0, 0]) == .malformed)
    }
}

@Suite("FastCGI front door: idle and stalled connections cost a descriptor, not a worker")
struct FrontDoorTests {
    /// A listening Unix socket in a temporary directory, and a front door running on it.
    final class Door: @unchecked Sendable {
        let path: String
        let listener: Int32
        let state = ServerState()
        let door: FrontDoor
        let guardian: ConnectionGuard

        init(max: Int = 64, deadline: Double = 30, idle: Double = 60) throws {
            self.path = FileManager.default.temporaryDirectory.appendingPathComponent("door-\(UUID().uuidString.prefix(8)).sock").path
            let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            self.listener = listener
            var address = Door.address(self.path)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            precondition(bound == 0 && listen(listener, 128) == 0)
            self.guardian = ConnectionGuard(deadlineSeconds: deadline, allowed: [])
            self.door = try FrontDoor(listener: self.listener, maxConnections: max, idleSeconds: idle, connections: self.guardian, state: self.state)
            let door = self.door
            Thread { door.run() }.start()
            self.startTaker()
        }

        deinit {
            self.state.beginDraining()
            unlink(self.path)
        }

        static func address(_ path: String) -> sockaddr_un {
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (i, byte) in path.utf8.enumerated() where i < raw.count - 1 { raw[i] = byte }
            }
            return address
        }

        /// A client connection (blocking, close-on-exec).
        func connect() -> Int32 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var address = Door.address(self.path)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            precondition(connected == 0)
            return fd
        }

        /// What a worker takes next, within `seconds` (nil: nothing arrived). One taker thread
        /// per door collects them, as a worker would.
        func taken(within seconds: Double) -> Int32? {
            guard self.arrived.wait(timeout: .now() + seconds) == .success else { return nil }
            return self.collected.withLock { $0.removeFirst() }
        }

        /// Sends a request with FCGI_KEEP_CONN on the client end `client`, takes it as a worker
        /// would, reads it, and parks the connection again.
        func serveKept(_ client: Int32) throws {
            FrontDoorTests.send(client, Records.request(keep: true))
            let served = try #require(self.taken(within: 5), "a kept connection's request is handed over")
            var sink = [UInt8](repeating: 0, count: 4096)
            _ = sink.withUnsafeMutableBytes { recv(served, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            self.door.park(kept: served)
        }

        private let collected = NSLockedArray()
        private let arrived = DispatchSemaphore(value: 0)

        func startTaker() {
            let (door, collected, arrived) = (self.door, self.collected, self.arrived)
            Thread {
                while let fd = door.take() {
                    collected.withLock { $0.append(fd) }
                    arrived.signal()
                }
            }.start()
        }
    }

    final class NSLockedArray: @unchecked Sendable {
        private let lock = NSLock()
        private var items: [Int32] = []
        func withLock<T>(_ body: (inout [Int32]) -> T) -> T { self.lock.withLock { body(&self.items) } }
    }

    static func send(_ fd: Int32, _ bytes: [UInt8]) {
        let sent = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        precondition(sent == bytes.count)
    }

    /// Whether the server closed `fd`'s other end within `seconds`.
    static func closedByServer(_ fd: Int32, within seconds: Double) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, Int32(seconds * 1000)) == 1 else { return false }
        var byte: UInt8 = 0
        return read(fd, &byte, 1) <= 0
    }

    @Test("a complete request is handed over at once while 64 idle and 64 one-byte connections stay parked")
    func idleDoNotBlock() throws {
        let door = try Door(max: 256)
        let idle = (0..<64).map { _ in door.connect() }
        let stalled = (0..<64).map { _ in door.connect() }
        for fd in stalled { Self.send(fd, [1]) }
        defer { (idle + stalled).forEach { close($0) } }
        let client = door.connect()
        defer { close(client) }
        Self.send(client, Records.request(body: [UInt8](repeating: 7, count: 3000)))
        let fd = try #require(door.taken(within: 5), "the complete request was handed over")
        // What a worker then reads is the whole request, untouched by the peek.
        var buffer = [UInt8](repeating: 0, count: 8192)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        #expect(Array(buffer[..<max(0, n)]) == Records.request(body: [UInt8](repeating: 7, count: 3000)))
        close(fd)
        door.door.ended()
        #expect(door.door.openConnections == 128)
    }

    @Test("bytes left in the kernel for libfcgi do not wake the loop again: stalled connections cost no CPU")
    func noSpinning() throws {
        let door = try Door()
        let stalled = (0..<16).map { _ in door.connect() }
        defer { stalled.forEach { close($0) } }
        for fd in stalled { Self.send(fd, [1]) }
        usleep(300_000)
        let before = door.door.eventWakeups
        usleep(1_000_000)
        // Level-triggered, each of these readable connections would return from every epoll_wait
        // (hundreds of thousands of wake-ups a second); edge-triggered, none until a byte arrives.
        #expect(door.door.eventWakeups - before == 0, "\(door.door.eventWakeups - before) wake-ups with nothing new")
        Self.send(stalled[0], [1])
        usleep(300_000)
        #expect(door.door.eventWakeups - before >= 1, "a new byte is an edge")
    }

    @Test("a request sent in pieces is handed over once its last record arrives; a large one at the peek bound")
    func pieces() throws {
        let door = try Door()
        let client = door.connect()
        defer { close(client) }
        let whole = Records.request()
        Self.send(client, Array(whole[..<20]))
        #expect(door.taken(within: 0.5) == nil, "not before it is whole")
        Self.send(client, Array(whole[20...]))
        #expect(door.taken(within: 5) != nil)
        let large = door.connect()
        defer { close(large) }
        let body = Records.request(body: [UInt8](repeating: 1, count: 200_000))
        Self.send(large, Array(body[..<(RecordScanner.bodyBound + 100)]))  // the rest would come later
        #expect(door.taken(within: 5) != nil)
    }

    @Test("idle past the read deadline, or not FastCGI: closed; a kept-alive connection idles longer, then closes")
    func deadlines() throws {
        let door = try Door(deadline: 0.5, idle: 1.5)
        let idle = door.connect(), http = door.connect()
        defer { [idle, http].forEach { close($0) } }
        Self.send(http, Array("GET / HTTP/1.0\r\n\r\n".utf8))
        #expect(Self.closedByServer(http, within: 1), "not FastCGI")
        #expect(Self.closedByServer(idle, within: 3), "cut at the read deadline")
        #expect(door.door.cutOff == 1)
        // A served connection the web server keeps: parked again, idle for its own (longer) time.
        let kept = door.connect()
        defer { close(kept) }
        try door.serveKept(kept)
        #expect(!Self.closedByServer(kept, within: 0.8), "kept past the read deadline")
        try door.serveKept(kept)  // its next request is handed over
        #expect(Self.closedByServer(kept, within: 4), "closed once idle past keepalive_timeout")
    }

    @Test("at the cap the oldest idle kept-alive connection makes room; without one, new connections wait")
    func cap() throws {
        let door = try Door(max: 16)
        let kept = door.connect()
        defer { close(kept) }
        try door.serveKept(kept)
        let idle = (0..<15).map { _ in door.connect() }
        defer { idle.forEach { close($0) } }
        usleep(300_000)
        #expect(door.door.openConnections == 16)
        // A 17th: the kept one is closed to admit it, and its request is served.
        let late = door.connect()
        defer { close(late) }
        Self.send(late, Records.request())
        #expect(Self.closedByServer(kept, within: 3))
        #expect(door.taken(within: 5) != nil)
        #expect(door.door.reclaimedAtCap == 1)
        // At the cap with nothing to reclaim (16 open: 15 idle and the one just taken): the next waits.
        let waiting = door.connect()
        defer { close(waiting) }
        Self.send(waiting, Records.request())
        #expect(door.taken(within: 0.7) == nil, "not accepted while at the cap")
        close(idle[0])  // one ends: room again
        #expect(door.taken(within: 5) != nil)
    }
}
