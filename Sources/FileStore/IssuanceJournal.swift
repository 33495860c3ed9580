import FoundationEssentials
import Glibc
import DurableFiles
import SCEPCrypto
import SCEPLocking
import SCEPStore

/// `journal` in the CA directory: the one durable write of an issuance.
///
/// An issuance writes its certificate file, its unaudited marker and its `index.txt` line without
/// syncing any of them, then appends one record here (the certificate in DER, its issuer, the
/// writing process). Once the audit log has the certificate's line (written without a sync), a
/// second record carries that line, and one `fdatasync` of this file makes both records durable,
/// shared with the other threads that appended meanwhile (``GroupSync``): the one durable write of
/// an enrollment. A kill -9 loses none of the unsynced writes: they are in the kernel already.
/// Only a power loss (or a kernel crash) can, and only what was written since the last
/// checkpoint, which is in this file: the first look after the machine comes back (``restore(_:)``,
/// from the file store's `recover()`) puts back what is missing, audit lines included. Which boot
/// wrote the records is in the file's first line (`/proc/sys/kernel/random/boot_id`), so a store
/// restarted on the same boot reads nothing.
///
/// A record's effects are written before the record, so every record before an offset had its
/// effects written before that offset was seen: a checkpoint notes the size, `syncfs`es the
/// filesystem, then drops the records before that size (``checkpoint(size:)``).
///
/// Format: a first line `scep-fcgi journal 1 boot=ID`, then records, each written as one
/// `write(2)` of `\n` + fields separated by tabs: `I OWNER ISSUER DER-BASE64` for an issuance (OWNER
/// is the process's `PID-START-BOOT`, ISSUER the ``IssuerID`` in hex or `unknown`), and once its
/// audit line is written `A SERIAL INODE END PATH-BASE64 LINE-BASE64` (the line, the log file it
/// went to and where it ends there), or `A SERIAL` when there is no line to keep. The newline
/// comes first, so a record torn by a power loss never glues itself to the next one; a line that
/// does not parse is skipped.
///
/// Appends share an `flock` of `journal.lock`; a checkpoint and a restore hold it exclusively and
/// replace the file, after which appenders reopen it (its old inode has no links left).
///
/// Ownership: the append descriptor belongs to a ``Descriptor`` box (with its ``GroupSync``),
/// closed when the last thread using it lets go.
final class IssuanceJournal: Sendable {
    let path: String
    private let lock: FileLock
    private let appender = Locked<Descriptor?>(nil)

    final class Descriptor: Sendable {
        let fd: Int32
        let group: GroupSync
        init(_ fd: Int32) {
            self.fd = fd
            self.group = GroupSync(descriptor: fd)
        }
        deinit { close(self.fd) }
    }

    /// One record of the journal.
    enum Record {
        case issued(Certificate, issuer: IssuerID?, owner: String)
        case audited(serial: String, line: WrittenAuditLine?)
    }

    /// This boot, as the kernel names it; "unknown" without /proc (every first look then restores).
    static var boot: String { ProcessIdentity.bootID }

    static var header: [UInt8] { Array("scep-fcgi journal 1 boot=\(Self.boot)".utf8) }

    init(path: String) {
        self.path = path
        self.lock = FileLock(path: path + ".lock")
    }

    // MARK: appending

    /// Appends the issuance record, durably with `sync` (else ``recordAudited(serial:line:)``'s
    /// sync covers it); returns the file's size after it (for the caller's checkpoint-by-size).
    @discardableResult
    func recordIssued(_ certificate: Certificate, issuer: IssuerID?, owner: String, sync: Bool) throws -> Int {
        let line = "\nI\t\(owner)\t\(issuer?.hex ?? "unknown")\t\(Data(certificate.derEncoded).base64EncodedString())"
        let (descriptor, end) = try self.append(Array(line.utf8))
        if sync { try self.sync(descriptor) }
        return end
    }

    /// Appends that the certificate's audit line is written, with the line, and syncs: this and
    /// the issuance record before it are durable when it returns.
    func recordAudited(serial: String, line: WrittenAuditLine) throws {
        let record = "\nA\t\(serial)\t\(line.inode)\t\(line.end)\t\(Data(line.path.utf8).base64EncodedString())\t\(Data(line.bytes).base64EncodedString())"
        let (descriptor, _) = try self.append(Array(record.utf8))
        try self.sync(descriptor)
    }

    /// Notes that a line the log synced itself is written (housekeeping's); not synced: a power
    /// loss that takes this record makes the first look after it audit the certificate again, as
    /// withheld.
    func recordAudited(serial: String) {
        _ = try? self.append(Array("\nA\t\(serial)".utf8))
    }

    private func sync(_ descriptor: Descriptor) throws {
        do { try descriptor.group.sync() } catch { throw StoreError("\(self.path): \(error)") }
    }

    private func append(_ bytes: [UInt8]) throws -> (Descriptor, Int) {
        do {
            return try self.lock.withLock(LOCK_SH) {
                let descriptor = try self.descriptor()
                let written = bytes.withUnsafeBytes { write(descriptor.fd, $0.baseAddress, $0.count) }
                // A short write (a full disk) leaves a fragment the next record's leading newline ends.
                guard written == bytes.count else { throw StoreError("append to \(self.path): \(written < 0 ? errnoText() : "short write")") }
                return (descriptor, Int(lseek(descriptor.fd, 0, SEEK_CUR)))
            }
        } catch let error as FileError { throw StoreError("\(error)") }
    }

    /// The append descriptor, reopened once a checkpoint replaced the file (called under the lock).
    private func descriptor() throws -> Descriptor {
        try self.appender.withLock { current in
            var info = stat()
            if let open = current, fstat(open.fd, &info) == 0, info.st_nlink > 0 { return open }
            if access(self.path, F_OK) != 0 {
                // First use: the header, durably (another process may make it first).
                do { try AtomicFile.create(self.path, contents: Self.header, mode: 0o640) } catch {
                    if access(self.path, F_OK) != 0 { throw StoreError("\(error)") }
                }
            }
            let fd = open(self.path, O_WRONLY | O_APPEND | O_CLOEXEC)
            guard fd >= 0 else { throw StoreError("open \(self.path): \(errnoText())") }
            let descriptor = Descriptor(fd)
            current = descriptor
            return descriptor
        }
    }

    // MARK: checkpoint and restore

    /// The audit logs that the records before `size` name (a checkpoint makes them durable too).
    /// Read in blocks, only the `A` records' path field decoded: a checkpoint runs once a minute
    /// over up to 64 MiB of records and must not parse every certificate in them.
    func auditLogs(before size: Int) -> Set<String> {
        let fd = open(self.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        guard Self.writtenThisBoot(fd) else { return [] }
        var paths: Set<String> = []
        var offset = 0
        var partial: [UInt8] = []
        while offset < size {
            let block = Self.read(fd, at: offset, count: min(1 << 16, size - offset))
            guard !block.isEmpty else { break }
            offset += block.count
            var lines = (partial + block).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            partial = Array(lines.removeLast())
            for line in lines where line.starts(with: [UInt8(ascii: "A"), UInt8(ascii: "\t")]) {
                let fields = line.split(separator: UInt8(ascii: "\t"), omittingEmptySubsequences: false)
                if fields.count == 6, let path = Data(base64Encoded: Data(fields[4])) { paths.insert(String(decoding: path, as: UTF8.self)) }
            }
        }
        return paths
    }

    /// Whether the open journal's first line names this boot (its header is well under 256 bytes).
    private static func writtenThisBoot(_ fd: Int32) -> Bool { Self.bootOf(Self.read(fd, at: 0, count: 256)) == Self.boot }

    /// Up to `count` bytes of `fd` from `offset` (fewer at the end of the file).
    private static func read(_ fd: Int32, at offset: Int, count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        return n > 0 ? Array(bytes[..<n]) : []
    }

    /// The file's size now, and whether it holds records (more than its header).
    func size() -> (bytes: Int, hasRecords: Bool) {
        var info = stat()
        guard stat(self.path, &info) == 0 else { return (0, false) }
        return (Int(info.st_size), Int(info.st_size) > Self.header.count)
    }

    /// Drops the records before `size`, whose effects the caller has made durable (`syncfs`) after
    /// noting that size; the records after it stay. Not when the file is another boot's (that is
    /// ``restore(_:)``'s). Returns whether it was done.
    func checkpoint(size: Int) throws -> Bool {
        do {
            return try self.lock.withLock(LOCK_EX) {
                // The header and what follows `size` only: the records before it are not read.
                let fd = open(self.path, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { return false }
                defer { close(fd) }
                var info = stat()
                guard fstat(fd, &info) == 0, Int(info.st_size) >= size, Self.writtenThisBoot(fd) else { return false }
                let tail = Self.read(fd, at: size, count: Int(info.st_size) - size)
                guard tail.count == Int(info.st_size) - size else { throw StoreError("read \(self.path): \(errnoText())") }
                try AtomicFile.replace(self.path, contents: Self.header + tail, mode: 0o640, sync: true)
                return true
            }
        } catch let error as FileError { throw StoreError("\(error)") }
    }

    /// When the records were written on another boot (the machine went down since): hands them
    /// to `body`, which puts back what is missing and makes it durable, then starts the file
    /// afresh for this boot. Appends wait meanwhile. Returns the records handed over (none when
    /// the file is this boot's).
    @discardableResult
    func restore(_ body: ([Record]) throws -> Void) throws -> Int {
        do {
            return try self.lock.withLock(LOCK_EX) {
                guard access(self.path, F_OK) == 0 else { return 0 }
                let bytes = try self.contents()
                if Self.bootOf(bytes) == Self.boot { return 0 }
                let records = Self.records(in: bytes)
                try body(records)
                try AtomicFile.replace(self.path, contents: Self.header, mode: 0o640, sync: true)
                return records.count
            }
        } catch let error as FileError { throw StoreError("\(error)") }
    }

    private func contents() throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: self.path) else {
            if access(self.path, F_OK) != 0 { return [] }
            throw StoreError("read \(self.path): \(errnoText())")
        }
        return Array(data)
    }

    static func bootOf(_ bytes: [UInt8]) -> String? {
        let first = bytes.prefix { $0 != UInt8(ascii: "\n") }
        let text = String(decoding: first, as: UTF8.self)
        let prefix = "scep-fcgi journal 1 boot="
        return text.hasPrefix(prefix) ? String(text.dropFirst(prefix.count)) : nil
    }

    /// The records that parse, in order (a torn or foreign line is skipped).
    static func records(in bytes: [UInt8]) -> [Record] {
        bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true).dropFirst().compactMap { line in
            let fields = line.split(separator: UInt8(ascii: "\t"), omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
            switch (fields.first, fields.count) {
            case ("I", 4):
                guard let der = Data(base64Encoded: fields[3]), let certificate = try? Certificate(derEncoded: Array(der)) else { return nil }
                return .issued(certificate, issuer: IssuerID(hex: fields[2]), owner: fields[1])
            case ("A", 2):
                return SerialHex.normalize(fields[1]).map { .audited(serial: $0, line: nil) }
            case ("A", 6):
                guard let serial = SerialHex.normalize(fields[1]), let inode = UInt64(fields[2]), let end = Int(fields[3]),
                    let path = Data(base64Encoded: fields[4]), let bytes = Data(base64Encoded: fields[5])
                else { return nil }
                return .audited(serial: serial, line: WrittenAuditLine(bytes: Array(bytes), path: String(decoding: path, as: UTF8.self), inode: inode, end: end))
            default:
                return nil
            }
        }
    }
}
