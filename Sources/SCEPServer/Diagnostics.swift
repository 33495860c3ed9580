import FoundationEssentials
import Glibc

/// The diagnostic log: one line per event on standard error, which spawn-fcgi, systemd or the
/// web server collects. Separate from the audit log, and the only place free-text error detail
/// goes. Never given a challenge value or a secret.
public struct Diagnostics: Sendable {
    /// `info` only with `--verbose`; `notice` (startup), `warning` and `error` always.
    public enum Level: String, Sendable {
        case info, notice, warning, error

        /// syslog(3) priorities: LOG_INFO 6, LOG_NOTICE 5, LOG_WARNING 4, LOG_ERR 3.
        var syslogPriority: Int {
            switch self {
            case .info: return 6
            case .notice: return 5
            case .warning: return 4
            case .error: return 3
            }
        }
    }

    private let minimum: Level
    public init(verbose: Bool = false) { self.minimum = verbose ? .info : .warning }

    public func log(_ level: Level, _ message: String) {
        if level == .info && self.minimum != .info { return }
        // The journal stamps time and pid itself and reads the priority from a `<N>` prefix
        // (sd-daemon(3)); elsewhere (a file, spawn-fcgi, a terminal) the line carries them.
        let line =
            Self.stderrIsJournal
            ? "<\(level.syslogPriority)>\(level.rawValue): \(message)\n"
            : "scep-fcgi[\(getpid())] \(RFC3339.string(Date())) \(level.rawValue): \(message)\n"
        _ = Array(line.utf8).withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }

    /// systemd sets `JOURNAL_STREAM=DEV:INODE` for the stream it connects to stderr; it is the
    /// journal only while stderr is still that stream (not redirected by a wrapper).
    static let stderrIsJournal: Bool = {
        guard let value = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":")
        var info = stat()
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]), fstat(2, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }()
}
