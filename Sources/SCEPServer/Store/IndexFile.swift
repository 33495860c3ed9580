import FoundationEssentials
import Glibc
import SCEPCrypto
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

    init?(line: Substring) {
        let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
        guard fields.count >= 6, let status = Status(rawValue: String(fields[0])), let expiry = IndexTime.parse(fields[1]),
            let serial = SerialHex.normalize(String(fields[3]))
        else { return nil }
        self.status = status
        self.expiry = expiry
        self.serial = serial
        self.issuer = IssuerID(hex: String(fields[4]))
        self.subject = fields[5...].joined(separator: "\t")
        let revocation = fields[2].split(separator: ",")
        self.revokedAt = revocation.first.flatMap { IndexTime.parse($0) }
        self.reason = revocation.count > 1 ? RevocationReason(name: String(revocation[1])) : nil
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

/// `index.txt` times: UTCTime `YYMMDDHHMMSSZ` until 2049, GeneralizedTime after (RFC 5280 §4.1.2.5).
enum IndexTime {
    static func string(_ date: Date) -> String {
        let t = UTCTime(date.timeIntervalSince1970)
        let head = t.year < 2050 ? RFC3339.pad(t.year % 100, 2) : RFC3339.pad(t.year, 4)
        return head + [t.month, t.day, t.hour, t.minute, t.second].map { RFC3339.pad($0, 2) }.joined() + "Z"
    }

    static func parse(_ text: Substring) -> Date? {
        let digits = text.dropLast()
        guard text.last == "Z", digits.count == 12 || digits.count == 14, digits.allSatisfy(\.isNumber) else { return nil }
        let values = Array(digits)
        func number(_ from: Int, _ count: Int) -> Int32 { Int32(String(values[from..<(from + count)]))! }
        var parts = tm()
        var offset = 0
        if digits.count == 12 {
            let yy = number(0, 2)
            parts.tm_year = (yy < 50 ? 2000 + yy : 1900 + yy) - 1900
            offset = 2
        } else {
            parts.tm_year = number(0, 4) - 1900
            offset = 4
        }
        parts.tm_mon = number(offset, 2) - 1
        parts.tm_mday = number(offset + 2, 2)
        parts.tm_hour = number(offset + 4, 2)
        parts.tm_min = number(offset + 6, 2)
        parts.tm_sec = number(offset + 8, 2)
        return Date(timeIntervalSince1970: TimeInterval(timegm(&parts)))
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
/// using it lets go; lock descriptors are pooled and closed in `deinit`.
final class IndexFile: Sendable {
    let path: String
    private var lockPath: String { self.path + ".lock" }
    private let cache = Locked<Cache>(Cache())
    private let appender = Locked<Descriptor?>(nil)
    /// `flock` locks belong to an open file description, so each concurrent holder needs its own.
    private let lockDescriptors = Locked<[Int32]>([])

    struct Cache {
        var inode: UInt = 0
        var offset = 0
        var entries: [IndexEntry] = []
        var bySerial: [String: Int] = [:]
    }

    final class Descriptor: Sendable {
        let fd: Int32
        init(_ fd: Int32) { self.fd = fd }
        deinit { close(self.fd) }
    }

    init(path: String) { self.path = path }

    deinit {
        for fd in self.lockDescriptors.withLock({ $0 }) { close(fd) }
    }

    /// Appends one line durably (fdatasync) under the shared lock.
    func append(_ entry: IndexEntry) throws {
        var torn: (descriptor: Descriptor, end: off_t, written: Int)? = nil
        defer { if let torn { self.cutTornLine(torn.descriptor, end: torn.end, written: torn.written) } }
        try self.withLock(LOCK_SH) {
            let descriptor = try self.appendDescriptor()
            let line = Array(entry.line.utf8)
            let written = line.withUnsafeBytes { write(descriptor.fd, $0.baseAddress, $0.count) }
            guard written == line.count else {
                if written > 0 { torn = (descriptor, lseek(descriptor.fd, 0, SEEK_CUR), written) }
                throw ServerError(.store, "append to \(self.path): \(written < 0 ? errnoText() : "short write")")
            }
            guard fdatasync(descriptor.fd) == 0 else { throw ServerError(.store, "sync \(self.path): \(errnoText())") }
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
            guard fd >= 0 else { throw ServerError(.store, "open \(self.path): \(errnoText())") }
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
            guard fd >= 0 else { throw ServerError(.store, "create \(temporary): \(errnoText())") }
            do {
                defer { close(fd) }
                try AtomicFile.writeAll(fd, Array(text.utf8), what: temporary)
                guard fsync(fd) == 0 else { throw ServerError(.store, "sync \(temporary): \(errnoText())") }
            } catch {
                unlink(temporary)
                throw error
            }
            guard rename(temporary, self.path) == 0 else {
                unlink(temporary)
                throw ServerError(.store, "replace \(self.path): \(errnoText())")
            }
            AtomicFile.syncDirectory(AtomicFile.directory(of: self.path))
            return result
        }
    }

    /// Every entry, in file order.
    func entries() throws -> [IndexEntry] { try self.refreshed { $0.entries } }

    /// The entry for a serial (upper-case hex), if any.
    func entry(serial: String) throws -> IndexEntry? {
        try self.refreshed { cache in cache.bySerial[serial].map { cache.entries[$0] } }
    }

    private func refreshed<T>(_ body: (Cache) -> T) throws -> T {
        var info = stat()
        guard stat(self.path, &info) == 0 else {
            if errno == ENOENT { return body(Cache()) }
            throw ServerError(.store, "stat \(self.path): \(errnoText())")
        }
        return try self.cache.withLock { cache in
            let inode = UInt(info.st_ino)
            if cache.inode != inode || Int(info.st_size) < cache.offset { cache = Cache() }
            cache.inode = inode
            if Int(info.st_size) > cache.offset {
                let (tail, consumed) = try self.read(from: cache.offset)
                for line in tail.split(separator: "\n") {
                    guard let entry = IndexEntry(line: line) else { continue }
                    if let existing = cache.bySerial[entry.serial] {
                        cache.entries[existing] = entry
                    } else {
                        cache.bySerial[entry.serial] = cache.entries.count
                        cache.entries.append(entry)
                    }
                }
                cache.offset += consumed
            }
            return body(cache)
        }
    }

    private func readAll() throws -> [IndexEntry] {
        guard access(self.path, F_OK) == 0 else { return [] }
        return try self.read(from: 0).0.split(separator: "\n").compactMap { IndexEntry(line: $0) }
    }

    /// The complete lines from `offset` on, and how many bytes they span.
    private func read(from offset: Int) throws -> (Substring, Int) {
        let fd = open(self.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ServerError(.store, "open \(self.path): \(errnoText())") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var position = off_t(offset)
        while true {
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, position) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw ServerError(.store, "read \(self.path): \(errnoText())") }
            if n == 0 { break }
            bytes += buffer[0..<n]
            position += off_t(n)
        }
        // A line being appended right now is left for the next read.
        let complete = bytes.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0
        return (Substring(String(decoding: bytes[0..<complete], as: UTF8.self)), complete)
    }

    private func withLock<T>(_ operation: Int32, _ body: () throws -> T) throws -> T {
        var fd = self.lockDescriptors.withLock { $0.popLast() } ?? -1
        if fd < 0 {
            fd = open(self.lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw ServerError(.store, "open \(self.lockPath): \(errnoText())") }
        }
        while flock(fd, operation) != 0 {
            guard errno == EINTR else {
                close(fd)
                throw ServerError(.store, "lock \(self.lockPath): \(errnoText())")
            }
        }
        defer {
            flock(fd, LOCK_UN)
            self.lockDescriptors.withLock { pool in
                if pool.count < 64 { pool.append(fd) } else { close(fd) }
            }
        }
        return try body()
    }
}
