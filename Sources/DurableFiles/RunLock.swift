import Glibc

/// A non-blocking `flock` held for one command's run: a second run, on this host or another
/// sharing the directory's filesystem lock, finds it taken and does nothing.
public final class RunLock {
    private let fd: Int32

    /// Nil when another process holds it.
    public init?(path: String) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw FileError("open \(path): \(errnoText())") }
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            close(fd)
            if errno == EWOULDBLOCK { return nil }
            throw FileError("lock \(path): \(errnoText())")
        }
        self.fd = fd
    }

    public func release() { close(self.fd) }
}
