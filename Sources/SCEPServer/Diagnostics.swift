import FoundationEssentials
import Glibc

/// The diagnostic log: one line per event on standard error, which spawn-fcgi, systemd or the
/// web server collects. Separate from the audit log, and the only place free-text error detail
/// goes. Never given a challenge value or a secret.
public struct Diagnostics: Sendable {
    /// `info` only with `--verbose`; `notice` (startup), `warning` and `error` always.
    public enum Level: String, Sendable { case info, notice, warning, error }

    private let minimum: Level
    public init(verbose: Bool = false) { self.minimum = verbose ? .info : .warning }

    public func log(_ level: Level, _ message: String) {
        if level == .info && self.minimum != .info { return }
        let line = "scep-fcgi[\(getpid())] \(RFC3339.string(Date())) \(level.rawValue): \(message)\n"
        _ = Array(line.utf8).withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }
}
