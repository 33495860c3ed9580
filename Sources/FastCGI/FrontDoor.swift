import Dispatch
import FoundationEssentials
import Glibc
import SCEPLocking
internal import CEventPoll

/// The FastCGI front door: one thread accepts connections and watches them with epoll(7), and
/// hands a connection to a worker only once its request has arrived (``RecordScanner``), so an
/// idle, stalled or kept-alive connection costs a file descriptor, never a worker.
///
/// - Accepted connections are parked here until their request is whole, they close, or their
///   deadline passes: `server.read_timeout_seconds` from the accept (or, on a kept-alive
///   connection, from the first byte of its next request); a kept-alive connection that stays
///   idle is closed after `idleSeconds` (longer than nginx's upstream `keepalive_timeout`, so the
///   web server normally closes first).
/// - At most `maxConnections` are open (parked or with a worker): at the cap the oldest idle
///   kept-alive connection is closed to make room, else accepting pauses (new connections wait
///   in the listen backlog) until one ends.
/// - A worker that served a request on a connection the web server keeps (FCGI_KEEP_CONN, §5.1)
///   parks it again (``park(kept:)``); a draining server closes it instead.
///
/// Ownership: a parked connection's descriptor belongs to this front door (it closes it); once
/// handed over it belongs to the worker (libfcgi closes it, or the worker parks it again). The
/// epoll descriptor belongs to the front door and lives as long as the process.
final class FrontDoor: Sendable {
    struct Parked {
        /// When it is closed if its request is not whole by then.
        var deadline: ContinuousClock.Instant
        /// Kept alive by the web server after a request (reclaimable at the cap while idle).
        let kept: Bool
        /// Whether any byte of a request has arrived.
        var started: Bool
        let since: ContinuousClock.Instant
    }

    private let listener: Int32
    private let epoll: Int32
    private let maxConnections: Int
    private let idle: Duration
    private let connections: ConnectionGuard
    private let state: ServerState
    /// Parked connections, by descriptor (the loop, and workers parking kept ones).
    private let parked = Locked<[Int32: Parked]>([:])
    /// Open connections: parked, queued or with a worker.
    private let open = Locked(0)
    /// Requests that have arrived, waiting for a worker.
    private let ready = Locked<[Int32]>([])
    private let readySignal = DispatchSemaphore(value: 0)
    private let closedForGood = Locked(false)
    private let expired = Locked(0)
    private let reclaimed = Locked(0)
    /// Connections closed because their deadline passed (a kept-alive one idle past its time is not counted).
    var cutOff: Int { self.expired.withLock { $0 } }
    /// Idle kept-alive connections closed to make room at the cap.
    var reclaimedAtCap: Int { self.reclaimed.withLock { $0 } }
    private let wakeups = Locked(0)
    /// How many times `epoll_wait` returned events (a loop that spins on stale readiness shows here).
    var eventWakeups: Int { self.wakeups.withLock { $0 } }

    /// Tags of epoll events: a connection's descriptor, or this for the listening socket.
    private static let listenerTag = UInt64.max

    init(listener: Int32, maxConnections: Int, idleSeconds: Double, connections: ConnectionGuard, state: ServerState) throws {
        self.listener = listener
        self.maxConnections = max(1, maxConnections)
        self.idle = .milliseconds(Int64(idleSeconds * 1000))
        self.connections = connections
        self.state = state
        self.epoll = scep_epoll_create()
        guard self.epoll >= 0 else { throw FastCGIError(.socket, "epoll_create1: \(String(cString: strerror(errno)))") }
        // Non-blocking, so that the loop never waits in accept(2); accepted sockets are blocking.
        let flags = fcntl(listener, F_GETFL)
        guard flags >= 0, fcntl(listener, F_SETFL, flags | O_NONBLOCK) == 0 else {
            throw FastCGIError(.socket, "listening socket: \(String(cString: strerror(errno)))")
        }
        guard scep_epoll_ctl(self.epoll, Int32(SCEP_EPOLL_CTL_ADD), listener, UInt32(SCEP_EPOLLIN), Self.listenerTag) == 0 else {
            throw FastCGIError(.socket, "epoll_ctl: \(String(cString: strerror(errno)))")
        }
    }

    var openConnections: Int { self.open.withLock { $0 } }

    // MARK: workers

    /// The next connection whose request has arrived (counted in flight: the worker calls
    /// ``ServerState/finished()`` when done); nil once the server drains and none is left.
    func take() -> Int32? {
        while true {
            self.readySignal.wait()
            if let fd = self.ready.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) { return fd }
            if self.closedForGood.withLock({ $0 }) {
                self.readySignal.signal()  // pass the wake-up on to the next worker
                return nil
            }
        }
    }

    /// A worker served a request on `fd` and the web server keeps the connection: watched again.
    func park(kept fd: Int32) {
        guard !self.state.isDraining else {
            self.ended(closing: fd)
            return
        }
        self.watch(fd, kept: true)
    }

    /// Parks `fd` (an open connection, counted) until its request arrives or its deadline passes:
    /// the read deadline from now, or for a kept-alive connection its idle time.
    private func watch(_ fd: Int32, kept: Bool) {
        let now = ContinuousClock.now
        let entry = Parked(deadline: now + (kept ? self.idle : self.connections.deadline), kept: kept, started: false, since: now)
        self.parked.withLock { $0[fd] = entry }
        if scep_epoll_ctl(self.epoll, Int32(SCEP_EPOLL_CTL_ADD), fd, Self.connectionEvents, UInt64(fd)) != 0 {
            self.parked.withLock { $0[fd] = nil }
            self.ended(closing: fd)
        }
    }

    /// A worker's connection is gone (libfcgi closed it).
    func ended() { self.open.withLock { $0 -= 1 } }

    private func ended(closing fd: Int32) {
        close(fd)
        self.ended()
    }

    // MARK: the loop

    /// Edge-triggered: the front door peeks and leaves the bytes for libfcgi, so a connection whose
    /// request is still arriving stays readable; level-triggered, every `epoll_wait` would return it
    /// again at once and the loop would spin (a one-byte stalled connection: for ever). Each arrival
    /// of new bytes is an edge; `EPOLL_CTL_ADD` reports what is already there.
    private static let connectionEvents = UInt32(SCEP_EPOLLIN) | UInt32(SCEP_EPOLLRDHUP) | UInt32(truncatingIfNeeded: SCEP_EPOLLET)

    /// Runs on its own thread until the server drains; then closes what is parked and lets the
    /// workers finish what is queued.
    func run() {
        var tags = [UInt64](repeating: 0, count: Int(SCEP_MAX_EVENTS))
        var events = [UInt32](repeating: 0, count: Int(SCEP_MAX_EVENTS))
        var peek = [UInt8](repeating: 0, count: RecordScanner.peekBound)
        var listening = true
        while !self.state.isDraining {
            let count = tags.withUnsafeMutableBufferPointer { t in
                events.withUnsafeMutableBufferPointer { e in scep_epoll_wait(self.epoll, t.baseAddress, e.baseAddress, 250) }
            }
            if count > 0 { self.wakeups.withLock { $0 += 1 } }
            for i in 0..<max(0, Int(count)) {
                if tags[i] == Self.listenerTag {
                    listening = self.acceptAll()
                } else {
                    self.readable(Int32(truncatingIfNeeded: tags[i]), events[i], &peek)
                }
            }
            self.sweep()
            // Paused at the cap (or out of descriptors): listen again once there is room.
            if !listening, self.openConnections < self.maxConnections {
                listening = scep_epoll_ctl(self.epoll, Int32(SCEP_EPOLL_CTL_ADD), self.listener, UInt32(SCEP_EPOLLIN), Self.listenerTag) == 0
            }
        }
        let left = self.parked.withLock { parked in
            defer { parked = [:] }
            return Array(parked.keys)
        }
        for fd in left { self.ended(closing: fd) }
        self.closedForGood.withLock { $0 = true }
        self.readySignal.signal()
    }

    /// Accepts every pending connection there is room for; false when accepting paused (the
    /// listening socket is then out of the epoll set until ``run()`` adds it back).
    private func acceptAll() -> Bool {
        while true {
            if self.openConnections >= self.maxConnections {
                // Room is made only for a connection that is waiting.
                var pending = pollfd(fd: self.listener, events: Int16(POLLIN), revents: 0)
                guard poll(&pending, 1, 0) == 1 else { return true }
                if !self.reclaimIdle() { return self.pauseListening() }
            }
            let fd = scep_accept(self.listener)
            guard fd >= 0 else {
                switch errno {
                case EAGAIN, EWOULDBLOCK: return true
                case EINTR, ECONNABORTED, EPROTO: continue
                default:
                    // EMFILE, ENFILE, ENOBUFS: pause, try again after the next sweep.
                    self.connections.report("accept on the FastCGI socket failed (\(String(cString: strerror(errno)))): pausing")
                    return self.pauseListening()
                }
            }
            guard self.connections.peerAllowed(fd) else {
                close(fd)  // a TCP peer not in server.allow_from
                continue
            }
            self.connections.limitReads(fd)
            self.open.withLock { $0 += 1 }
            self.watch(fd, kept: false)
        }
    }

    private func pauseListening() -> Bool {
        _ = scep_epoll_ctl(self.epoll, Int32(SCEP_EPOLL_CTL_DEL), self.listener, 0, 0)
        return false
    }

    /// At the cap: closes the oldest kept-alive connection that waits for no request (the web
    /// server opens another when it needs one). False when there is none.
    private func reclaimIdle() -> Bool {
        let oldest = self.parked.withLock { parked -> Int32? in
            guard let (fd, _) = parked.filter({ $0.value.kept && !$0.value.started }).min(by: { $0.value.since < $1.value.since }) else { return nil }
            parked[fd] = nil
            return fd
        }
        guard let oldest else { return false }
        self.reclaimed.withLock { $0 += 1 }
        self.ended(closing: oldest)  // closing also takes it out of the epoll set
        return true
    }

    /// Something arrived on a parked connection (or it closed): hand it over once its request is
    /// whole, close it if it is gone or not FastCGI, else note that a request has begun.
    private func readable(_ fd: Int32, _ events: UInt32, _ peek: inout [UInt8]) {
        guard self.parked.withLock({ $0[fd] != nil }) else { return }
        var verdict = RecordScanner.Verdict.incomplete(params: false)
        var bytes = 0
        if events & UInt32(SCEP_EPOLLIN) != 0 {
            bytes = peek.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_PEEK | MSG_DONTWAIT)) }
            if bytes < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return }
            if bytes > 0 { verdict = peek.withUnsafeBytes { RecordScanner.scan(UnsafeRawBufferPointer(rebasing: $0[..<bytes])) } }
        }
        // Whole, or far enough into a large body that the rest comes while a worker reads it.
        let ready = bytes > 0 && RecordScanner.ready(verdict, count: bytes)
        let hungUp = events & (UInt32(SCEP_EPOLLRDHUP) | UInt32(SCEP_EPOLLHUP) | UInt32(SCEP_EPOLLERR)) != 0
        let gone = bytes <= 0 || verdict == .malformed || (!ready && hungUp)
        if gone || ready {
            guard self.parked.withLock({ $0.removeValue(forKey: fd) }) != nil else { return }
            _ = scep_epoll_ctl(self.epoll, Int32(SCEP_EPOLL_CTL_DEL), fd, 0, 0)
            if gone {
                self.ended(closing: fd)
            } else {
                // In flight from here: a draining server waits for it as for one being served.
                self.state.started()
                self.ready.withLock { $0.append(fd) }
                self.readySignal.signal()
            }
            return
        }
        // A request has begun: from now on it has the read deadline (a kept connection had its idle one).
        let now = ContinuousClock.now
        self.parked.withLock { parked in
            guard var entry = parked[fd], !entry.started else { return }
            entry.started = true
            if entry.kept { entry.deadline = now + self.connections.deadline }
            parked[fd] = entry
        }
    }

    /// Closes the parked connections past their deadline.
    private func sweep() {
        let now = ContinuousClock.now
        let late = self.parked.withLock { parked -> [(Int32, Parked)] in
            let late = parked.filter { $0.value.deadline < now }
            for (fd, _) in late { parked[fd] = nil }
            return Array(late)
        }
        guard !late.isEmpty else { return }
        // Kept-alive connections idle past their time are closed without a word (routine).
        let cut = late.filter { !$0.1.kept || $0.1.started }.count
        self.expired.withLock { $0 += cut }  // counted before the peers can see the close
        for (fd, _) in late { self.ended(closing: fd) }
        if cut > 0 {
            self.connections.report("cut off \(cut) FastCGI connection(s) that had not sent a request within \(self.connections.deadline)")
        }
    }
}
