import Glibc

/// A value that threads share, behind a pthread mutex: the one lock type of this package.
///
/// `Synchronization.Mutex` would do the same job, but on Linux it is a bare futex that
/// ThreadSanitizer cannot see, so every access it protects is reported as a race and the TSan run
/// of the unit tests (scripts/test.sh) would prove nothing. pthread mutexes are intercepted by
/// TSan. Not recursive; never held across a blocking call the caller does not own (see users).
///
/// Ownership: the mutex is allocated once and destroyed in `deinit`.
public final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init(_ value: Value) {
        self.value = value
        self.mutex = .allocate(capacity: 1)
        pthread_mutex_init(self.mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(self.mutex)
        self.mutex.deallocate()
    }

    /// Runs `body` with exclusive access to the value.
    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        return try body(&self.value)
    }
}
