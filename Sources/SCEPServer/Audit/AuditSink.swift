import FoundationEssentials
import Glibc

/// The single choke point every audit record goes through.
public protocol AuditSink: Sendable {
    /// Writes the event durably; throws if it could not (the caller then withholds any certificate).
    func record(_ event: AuditEvent) throws
}

/// Append-only JSON lines, shared by every thread and process writing the same file.
///
/// The file is opened once with `O_APPEND`; each event is one `write(2)` of the whole line, which
/// the kernel keeps whole and unmixed between concurrent writers on a local filesystem. With
/// `sync`, `fdatasync` follows each line that records an enrollment decision (PKIOperation), so an
/// issued certificate's record survives a crash; GetCACaps/GetCACert lines are written the same way
/// but not synced one by one (the next synced line or the kernel flushes them).
public final class JSONLinesAuditSink: AuditSink, @unchecked Sendable {
    private let fd: Int32
    private let sync: Bool
    public let path: String

    public init(path: String, sync: Bool) throws {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw ServerError(.audit, "audit.path \(path) cannot be opened for appending: \(errnoText())") }
        self.fd = fd
        self.sync = sync
        self.path = path
    }

    deinit { close(self.fd) }

    public func record(_ event: AuditEvent) throws {
        let line = Array(event.jsonLine().utf8)
        let written = line.withUnsafeBytes { write(self.fd, $0.baseAddress, $0.count) }
        guard written == line.count else {
            throw ServerError(.audit, "audit write to \(self.path) failed: \(written < 0 ? errnoText() : "short write")")
        }
        if self.sync, event.operation == "PKIOperation", fdatasync(self.fd) != 0 {
            throw ServerError(.audit, "audit sync failed: \(errnoText())")
        }
    }
}
