import FoundationEssentials
import Glibc
import Dispatch
import DurableFiles
import SCEPCrypto
import SCEPStore
import SCEPLocking

/// One line of the OpenSSL `ca` database (`index.txt`):
/// `status <tab> expiry <tab> revocation <tab> serial <tab> file <tab> subject`.
///
/// OpenSSL writes `unknown` in the file column and never reads it; this store writes the issuing
/// CA's ``IssuerID`` there, so a CRL is built from the index alone.
struct IndexEntry: Sendable, Equatable {
    enum Status: String, Sendable { case valid = "V", revoked = "R", expired = "E" }

    var status: Status
    var expiry: Date
    /// For `R`: when, and why (`time[,reason]` in the file).
    var revokedAt: Date?
    var reason: RevocationReason?
    var serial: String
    var issuer: IssuerID?
    var subject: String

    init(status: Status, expiry: Date, revokedAt: Date?, reason: RevocationReason?, serial: String, issuer: IssuerID? = nil, subject: String) {
        self.status = status
        self.expiry = expiry
        self.revokedAt = revokedAt
        self.reason = reason
        self.serial = serial
        self.issuer = issuer
        self.subject = subject
    }

    /// The line of a newly stored certificate (`V`, its expiry, serial, issuer and subject).
    init(valid certificate: Certificate, issuer: IssuerID?) {
        self.init(
            status: .valid, expiry: certificate.notAfter, revokedAt: nil, reason: nil, serial: certificate.serialNumberHex, issuer: issuer,
            subject: certificate.subjectOneLine)
    }

    var line: String {
        var revocation = ""
        if let revokedAt = self.revokedAt, self.status == .revoked {
            revocation = IndexTime.string(revokedAt) + (self.reason.map { "," + $0.name } ?? "")
        }
        let subject = self.subject.map { $0 == "\t" || $0 == "\n" || $0 == "\r" ? " " : $0 }
        return "\(self.status.rawValue)\t\(IndexTime.string(self.expiry))\t\(revocation)\t\(self.serial)\t\(self.issuer?.hex ?? "unknown")\t\(String(subject))\n"
    }
}

/// `index.txt`, shared by every process serving a CA directory and by the `ca` commands.
///
/// Appends (one per issued certificate) take a shared `flock` on `index.txt.lock` and write one
/// line with a single `write(2)` on an `O_APPEND` descriptor; a revocation takes the lock
/// exclusively and replaces the file (temp + fsync + rename). The append descriptor is kept open,
/// and checked under the lock: once a revocation has replaced the file it has no links left and
/// is reopened. So no append can land in a replaced file, which is what loses lines when
/// `openssl ca -revoke` rewrites the index under a running server (it does not know this lock:
/// see docs/ca-layout.md).
///
/// Reads are cached: while the file keeps its inode and only grows, only the new tail is parsed.
///
/// Ownership: the append descriptor belongs to a ``Descriptor`` box, closed when the last thread
/// using it lets go; the lock's descriptors belong to its ``FileLock``.
final class IndexFile: Sendable {
    let path: String
    private let lock: FileLock
    private let cache = Locked<Cache>(Cache())
    private let appender = Locked<Descriptor?>(nil)
    /// Whether the cache was built once: until then a lookup scans the file for its one line
    /// rather than wait while another thread (a start's housekeeping) parses all of it.
    private let warm = Locked(false)
    /// Whether a background build of the cache was started (by the first cold lookup).
    private let warming = Locked(false)

    /// What was read of the file: its bytes, one parsed ``IndexLine`` per certificate pointing
    /// into them, and lookups by serial. Entries are made (Strings and all) only when asked for.
    struct Cache {
        var inode: UInt = 0
        var offset = 0
        var text: [UInt8] = []
        var lines: [IndexLine] = []
        var bySerial: [SerialKey: Int32] = [:]
        /// Positions in `lines` of the revoked ones: a CRL costs what is revoked, not what was issued.
        var revoked: Set<Int32> = []
        var issuers = IndexLineParser.IssuerCache()

        mutating func entry(_ position: Int32) -> IndexEntry {
            let line = self.lines[Int(position)]
            return self.text.withUnsafeBufferPointer { IndexLineParser.entry(line, in: $0, issuers: &self.issuers) }
        }

        /// Parses `tail` (complete lines) after what was read before.
        mutating func add(_ tail: [UInt8]) {
            let base = self.text.count
            self.text += tail
            // About 140 bytes a line: room for them all at once, not a dozen rehashes.
            let expected = self.lines.count + tail.count / 100
            self.lines.reserveCapacity(expected)
            self.bySerial.reserveCapacity(expected)
            var parsed: [IndexLine] = []
            self.text.withUnsafeBufferPointer { text in
                IndexLineParser.lines(UnsafeBufferPointer(rebasing: text[base...])) { line in
                    var line = line
                    line.serial = (line.serial.lowerBound + base)..<(line.serial.upperBound + base)
                    line.issuer = (line.issuer.lowerBound + base)..<(line.issuer.upperBound + base)
                    line.subject = (line.subject.lowerBound + base)..<(line.subject.upperBound + base)
                    parsed.append(line)
                }
            }
            for line in parsed {
                let key = line.normalizedSerial.flatMap(SerialKey.init)
                    ?? self.text.withUnsafeBufferPointer { SerialKey(hex: UnsafeBufferPointer(rebasing: $0[line.serial])) }
                guard let key else { continue }
                let position: Int32
                if let existing = self.bySerial[key] {
                    self.lines[Int(existing)] = line
                    position = existing
                } else {
                    position = Int32(self.lines.count)
                    self.bySerial[key] = position
                    self.lines.append(line)
                }
                if line.status == .revoked { self.revoked.insert(position) } else { self.revoked.remove(position) }
            }
        }
    }

    final class Descriptor: Sendable {
        let fd: Int32
        init(_ fd: Int32) { self.fd = fd }
        deinit { close(self.fd) }
    }

    init(path: String) {
        self.path = path
        self.lock = FileLock(path: path + ".lock")
    }

    /// Appends one line under the shared lock; with `sync`, durably (fdatasync). An issuance
    /// appends without: the journal's record is its durable write (``IssuanceJournal``).
    func append(_ entry: IndexEntry, sync: Bool) throws {
        var torn: (descriptor: Descriptor, end: off_t, written: Int)? = nil
        defer { if let torn { self.cutTornLine(torn.descriptor, end: torn.end, written: torn.written) } }
        try self.withLock(LOCK_SH) {
            let descriptor = try self.appendDescriptor()
            let line = Array(entry.line.utf8)
            let written = line.withUnsafeBytes { write(descriptor.fd, $0.baseAddress, $0.count) }
            guard written == line.count else {
                if written > 0 { torn = (descriptor, lseek(descriptor.fd, 0, SEEK_CUR), written) }
                throw StoreError("append to \(self.path): \(written < 0 ? errnoText() : "short write")")
            }
            guard !sync || fdatasync(descriptor.fd) == 0 else { throw StoreError("sync \(self.path): \(errnoText())") }
        }
    }

    /// A full disk took part of a line: under the exclusive lock, cut it off if it is still the
    /// end of the file (every other appender failed too, the usual case), so `openssl ca` and the
    /// next line see a well-formed index. (Appenders share the lock, so it is taken afresh here.)
    private func cutTornLine(_ descriptor: Descriptor, end: off_t, written: Int) {
        try? self.withLock(LOCK_EX) {
            var info = stat()
            if fstat(descriptor.fd, &info) == 0, info.st_size == end { _ = ftruncate(descriptor.fd, end - off_t(written)) }
        }
    }

    /// The append descriptor, reopened if a revocation replaced the file (called under the lock).
    private func appendDescriptor() throws -> Descriptor {
        try self.appender.withLock { current in
            var info = stat()
            if let open = current, fstat(open.fd, &info) == 0, info.st_nlink > 0 { return open }
            let fd = open(self.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            guard fd >= 0 else { throw StoreError("open \(self.path): \(errnoText())") }
            let descriptor = Descriptor(fd)
            current = descriptor
            return descriptor
        }
    }

    /// Replaces entries under the exclusive lock; `change` sees the current entries and returns
    /// the new ones (or throws to leave the file untouched).
    func rewrite<T>(_ change: (inout [IndexEntry]) throws -> T) throws -> T {
        try self.withLock(LOCK_EX) {
            var entries = try self.readAll()
            let result = try change(&entries)
            let text = entries.map(\.line).joined()
            let temporary = "\(self.path).tmp-\(getpid())"
            unlink(temporary)
            let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
            guard fd >= 0 else { throw StoreError("create \(temporary): \(errnoText())") }
            do {
                defer { close(fd) }
                try AtomicFile.writeAll(fd, Array(text.utf8), what: temporary)
                guard fsync(fd) == 0 else { throw StoreError("sync \(temporary): \(errnoText())") }
            } catch {
                unlink(temporary)
                throw error
            }
            guard rename(temporary, self.path) == 0 else {
                unlink(temporary)
                throw StoreError("replace \(self.path): \(errnoText())")
            }
            AtomicFile.syncDirectory(AtomicFile.directory(of: self.path))
            return result
        }
    }

    /// Every entry, in file order.
    func entries() throws -> [IndexEntry] {
        try self.refreshed { cache in (0..<Int32(cache.lines.count)).map { cache.entry($0) } }
    }

    /// The entry for a serial (upper-case hex), if any.
    func entry(serial: String) throws -> IndexEntry? {
        guard let key = SerialKey(serial) else { return nil }
        if !self.warm.withLock({ $0 }) {
            // Scanning is for the moments before the cache exists, not a way of life: the first
            // cold lookup has the cache built beside it (a server without CRLs to publish may
            // have nothing else that builds it).
            self.warmInBackground()
            if let found = try self.scan(serial: serial, key: key) { return found }
        }
        return try self.refreshed { cache in cache.bySerial[key].map { cache.entry($0) } }
    }

    /// Builds the cache now (a caller about to look up many serials).
    func load() throws { try self.refreshed { _ in } }

    private func warmInBackground() {
        let first = self.warming.withLock { started in
            defer { started = true }
            return !started
        }
        guard first else { return }
        DispatchQueue.global(qos: .utility).async { try? self.load() }
    }

    /// The last line whose serial column is `serial`, found without parsing the others (a few
    /// milliseconds for 200,000 lines, where parsing all of them takes a quarter of a second).
    /// Nil when not found this way (a serial written in another form, or none): the caller then
    /// asks the cache.
    private func scan(serial: String, key: SerialKey) throws -> IndexEntry? {
        var info = stat()
        guard stat(self.path, &info) == 0 else { return nil }
        let (bytes, _) = try self.read(from: 0, size: Int(info.st_size))
        let needle = Array("\t\(serial)\t".utf8)
        return bytes.withUnsafeBufferPointer { text -> IndexEntry? in
            guard let base = text.baseAddress else { return nil }
            // Each tab (memchr), then the bytes after it: about a million short hops for 200,000 lines.
            var last: Int? = nil
            var from = 0
            needle.withUnsafeBufferPointer { needle in
                while from + needle.count <= text.count, let hit = memchr(base + from, 0x09, text.count - from - needle.count + 1) {
                    let at = base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
                    if memcmp(base + at, needle.baseAddress!, needle.count) == 0 { last = at }
                    from = at + 1
                }
            }
            guard let at = last else { return nil }
            let start = text[..<at].lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0
            let end = text[at...].firstIndex(of: UInt8(ascii: "\n")) ?? text.count
            guard let line = IndexLineParser.line(text, start..<end),
                (line.normalizedSerial.flatMap(SerialKey.init) ?? SerialKey(hex: UnsafeBufferPointer(rebasing: text[line.serial]))) == key
            else { return nil }
            var issuers = IndexLineParser.IssuerCache()
            return IndexLineParser.entry(line, in: text, issuers: &issuers)
        }
    }

    /// The revoked entries, without looking at the others.
    func revokedEntries() throws -> [IndexEntry] {
        try self.refreshed { cache in cache.revoked.sorted().map { cache.entry($0) } }
    }

    /// When the newest revocation happened, from the parsed lines (no entry made).
    func latestRevocation() throws -> Date? {
        try self.refreshed { cache in
            cache.revoked.compactMap { cache.lines[Int($0)].revokedAt }.max().map { Date(timeIntervalSince1970: TimeInterval($0)) }
        }
    }

    /// `body` sees the cache brought up to date: the new tail parsed if the file only grew, all
    /// of it if it was replaced (a revocation) or shrank.
    private func refreshed<T>(_ body: (inout Cache) -> T) throws -> T {
        var info = stat()
        guard stat(self.path, &info) == 0 else {
            if errno == ENOENT {
                var empty = Cache()
                return body(&empty)
            }
            throw StoreError("stat \(self.path): \(errnoText())")
        }
        return try self.cache.withLock { cache in
            let inode = UInt(info.st_ino)
            if cache.inode != inode || Int(info.st_size) < cache.offset { cache = Cache() }
            cache.inode = inode
            if Int(info.st_size) > cache.offset {
                let (tail, consumed) = try self.read(from: cache.offset, size: Int(info.st_size))
                cache.add(tail)
                cache.offset += consumed
                if cache.offset == consumed { self.warm.withLock { $0 = true } }
            }
            return body(&cache)
        }
    }

    private func readAll() throws -> [IndexEntry] {
        var info = stat()
        guard stat(self.path, &info) == 0 else { return [] }
        var entries: [IndexEntry] = []
        try self.read(from: 0, size: Int(info.st_size)).0.withUnsafeBytes { bytes in IndexLineParser.entries(bytes) { entries.append($0) } }
        return entries
    }

    /// The complete lines from `offset` on, and how many bytes they span (`size` is what stat
    /// said; the file may have grown since, and what was added is read too).
    private func read(from offset: Int, size: Int) throws -> ([UInt8], Int) {
        let fd = open(self.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError("open \(self.path): \(errnoText())") }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: max(size - offset, 0) + 65536)
        var length = 0
        while true {
            if length == bytes.count { bytes += [UInt8](repeating: 0, count: bytes.count) }
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + length, $0.count - length, off_t(offset + length)) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw StoreError("read \(self.path): \(errnoText())") }
            if n == 0 { break }
            length += n
        }
        // A line being appended right now is left for the next read.
        let complete = bytes[0..<length].lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0
        bytes.removeSubrange(complete...)
        return (bytes, complete)
    }

    private func withLock<T>(_ operation: Int32, _ body: () throws -> T) throws -> T {
        do { return try self.lock.withLock(operation, body) } catch let error as FileError { throw StoreError("\(error)") }
    }
}
