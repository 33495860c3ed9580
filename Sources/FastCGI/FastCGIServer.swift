import FoundationEssentials
import Glibc
import SCEPLocking
internal import CFastCGI

/// A libfcgi responder: N threads, each owning one `FCGX_Request`, accepting on one socket.
public final class FastCGIServer: @unchecked Sendable {
    /// The listening descriptor (fd 0 when inherited from spawn-fcgi or mod_fcgid).
    let socket: Int32
    public let description: String
    /// The Unix socket path we created (removed on shutdown), nil for TCP or an inherited socket.
    let createdPath: String?
    /// A socket-activation descriptor: systemd keeps listening on it after we exit.
    let sharedWithSystemd: Bool
    let state = ServerState()

    /// Process-wide libfcgi setup; call once from `main` before any worker starts.
    public static func bootstrap() throws {
        guard FCGX_Init() == 0 else { throw FastCGIError(.initialize, "FCGX_Init failed") }
    }

    /// The libfcgi shared object this process runs with, e.g. `libfcgi.so.0.0.0`: libfcgi has no
    /// version call, its file name carries the library version. Read from /proc/self/maps.
    public static var libraryDescription: String {
        // /proc files report a size of 0, so they are read until end of file rather than by size.
        var bytes: [UInt8] = []
        let fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                bytes += buffer[0..<n]
            }
        }
        let maps = String(decoding: bytes, as: UTF8.self)
        guard let line = maps.split(separator: "\n").first(where: { $0.contains("/libfcgi.so") }),
            let path = line.split(separator: " ").last
        else { return "libfcgi (not found in /proc/self/maps)" }
        var resolved = [CChar](repeating: 0, count: Int(PATH_MAX))
        let file =
            realpath(String(path), &resolved) != nil
            ? String(decoding: resolved.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : String(path)
        return "libfcgi " + (file.split(separator: "/").last.map(String.init) ?? file)
    }

    /// True when standard input is a listening socket, i.e. we were started by spawn-fcgi,
    /// Apache mod_fcgid or a similar process manager, not as a plain CGI program or from a shell.
    public static var isInheritedSocket: Bool { FCGX_IsCGI() == 0 }

    /// Serves on the inherited listening socket (fd 0).
    public init(inherited: Void = ()) {
        self.socket = 0
        self.description = "inherited socket (fd 0)"
        self.createdPath = nil
        self.sharedWithSystemd = false
    }

    /// The listening socket systemd passed (socket activation, sd_listen_fds(3)): fd 3 when
    /// `LISTEN_PID` is this process and `LISTEN_FDS` is at least 1; nil otherwise.
    public static var systemdSocket: Int32? {
        let environment = ProcessInfo.processInfo.environment
        guard let pid = environment["LISTEN_PID"].flatMap({ Int32($0) }), pid == getpid(),
            let count = environment["LISTEN_FDS"].flatMap({ Int($0) }), count >= 1
        else { return nil }
        return 3  // SD_LISTEN_FDS_START
    }

    /// Serves on a listening socket passed by systemd (see ``systemdSocket``).
    public init(systemdSocket fd: Int32) {
        self.socket = fd
        self.description = "systemd socket (fd \(fd))"
        self.createdPath = nil
        self.sharedWithSystemd = true
    }

    /// Opens `address`: a Unix socket path, or `HOST:PORT` / `:PORT` for TCP.
    ///
    /// A stale Unix socket file from an earlier run is removed first; the new one gets `mode`
    /// so the web server's user can connect (nginx and Apache workers do not run as root).
    ///
    /// The backlog is SOMAXCONN's usual 4096 (the kernel caps it; systemd's socket units use the
    /// same): with 128, a burst of 256 GETs filled it, nginx's connect() got EAGAIN, marked the
    /// upstream failed and answered 502 for its fail_timeout.
    public init(address: String, mode: Int, group: String? = nil, backlog: Int = 4096) throws {
        let isTCP = address.contains(":") && !address.hasPrefix("/")
        if !isTCP {
            try Self.createParentDirectory(of: address)
            var info = stat()
            if lstat(address, &info) == 0 {
                guard info.st_mode & S_IFMT == S_IFSOCK else {
                    throw FastCGIError(.socket, "server.socket \(address) exists and is not a socket")
                }
                unlink(address)
            }
        }
        let fd = FCGX_OpenSocket(address, Int32(backlog))
        guard fd >= 0 else { throw FastCGIError(.socket, "cannot listen on \(address): \(String(cString: strerror(errno)))") }
        if !isTCP, chmod(address, mode_t(mode)) != 0 {
            throw FastCGIError(.socket, "chmod \(address): \(String(cString: strerror(errno)))")
        }
        // The web server's group (server.socket_group) may connect with mode 0660.
        if !isTCP, let group {
            guard let entry = getgrnam(group) else { throw FastCGIError(.socket, "server.socket_group: no group \(group)") }
            guard chown(address, uid_t.max, entry.pointee.gr_gid) == 0 else {
                throw FastCGIError(.socket, "chgrp \(group) \(address): \(String(cString: strerror(errno)))")
            }
        }
        self.socket = fd
        self.description = isTCP ? "tcp \(address)" : "unix \(address)"
        self.createdPath = isTCP ? nil : address
        self.sharedWithSystemd = false
    }

    /// `serve` on a fresh boot: /run/scep-fcgi does not exist until something creates it (the
    /// systemd unit's RuntimeDirectory, or this). Created 0755, like a RuntimeDirectory.
    static func createParentDirectory(of path: String) throws {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return }
        let parent = String(path[..<slash])
        var info = stat()
        if stat(parent, &info) == 0 { return }
        var prefix = ""
        for component in parent.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw FastCGIError(
                    .socket,
                    "server.socket \(path): cannot create \(prefix) (\(String(cString: strerror(errno)))); "
                        + "create it: install -d -m 0755 \(parent), or run under the systemd unit (RuntimeDirectory)")
            }
        }
    }

    /// Runs `workers` threads, each handling one request at a time, until SIGTERM or SIGINT; then
    /// stops accepting, lets requests in progress finish (up to `drainSeconds`) and exits 0.
    /// SIGHUP and SIGUSR1 (what logrotate's `postrotate` sends) call `onReopen` and serve on.
    ///
    /// libfcgi's `FCGX_Init` installs a SIGTERM handler that only marks "shutdown pending", after
    /// which blocked accepts fail forever. Instead the signals are blocked in every thread (workers
    /// inherit the mask) and taken synchronously with `sigwait` here.
    ///
    /// Connections are accepted and watched by one ``FrontDoor`` thread; a worker gets one only
    /// once its request has arrived, and parks it again after the response when the web server
    /// keeps it (FCGI_KEEP_CONN). At most `maxConnections` are open; a kept-alive one idle for
    /// `idleSeconds` is closed.
    public func run(
        workers: Int, maxBodyBytes: Int, drainSeconds: Double = 30, maxConnections: Int = 1024, idleSeconds: Double = 120,
        connections: ConnectionGuard = ConnectionGuard(deadlineSeconds: 30, allowed: ["127.0.0.1", "::1"]),
        onShutdown: @escaping @Sendable (String) -> Void = { _ in },
        onReopen: @escaping @Sendable () -> Void = {},
        periodic: (interval: Double, task: @Sendable () -> Void)? = nil,
        handler: @escaping @Sendable (GatewayRequest) -> GatewayResponse
    ) -> Never {
        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGUSR1] { sigaddset(&signals, signal) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        let door: FrontDoor
        do {
            door = try FrontDoor(listener: self.socket, maxConnections: maxConnections, idleSeconds: idleSeconds, connections: connections, state: self.state)
        } catch {
            onShutdown("cannot serve: \(error)")
            exit(1)
        }
        WorkerThread.start { door.run() }
        for _ in 0..<max(1, workers) {
            let worker = FastCGIWorker(door: door, maxBodyBytes: maxBodyBytes, state: self.state, guard: connections)
            WorkerThread.start { worker.loop(handler) }
        }
        // The watchdog of ConnectionGuard: cuts off connections past their read deadline.
        let state = self.state
        WorkerThread.start {
            while !state.isDraining {
                let cut = connections.sweep()
                if cut > 0 { connections.report("cut off \(cut) FastCGI connection(s) that had not sent a request within \(connections.deadline)") }
                usleep(250_000)
            }
        }
        // Housekeeping (CRL refresh, record pruning) off the request path, first right away.
        if let periodic {
            let state = self.state
            WorkerThread.start {
                while !state.isDraining {
                    periodic.task()
                    usleep(useconds_t(periodic.interval * 1_000_000))
                }
            }
        }

        var received: Int32 = 0
        while true {
            guard sigwait(&signals, &received) == 0 else { continue }
            if received == SIGHUP || received == SIGUSR1 {
                onReopen()
                continue
            }
            break
        }
        self.state.beginDraining()
        // The front door stops accepting and closes the connections it parks (within 250 ms);
        // requests already with a worker, or arrived and queued, finish. New connections are
        // refused. Not a systemd socket: it is shared with systemd, which passes it to the next
        // start, and shutdown(2) would leave it dead for good.
        if !self.sharedWithSystemd { _ = shutdown(self.socket, Int32(SHUT_RDWR)) }
        if let path = self.createdPath { unlink(path) }
        let deadline = ContinuousClock.now + .milliseconds(Int64(drainSeconds * 1000))
        while self.state.active > 0 && ContinuousClock.now < deadline { usleep(20_000) }
        onShutdown("signal \(received): stopped accepting; \(self.state.active) requests still running at exit")
        exit(0)
    }
}

/// Shared by the workers and the shutdown path.
final class ServerState: Sendable {
    private let draining = Locked(false)
    private let running = Locked(0)

    var isDraining: Bool { self.draining.withLock { $0 } }
    var active: Int { self.running.withLock { $0 } }
    func beginDraining() { self.draining.withLock { $0 = true } }
    func started() { self.running.withLock { $0 += 1 } }
    func finished() { self.running.withLock { $0 -= 1 } }
}

/// A detached POSIX thread with a 1 MiB stack (the workers block in libfcgi and libcurl, so they
/// are real threads, not tasks).
enum WorkerThread {
    final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    static func start(_ body: @escaping @Sendable () -> Void) {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, 1 << 20)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let context = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, &attributes, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            box.body()
            return nil
        }, context)
        if result != 0 { Unmanaged<Box>.fromOpaque(context).release() }
    }
}

/// One worker thread's request; the `FCGX_Request` lives at a stable address for the thread's life.
struct FastCGIWorker {
    let door: FrontDoor
    let maxBodyBytes: Int
    let state: ServerState
    let `guard`: ConnectionGuard

    func loop(_ handler: @Sendable (GatewayRequest) -> GatewayResponse) {
        let request = UnsafeMutablePointer<FCGX_Request>.allocate(capacity: 1)
        defer { request.deallocate() }
        // No listening socket for libfcgi: it must never accept by itself (after a bad connection
        // it would, and block in a read with no deadline). The front door hands it connections
        // whose request has arrived; libfcgi's own accept then fails at once and FCGX_Accept_r returns.
        guard FCGX_InitRequest(request, -1, 0) == 0 else { return }
        while let fd = self.door.take() {
            defer { self.state.finished() }
            // A request larger than the front door's peek bound may still be arriving.
            let watch = self.guard.watch(fd)
            request.pointee.ipcFd = fd
            // FCGX_Accept_r begins by finishing "the previous request": keep this descriptor open.
            // Reading FCGI_BEGIN_REQUEST then sets it to what the web server asked (FCGI_KEEP_CONN).
            request.pointee.keepConnection = 1
            guard FCGX_Accept_r(request) >= 0 else {
                self.guard.release(watch)  // unreadable or too slow: libfcgi closed it
                self.door.ended()
                continue
            }
            let incoming = self.read(request, fd)
            self.guard.release(watch)
            // A body not read to its end (past the drain bound) leaves records of this request on
            // the connection: it cannot carry the next one.
            if FCGX_HasSeenEOF(request.pointee.in) != EOF { request.pointee.keepConnection = 0 }
            let response = handler(incoming)
            self.write(response, to: request)
            // Closes the connection unless the web server keeps it and nothing failed on it.
            FCGX_Finish_r(request)
            if request.pointee.ipcFd >= 0 {
                request.pointee.ipcFd = -1
                self.door.park(kept: fd)
            } else {
                self.door.ended()
            }
        }
    }

    private func read(_ request: UnsafeMutablePointer<FCGX_Request>, _ fd: Int32) -> GatewayRequest {
        var params: [String: String] = [:]
        if var cursor = request.pointee.envp {
            while let entry = cursor.pointee {
                let text = String(cString: entry)
                if let equals = text.firstIndex(of: "=") {
                    params[String(text[..<equals])] = String(text[text.index(after: equals)...])
                }
                cursor += 1
            }
        }
        let declared = Int(params["CONTENT_LENGTH"] ?? "") ?? 0
        let (body, tooLarge) = BodyReader.read(declared: declared, limit: self.maxBodyBytes) { buffer, count in
            Int(FCGX_GetStr(buffer, Int32(count), request.pointee.in))
        }
        return GatewayRequest(params: params, body: body, bodyTooLarge: tooLarge, peerClosed: { ConnectionGuard.peerClosed(fd) })
    }

    private func write(_ response: GatewayResponse, to request: UnsafeMutablePointer<FCGX_Request>) {
        for part in [response.head, response.body] where !part.isEmpty {
            part.withUnsafeBytes { raw in
                _ = FCGX_PutStr(raw.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(raw.count), request.pointee.out)
            }
        }
    }
}

/// Reads a request body with a cap; shared by FastCGI and CGI.
enum BodyReader {
    /// Reads at most `limit` bytes. Past the limit the rest is drained (up to a bound) so the web
    /// server finishes sending and the 413 reaches the client, then dropped.
    static func read(declared: Int, limit: Int, _ readChunk: (UnsafeMutablePointer<CChar>, Int) -> Int) -> ([UInt8], Bool) {
        var body: [UInt8] = []
        var tooLarge = declared > limit
        var total = 0
        let drainBound = max(limit * 16, 64 << 20)
        var chunk = [CChar](repeating: 0, count: 65536)
        while total < drainBound {
            let n = chunk.withUnsafeMutableBufferPointer { readChunk($0.baseAddress!, $0.count) }
            if n <= 0 { break }
            total += n
            if !tooLarge {
                if total > limit {
                    tooLarge = true
                    body = []
                } else {
                    body.append(contentsOf: chunk[0..<n].map { UInt8(bitPattern: $0) })
                }
            }
        }
        return (tooLarge ? [] : body, tooLarge)
    }
}
