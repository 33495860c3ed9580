import FoundationEssentials
import Glibc

/// Secrets (CA key passphrase, challenge password, later the Intune client secret) come only
/// from files: never flags, never the environment, never the log.
public enum SecretFile {
    /// Reads a secret file; one trailing newline (as `echo` writes) is dropped.
    ///
    /// - Parameter allowEmpty: true only for a key passphrase, where "" is a real passphrase
    ///   (micromdm encrypts its CA key under it); a challenge or client secret must not be empty.
    public static func read(_ path: String, key: String, allowEmpty: Bool = false) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ServerError(.configuration, "\(key): \(path) cannot be read")
        }
        var bytes = Array(data)
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        guard allowEmpty || !bytes.isEmpty else { throw ServerError(.configuration, "\(key): \(path) is empty") }
        return bytes
    }

    /// A problem with a secret file, or nil: missing, unreadable, readable by others, or readable
    /// by a group that is not this process's own (0640 with the service's group, as the Debian
    /// package installs `root:scep-fcgi`, is fine; group `www-data` would hand it to every CGI).
    public static func problem(_ path: String, key: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else { return "\(key): \(path) does not exist" }
        guard access(path, R_OK) == 0 else { return "\(key): \(path) is not readable by this user" }
        if info.st_mode & 0o007 != 0 { return "\(key): \(path) is readable by others (chmod 600 or 640)" }
        if info.st_mode & 0o070 != 0, info.st_gid != getegid() {
            let group = getgrgid(info.st_gid).map { String(cString: $0.pointee.gr_name) } ?? "\(info.st_gid)"
            return "\(key): \(path) is readable by group \(group), which is not this server's group (chmod 600, or chgrp it to the server's group)"
        }
        return nil
    }
}
