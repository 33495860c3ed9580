import FoundationEssentials
import Glibc
import DurableFiles
import SCEPCrypto
import SCEPStore

/// A transaction record as one text line (rejected transactions; claims of older versions):
/// `scep-fcgi-tx 1 STATE KEYHASH SERIAL|- UNIXTIME PID TRANSACTIONID`. The transactionID
/// (printable ASCII, spaces allowed) comes last and takes the rest of the line.
enum TransactionLine {
    static func text(_ record: TransactionRecord, pid: Int32 = 0) -> String {
        "scep-fcgi-tx 1 \(record.state.rawValue) \(record.keyHash) \(record.serial ?? "-") \(Int64(record.updated.timeIntervalSince1970)) \(pid) \(record.transactionID)\n"
    }

    static func parse(_ line: String) -> (record: TransactionRecord, pid: Int32)? {
        guard line.hasSuffix("\n") else { return nil }  // a record caught mid-write
        let fields = line.dropLast().split(separator: " ", maxSplits: 7, omittingEmptySubsequences: false)
        guard fields.count == 8, fields[0] == "scep-fcgi-tx", fields[1] == "1", let state = TransactionState(rawValue: String(fields[2])),
            let seconds = Int64(fields[5]), let pid = Int32(fields[6]), !fields[7].isEmpty
        else { return nil }
        let record = TransactionRecord(
            transactionID: String(fields[7]), keyHash: String(fields[3]), state: state, serial: fields[4] == "-" ? nil : String(fields[4]),
            updated: Date(timeIntervalSince1970: TimeInterval(seconds)))
        return (record, pid)
    }
}

/// `transactions/`: one directory entry per transactionID (named by its SHA-256), shared by every
/// process serving the CA directory (RFC 8894 §3.3.3 replay and polling).
///
/// Entries are hard links, so a transaction costs no inode of its own (ext4 inode allocation
/// was the one cost the benchmark showed for a file-per-claim):
///
/// - **in flight**: a link to this process's marker `transactions/.claim-PID-START-BOOT`; `link(2)`
///   fails with EEXIST, so of two processes claiming one transactionID only one succeeds;
/// - **issued**: a link to `issued/SERIAL.pem`: serial and key hash are read from the certificate,
///   and the time from its file;
/// - **pending**: a link to `pending/HASH.json`, which holds the key hash;
/// - **rejected**: a small file with one ``TransactionRecord/line`` (rare; written with fsync).
///
/// A state change links the new target under a temporary name and renames it over the entry.
/// None of this is synced on the issuance path (see FileCertificateStore for why that is safe).
///
/// A claim's lease is its process's life: on one host the death of the claimant is certain
/// knowledge (pid and start time), which a lease only approximates. Claims written as lines (by
/// older versions) also end after ``claimLifetime``.
struct TransactionDirectory: Sendable {
    let path: String
    let issuedPath: String
    let pendingPath: String
    /// `store.transaction_retention_days`.
    let retention: TimeInterval
    /// This process's claim marker.
    let marker: String
    /// A claim written as a record line (not a marker link) older than this is stale.
    static let claimLifetime: TimeInterval = 600

    init(layout: FileStoreLayout, retention: TimeInterval) throws {
        self.path = layout.transactionsPath
        self.issuedPath = layout.issuedPath
        self.pendingPath = layout.pendingPath
        self.retention = retention
        for path in [self.path, self.pendingPath] where access(path, F_OK) != 0 {
            guard mkdir(path, 0o750) == 0 || errno == EEXIST else { throw StoreError("create \(path): \(errnoText())") }
        }
        let me = ProcessIdentity.current
        self.marker = "\(self.path)/.claim-\(me.tag)"
        let fd = open(self.marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if fd >= 0 {
            defer { close(fd) }
            try AtomicFile.writeAll(fd, Array("scep-fcgi-claim \(me.pid) \(me.start) \(me.boot)\n".utf8), what: self.marker)
        } else if errno != EEXIST {
            throw StoreError("create \(self.marker): \(errnoText())")
        }
    }

    static func hashName(_ transactionID: String) -> String {
        HexEncoding.string((try? DigestAlgorithm.sha256.hash(Array(transactionID.utf8))) ?? [])
    }

    func entryPath(_ transactionID: String) -> String { self.path + "/" + Self.hashName(transactionID) }
    func pendingFile(_ transactionID: String) -> String { self.pendingPath + "/" + Self.hashName(transactionID) + ".json" }

    func claim(_ key: TransactionKey) throws -> ClaimResult {
        let entry = self.entryPath(key.transactionID)
        for _ in 0..<4 {
            if link(self.marker, entry) == 0 { return .claimed }
            guard errno == EEXIST else { throw StoreError("claim \(entry): \(errnoText())") }
            guard let (record, stale) = self.read(entry, key.transactionID) else { continue }  // gone meanwhile: try again
            if !stale { return .existing(record) }
            // Stale: move it aside; of several processes doing this at once, one rename succeeds.
            let aside = Self.asidePath(entry)
            if rename(entry, aside) == 0 { unlink(aside) }
        }
        throw StoreError("transaction \(key.transactionID): claim kept changing hands")
    }

    func update(_ key: TransactionKey, _ state: TransactionState, serial: String?) throws {
        let entry = self.entryPath(key.transactionID)
        switch state {
        case .inFlight:
            try self.relink(self.marker, to: entry)
        case .issued:
            guard let serial else { throw StoreError("transaction \(key.transactionID): issued without a serial") }
            try self.relink("\(self.issuedPath)/\(serial).pem", to: entry)
        case .pending:
            // The only record of a waiting request: durable before PENDING is answered.
            try self.relink(self.pendingFile(key.transactionID), to: entry)
            AtomicFile.syncDirectory(self.path)
        case .rejected:
            let record = TransactionRecord(transactionID: key.transactionID, keyHash: key.keyHash, state: .rejected)
            try AtomicFile.replace(entry, contents: Array(TransactionLine.text(record).utf8), mode: 0o644, sync: true)
        }
    }

    func release(_ key: TransactionKey) { unlink(self.entryPath(key.transactionID)) }

    /// A unique name to rename `entry` to, so that of several processes taking it over at once
    /// exactly one succeeds (``prune(olderThan:)`` removes leftovers by `.stale-` in the name).
    private static func asidePath(_ entry: String) -> String {
        "\(entry).stale-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    /// Takes over the entry of an issued transaction: it is renamed aside (of several processes
    /// doing this at once, one rename succeeds), checked to be the issued record of `serial`,
    /// and replaced by this process's claim.
    func supersede(_ key: TransactionKey, issued serial: String) throws -> Bool {
        let entry = self.entryPath(key.transactionID)
        let aside = Self.asidePath(entry)
        guard rename(entry, aside) == 0 else {
            if errno == ENOENT { return false }
            throw StoreError("supersede \(entry): \(errnoText())")
        }
        defer { unlink(aside) }
        guard let (record, _) = self.read(aside, key.transactionID), record.state == .issued, record.serial == serial else {
            // Not what the caller saw (somebody else moved first): put it back unless replaced meanwhile.
            _ = link(aside, entry)
            return false
        }
        return link(self.marker, entry) == 0
    }

    /// The record of a transactionID, unless past the retention.
    func record(_ transactionID: String) -> TransactionRecord? {
        guard let (record, _) = self.read(self.entryPath(transactionID), transactionID), !self.isExpired(record) else { return nil }
        return record
    }

    /// Drops issued and rejected entries older than `date`, leftovers of interrupted renames, and
    /// markers of processes that are gone and hold no claim.
    func prune(olderThan date: Date) -> Int {
        var removed = 0
        for name in (try? FileManager.default.contentsOfDirectory(atPath: self.path)) ?? [] {
            let entry = self.path + "/" + name
            var info = stat()
            guard lstat(entry, &info) == 0 else { continue }
            if name.hasPrefix(".claim-") {
                let content = FileManager.default.contents(atPath: entry).map { String(decoding: $0, as: UTF8.self) } ?? ""
                if info.st_nlink == 1, entry != self.marker, !Self.markerIsAlive(content) { unlink(entry) }
                continue
            }
            if name.hasPrefix(".tmp-") || name.contains(".stale-") {
                // A temporary file of a writer that is gone goes at once; anything else once old.
                let old = Date().timeIntervalSince1970 - TimeInterval(info.st_mtim.tv_sec) > Self.claimLifetime
                if old || AtomicFile.orphan(name) == true, unlink(entry) == 0 { removed += 1 }
                continue
            }
            // An issued or rejected record is as old as its file: a younger one is not read at all.
            if TimeInterval(info.st_mtim.tv_sec) >= date.timeIntervalSince1970 { continue }
            guard let (record, _) = self.read(entry, "") else { continue }
            if record.state == .issued || record.state == .rejected, record.updated < date, unlink(entry) == 0 { removed += 1 }
        }
        return removed
    }

    /// Reads an entry by what it links to; `stale` says whether a claim may take it over.
    private func read(_ entry: String, _ transactionID: String) -> (TransactionRecord, stale: Bool)? {
        guard let data = FileManager.default.contents(atPath: entry), !data.isEmpty else { return nil }
        let text = String(decoding: data.prefix(64), as: UTF8.self)
        if text.hasPrefix("scep-fcgi-claim ") {
            let record = TransactionRecord(transactionID: transactionID, keyHash: "", state: .inFlight)
            return (record, !Self.markerIsAlive(String(decoding: data, as: UTF8.self)))
        }
        if text.hasPrefix("-----BEGIN") {
            guard let certificate = try? Certificate.certificates(pemEncoded: Array(data)).first,
                let keyHash = try? DigestAlgorithm.sha256.hash(certificate.subjectPublicKeyInfoDER)
            else { return nil }
            var info = stat()
            let time = stat(entry, &info) == 0 ? TimeInterval(info.st_mtim.tv_sec) : 0
            let record = TransactionRecord(
                transactionID: transactionID, keyHash: HexEncoding.string(keyHash), state: .issued,
                serial: certificate.serialNumberHex, updated: Date(timeIntervalSince1970: time))
            return (record, self.isExpired(record))
        }
        if text.hasPrefix("{") {
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .secondsSince1970
            guard let pending = try? decoder.decode(PendingRequest.self, from: data) else { return nil }
            return (TransactionRecord(transactionID: pending.transactionID, keyHash: pending.keyHash, state: .pending, updated: pending.received), false)
        }
        guard let (record, pid) = TransactionLine.parse(String(decoding: data, as: UTF8.self)) else { return nil }
        if record.state == .inFlight {
            // A claim written as a line: stale when its process is gone or it is implausibly old.
            let dead = pid > 0 && kill(pid, 0) != 0 && errno == ESRCH
            return (record, dead || Date().timeIntervalSince(record.updated) > Self.claimLifetime)
        }
        return (record, self.isExpired(record))
    }

    /// Past the retention (housekeeping deletes such entries, but a CGI process never runs it).
    private func isExpired(_ record: TransactionRecord) -> Bool {
        (record.state == .issued || record.state == .rejected) && Date().timeIntervalSince(record.updated) > self.retention
    }

    /// Links `source` under a temporary name and renames it over `entry`: readers see the old or
    /// the new state, never none.
    private func relink(_ source: String, to entry: String) throws {
        let temporary = AtomicFile.temporaryPath(in: self.path)
        guard link(source, temporary) == 0 else { throw StoreError("link \(source): \(errnoText())") }
        guard rename(temporary, entry) == 0 else {
            unlink(temporary)
            throw StoreError("replace \(entry): \(errnoText())")
        }
    }

    /// Whether the process a marker's content (`scep-fcgi-claim PID START BOOT`; older versions
    /// wrote no BOOT) names is still the same running process: pids are reused, start times are
    /// not within one boot.
    static func markerIsAlive(_ content: String) -> Bool {
        let fields = content.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count >= 3, let pid = Int32(fields[1]), let start = UInt64(fields[2]) else { return false }
        return ProcessIdentity(pid: pid, start: start, boot: fields.count >= 4 ? String(fields[3]) : "").isRunning
    }
}
