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
/// writing process) and syncs this file alone, sharing that `fdatasync` with the other threads
/// that appended meanwhile (``GroupSync``). A kill -9 loses none of the unsynced writes: they are
/// in the kernel already. Only a power loss (or a kernel crash) can, and only what was written
/// since the last checkpoint, which is in this file: the first look after the machine comes back
/// (``restore(_:)``, from the file store's `recover()`) puts back what is missing. Which boot wrote
/// the records is in the file's first line (`/proc/sys/kernel/random/boot_id`), so a store
/// restarted on the same boot reads nothing.
///
/// A record's effects are written before the record, so every record before an offset had its
/// effects written before that offset was seen: a checkpoint notes the size, `syncfs`es the
/// filesystem, then drops the records before that size (``checkpoint(size:)``).
///
/// Format: a first line `scep-fcgi journal 1 boot=ID`, then records, each written as one
/// `write(2)` of `\n` + fields separated by tabs: `I OWNER ISSUER DER-BASE64` for an issuance (OWNER
/// is the process's `PID-START-BOOT`, ISSUER the ``IssuerID`` in hex or `unknown`), `A SERIAL` once its
/// audit line is written. The newline comes first, so a record torn by a power loss never glues
/// itself to the next one; a line that does not parse is skipped.
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
        case audited(serial: String)
    }

    /// This boot, as the kernel names it; "unknown" without /proc (every first look then restores).
    static var boot: String { ProcessIdentity.bootID }

    static var header: [UInt8] { Array("scep-fcgi journal 1 boot=\(Self.boot)".utf8) }

    init(path: String) {
        self.path = path
        self.lock = FileLock(path: path + ".lock")
    }

    // MARK: appending

    /// Appends the issuance record durably; returns the file's size after it (for the caller's
    /// checkpoint-by-size).
    @discardableResult
    func recordIssued(_ certificate: Certificate, issuer: IssuerID?, owner: String) throws -> Int {
        let line = "\nI\t\(owner)\t\(issuer?.hex ?? "unknown")\t\(Data(certificate.derEncoded).base64EncodedString())"
        let (descriptor, end) = try self.append(Array(line.utf8))
        do { try descriptor.group.sync() } catch { throw StoreError("\(self.path): \(error)") }
        return end
    }

    /// Notes that the certificate's audit line is written; not synced (see docs/ca-layout.md: a
    /// power loss that takes this record too makes the first look after it audit the certificate
    /// again, as withheld, which is what the unsynced removal of its marker did before).
    func recordAudited(serial: String) {
        _ = try? self.append(Array("\nA\t\(serial)".utf8))
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
                let bytes = try self.contents()
                guard bytes.count >= size, Self.bootOf(bytes) == Self.boot else { return false }
                try AtomicFile.replace(self.path, contents: Self.header + bytes[size...], mode: 0o640, sync: true)
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
                return SerialHex.normalize(fields[1]).map { .audited(serial: $0) }
            default:
                return nil
            }
        }
    }
}
