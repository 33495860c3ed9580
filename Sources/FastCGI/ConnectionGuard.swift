import FoundationEssentials
import Glibc
import SCEPLocking

/// What a worker may spend reading one FastCGI request, and who may connect at all.
///
/// libfcgi reads a connection's records with blocking reads and no deadline. The front door
/// (``FrontDoor``) hands a worker only requests that have arrived, but one larger than its peek
/// bound is handed over with the rest of its body still to come: each connection gets a per-read
/// timeout (`SO_RCVTIMEO`) and, while a worker reads it, a total deadline enforced by a watchdog
/// thread that shuts the socket down, which ends the blocked read.
///
/// Ownership: each watched connection has a `dup` of its descriptor, owned by the entry and
/// closed by whoever removes it (the worker when the request is read, or the watchdog); the
/// worker's own descriptor stays libfcgi's. The duplicate keeps the socket's number from being
/// reused while the watchdog may still act on it.
public final class ConnectionGuard: Sendable {
    struct Entry {
        let watch: Int32
        let started: ContinuousClock.Instant
    }

    struct State {
        var entries: [UInt64: Entry] = [:]
        var next: UInt64 = 0
        var expired = 0
    }

    /// Total time a connection has to deliver its request.
    public let deadline: Duration
    /// TCP peers allowed to connect (as `FCGI_WEB_SERVER_ADDRS` does for libfcgi); Unix socket
    /// peers are controlled by the socket's mode and group instead.
    public let allowed: [String]
    private let state = Locked(State())
    /// Where refusals and cut-off connections are reported (the server's diagnostics).
    let report: @Sendable (String) -> Void

    public init(deadlineSeconds: Double, allowed: [String], report: @escaping @Sendable (String) -> Void = { _ in }) {
        self.deadline = .milliseconds(Int64(deadlineSeconds * 1000))
        self.allowed = allowed
        self.report = report
    }

    /// How many connections the watchdog cut off (diagnostics, tests).
    public var expired: Int { self.state.withLock { $0.expired } }

    /// No single read on `fd` blocks longer than the deadline.
    func limitReads(_ fd: Int32) {
        var timeout = timeval(tv_sec: Int(self.deadline.components.seconds), tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Starts the deadline of a request being read; ``release(_:)`` ends it.
    func watch(_ fd: Int32) -> UInt64 {
        let watch = dup(fd)
        guard watch >= 0 else { return 0 }  // no watchdog for this one, but serve it
        return self.state.withLock { state in
            state.next += 1
            state.entries[state.next] = Entry(watch: watch, started: .now)
            return state.next
        }
    }

    /// The request was read: the deadline no longer applies.
    func release(_ id: UInt64) {
        self.state.withLock { state in
            if let entry = state.entries.removeValue(forKey: id) { close(entry.watch) }
        }
    }

    /// Shuts down every connection past its deadline; called by the watchdog every 250 ms.
    func sweep(now: ContinuousClock.Instant = .now) -> Int {
        self.state.withLock { state in
            let late = state.entries.filter { now - $0.value.started > self.deadline }
            for (id, entry) in late {
                _ = shutdown(entry.watch, Int32(SHUT_RDWR))
                close(entry.watch)
                state.entries[id] = nil
            }
            state.expired += late.count
            return late.count
        }
    }

    /// Unix socket peers always; TCP peers when their address is in ``allowed``.
    func peerAllowed(_ fd: Int32) -> Bool {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let family: Int32 = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getpeername(fd, $0, &length) == 0 ? Int32($0.pointee.sa_family) : -1
            }
        }
        guard family == AF_INET || family == AF_INET6 else { return family == AF_UNIX }
        guard let address = Self.address(&storage, family: family), self.allowed.contains(address) else {
            self.report("refused a FastCGI connection from \(Self.address(&storage, family: family) ?? "?"): not in server.allow_from")
            return false
        }
        return true
    }

    static func address(_ storage: inout sockaddr_storage, family: Int32) -> String? {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let ok: Bool = withUnsafeMutablePointer(to: &storage) { pointer in
            if family == AF_INET {
                return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { inet in
                    inet_ntop(AF_INET, &inet.pointee.sin_addr, &text, socklen_t(text.count)) != nil
                }
            }
            return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { inet6 in
                inet_ntop(AF_INET6, &inet6.pointee.sin6_addr, &text, socklen_t(text.count)) != nil
            }
        }
        guard ok else { return nil }
        let address = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // An IPv4 peer on a dual-stack socket: ::ffff:127.0.0.1.
        return address.hasPrefix("::ffff:") && address.contains(".") ? String(address.dropFirst(7)) : address
    }

    /// Whether the peer closed its end (the web server gave up on the request: the client went
    /// away). Checked without blocking; a request that is still wanted shows nothing to read.
    static func peerClosed(_ fd: Int32) -> Bool {
        var entry = pollfd(fd: fd, events: Self.pollReadHangup, revents: 0)
        guard poll(&entry, 1, 0) == 1 else { return false }
        return entry.revents & (Self.pollReadHangup | Int16(POLLHUP) | Int16(POLLERR)) != 0
    }

    /// Linux POLLRDHUP (poll(2)): Glibc exports it only under _GNU_SOURCE.
    static let pollReadHangup: Int16 = 0x2000
}
