import Glibc
import SCEPLocking

/// An `flock` on a lock file beside the data it guards, shared (`LOCK_SH`) by appenders and
/// exclusive (`LOCK_EX`) for a rewrite, for the threads of this process and for other processes.
///
/// `flock` locks belong to an open file description, so each concurrent holder needs its own
/// descriptor: they are pooled (up to 64) and reused.
///
/// Ownership: the pooled descriptors are closed in `deinit`.
public final class FileLock: Sendable {
    public let path: String
    private let pool = Locked<[Int32]>([])

    public init(path: String) { self.path = path }

    deinit {
        for fd in self.pool.withLock({ $0 }) { close(fd) }
    }

    /// Runs `body` holding the lock (`LOCK_SH` or `LOCK_EX`), waiting for it.
    public func withLock<T>(_ operation: Int32, _ body: () throws -> T) throws -> T {
        var fd = self.pool.withLock { $0.popLast() } ?? -1
        if fd < 0 {
            fd = open(self.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw FileError("open \(self.path): \(errnoText())") }
        }
        while flock(fd, operation) != 0 {
            guard errno == EINTR else {
                close(fd)
                throw FileError("lock \(self.path): \(errnoText())")
            }
        }
        defer {
            flock(fd, LOCK_UN)
            self.pool.withLock { pool in
                if pool.count < 64 { pool.append(fd) } else { close(fd) }
            }
        }
        return try body()
    }
}
