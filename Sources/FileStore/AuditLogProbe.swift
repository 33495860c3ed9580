import Glibc
import SCEPStore

/// Whether an audit log still holds a line it was given before a power loss: the bytes where the
/// line ended, in the file it went to (by inode: under its path, or renamed beside it by a
/// rotation). The log's tail is written without a sync (the journal carries each issuance's
/// line), so after a power loss it may be shorter than what was written.
enum AuditLogProbe {
    /// False when the bytes differ, the file is shorter, or no file beside the path has the
    /// inode (rotated and compressed or removed): the line is then written again, so at worst it
    /// is in the log twice, never not at all.
    static func has(_ line: WrittenAuditLine) -> Bool {
        guard line.end >= line.bytes.count else { return false }
        for path in self.candidates(line.path) {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var info = stat()
            guard fstat(fd, &info) == 0, UInt64(info.st_ino) == line.inode else { continue }
            var bytes = [UInt8](repeating: 0, count: line.bytes.count)
            let read = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(line.end - line.bytes.count)) }
            return read == bytes.count && bytes == line.bytes
        }
        return false
    }

    /// The directory a log's path names (where a rotation renames the file, and whose filesystem
    /// a checkpoint syncs): "/" for a file at the root, "." for a bare name.
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// The path itself, then the names in its directory that start with its name (`audit.jsonl.1`,
    /// `audit.jsonl-20261207`: where logrotate renames it).
    private static func candidates(_ path: String) -> [String] {
        let directory = Self.directory(of: path)
        let name = path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
        var found = [path]
        guard let dir = opendir(directory) else { return found }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if entryName != name, entryName.hasPrefix(name) { found.append(directory + "/" + entryName) }
        }
        return found
    }
}
