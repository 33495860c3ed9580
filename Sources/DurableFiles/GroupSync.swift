import Glibc
import CFileSync
import SCEPLocking

/// Group commit for one open file: the threads that appended to it and now need their bytes on
/// disk share `fdatasync` calls instead of making one each.
///
/// A caller takes a ticket once its `write(2)` has returned, then waits for its turn to sync.
/// Whoever syncs first notes the newest ticket before calling `fdatasync`: every write with a
/// ticket up to that one was complete before the call began, so that one call covers all of them,
/// and they return without a sync of their own. One thread syncs at a time (the others wait on
/// the mutex), so sixteen workers finishing together make about two calls, not sixteen. A failed
/// call covers no one: the next waiter tries its own and reports its own error.
///
/// Ownership: the mutex is allocated once and destroyed in `deinit`.
public final class GroupSync: @unchecked Sendable {
    private let tickets = Locked<(taken: UInt64, synced: UInt64, calls: UInt64)>((0, 0, 0))
    private let turn: UnsafeMutablePointer<pthread_mutex_t>
    /// The call that makes the bytes durable (`fdatasync` of the file; a test may count them).
    private let flush: @Sendable () -> Int32

    public convenience init(descriptor fd: Int32) {
        self.init { fdatasync(fd) }
    }

    public init(flush: @escaping @Sendable () -> Int32) {
        self.flush = flush
        self.turn = .allocate(capacity: 1)
        pthread_mutex_init(self.turn, nil)
    }

    deinit {
        pthread_mutex_destroy(self.turn)
        self.turn.deallocate()
    }

    /// Returns once everything this thread wrote to the file before the call is durable; throws
    /// the `errno` text of a failed flush.
    public func sync() throws {
        let ticket = self.tickets.withLock { state in
            state.taken += 1
            return state.taken
        }
        pthread_mutex_lock(self.turn)
        defer { pthread_mutex_unlock(self.turn) }
        let target = self.tickets.withLock { state -> UInt64? in state.synced >= ticket ? nil : state.taken }
        guard let target else { return }
        guard self.flush() == 0 else { throw FileError("sync failed: \(errnoText())") }
        self.tickets.withLock { state in
            state.synced = max(state.synced, target)
            state.calls += 1
        }
    }

    /// How many flushes were made (for tests and the benchmark's syncs-per-enrollment figure).
    public var flushes: UInt64 { self.tickets.withLock { $0.calls } }
}

/// `syncfs(2)` of the filesystem holding `path`: its every file's data and metadata in one call.
public func syncFilesystem(containing path: String) throws {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw FileError("open \(path): \(errnoText())") }
    defer { close(fd) }
    guard scep_syncfs(fd) == 0 else { throw FileError("syncfs \(path): \(errnoText())") }
}
