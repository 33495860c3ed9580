import FoundationEssentials
import Glibc

/// File writes that several processes can do at once without tearing or losing data.
public enum AtomicFile {
    /// Writes `contents` to a temporary file in the same directory, fsyncs it, then links it to
    /// `path`. `link(2)` fails if `path` exists, so an existing file is never replaced.
    ///
    /// - Parameter intent: a second name linked *before* `path` appears (the same inode), so a
    ///   crash can never leave `path` without it (the file store's unaudited marker).
    /// - Parameter scratch: where the temporary file is made (same filesystem), when not beside
    ///   `path`: a directory with a few entries is cheap to sweep for orphans, one of 200,000 is not.
    /// - Parameter sync: false when something else makes the file durable (the file store's
    ///   journal): no fsync of the file nor of its directory. A crash of the process loses nothing
    ///   (the kernel has the file); only a power loss can, and the journal restores it.
    public static func create(_ path: String, contents: [UInt8], mode: mode_t, intent: String? = nil, scratch: String? = nil, sync: Bool = true) throws {
        let directory = Self.directory(of: path)
        let temporary = Self.temporaryPath(in: scratch ?? directory)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FileError("create \(temporary): \(errnoText())") }
        defer { unlink(temporary) }
        do {
            defer { close(fd) }
            try writeAll(fd, contents, what: temporary)
            guard fchmod(fd, mode) == 0, !sync || fsync(fd) == 0 else { throw FileError("sync \(temporary): \(errnoText())") }
        }
        if let intent, link(temporary, intent) != 0 { throw FileError("link \(intent): \(errnoText())") }
        guard link(temporary, path) == 0 else {
            let text = errno == EEXIST ? "\(path) already exists" : "link \(path): \(errnoText())"
            if let intent { unlink(intent) }
            throw FileError(text)
        }
        if sync { syncDirectory(directory) }
    }

    /// A fresh temporary name in `directory`: `.tmp-PID-RANDOM`, the form ``removeOrphans(in:)``
    /// (and the transaction directory's pruning) recognise.
    package static func temporaryPath(in directory: String) -> String {
        "\(directory)/.tmp-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
    }

    /// Temporary files of writers that died (kill -9 between create and rename/link): the
    /// process in the name is gone. Returns how many were removed.
    public static func removeOrphans(in directory: String) -> Int { Self.sweep(directory).removed }

    /// ``removeOrphans(in:)``, also counting the temporary files left alone (their writer lives).
    public static func sweep(_ directory: String) -> (removed: Int, live: Int) {
        var (removed, live) = (0, 0)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            switch Self.orphan(name) {
            case true?: if unlink(directory + "/" + name) == 0 { removed += 1 }
            case false?: live += 1
            case nil: continue
            }
        }
        return (removed, live)
    }

    /// Whether `name` is a temporary file (nil: it is not one) whose writer is gone.
    public static func orphan(_ name: String) -> Bool? {
        // Bytes first: a directory may hold 200,000 names, and String splitting each is slow.
        let bytes = Array(name.utf8)
        guard let at = Self.marker(in: bytes) else { return nil }
        let pid = String(decoding: bytes[(at + 5)...].prefix { (0x30...0x39).contains($0) }, as: UTF8.self)
        guard let number = Int32(pid), number != getpid(), kill(number, 0) != 0, errno == ESRCH else { return false }
        return true
    }

    /// Where `.tmp-` starts in a file name, if anywhere.
    private static func marker(in name: [UInt8]) -> Int? {
        let pattern: [UInt8] = Array(".tmp-".utf8)
        guard name.count >= pattern.count else { return nil }
        for i in 0...(name.count - pattern.count) where name[i] == 0x2E && name[i..<(i + pattern.count)].elementsEqual(pattern) { return i }
        return nil
    }

    /// Replaces `path` with `contents` atomically (temporary file + `rename(2)`): readers see the
    /// old or the new file, never a part. With `sync`, the data and the rename are made durable.
    public static func replace(_ path: String, contents: [UInt8], mode: mode_t, sync: Bool, scratch: String? = nil) throws {
        let directory = Self.directory(of: path)
        let temporary = Self.temporaryPath(in: scratch ?? directory)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FileError("create \(temporary): \(errnoText())") }
        do {
            defer { close(fd) }
            try writeAll(fd, contents, what: temporary)
            guard fchmod(fd, mode) == 0, !sync || fsync(fd) == 0 else { throw FileError("sync \(temporary): \(errnoText())") }
        } catch {
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw FileError("replace \(path): \(errnoText())")
        }
        if sync { syncDirectory(directory) }
    }

    /// The directory part of `path`: "." for a bare file name, "/" for a file at the root.
    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    package static func writeAll(_ fd: Int32, _ bytes: [UInt8], what: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw FileError("write \(what): \(errnoText())") }
            offset += n
        }
    }

    package static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }
}

package func errnoText() -> String { String(cString: strerror(errno)) }
