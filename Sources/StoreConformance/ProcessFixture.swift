import FoundationEssentials
import Glibc
import SCEPStore

/// A ``StoreFixture`` from a way to open the store and the command line of a worker on it
/// (`store-conformance worker --file DIR`, or `--postgresql DSNFILE`).
public struct ProcessFixture: StoreFixture {
    let opener: @Sendable () throws -> any CertificateStoreBox
    let workerCommand: [String]

    public init(open: @escaping @Sendable () throws -> any CertificateStore, worker: [String]) {
        self.opener = { try StoreBox(open()) }
        self.workerCommand = worker
    }

    public func open() throws -> any CertificateStore { try self.opener().store }

    public func spawn(_ count: Int, _ arguments: [String]) throws -> [String] {
        let children = try (0..<count).map { _ in try Child(self.workerCommand + arguments) }
        // Every worker holds what it took (claims) until all have reported: none may see another's
        // claim as that of a process that is gone.
        let reports = children.map { $0.readUntilReady() }
        for child in children { child.release() }
        var lines: [String] = []
        var failures: [String] = []
        for (child, report) in zip(children, reports) {
            let (status, rest) = child.wait()
            let output = report + rest
            lines += output.split(separator: "\n").map(String.init)
            if status != 0 { failures.append("worker exited \(status): \(output.suffix(300))") }
        }
        if !failures.isEmpty { throw ConformanceFailure(message: failures.joined(separator: "; "), line: #line) }
        return lines
    }
}

/// Hides the existential behind a class so the closure's result is Sendable.
public protocol CertificateStoreBox: Sendable { var store: any CertificateStore { get } }
struct StoreBox: CertificateStoreBox {
    let store: any CertificateStore
    init(_ store: any CertificateStore) { self.store = store }
}

/// One worker process with its standard input and output on pipes (posix_spawn: no fork of a
/// threaded test process). A worker prints its results, then `ready`, then waits for its
/// standard input to close before it exits.
final class Child {
    let pid: pid_t
    let output: Int32
    let input: Int32
    private var pending: [UInt8] = []

    init(_ arguments: [String]) throws {
        var pipeFDs: [Int32] = [0, 0]
        var inFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0, pipe(&inFDs) == 0 else { throw ConformanceFailure(message: "pipe: \(errno)", line: #line) }
        // The parent's ends must not leak into the next worker (it would keep another's stdin open).
        for fd in [pipeFDs[0], inFDs[1]] { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        posix_spawn_file_actions_adddup2(&actions, inFDs[0], 0)
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, arguments[0], &actions, nil, &argv, environ)
        close(pipeFDs[1])
        close(inFDs[0])
        guard rc == 0 else {
            close(pipeFDs[0])
            close(inFDs[1])
            throw ConformanceFailure(message: "spawn \(arguments[0]): \(String(cString: strerror(rc)))", line: #line)
        }
        self.pid = pid
        self.output = pipeFDs[0]
        self.input = inFDs[1]
    }

    /// The output up to the `ready` line (or the end, for a worker that exited first).
    func readUntilReady() -> String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let lines = String(decoding: self.pending, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            if let ready = lines.dropLast().firstIndex(of: "ready") {
                self.pending = []
                return lines[..<ready].map { $0 + "\n" }.joined()
            }
            let n = buffer.withUnsafeMutableBytes { read(self.output, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            self.pending += buffer[0..<n]
        }
        defer { self.pending = [] }
        return String(decoding: self.pending, as: UTF8.self)
    }

    /// Lets the worker exit.
    func release() { close(self.input) }

    /// Reads what is left, then reaps: (exit status, or 128 + signal; the rest of standard output).
    func wait() -> (Int32, String) {
        var bytes: [UInt8] = self.pending
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(self.output, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        close(self.output)
        var status: Int32 = 0
        while waitpid(self.pid, &status, 0) < 0 && errno == EINTR {}
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, String(decoding: bytes, as: UTF8.self))
    }
}
