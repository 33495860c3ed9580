import FoundationEssentials
import Glibc

/// A process as the kernel knows it: pid and start time (clock ticks after boot, field 22 of
/// /proc/PID/stat), which together never repeat while the machine runs.
package struct ProcessIdentity: Sendable {
    package let pid: Int32
    package let start: UInt64

    package init(pid: Int32, start: UInt64) {
        self.pid = pid
        self.start = start
    }

    package static let current = ProcessIdentity(pid: getpid(), start: startTime(of: getpid()) ?? 0)

    /// `PID-START`, as it appears in file names.
    package var tag: String { "\(self.pid)-\(self.start)" }

    /// Whether this is still the same running process: pids are reused, start times are not.
    package var isRunning: Bool { Self.startTime(of: self.pid) == self.start }

    /// The process of a `PID-START` tag, if it still runs.
    package static func running(tag: Substring) -> Bool {
        let parts = tag.split(separator: "-")
        guard parts.count == 2, let pid = Int32(parts[0]), let start = UInt64(parts[1]) else { return false }
        return ProcessIdentity(pid: pid, start: start).isRunning
    }

    package static func startTime(of pid: Int32) -> UInt64? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/stat") else {
            // No /proc: fall back to "the pid exists".
            return kill(pid, 0) == 0 || errno == EPERM ? 0 : nil
        }
        let text = String(decoding: data, as: UTF8.self)
        // The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }
}
