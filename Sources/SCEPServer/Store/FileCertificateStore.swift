import FoundationEssentials
import Glibc
import SCEPCrypto

/// The CA directory as a store (docs/ca-layout.md), safe with many processes:
///
/// - `issued/SERIAL.pem`: temp file + fsync + `link(2)` (never overwriting), then one line
///   appended to `index.txt` (see ``IndexFile``); `issued/SERIAL.withheld` marks one never delivered.
/// - `transactions/HASH.json` (HASH = SHA-256 of the transactionID): the claim is an
///   `O_CREAT|O_EXCL` create, so two processes never both issue for one transactionID; updates
///   replace the file with `rename(2)`. These records get no sync of their own (the budget is the
///   four syncs of an issuance): after a power loss one may be missing, and the client's retry is
///   then issued anew, never answered with a certificate that was not recorded.
/// - `pending/HASH.json`: requests waiting for an operator, fsynced before PENDING is answered.
///
/// Nothing from a request reaches a path: names are serials (hex) and hashes.
public final class FileCertificateStore: CertificateStore, Sendable {
    public let directory: CADirectory
    let index: IndexFile
    /// A claim older than this is stale whatever its process: no request takes that long.
    static let claimLifetime: TimeInterval = 600

    public init(directory: CADirectory) throws {
        self.directory = directory
        self.index = IndexFile(path: directory.indexPath)
        for path in [directory.transactionsPath, directory.pendingPath] where access(path, F_OK) != 0 {
            guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
                throw ServerError(.store, "create \(path): \(errnoText())")
            }
        }
    }

    // MARK: transactions

    public func claim(_ key: TransactionKey) throws -> ClaimResult {
        let path = self.transactionPath(key.transactionID)
        let mine = TransactionRecord(transactionID: key.transactionID, keyHash: key.keyHash, state: .inFlight)
        for _ in 0..<4 {
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if fd >= 0 {
                defer { close(fd) }
                try AtomicFile.writeAll(fd, try Self.encode(mine), what: path)
                return .claimed
            }
            guard errno == EEXIST else { throw ServerError(.store, "create \(path): \(errnoText())") }
            if let record = try self.readRecord(path), !self.isStale(record) { return .existing(record) }
            if self.readRecordAge(path) < 5, (try? self.readRecord(path)) == nil {
                // Being written right now by its creator: treat as in flight.
                return .existing(TransactionRecord(transactionID: key.transactionID, keyHash: key.keyHash, state: .inFlight, pid: 0))
            }
            // Stale: move it aside; of several processes doing this at once, one rename succeeds.
            let aside = "\(path).stale-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            if rename(path, aside) == 0 { unlink(aside) }
        }
        throw ServerError(.store, "transaction \(key.transactionID): claim kept changing hands")
    }

    public func update(_ key: TransactionKey, _ state: TransactionState, serial: String?) throws {
        let record = TransactionRecord(transactionID: key.transactionID, keyHash: key.keyHash, state: state, serial: serial)
        try AtomicFile.replace(self.transactionPath(key.transactionID), contents: try Self.encode(record), mode: 0o644, sync: state == .pending)
    }

    public func release(_ key: TransactionKey) { unlink(self.transactionPath(key.transactionID)) }

    public func transaction(_ transactionID: String) throws -> TransactionRecord? {
        try self.readRecord(self.transactionPath(transactionID))
    }

    public func pruneTransactions(olderThan date: Date) -> Int {
        var removed = 0
        for name in (try? FileManager.default.contentsOfDirectory(atPath: self.directory.transactionsPath)) ?? [] {
            let path = self.directory.transactionsPath + "/" + name
            if name.contains(".stale-") || name.hasPrefix(".tmp-") {
                if self.readRecordAge(path) > Self.claimLifetime { unlink(path); removed += 1 }
                continue
            }
            guard let record = try? self.readRecord(path) else { continue }
            // A pending transaction is kept while its request waits.
            if record.updated < date, record.state != .pending, unlink(path) == 0 { removed += 1 }
        }
        return removed
    }

    private func isStale(_ record: TransactionRecord) -> Bool {
        guard record.state == .inFlight else { return false }
        if Date().timeIntervalSince(record.updated) > Self.claimLifetime { return true }
        // Same host (the file store is local): a claim of a process that no longer exists is stale.
        return record.pid > 0 && kill(record.pid, 0) != 0 && errno == ESRCH
    }

    private func readRecord(_ path: String) throws -> TransactionRecord? {
        guard let data = FileManager.default.contents(atPath: path), !data.isEmpty else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        return try? decoder.decode(TransactionRecord.self, from: data)
    }

    private func readRecordAge(_ path: String) -> TimeInterval {
        var info = stat()
        guard stat(path, &info) == 0 else { return .infinity }
        return Date().timeIntervalSince1970 - TimeInterval(info.st_mtim.tv_sec)
    }

    private func transactionPath(_ transactionID: String) -> String {
        self.directory.transactionsPath + "/" + Self.hashName(transactionID) + ".json"
    }

    private func pendingPath(_ transactionID: String) -> String {
        self.directory.pendingPath + "/" + Self.hashName(transactionID) + ".json"
    }

    static func hashName(_ transactionID: String) -> String {
        HexEncoding.string((try? DigestAlgorithm.sha256.hash(Array(transactionID.utf8))) ?? [])
    }

    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        return Array(try encoder.encode(value)) + [UInt8(ascii: "\n")]
    }

    // MARK: certificates

    public func record(_ certificate: Certificate, transactionID: String?) throws {
        let serial = certificate.serialNumberHex
        // The file name is the serial only (hex): nothing from the request reaches a path.
        try AtomicFile.create(self.certificatePath(serial), contents: Array(certificate.pemEncoded.utf8), mode: 0o644)
        try self.index.append(
            IndexEntry(status: .valid, expiry: certificate.notAfter, revokedAt: nil, reason: nil, serial: serial, subject: certificate.subjectOneLine))
    }

    public func markWithheld(serial: String) throws {
        try AtomicFile.replace(self.directory.issuedPath + "/\(serial).withheld", contents: Array("withheld\n".utf8), mode: 0o644, sync: true)
    }

    public func certificate(serial: String) throws -> StoredCertificate? {
        guard let serial = SerialHex.normalize(serial), let entry = try self.index.entry(serial: serial),
            let pem = FileManager.default.contents(atPath: self.certificatePath(serial)),
            let certificate = try? Certificate.certificates(pemEncoded: Array(pem)).first
        else { return nil }
        return StoredCertificate(certificate: certificate, status: self.status(entry))
    }

    public func entries() throws -> [(IndexEntry, CertificateStatus)] {
        try self.index.entries().map { ($0, self.status($0)) }
    }

    public func serials(subject: String) throws -> [String] {
        try self.index.entries().filter { $0.subject == subject }.map(\.serial)
    }

    public func revoke(serial: String, reason: RevocationReason?, at date: Date) throws -> IndexEntry {
        guard let serial = SerialHex.normalize(serial) else { throw ServerError(.store, "\(serial) is not a hex serial number") }
        return try self.index.rewrite { entries in
            guard let i = entries.firstIndex(where: { $0.serial == serial }) else {
                throw ServerError(.store, "no certificate with serial \(serial) in \(self.directory.indexPath)")
            }
            guard entries[i].status != .revoked else { throw ServerError(.store, "certificate \(serial) is already revoked") }
            entries[i].status = .revoked
            entries[i].revokedAt = date
            entries[i].reason = reason
            return entries[i]
        }
    }

    private func status(_ entry: IndexEntry) -> CertificateStatus {
        switch entry.status {
        case .revoked: return .revoked(at: entry.revokedAt ?? Date(timeIntervalSince1970: 0), reason: entry.reason)
        case .expired: return .expired
        case .valid:
            if access(self.directory.issuedPath + "/\(entry.serial).withheld", F_OK) == 0 { return .withheld }
            return entry.expiry < Date() ? .expired : .valid
        }
    }

    private func certificatePath(_ serial: String) -> String { "\(self.directory.issuedPath)/\(serial).pem" }

    // MARK: pending

    public func savePending(_ request: PendingRequest) throws {
        try AtomicFile.replace(self.pendingPath(request.transactionID), contents: try Self.encode(request), mode: 0o644, sync: true)
    }

    public func pendingRequests() throws -> [PendingRequest] {
        let names = try FileManager.default.contentsOfDirectory(atPath: self.directory.pendingPath).filter { $0.hasSuffix(".json") }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        return names.compactMap { name in
            FileManager.default.contents(atPath: self.directory.pendingPath + "/" + name).flatMap { try? decoder.decode(PendingRequest.self, from: $0) }
        }.sorted { $0.received < $1.received }
    }

    public func pendingRequest(_ transactionID: String) throws -> PendingRequest? {
        guard let data = FileManager.default.contents(atPath: self.pendingPath(transactionID)) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        return try? decoder.decode(PendingRequest.self, from: data)
    }

    public func removePending(_ transactionID: String) throws {
        guard unlink(self.pendingPath(transactionID)) == 0 || errno == ENOENT else {
            throw ServerError(.store, "remove pending request: \(errnoText())")
        }
    }
}
