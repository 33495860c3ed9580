import FoundationEssentials
import Glibc
import SCEPCrypto

/// The CA directory as a store (docs/ca-layout.md), safe with many processes:
///
/// - `issued/SERIAL.pem`: temp file + fsync + `link(2)` (never overwriting), then one line
///   appended to `index.txt` (see ``IndexFile``); `issued/SERIAL.withheld` marks one never delivered.
/// - `transactions/`: one hard link per transactionID (see ``TransactionDirectory``), so two
///   processes never both issue for one transactionID. These entries get no sync of their own
///   (the budget is the four syncs of an issuance): after a power loss one may be missing, and the
///   client's retry is then issued anew, never answered with a certificate that was not recorded.
/// - `pending/HASH.json`: requests waiting for an operator, fsynced before PENDING is answered.
///
/// Nothing from a request reaches a path: names are serials (hex) and hashes.
public final class FileCertificateStore: CertificateStore, Sendable {
    public let directory: CADirectory
    let index: IndexFile
    let transactions: TransactionDirectory

    public init(directory: CADirectory, retentionDays: Int = 30) throws {
        self.directory = directory
        self.index = IndexFile(path: directory.indexPath)
        self.transactions = try TransactionDirectory(directory: directory, retention: Double(retentionDays) * 86400)
    }

    // MARK: transactions

    public func claim(_ key: TransactionKey) throws -> ClaimResult { try self.transactions.claim(key) }

    public func update(_ key: TransactionKey, _ state: TransactionState, serial: String?) throws {
        try self.transactions.update(key, state, serial: serial)
    }

    public func release(_ key: TransactionKey) { self.transactions.release(key) }

    public func transaction(_ transactionID: String) throws -> TransactionRecord? { self.transactions.record(transactionID) }

    public func pruneTransactions(olderThan date: Date) -> Int { self.transactions.prune(olderThan: date) }

    public func healthProblem() -> String? {
        FileHealth.problem(writing: self.directory.indexPath, prefix: "store")
            ?? FileHealth.problem(writing: self.directory.issuedPath, prefix: "store", directory: true)
            ?? FileHealth.problem(writing: self.directory.transactionsPath, prefix: "store", directory: true)
    }

    static func hashName(_ transactionID: String) -> String { TransactionDirectory.hashName(transactionID) }

    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        return Array(try encoder.encode(value)) + [UInt8(ascii: "\n")]
    }

    // MARK: certificates

    public func record(_ certificate: Certificate, transactionID: String?) throws {
        let serial = certificate.serialNumberHex
        // The file name is the serial only (hex): nothing from the request reaches a path.
        // The unaudited marker (a second link to the same file) exists before issued/SERIAL.pem
        // does, and goes once the certificate's audit record is written (``audited(serial:)``):
        // whatever kills the process in between, housekeeping finds the certificate.
        try self.ensureUnauditedDirectory()
        let marker = self.unauditedMarker(serial)
        try AtomicFile.create(self.certificatePath(serial), contents: Array(certificate.pemEncoded.utf8), mode: 0o644, intent: marker)
        do {
            try self.index.append(IndexEntry(valid: certificate))
        } catch {
            // Not recorded, so never delivered: no issued/ file may remain without its index line.
            unlink(self.certificatePath(serial))
            unlink(marker)
            throw error
        }
    }

    public func markWithheld(serial: String) throws {
        try AtomicFile.replace(self.directory.issuedPath + "/\(serial).withheld", contents: Array("withheld\n".utf8), mode: 0o644, sync: true)
    }

    var unauditedDirectory: String { self.directory.path + "/unaudited" }

    private func ensureUnauditedDirectory() throws {
        guard mkdir(self.unauditedDirectory, 0o750) == 0 || errno == EEXIST else {
            throw ServerError(.store, "create \(self.unauditedDirectory): \(errnoText())")
        }
    }

    /// The markers of `serial` (normally one: `SERIAL.PID-START`, or `SERIAL.failed`).
    private func markers(of serial: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: self.unauditedDirectory)) ?? []).filter { $0.hasPrefix(serial + ".") }
    }

    /// This process's note for `serial`, made by ``record(_:transactionID:)``.
    private func unauditedMarker(_ serial: String) -> String {
        self.unauditedDirectory + "/\(serial).\(ProcessIdentity.current.tag)"
    }

    /// On every delivered enrollment: one unlink of the note this process made, no directory listing.
    public func audited(serial: String) { unlink(self.unauditedMarker(serial)) }

    public func markUnaudited(serial: String) throws {
        try self.ensureUnauditedDirectory()
        let failed = self.unauditedDirectory + "/\(serial).failed"
        for name in self.markers(of: serial) where !name.hasSuffix(".failed") {
            guard rename(self.unauditedDirectory + "/" + name, failed) == 0 else { throw ServerError(.store, "mark \(failed): \(errnoText())") }
        }
        if self.markers(of: serial).isEmpty {
            guard link(self.certificatePath(serial), failed) == 0 else { throw ServerError(.store, "mark \(failed): \(errnoText())") }
        }
    }

    public func unauditedSerials() -> [UnauditedCertificate] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: self.unauditedDirectory)) ?? []
        return names.compactMap { name -> UnauditedCertificate? in
            guard let dot = name.firstIndex(of: "."), !name.hasPrefix(".") else { return nil }
            let serial = String(name[..<dot])
            let owner = name[name.index(after: dot)...]
            guard serial.allSatisfy(\.isHexDigit) else { return nil }
            if owner == "failed" { return UnauditedCertificate(serial: serial, cause: .auditFailed) }
            // Still being worked on by a live process (an Intune notification may take a while).
            return ProcessIdentity.running(tag: owner) ? nil : UnauditedCertificate(serial: serial, cause: .crashed)
        }.sorted { $0.serial < $1.serial }
    }

    public func reconcile(serial: String) throws -> Certificate? {
        guard let name = self.markers(of: serial).first else { return nil }
        let marker = self.unauditedDirectory + "/" + name
        guard let pem = FileManager.default.contents(atPath: marker), let certificate = try? Certificate.certificates(pemEncoded: Array(pem)).first else {
            unlink(marker)
            return nil
        }
        // Killed between the marker and issued/SERIAL.pem, or between the file and its index line.
        if access(self.certificatePath(serial), F_OK) != 0, link(marker, self.certificatePath(serial)) != 0, errno != EEXIST {
            throw ServerError(.store, "restore \(self.certificatePath(serial)): \(errnoText())")
        }
        if try self.index.entry(serial: serial) == nil { try self.index.append(IndexEntry(valid: certificate)) }
        try self.markWithheld(serial: serial)
        return certificate
    }

    public func clearUnaudited(serial: String) {
        for name in self.markers(of: serial) { unlink(self.unauditedDirectory + "/" + name) }
    }

    public func removeOrphans() -> Int {
        [self.directory.path, self.directory.issuedPath, self.directory.pendingPath, self.directory.crlPath, self.unauditedDirectory]
            .reduce(0) { $0 + AtomicFile.removeOrphans(in: $1) }
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

    public func revoke(serial: String, reason: RevocationReason?, at date: Date) throws -> StoreRevocation {
        guard let serial = SerialHex.normalize(serial) else { return .unknown }
        // Read first: a serial that is unknown or already revoked needs no rewrite of the index.
        guard let entry = try self.index.entry(serial: serial) else { return .unknown }
        if entry.status == .revoked { return .alreadyRevoked(entry) }
        return try self.index.rewrite { entries in
            guard let i = entries.firstIndex(where: { $0.serial == serial }) else { return .unknown }
            guard entries[i].status != .revoked else { return .alreadyRevoked(entries[i]) }
            entries[i].status = .revoked
            entries[i].revokedAt = date
            entries[i].reason = reason
            return .revoked(entries[i])
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
        try AtomicFile.replace(self.transactions.pendingFile(request.transactionID), contents: try Self.encode(request), mode: 0o644, sync: true)
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
        guard let data = FileManager.default.contents(atPath: self.transactions.pendingFile(transactionID)) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        return try? decoder.decode(PendingRequest.self, from: data)
    }

    public func removePending(_ transactionID: String) throws {
        guard unlink(self.transactions.pendingFile(transactionID)) == 0 || errno == ENOENT else {
            throw ServerError(.store, "remove pending request: \(errnoText())")
        }
    }
}
