import SCEPCrypto
import FoundationEssentials
import Glibc

/// The diagnostic log: one line per event on standard error, which spawn-fcgi, systemd or the
/// web server collects. Separate from the audit log, and the only place free-text error detail
/// goes. Never given a challenge value or a secret.
public struct Diagnostics: Sendable {
    /// Severity, lowest first; `log.level` (or `--verbose` = info) sets the least that is written.
    public enum Level: Int, Sendable, Comparable, CaseIterable {
        case debug, info, notice, warning, error

        public var name: String {
            switch self {
            case .debug: return "debug"
            case .info: return "info"
            case .notice: return "notice"
            case .warning: return "warning"
            case .error: return "error"
            }
        }

        /// The names `log.level` accepts (`warn` for warning, as syslog and most servers spell it).
        public init?(configured text: String) {
            switch text.lowercased() {
            case "debug": self = .debug
            case "info": self = .info
            case "notice": self = .notice
            case "warn", "warning": self = .warning
            case "error", "err": self = .error
            default: return nil
            }
        }

        /// syslog(3) priorities: LOG_DEBUG 7, LOG_INFO 6, LOG_NOTICE 5, LOG_WARNING 4, LOG_ERR 3.
        var syslogPriority: Int { 7 - self.rawValue }

        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
    }

    private let minimum: Level

    /// The default writes notices (startup, reloads), warnings and errors; `verbose` adds one
    /// info line per request.
    public init(verbose: Bool = false) { self.minimum = verbose ? .info : .notice }

    public init(minimum: Level) { self.minimum = minimum }

    public func enabled(_ level: Level) -> Bool { level >= self.minimum }

    public func log(_ level: Level, _ message: String) {
        guard self.enabled(level) else { return }
        // The journal stamps time and pid itself and reads the priority from a `<N>` prefix
        // (sd-daemon(3)); elsewhere (a file, spawn-fcgi, a terminal) the line carries them.
        let line =
            Self.stderrIsJournal
            ? "<\(level.syslogPriority)>\(level.name): \(message)\n"
            : "scep-fcgi[\(getpid())] \(RFC3339.string(Date())) \(level.name): \(message)\n"
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
