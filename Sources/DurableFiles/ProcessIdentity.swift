import FoundationEssentials
import Glibc

/// A process as the kernel knows it: pid and start time (clock ticks after boot, field 22 of
/// /proc/PID/stat), which together never repeat while the machine runs, and the boot it runs in:
/// after a reboot an early service can get the same pid at the same tick as its predecessor, and
/// a note that survived the reboot must not pass for its own.
package struct ProcessIdentity: Sendable {
    package let pid: Int32
    package let start: UInt64
    /// The first 8 hex digits of the boot's id; empty in what older versions wrote (then the boot is not checked).
    package let boot: String

    package init(pid: Int32, start: UInt64, boot: String = "") {
        self.pid = pid
        self.start = start
        self.boot = boot
    }

    /// This boot, as the kernel names it (`/proc/sys/kernel/random/boot_id`); "unknown" without /proc.
    package static let bootID: String = {
        guard let data = FileManager.default.contents(atPath: "/proc/sys/kernel/random/boot_id") else { return "unknown" }
        let text = String(decoding: data, as: UTF8.self).filter { !$0.isWhitespace }
        return text.isEmpty ? "unknown" : text
    }()

    /// The short form of ``bootID`` in tags and claim markers (no dashes, 8 hex digits).
    package static let boot: String = String(bootID.filter(\.isHexDigit).prefix(8))

    package static let current = ProcessIdentity(pid: getpid(), start: startTime(of: getpid()) ?? 0, boot: Self.boot)

    /// `PID-START-BOOT` (`PID-START` without a boot), as it appears in file names.
    package var tag: String { self.boot.isEmpty ? "\(self.pid)-\(self.start)" : "\(self.pid)-\(self.start)-\(self.boot)" }

    /// Whether this is still the same running process: pids are reused, start times are not
    /// within one boot, and another boot's process is gone.
    package var isRunning: Bool { (self.boot.isEmpty || self.boot == Self.boot) && Self.startTime(of: self.pid) == self.start }

    /// The process of a `PID-START-BOOT` (or older `PID-START`) tag, if it still runs.
    package static func running(tag: Substring) -> Bool {
        let parts = tag.split(separator: "-")
        guard parts.count == 2 || parts.count == 3, let pid = Int32(parts[0]), let start = UInt64(parts[1]) else { return false }
        return ProcessIdentity(pid: pid, start: start, boot: parts.count == 3 ? String(parts[2]) : "").isRunning
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
