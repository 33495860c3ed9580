import FoundationEssentials
import Glibc
import PostgreSQL
import SCEPCrypto
import SCEPLocking
import SCEPStore

/// The store for many hosts: every operation is one PostgreSQL transaction, so hosts behind a
/// load balancer see one CA (a retry on another host finds the transaction, a revocation on one
/// is in every host's CRL, CRL numbers never fork).
///
/// Liveness without PIDs: each process holds a session advisory lock on its own random `writer`
/// key on a connection of its own (``Presence``). A claim or an unaudited certificate whose
/// writer's lock can be taken belongs to a process (or host) that is gone; a claim also ends
/// when its lease runs out.
///
/// Durability: committing a certificate is the one durable write of an enrollment. The claim
/// before it and what follows (audited, issued) are committed with `synchronous_commit = off`:
/// a claim lost in a database crash went with the request that held it, and a lost audited or
/// issued mark only hands the certificate back as unaudited (recorded withheld), never loses it.
/// Held requests, revocations and CRL numbers are durable.
public final class PostgreSQLCertificateStore: CertificateStore, Sendable {
    let pool: ConnectionPool
    let presence: Presence
    let retention: TimeInterval
    /// Serials whose audit line is written but whose ``audited(serial:line:)`` did not reach the database.
    private let unsettled = Locked<Set<String>>([])

    /// - Parameter dsn: a libpq connection string (from `store.postgresql_dsn_file`, never a flag).
    public init(dsn: String, retentionDays: Int = 30, poolSize: Int = 4) throws {
        self.pool = ConnectionPool(conninfo: dsn, size: poolSize)
        self.presence = Presence(dsn: dsn)
        self.retention = Double(retentionDays) * 86400
    }

    /// The schema version the database has, for `check` and a starting server.
    public func schemaProblem() -> String? {
        do {
            let at = try self.pool.withConnection { try Schema.current($0) }
            if at == Schema.version { return nil }
            return at < Schema.version
                ? "the database schema is at version \(at), this build needs \(Schema.version): run scep-fcgi store migrate"
                : "the database schema is at version \(at), newer than this build's \(Schema.version): upgrade scep-fcgi"
        } catch {
            return "store unavailable: \(error)"
        }
    }

    public func migrate() throws -> [Int] { try self.run { try Schema.migrate(self.pool) } }

    /// Every failure as the stores' error: unavailable when no connection could be made.
    func run<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as PostgreSQLError {
            throw StoreError(error.code == .connection ? .unavailable : .failed, "\(error)")
        }
    }

    func transaction<T>(_ body: (Connection) throws -> T) throws -> T { try self.run { try self.pool.transaction(body) } }

    // MARK: transactions

    public func claim(_ key: TransactionKey, lease: TimeInterval) throws -> ClaimResult {
        let writer = try self.run { try self.presence.key() }
        return try self.transaction { c in
            // Not durable on its own: a claim lost in a database crash went with the request holding it.
            try c.execute(SQL.asynchronous)
            let won = try c.execute(SQL.claim, [.text(key.transactionID), .text(key.keyHash), .double(lease), .int(writer), .double(self.retention)])
            if !won.isEmpty { return .claimed }
            // The upsert saw a row it did not take, so one exists in this transaction's view.
            guard let record = try Self.record(c, key.transactionID) else { throw StoreError("claim \(key.transactionID): no record after a lost claim") }
            return .existing(record)
        }
    }

    public func supersede(_ key: TransactionKey, issued serial: String, lease: TimeInterval) throws -> Bool {
        let writer = try self.run { try self.presence.key() }
        return try self.transaction { c in
            try c.execute(SQL.supersede, [.text(key.transactionID), .text(serial), .double(lease), .int(writer)]).affected == 1
        }
    }

    public func release(_ key: TransactionKey) {
        // Only our own claim (the holder is this process's key): one taken over meanwhile stays.
        let writer = self.presence.currentKey
        _ = try? self.transaction { c in try c.execute(SQL.release, [.text(key.transactionID), .int(writer)]) }
    }

    public func transaction(_ transactionID: String) throws -> TransactionRecord? {
        try self.run {
            try self.pool.withConnection { c in
                guard let record = try Self.record(c, transactionID) else { return nil }
                if (record.state == .issued || record.state == .rejected) && Date().timeIntervalSince(record.updated) > self.retention { return nil }
                return record
            }
        }
    }

    static func record(_ c: Connection, _ transactionID: String) throws -> TransactionRecord? {
        guard let row = try c.execute(SQL.transaction, [.text(transactionID)]).first,
            let state = row[1].flatMap(TransactionState.init(rawValue:)), let updated = row[3].flatMap(Double.init)
        else { return nil }
        return TransactionRecord(
            transactionID: transactionID, keyHash: state == .inFlight ? "" : row[0] ?? "", state: state, serial: row[2],
            updated: Date(timeIntervalSince1970: updated))
    }

    // MARK: manual approval

    public func hold(_ request: PendingRequest) throws {
        try self.transaction { c in try Self.hold(c, request) }
    }

    /// The request and its transaction's `pending` state, in `c`'s transaction.
    static func hold(_ c: Connection, _ request: PendingRequest) throws {
        try c.execute(SQL.hold, [
            .text(request.transactionID), .text(request.keyHash), .text(request.subject), .text(SQL.array(request.subjectAltNames)),
            .double(request.received.timeIntervalSince1970), .text(request.remoteAddr), .bytes(request.csr), request.renews.map { .text($0) },
        ])
        try Self.setState(c, request.key, .pending)
    }

    /// Puts `key`'s transaction in `state` (no lease, no holder), creating its row if need be.
    static func setState(_ c: Connection, _ key: TransactionKey, _ state: TransactionState, serial: String? = nil) throws {
        try c.execute(SQL.setState, [.text(key.transactionID), .text(key.keyHash), .text(state.rawValue), serial.map { .text($0) }])
    }

    public func pendingRequests() throws -> [PendingRequest] {
        try self.run { try self.pool.withConnection { c in try c.execute(SQL.pendingAll).rows.compactMap(Self.pending) } }
    }

    public func pendingRequest(_ transactionID: String) throws -> PendingRequest? {
        try self.run { try self.pool.withConnection { c in try c.execute(SQL.pendingOne, [.text(transactionID)]).rows.first.flatMap(Self.pending) } }
    }

    static func pending(_ row: [String?]) -> PendingRequest? {
        guard let id = row[0], let keyHash = row[1], let subject = row[2], let received = row[4].flatMap(Double.init), let remote = row[5],
            let csr = Rows.bytes(row[6])
        else { return nil }
        return PendingRequest(
            transactionID: id, keyHash: keyHash, subject: subject, subjectAltNames: SQL.parseArray(row[3] ?? "{}"),
            received: Date(timeIntervalSince1970: received), remoteAddr: remote, csr: csr, renews: row[7])
    }

    public func reject(_ key: TransactionKey) throws {
        _ = try self.transaction { c in
            try Self.setState(c, key, .rejected)
            try c.execute(SQL.removePending, [.text(key.transactionID)])
        }
    }

    // MARK: issuance

    public func commit(_ certificate: Certificate, issuer: IssuerID, transaction: TransactionKey, durableNow: Bool) throws {
        let writer = try self.run { try self.presence.key() }
        _ = try self.transaction { c in
            try c.execute(SQL.commit, [
                .text(certificate.serialNumberHex), .text(issuer.hex), .text(certificate.subjectOneLine),
                .double(certificate.notAfter.timeIntervalSince1970), .bytes(certificate.derEncoded), .int(writer),
                .text(transaction.transactionID),
            ])
        }
    }

    public func issued(_ key: TransactionKey, serial: String) throws {
        _ = try self.transaction { c in
            try c.execute(SQL.asynchronous)
            try Self.setState(c, key, .issued, serial: serial)
            try c.execute(SQL.removePending, [.text(key.transactionID)])
        }
    }

    public func withhold(serial: String, auditLineWritten: Bool) throws {
        _ = try self.transaction { c in try c.execute(SQL.withhold, [.text(serial), .bool(!auditLineWritten)]) }
    }

    /// Commits are durable on their own: the audit log syncs each issuance's line itself.
    public var sealsWithAuditLine: Bool { false }

    /// A failed write (the database away) is kept and written again before the next
    /// ``unaudited()``: a certificate whose line is written must not come back as unaudited.
    /// The line itself stays in the host's log (synced there): nothing of it is kept here.
    public func audited(serial: String, line: WrittenAuditLine?) {
        do {
            _ = try self.transaction { c in
                try c.execute(SQL.asynchronous)
                try c.execute(SQL.audited, [.text(serial)])
            }
        } catch {
            self.unsettled.withLock { _ = $0.insert(serial) }
        }
    }

    public func unaudited() throws -> [UnauditedCertificate] {
        for serial in self.unsettled.withLock({ $0 }) {
            _ = try self.transaction { c in try c.execute(SQL.audited, [.text(serial)]) }
            self.unsettled.withLock { _ = $0.remove(serial) }
        }
        return try self.transaction { c in
            try c.execute(SQL.takeUnaudited).rows.compactMap { row in
                guard let serial = row[0] else { return nil }
                let certificate = Rows.bytes(row[1]).flatMap { try? Certificate(derEncoded: $0) }
                return UnauditedCertificate(serial: serial, cause: row[2] == "t" ? .auditFailed : .crashed, certificate: certificate)
            }
        }
    }

    // MARK: certificates

    public func certificate(serial: String) throws -> StoredCertificate? {
        guard let serial = SerialHex.normalize(serial) else { return nil }
        return try self.run {
            try self.pool.withConnection { c in
                guard let row = try c.execute(SQL.certificate, [.text(serial)]).first, let der = Rows.bytes(row[0]),
                    let certificate = try? Certificate(derEncoded: der)
                else { return nil }
                return StoredCertificate(certificate: certificate, status: Self.status(notAfter: row[1], revokedAt: row[2], reason: row[3], withheld: row[4]))
            }
        }
    }

    public func certificates(subject: String) throws -> [CertificateEntry] {
        try self.run { try self.pool.withConnection { c in try c.execute(SQL.bySubject, [.text(subject)]).rows.compactMap(Self.entry) } }
    }

    public func certificates() throws -> [CertificateEntry] {
        try self.run { try self.pool.withConnection { c in try c.execute(SQL.all).rows.compactMap(Self.entry) } }
    }

    static func entry(_ row: [String?]) -> CertificateEntry? {
        guard let serial = row[0], let subject = row[1], let notAfter = row[2].flatMap(Double.init) else { return nil }
        return CertificateEntry(
            serial: serial, subject: subject, notAfter: Date(timeIntervalSince1970: notAfter),
            status: Self.status(notAfter: row[2], revokedAt: row[3], reason: row[4], withheld: row[5]), issuer: row[6].flatMap(IssuerID.init(hex:)))
    }

    static func status(notAfter: String?, revokedAt: String?, reason: String?, withheld: String?) -> CertificateStatus {
        if let revokedAt = revokedAt.flatMap(Double.init) {
            return .revoked(at: Date(timeIntervalSince1970: revokedAt), reason: reason.flatMap(Int.init).flatMap(RevocationReason.init(rawValue:)))
        }
        if withheld == "t" { return .withheld }
        if let notAfter = notAfter.flatMap(Double.init), notAfter < Date().timeIntervalSince1970 { return .expired }
        return .valid
    }

    public func revoke(serial: String, reason: RevocationReason?, at date: Date) throws -> StoreRevocation {
        guard let serial = SerialHex.normalize(serial) else { return .unknown }
        return try self.transaction { c in
            if let row = try c.execute(SQL.revoke, [.text(serial), .double(date.timeIntervalSince1970), reason.map { .int(Int64($0.rawValue)) }]).first,
                let entry = Self.entry(row)
            {
                return .revoked(entry)
            }
            guard let row = try c.execute(SQL.entry, [.text(serial)]).first, let entry = Self.entry(row) else { return .unknown }
            return .alreadyRevoked(entry)
        }
    }

    public func revoked() throws -> [RevokedEntry] {
        try self.run {
            try self.pool.withConnection { c in
                try c.execute(SQL.revoked).rows.compactMap { row in
                    guard let serial = row[0], let at = row[1].flatMap(Double.init) else { return nil }
                    return RevokedEntry(
                        serial: serial, revokedAt: Date(timeIntervalSince1970: at),
                        reason: row[2].flatMap(Int.init).flatMap(RevocationReason.init(rawValue:)), issuer: row[3].flatMap(IssuerID.init(hex:)))
                }
            }
        }
    }

    public func latestRevocation() throws -> Date? {
        try self.run {
            try self.pool.withConnection { c in
                try c.execute(SQL.latestRevocation).first?[0].flatMap(Double.init).map { Date(timeIntervalSince1970: $0) }
            }
        }
    }

    public func nextCRLNumber(issuer: IssuerID, atLeast: UInt64) throws -> UInt64 {
        try self.transaction { c in
            guard let text = try c.execute(SQL.crlNumber, [.text(issuer.hex), .int(Int64(clamping: max(atLeast, 1)))]).first?[0], let number = UInt64(text)
            else { throw StoreError("no CRL number returned") }
            return number
        }
    }

    public func keepCRL(_ crl: [UInt8], number: UInt64, issuer: IssuerID) throws {
        _ = try self.transaction { c in try c.execute(SQL.keepCRL, [.text(issuer.hex), .int(Int64(clamping: number)), .bytes(crl)]) }
    }

    public func newestCRL(issuer: IssuerID) throws -> [UInt8]? {
        try self.transaction { c in Rows.bytes(try c.execute(SQL.newestCRL, [.text(issuer.hex)]).first?[0] ?? nil) }
    }

    // MARK: upkeep

    public func maintain(now: Date) -> StoreMaintenance {
        let pruned = try? self.transaction { c -> Int in
            // One host at a time; the others skip their turn.
            guard try c.execute(SQL.maintenanceLock).first?[0] == "t" else { return 0 }
            return try c.execute(SQL.prune, [.double(now.timeIntervalSince1970 - self.retention)]).affected
        }
        return StoreMaintenance(transactionsPruned: pruned ?? 0, leftoversRemoved: 0)
    }

    /// A session advisory lock on the job's name, held on one pooled connection while `body`
    /// runs: the database releases it if this process dies.
    public func exclusively<T>(_ job: String, _ body: () throws -> T) throws -> T? {
        try self.run {
            // Not retried: the job itself runs inside.
            try self.pool.withConnection(retry: false) { c -> T? in
                guard try c.execute(SQL.jobLock, [.text(job)]).first?[0] == "t" else { return nil }
                defer { _ = try? c.execute(SQL.jobUnlock, [.text(job)]) }
                return try body()
            }
        }
    }

    public func healthProblem() -> String? {
        do {
            _ = try self.pool.withConnection { try $0.execute(SQL.ping) }
            return nil
        } catch {
            return "store-unavailable"
        }
    }
}

/// This process's advisory lock: held on a connection of its own for as long as the process
/// lives, so other processes and hosts can tell it is alive (`pg_try_advisory_xact_lock` on its
/// key fails) or gone (it succeeds). Reconnected on demand after the database comes back.
final class Presence: @unchecked Sendable {
    private let dsn: String
    private let state = Locked<(connection: Connection?, key: Int64, checked: ContinuousClock.Instant)>((nil, Int64.random(in: 1...Int64.max), .now))

    init(dsn: String) { self.dsn = dsn }

    /// The key as it is now, without reconnecting.
    var currentKey: Int64 { self.state.withLock { $0.key } }

    /// This process's key, with its lock held (taken now if the connection was lost).
    func key() throws -> Int64 {
        try self.state.withLock { state in
            // Checked at most once a second: a restarted database dropped the lock with the session.
            if let connection = state.connection, connection.isHealthy {
                if ContinuousClock.now - state.checked < .seconds(1) { return state.key }
                if (try? connection.execute("SELECT 1")) != nil {
                    state.checked = .now
                    return state.key
                }
            }
            // The same key again after a lost connection (a database restart): this process's claims
            // and certificates in progress are alive again as soon as it holds the lock anew.
            let connection = try Connection(self.dsn)
            try connection.execute(SQL.presenceLock, [.int(state.key)])
            state.connection = connection
            state.checked = .now
            return state.key
        }
    }
}

// MARK: import (`scep-fcgi store import --from-dir`)

/// A certificate as another store holds it, for ``PostgreSQLCertificateStore/importCertificates(_:)``.
public struct ImportedCertificate: Sendable {
    public let certificate: Certificate
    public let issuer: IssuerID?
    public let status: CertificateStatus

    public init(certificate: Certificate, issuer: IssuerID?, status: CertificateStatus) {
        self.certificate = certificate
        self.issuer = issuer
        self.status = status
    }
}

extension PostgreSQLCertificateStore {
    /// Adds certificates in one transaction; safe to run again: a certificate already present
    /// keeps its row, except that a revocation in the import is applied if the row has none.
    /// Returns how many were new.
    public func importCertificates(_ batch: [ImportedCertificate]) throws -> Int {
        try self.transaction { c in
            var added = 0
            for item in batch {
                var revokedAt: Value? = nil
                var reason: Value? = nil
                if case .revoked(let at, let why) = item.status {
                    revokedAt = .double(at.timeIntervalSince1970)
                    reason = why.map { .int(Int64($0.rawValue)) }
                }
                let withheld: Bool = if case .withheld = item.status { true } else { false }
                let rows = try c.execute(SQL.importCertificate, [
                    .text(item.certificate.serialNumberHex), item.issuer.map { .text($0.hex) }, .text(item.certificate.subjectOneLine),
                    .double(item.certificate.notAfter.timeIntervalSince1970), .bytes(item.certificate.derEncoded), revokedAt, reason, .bool(withheld),
                ])
                added += rows.first?[0] == "t" ? 1 : 0
            }
            return added
        }
    }

    /// Adds a request waiting for approval (and its transaction), unless present.
    public func importPending(_ request: PendingRequest) throws {
        try self.transaction { c in
            guard try c.execute(SQL.pendingOne, [.text(request.transactionID)]).isEmpty else { return }
            try Self.hold(c, request)
        }
    }
}
