import Glibc

/// An exclusive `flock` on a lock file, held until ``release()``: by default non-blocking, for
/// one command's run (a second run, on this host or another sharing the directory's filesystem
/// lock, finds it taken and does nothing); with `wait`, taken in turn (CRL publication, numbers).
public final class RunLock {
    private let fd: Int32

    /// Nil when another process holds it and `wait` is false.
    public init?(path: String, wait: Bool = false, mode: mode_t = 0o640) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FileError("open \(path): \(errnoText())") }
        while flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) != 0 {
            if errno == EINTR { continue }
            close(fd)
            if errno == EWOULDBLOCK { return nil }
            throw FileError("lock \(path): \(errnoText())")
        }
        self.fd = fd
    }

    /// Unlocks, then closes. `flock` belongs to the open file description, which a child forked
    /// by any thread of this process shares until its exec closes it (O_CLOEXEC): closing alone
    /// would leave the lock held for that window; `LOCK_UN` frees it for every copy.
    public func release() {
        flock(self.fd, LOCK_UN)
        close(self.fd)
    }
}
