import Glibc

/// Whether a path could take the next write, checked without writing: writable by this process
/// (the file, or its directory when it does not exist yet) and at least 1 MiB free beneath it.
/// `access(2)` is what the kernel would decide for this process (root passes it for any mode; a
/// missing directory or a full or read-only filesystem still fails).
package enum FileHealth {
    package static let minimumFreeBytes: UInt64 = 1 << 20

    /// - Parameter directory: the path is a directory that must exist (a file may be created at need).
    package static func problem(writing path: String, prefix: String, directory: Bool = false) -> String? {
        let exists = access(path, F_OK) == 0
        guard exists || !directory else { return "\(prefix)-not-writable" }
        let target = exists ? path : AtomicFile.directory(of: path)
        guard access(target, W_OK) == 0 else { return "\(prefix)-not-writable" }
        var fs = statvfs()
        if statvfs(target, &fs) == 0, UInt64(fs.f_bavail) * UInt64(fs.f_frsize) < Self.minimumFreeBytes { return "\(prefix)-disk-full" }
        return nil
    }
}
