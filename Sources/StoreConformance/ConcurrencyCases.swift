import Dispatch
import FoundationEssentials
import Glibc
import SCEPCrypto
import SCEPLocking
import SCEPStore

/// Many threads and many processes on one store at once: what several workers of one server,
/// several servers on one host, or several hosts on one database do.
enum ConcurrencyCases {
    static let all: [StoreConformance.Case] = [
        .init(name: "16 threads claim one transactionID: exactly one wins", run: threadsClaim),
        .init(name: "4 processes claim the same 40 transactionIDs: each is won exactly once", run: processesClaim),
        .init(name: "4 processes take CRL numbers: all distinct", run: processesCRLNumbers),
        .init(name: "4 processes commit while another revokes: nothing lost, the revocation kept", run: processesCommit),
        .init(name: "a job runs once at a time across handles, and again once it is done", run: exclusiveJob),
    ]

    static func exclusiveJob(_ fixture: any StoreFixture) throws {
        let (a, b) = (try fixture.open(), try fixture.open())
        let job = "conformance-\(UInt32.random(in: 0...UInt32.max))"
        let inside = DispatchSemaphore(value: 0)
        let finish = DispatchSemaphore(value: 0)
        let first = Locked<Int?>(nil)
        DispatchQueue.global().async {
            let ran = try? a.exclusively(job) { () -> Int in
                inside.signal()
                finish.wait()
                return 1
            }
            first.withLock { $0 = ran ?? 0 }
            inside.signal()
        }
        inside.wait()
        let second = try b.exclusively(job) { 2 }
        finish.signal()
        inside.wait()
        try expect(first.withLock { $0 } == 1 && second == nil, "held: the second run must not start (first \(String(describing: first.withLock { $0 })), second \(String(describing: second)))")
        try expect(try b.exclusively(job) { 3 } == 3, "free again once the first is done")
        try expect(try b.exclusively("\(job)-other") { 4 } == 4, "another job is not held")
    }

    static func threadsClaim(_ fixture: any StoreFixture) throws {
        let k = TransactionKey(transactionID: freshID("race"), keyHash: String(repeating: "ef", count: 32))
        let stores = try (0..<4).map { _ in try fixture.open() }
        let wins = Counter()
        let errors = Counter()
        DispatchQueue.concurrentPerform(iterations: 16) { i in
            do { if try stores[i % 4].claim(k, lease: 600) == .claimed { wins.add() } } catch { errors.add() }
        }
        try expect(wins.value == 1 && errors.value == 0, "\(wins.value) won, \(errors.value) failed")
    }

    static func processesClaim(_ fixture: any StoreFixture) throws {
        let prefix = freshID("multi")
        let lines = try fixture.spawn(4, ["claim", prefix, "40"])
        let won = lines.filter { $0.hasPrefix("claimed ") }.map { String($0.dropFirst(8)) }
        try expect(won.count == 40 && Set(won).count == 40, "\(won.count) claims won (\(Set(won).count) distinct) of 40")
        let store = try fixture.open()
        for i in 0..<40 { try expect(try store.transaction("\(prefix)-\(i)")?.state == .inFlight, "\(prefix)-\(i) in flight") }
    }

    static func processesCRLNumbers(_ fixture: any StoreFixture) throws {
        let issuer = try TestAuthority().id
        let numbers = try fixture.spawn(4, ["crl-number", issuer.hex, "25"]).compactMap { UInt64($0) }
        try expect(numbers.count == 100 && Set(numbers).count == 100, "\(numbers.count) numbers, \(Set(numbers).count) distinct")
        try expect(try fixture.open().nextCRLNumber(issuer: issuer, atLeast: 1) == numbers.max()! + 1, "counting on after the highest")
    }

    static func processesCommit(_ fixture: any StoreFixture) throws {
        let store = try fixture.open()
        let authority = try TestAuthority()
        let (_, target) = try enroll(store, authority)
        // The revocation lands while the workers commit (they take longer than 20 ms to start and sign).
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            usleep(20_000)
            _ = try? store.revoke(serial: target.serialNumberHex, reason: .superseded, at: Date())
            done.signal()
        }
        let serials = try fixture.spawn(4, ["commit", "20"]).filter { !$0.isEmpty }
        done.wait()
        try expect(serials.count == 80 && Set(serials).count == 80, "\(serials.count) committed, \(Set(serials).count) distinct")
        let listed = Set(try fixture.open().certificates().map(\.serial))
        let missing = serials.filter { !listed.contains($0) }
        try expect(missing.isEmpty, "\(missing.count) committed certificates not listed")
        for serial in serials.prefix(10) { try expect(try store.certificate(serial: serial)?.status == .valid, "\(serial) valid") }
        guard case .revoked? = try store.certificate(serial: target.serialNumberHex)?.status else {
            throw ConformanceFailure(message: "the revocation made while others committed was lost", line: #line)
        }
    }
}

/// A thread-safe count.
final class Counter: Sendable {
    private let count = Locked(0)
    func add() { self.count.withLock { $0 += 1 } }
    var value: Int { self.count.withLock { $0 } }
}

extension StoreConformance {
    /// What a worker process does (`store-conformance worker STORE… COMMAND ARGS`): one result per
    /// returned line, for ``StoreFixture/spawn(_:_:)``.
    public static func worker(_ arguments: [String], store: any CertificateStore) throws -> [String] {
        guard let command = arguments.first else { throw ConformanceFailure(message: "worker: no command", line: #line) }
        let args = Array(arguments.dropFirst())
        switch command {
        case "claim":  // PREFIX COUNT: claims PREFIX-0 … and keeps what it wins
            guard args.count == 2, let count = Int(args[1]) else { break }
            return try (0..<count).compactMap { i in
                let k = TransactionKey(transactionID: "\(args[0])-\(i)", keyHash: String(repeating: "01", count: 32))
                return try store.claim(k, lease: 600) == .claimed ? "claimed \(k.transactionID)" : nil
            }
        case "crl-number":  // ISSUER COUNT
            guard args.count == 2, let issuer = IssuerID(hex: args[0]), let count = Int(args[1]) else { break }
            return try (0..<count).map { _ in String(try store.nextCRLNumber(issuer: issuer, atLeast: 1)) }
        case "commit":  // COUNT: delivered enrollments, their serials
            guard args.count == 1, let count = Int(args[0]) else { break }
            let authority = try TestAuthority()
            return try (0..<count).map { _ in try enroll(store, authority).1.serialNumberHex }
        case "commit-and-die":  // commits one certificate, reports it, and exits before its audit line
            let authority = try TestAuthority()
            let certificate = try authority.issue("CN=crashed,O=Example")
            let k = try key(freshID("crash"), for: certificate)
            _ = try store.claim(k, lease: 1)
            try store.commit(certificate, issuer: authority.id, transaction: k)
            let line = "committed \(certificate.serialNumberHex)\n"
            _ = Array(line.utf8).withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
            _exit(0)
        default:
            break
        }
        throw ConformanceFailure(message: "worker: bad arguments \(arguments)", line: #line)
    }
}
