import FoundationEssentials
import Glibc
import DurableFiles
import SCEPCrypto
import SCEPLocking
import SCEPStore

/// The CA directory as a store (docs/ca-layout.md), safe with many processes:
///
/// - `issued/SERIAL.pem`: temp file + `link(2)` (never overwriting), then one line appended to
///   `index.txt` (see ``IndexFile``), then one record in `journal`, the one durable write of an
///   issuance (see ``IssuanceJournal``); `issued/SERIAL.withheld` marks one never delivered.
/// - `transactions/`: one hard link per transactionID (see ``TransactionDirectory``), so two
///   processes never both issue for one transactionID. These entries get no sync of their own:
///   after a power loss one may be missing, and the client's retry is then issued anew, never
///   answered with a certificate that was not recorded.
/// - `pending/HASH.json`: requests waiting for an operator, fsynced before PENDING is answered.
///
/// Nothing from a request reaches a path: names are serials (hex) and hashes.
public final class FileCertificateStore: CertificateStore, Sendable {
    public let directory: FileStoreLayout
    let index: IndexFile
    let transactions: TransactionDirectory
    let journal: IssuanceJournal
    private let sweptIssued = Locked(false)
    /// Whether this process has looked at the journal for a previous boot's records.
    private let restored = Locked(false)
    /// A journal this large is checkpointed by the issuance that finds it so (else housekeeping does).
    static let journalLimit = 64 << 20

    /// The store in the CA directory `root`, creating what is missing (`issued/` and `index.txt`
    /// as `ca init` does, `transactions/`, `pending/`).
    public init(root: String, retentionDays: Int = 30) throws {
        let layout = FileStoreLayout(root: root)
        self.directory = layout
        try Self.prepare(layout)
        self.index = IndexFile(path: layout.indexPath)
        self.journal = IssuanceJournal(path: layout.journalPath)
        self.transactions = try TransactionDirectory(layout: layout, retention: Double(retentionDays) * 86400)
    }

    /// Modes (docs/ca-layout.md): the index and the issued certificates name every device, so
    /// neither is readable by others.
    private static func prepare(_ layout: FileStoreLayout) throws {
        guard access(layout.path, F_OK) == 0 else { throw StoreError("\(layout.path): no such CA directory (scep-fcgi ca init creates it)") }
        for path in [layout.issuedPath, layout.scratchPath] where access(path, F_OK) != 0 {
            guard mkdir(path, 0o750) == 0 || errno == EEXIST else { throw StoreError("create \(path): \(errnoText())") }
        }
        for (path, contents) in [(layout.indexPath, ""), (layout.indexPath + ".attr", "unique_subject = no\n")] where access(path, F_OK) != 0 {
            do { try AtomicFile.create(path, contents: Array(contents.utf8), mode: 0o640) } catch {
                if access(path, F_OK) != 0 { throw StoreError("\(error)") }  // else another process made it first
            }
        }
    }

    /// What would stop this store from taking certificates (a server refuses to start), one line
    /// each; with `checking` (`scep-fcgi check`) also what may already have lost lines.
    public func problems(checking: Bool = false) -> [String] {
        var problems: [String] = []
        if access(self.directory.issuedPath, W_OK) != 0 { problems.append("\(self.directory.issuedPath): not writable by this user") }
        if access(self.directory.indexPath, W_OK) != 0 { problems.append("\(self.directory.indexPath): not writable by this user") }
        // `openssl ca` rewrites index.txt without the lock this store's writers take, and leaves
        // index.txt.old behind: lines appended meanwhile may be lost.
        if checking, access(self.directory.indexPath + ".old", F_OK) == 0 {
            problems.append(
                "\(self.directory.indexPath).old exists: index.txt was rewritten by `openssl ca`, which is not supported while "
                    + "scep-fcgi serves (use scep-fcgi ca revoke / ca crl); compare the two files, then remove index.txt.old")
        }
        return problems
    }

    // MARK: transactions

    public func claim(_ key: TransactionKey, lease: TimeInterval) throws -> ClaimResult { try self.transactions.claim(key) }

    public func supersede(_ key: TransactionKey, issued serial: String, lease: TimeInterval) throws -> Bool {
        try self.transactions.supersede(key, issued: serial)
    }

    public func release(_ key: TransactionKey) { self.transactions.release(key) }

    public func transaction(_ transactionID: String) throws -> TransactionRecord? { self.transactions.record(transactionID) }

    /// One process at a time (the others skip their turn), and nothing that lists `issued/`
    /// after this process's first turn: what it costs does not grow with the CA's age.
    public func maintain(now: Date) -> StoreMaintenance {
        guard let lock = try? RunLock(path: self.maintenanceLockPath) else { return StoreMaintenance() }
        defer { lock.release() }
        // Failures come back at the next turn; an issuance never waits for this one.
        _ = try? self.checkpoint()
        let leftovers = self.removeOrphans()
        let pruned = self.transactions.prune(olderThan: now.addingTimeInterval(-self.transactions.retention))
        return StoreMaintenance(transactionsPruned: pruned, leftoversRemoved: leftovers)
    }

    /// Held (non-blocking) by the one process doing the store's upkeep or a checkpoint.
    private var maintenanceLockPath: String { self.directory.path + "/.maintenance.lock" }

    /// `.JOB.lock` in the CA directory, under a non-blocking `flock` (`job` is a fixed name, never input).
    public func exclusively<T>(_ job: String, _ body: () throws -> T) throws -> T? {
        let lock: RunLock?
        do { lock = try RunLock(path: "\(self.directory.path)/.\(job).lock") } catch { throw StoreError("\(error)") }
        guard let lock else { return nil }
        defer { lock.release() }
        return try body()
    }

    public func healthProblem() -> String? {
        FileHealth.problem(writing: self.directory.indexPath, prefix: "store")
            ?? self.journalProblem()
            ?? FileHealth.problem(writing: self.directory.issuedPath, prefix: "store", directory: true)
            ?? FileHealth.problem(writing: self.directory.transactionsPath, prefix: "store", directory: true)
    }

    /// The journal (once it exists) must be a regular file this process can append to.
    private func journalProblem() -> String? {
        guard access(self.journal.path, F_OK) == 0 else { return nil }
        var info = stat()
        if stat(self.journal.path, &info) != 0 || (info.st_mode & S_IFMT) != S_IFREG { return "store-not-writable" }
        return FileHealth.problem(writing: self.journal.path, prefix: "store")
    }

    static func hashName(_ transactionID: String) -> String { TransactionDirectory.hashName(transactionID) }

    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        return Array(try encoder.encode(value)) + [UInt8(ascii: "\n")]
    }

    // MARK: issuance

    /// The journal record of ``audited(serial:line:)`` is the enrollment's one durable write.
    public var sealsWithAuditLine: Bool { true }

    public func commit(_ certificate: Certificate, issuer: IssuerID, transaction: TransactionKey, durableNow: Bool) throws {
        let serial = certificate.serialNumberHex
        // The file name is the serial only (hex): nothing from the request reaches a path.
        // The unaudited marker (a second link to the same file) exists before issued/SERIAL.pem
        // does, and goes once the certificate's audit record is written (``audited(serial:line:)``):
        // whatever kills the process in between, ``unaudited()`` finds the certificate.
        // None of these writes is synced: the journal's records, written after them, are (a
        // checkpoint relies on that order), at ``audited(serial:line:)`` or now with `durableNow`.
        try self.ensureUnauditedDirectory()
        let marker = self.unauditedMarker(serial)
        try AtomicFile.create(
            self.certificatePath(serial), contents: Array(certificate.pemEncoded.utf8), mode: 0o644, intent: marker,
            scratch: self.directory.scratchPath, sync: false)
        do {
            try self.index.append(IndexEntry(valid: certificate, issuer: issuer), sync: false)
        } catch {
            // Not recorded, so never delivered: no issued/ file may remain without its index line.
            unlink(self.certificatePath(serial))
            unlink(marker)
            throw error
        }
        let size: Int
        do { size = try self.journal.recordIssued(certificate, issuer: issuer, owner: ProcessIdentity.current.tag, sync: durableNow) } catch {
            // In the index but not durably: never delivered, and audited as withheld by housekeeping.
            try? self.markUnaudited(serial: serial, as: Self.storeFailedSuffix)
            throw error
        }
        if size > Self.journalLimit, let lock = try? RunLock(path: self.maintenanceLockPath) {
            defer { lock.release() }
            _ = try? self.checkpoint()
        }
    }

    /// Makes what the journal's records would restore durable where it lies (one `syncfs` of each
    /// filesystem involved, instead of three syncs per certificate), then drops those records.
    /// The audit lines the records carry are made durable too: their logs' filesystems are synced.
    func checkpoint() throws -> Bool {
        try self.restoreAfterPowerLoss()
        let (size, hasRecords) = self.journal.size()
        guard hasRecords else { return false }
        try self.syncFilesystems(also: self.journal.auditLogs(before: size).map(AuditLogProbe.directory(of:)))
        return try self.journal.checkpoint(size: size)
    }

    /// `syncfs` of the CA directory's filesystem, of `issued/`'s if it is another one, and of those
    /// holding `also` (the audit logs' directories).
    private func syncFilesystems(also: [String] = []) throws {
        var devices: Set<UInt> = []
        for path in [self.directory.path, self.directory.issuedPath, self.unauditedDirectory] + also {
            var info = stat()
            guard stat(path, &info) == 0, devices.insert(UInt(info.st_dev)).inserted else { continue }
            do { try syncFilesystem(containing: path) } catch { throw StoreError("\(error)") }
        }
    }

    /// After the machine went down (the journal is another boot's), puts back what its records
    /// say was issued and a power loss may have taken: the certificate file, the index line; for a
    /// certificate whose audit was not recorded, a marker (`SERIAL.restored`) so that housekeeping
    /// audits it as withheld; for an audit line the log no longer has, a note `SERIAL.lostline`
    /// holding it, which housekeeping writes again. Once per process; a start on the same boot
    /// reads one line.
    func restoreAfterPowerLoss() throws {
        guard !self.restored.withLock({ $0 }) else { return }
        try self.journal.restore { records in
            var audited: Set<String> = []
            for case let .audited(serial, line) in records {
                audited.insert(serial)
                guard let line, !AuditLogProbe.has(line) else { continue }
                try self.ensureUnauditedDirectory()
                try AtomicFile.replace(
                    self.unauditedDirectory + "/\(serial).\(Self.lostLineSuffix)", contents: line.bytes, mode: 0o640, sync: false,
                    scratch: self.directory.scratchPath)
            }
            try self.index.load()  // many lookups follow: one parse, not one scan each
            for case let .issued(certificate, issuer, _) in records {
                let serial = certificate.serialNumberHex
                let path = self.certificatePath(serial)
                let stored = FileManager.default.contents(atPath: path).flatMap { try? Certificate.certificates(pemEncoded: Array($0)).first }
                if stored?.derEncoded != certificate.derEncoded {
                    try AtomicFile.replace(path, contents: Array(certificate.pemEncoded.utf8), mode: 0o644, sync: false, scratch: self.directory.scratchPath)
                }
                if try self.index.entry(serial: serial) == nil { try self.index.append(IndexEntry(valid: certificate, issuer: issuer), sync: false) }
                if !audited.contains(serial), self.markers(of: serial).isEmpty {
                    try self.ensureUnauditedDirectory()
                    let marker = self.unauditedDirectory + "/\(serial).\(Self.restoredSuffix)"
                    guard link(path, marker) == 0 || errno == EEXIST else { throw StoreError("mark \(marker): \(errnoText())") }
                }
            }
            try self.syncFilesystems()
        }
        self.restored.withLock { $0 = true }
    }

    /// Marker suffixes besides a live process's `PID-START-BOOT`: the audit write failed, the store's
    /// durable write failed, put back after a power loss.
    static let auditFailedSuffix = "failed"
    static let storeFailedSuffix = "storefailed"
    static let restoredSuffix = "restored"
    /// A note holding an audit line a power loss took from the log (not a link to the certificate).
    static let lostLineSuffix = "lostline"

    public func issued(_ key: TransactionKey, serial: String) throws {
        try self.transactions.update(key, .issued, serial: serial)
        // An approved request's file; absent (ENOENT) on every other enrollment.
        try self.removePending(key.transactionID)
    }

    public func withhold(serial: String, auditLineWritten: Bool) throws {
        try self.markWithheld(serial)
        if !auditLineWritten { try self.markUnaudited(serial: serial, as: Self.auditFailedSuffix) }
    }

    /// `issued/SERIAL.withheld`, durably: the certificate is never delivered.
    private func markWithheld(_ serial: String) throws {
        try AtomicFile.replace(self.withheldPath(serial), contents: Array("withheld\n".utf8), mode: 0o644, sync: true, scratch: self.directory.scratchPath)
    }

    /// On every delivered enrollment: one unlink of the note this process made, no directory
    /// listing (any other note of the serial, a dead process's or a failed write's, goes too),
    /// then the journal record with the line, synced: the enrollment's one durable write. When it
    /// fails, the certificate gets a `store-failed` note (housekeeping audits it as withheld).
    /// Without a line (housekeeping's, synced by the log itself) the record is not synced and
    /// cannot fail the call: a power loss that takes it audits the certificate again, as withheld.
    public func audited(serial: String, line: WrittenAuditLine?) throws {
        if unlink(self.unauditedMarker(serial)) != 0 {
            for name in self.markers(of: serial) { unlink(self.unauditedDirectory + "/" + name) }
        }
        guard let line else {
            self.journal.recordAudited(serial: serial)
            return
        }
        do { try self.journal.recordAudited(serial: serial, line: line) } catch {
            try? self.markUnaudited(serial: serial, as: Self.storeFailedSuffix)
            throw error
        }
    }

    public func unaudited() throws -> [UnauditedCertificate] {
        try self.recover().map { note in
            if note.cause == .lineLost { return self.lostLine(serial: note.serial) }
            do {
                return UnauditedCertificate(serial: note.serial, cause: note.cause, certificate: try self.reconcile(serial: note.serial))
            } catch {
                return UnauditedCertificate(serial: note.serial, cause: note.cause, certificate: nil, problem: "\(error)")
            }
        }
    }

    var unauditedDirectory: String { self.directory.unauditedPath }

    private func ensureUnauditedDirectory() throws {
        guard mkdir(self.unauditedDirectory, 0o750) == 0 || errno == EEXIST else {
            throw StoreError("create \(self.unauditedDirectory): \(errnoText())")
        }
    }

    /// The markers of `serial` (normally one: `SERIAL.PID-START-BOOT`, or `SERIAL.failed`).
    private func markers(of serial: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: self.unauditedDirectory)) ?? []).filter { $0.hasPrefix(serial + ".") }
    }

    /// This process's note for `serial`, made by ``commit(_:issuer:transaction:)``.
    private func unauditedMarker(_ serial: String) -> String {
        self.unauditedDirectory + "/\(serial).\(ProcessIdentity.current.tag)"
    }

    /// Turns the serial's note into `SERIAL.SUFFIX` (``auditFailedSuffix``, ``storeFailedSuffix``),
    /// which housekeeping picks up while this process still runs.
    private func markUnaudited(serial: String, as suffix: String) throws {
        try self.ensureUnauditedDirectory()
        let failed = self.unauditedDirectory + "/\(serial).\(suffix)"
        for name in self.markers(of: serial) where !name.hasSuffix("." + suffix) && !name.hasSuffix("." + Self.lostLineSuffix) {
            guard rename(self.unauditedDirectory + "/" + name, failed) == 0 else { throw StoreError("mark \(failed): \(errnoText())") }
        }
        if self.markers(of: serial).isEmpty {
            guard link(self.certificatePath(serial), failed) == 0 else { throw StoreError("mark \(failed): \(errnoText())") }
        }
    }

    /// Crash recovery, the file store's own: the notes that need an audit line (those of dead
    /// processes and failed audit writes, not those of requests still in progress).
    public func recover() throws -> [(serial: String, cause: UnauditedCertificate.Cause)] {
        // A journal that cannot be read does not stop the notes below from being audited; it is
        // tried again next time, and health reports it meanwhile.
        try? self.restoreAfterPowerLoss()
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: self.unauditedDirectory) } catch {
            if access(self.unauditedDirectory, F_OK) != 0 { return [] }
            throw StoreError("list \(self.unauditedDirectory): \(error)")
        }
        return names.compactMap { name -> (serial: String, cause: UnauditedCertificate.Cause)? in
            guard let dot = name.firstIndex(of: "."), !name.hasPrefix(".") else { return nil }
            let serial = String(name[..<dot])
            let owner = name[name.index(after: dot)...]
            guard serial.allSatisfy(\.isHexDigit) else { return nil }
            switch owner {
            case Self.auditFailedSuffix: return (serial, .auditFailed)
            case Self.storeFailedSuffix: return (serial, .storeFailed)
            case Self.restoredSuffix: return (serial, .crashed)
            case Self.lostLineSuffix: return (serial, .lineLost)
            default: break
            }
            // Still being worked on by a live process (an Intune notification may take a while).
            return ProcessIdentity.running(tag: owner) ? nil : (serial, .crashed)
        }.sorted { $0.serial < $1.serial }
    }

    /// A line a power loss took from the log, as the journal kept it; the certificate stays as it is
    /// (put back by the restore, and maybe delivered).
    private func lostLine(serial: String) -> UnauditedCertificate {
        let note = self.unauditedDirectory + "/\(serial).\(Self.lostLineSuffix)"
        guard let bytes = FileManager.default.contents(atPath: note) else {
            return UnauditedCertificate(serial: serial, cause: .lineLost, certificate: nil, problem: "read \(note): \(errnoText())")
        }
        let certificate = try? self.certificate(serial: serial)?.certificate
        return UnauditedCertificate(serial: serial, cause: .lineLost, certificate: certificate, lostLine: Array(bytes))
    }

    /// Completes what a crash left half done (issued file, index line) and marks it withheld.
    private func reconcile(serial: String) throws -> Certificate? {
        guard let name = self.markers(of: serial).first(where: { !$0.hasSuffix("." + Self.lostLineSuffix) }) else { return nil }
        let marker = self.unauditedDirectory + "/" + name
        guard let pem = FileManager.default.contents(atPath: marker), let certificate = try? Certificate.certificates(pemEncoded: Array(pem)).first else {
            unlink(marker)
            return nil
        }
        // Killed between the marker and issued/SERIAL.pem, or between the file and its index line.
        if access(self.certificatePath(serial), F_OK) != 0, link(marker, self.certificatePath(serial)) != 0, errno != EEXIST {
            throw StoreError("restore \(self.certificatePath(serial)): \(errnoText())")
        }
        // The issuer is not in the note: a CRL finds it from the certificate (as for imported entries).
        if try self.index.entry(serial: serial) == nil { try self.index.append(IndexEntry(valid: certificate, issuer: nil), sync: true) }
        try self.markWithheld(serial)
        return certificate
    }

    /// Temporary files of writers that died; returns how many were removed.
    func removeOrphans() -> Int {
        let swept = [self.directory.path, self.directory.scratchPath, self.directory.pendingPath, self.directory.crlPath, self.unauditedDirectory]
            .reduce(0) { $0 + AtomicFile.removeOrphans(in: $1) }
        return swept + self.sweepLegacyTemporaries()
    }

    /// Older versions made their temporary files in issued/ itself: it is swept once, ever (a
    /// marker in issued/.tmp says so), not at every start: listing 200,000 names is not free.
    private func sweepLegacyTemporaries() -> Int {
        let marker = self.directory.scratchPath + "/.legacy-swept"
        let first = self.sweptIssued.withLock { swept in
            defer { swept = true }
            return !swept
        }
        guard first, access(marker, F_OK) != 0 else { return 0 }
        let (removed, live) = AtomicFile.sweep(self.directory.issuedPath)
        // Only when no temporary file of a live older process is left to sweep later.
        if live == 0 { try? AtomicFile.create(marker, contents: [], mode: 0o640) }
        return removed
    }

    // MARK: certificates

    public func certificate(serial: String) throws -> StoredCertificate? {
        guard let serial = SerialHex.normalize(serial), let entry = try self.index.entry(serial: serial),
            let pem = FileManager.default.contents(atPath: self.certificatePath(serial)),
            let certificate = try? Certificate.certificates(pemEncoded: Array(pem)).first
        else { return nil }
        return StoredCertificate(certificate: certificate, status: self.status(entry))
    }

    public func certificates() throws -> [CertificateEntry] {
        // One pass over issued/ for the withheld markers, not one access(2) per certificate.
        let withheld = Self.names(in: self.directory.issuedPath, suffix: ".withheld")
        return try self.index.entries().map { self.summary($0, withheld: withheld.contains($0.serial)) }
    }

    /// The names in `directory` ending in `suffix`, without it (readdir: a String only for those).
    static func names(in directory: String, suffix: String) -> Set<String> {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        let tail = Array(suffix.utf8)
        var found: Set<String> = []
        while let entry = readdir(dir) {
            withUnsafeBytes(of: entry.pointee.d_name) { raw in
                let name = raw.bindMemory(to: UInt8.self)
                let length = name.firstIndex(of: 0) ?? name.count
                guard length > tail.count, name[(length - tail.count)..<length].elementsEqual(tail) else { return }
                found.insert(String(decoding: name[0..<(length - tail.count)], as: UTF8.self))
            }
        }
        return found
    }

    public func certificates(subject: String) throws -> [CertificateEntry] {
        try self.index.entries().filter { $0.subject == subject }.map { self.summary($0) }
    }

    public func revoke(serial: String, reason: RevocationReason?, at date: Date) throws -> StoreRevocation {
        guard let serial = SerialHex.normalize(serial) else { return .unknown }
        // Read first: a serial that is unknown or already revoked needs no rewrite of the index.
        guard let entry = try self.index.entry(serial: serial) else { return .unknown }
        if entry.status == .revoked { return .alreadyRevoked(self.summary(entry)) }
        let result: (IndexEntry, Bool)? = try self.index.rewrite { entries in
            guard let i = entries.firstIndex(where: { $0.serial == serial }) else { return nil }
            guard entries[i].status != .revoked else { return (entries[i], false) }
            entries[i].status = .revoked
            entries[i].revokedAt = date
            entries[i].reason = reason
            return (entries[i], true)
        }
        guard let (changed, new) = result else { return .unknown }
        return new ? .revoked(self.summary(changed)) : .alreadyRevoked(self.summary(changed))
    }

    public func revoked() throws -> [RevokedEntry] {
        try self.index.revokedEntries().map { entry in
            RevokedEntry(serial: entry.serial, revokedAt: entry.revokedAt ?? Date(timeIntervalSince1970: 0), reason: entry.reason, issuer: entry.issuer)
        }
    }

    public func latestRevocation() throws -> Date? { try self.index.latestRevocation() }

    /// `crl/ISSUER.crlnumber`: the next number in hex (OpenSSL's crlnumber convention), taken
    /// under an exclusive `flock` of the file itself and replaced durably before it is handed out.
    public func nextCRLNumber(issuer: IssuerID, atLeast: UInt64) throws -> UInt64 {
        let path = "\(self.directory.crlPath)/\(issuer.hex).crlnumber"
        return try self.inCRLDirectory(locking: path) {
            let text = FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } ?? ""
            let number = max(UInt64(text.trimmedWhitespace, radix: 16) ?? 1, atLeast, 1)
            try AtomicFile.replace(path, contents: Array((String(number + 1, radix: 16, uppercase: true) + "\n").utf8), mode: 0o644, sync: true)
            return number
        }
    }

    /// `crl/ISSUER.newest`: the number in hex on the first line, then the DER; replaced durably
    /// under an `flock` of its `.lock`, only by a higher number.
    public func keepCRL(_ crl: [UInt8], number: UInt64, issuer: IssuerID) throws {
        let path = self.newestCRLPath(issuer)
        try self.inCRLDirectory(locking: path) {
            if let kept = Self.keptCRL(at: path), kept.number >= number { return }
            try AtomicFile.replace(path, contents: Array((String(number, radix: 16, uppercase: true) + "\n").utf8) + crl, mode: 0o644, sync: true)
        }
    }

    /// Runs `body` with `crl/` created and an exclusive `flock` of `path.lock` held (waited for).
    private func inCRLDirectory<T>(locking path: String, _ body: () throws -> T) throws -> T {
        guard mkdir(self.directory.crlPath, 0o755) == 0 || errno == EEXIST else {
            throw StoreError("create \(self.directory.crlPath): \(errnoText())")
        }
        let lock: RunLock?
        do { lock = try RunLock(path: path + ".lock", wait: true, mode: 0o644) } catch { throw StoreError("\(error)") }
        defer { lock?.release() }
        return try body()
    }

    public func newestCRL(issuer: IssuerID) throws -> [UInt8]? { Self.keptCRL(at: self.newestCRLPath(issuer))?.der }

    private func newestCRLPath(_ issuer: IssuerID) -> String { "\(self.directory.crlPath)/\(issuer.hex).newest" }

    private static func keptCRL(at path: String) -> (number: UInt64, der: [UInt8])? {
        guard let data = FileManager.default.contents(atPath: path), let newline = data.firstIndex(of: 0x0A),
            let number = UInt64(String(decoding: data[..<newline], as: UTF8.self), radix: 16)
        else { return nil }
        return (number, Array(data[(newline + 1)...]))
    }

    private func summary(_ entry: IndexEntry, withheld: Bool? = nil) -> CertificateEntry {
        CertificateEntry(serial: entry.serial, subject: entry.subject, notAfter: entry.expiry, status: self.status(entry, withheld: withheld), issuer: entry.issuer)
    }

    /// `withheld`: whether its marker exists, when the caller already knows.
    private func status(_ entry: IndexEntry, withheld: Bool? = nil) -> CertificateStatus {
        switch entry.status {
        case .revoked: return .revoked(at: entry.revokedAt ?? Date(timeIntervalSince1970: 0), reason: entry.reason)
        case .expired: return .expired
        case .valid:
            if withheld ?? (access(self.withheldPath(entry.serial), F_OK) == 0) { return .withheld }
            return entry.expiry < Date() ? .expired : .valid
        }
    }

    private func certificatePath(_ serial: String) -> String { "\(self.directory.issuedPath)/\(serial).pem" }
    private func withheldPath(_ serial: String) -> String { "\(self.directory.issuedPath)/\(serial).withheld" }

    // MARK: pending

    public func hold(_ request: PendingRequest) throws {
        try AtomicFile.replace(self.transactions.pendingFile(request.transactionID), contents: try Self.encode(request), mode: 0o644, sync: true)
        try self.transactions.update(request.key, .pending, serial: nil)
    }

    public func reject(_ key: TransactionKey) throws {
        try self.transactions.update(key, .rejected, serial: nil)
        try self.removePending(key.transactionID)
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

    private func removePending(_ transactionID: String) throws {
        guard unlink(self.transactions.pendingFile(transactionID)) == 0 || errno == ENOENT else {
            throw StoreError("remove pending request: \(errnoText())")
        }
    }
}
