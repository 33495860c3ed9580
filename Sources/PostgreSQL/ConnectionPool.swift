import Dispatch
import FoundationEssentials
import Glibc
import SCEPLocking

/// A few connections per process, lent to one thread at a time. A connection that broke is
/// dropped, and the next borrower connects afresh: a database that comes back is used again
/// without a restart.
public final class ConnectionPool: @unchecked Sendable {
    private let conninfo: String
    private let size: Int
    private let state = Locked<(idle: [Connection], open: Int)>(([], 0))
    private let available = DispatchSemaphore(value: 0)

    public init(conninfo: String, size: Int = 4) {
        self.conninfo = conninfo
        self.size = max(1, size)
    }

    /// Runs `body` with a connection of the pool (waiting while all are lent out). For reads:
    /// when a connection that sat in the pool turns out broken (the database restarted since),
    /// `body` runs once more on a fresh one.
    /// With `retry` false, `body` runs once whatever happens (it does more than read).
    public func withConnection<T>(retry: Bool = true, _ body: (Connection) throws -> T) throws -> T {
        do { return try self.lend(body) } catch let error as PostgreSQLError where error.code == .connection && retry {
            return try self.lend(body)
        }
    }

    /// Runs `body` in one transaction (READ COMMITTED): committed if it returns, rolled back if
    /// it throws; run again (up to 5 times) on a serialization failure or deadlock, and once on
    /// a fresh connection when `BEGIN` finds a pooled one broken (nothing was done yet).
    public func transaction<T>(_ body: (Connection) throws -> T) throws -> T {
        var attempt = 0
        var freshTried = false
        while true {
            attempt += 1
            do {
                return try self.lend { connection in
                    do { try connection.execute("BEGIN") } catch let error as PostgreSQLError where error.code == .connection {
                        throw BrokenBeforeBegin(error: error)
                    }
                    do {
                        let result = try body(connection)
                        try connection.execute("COMMIT")
                        return result
                    } catch {
                        if connection.isHealthy { _ = try? connection.execute("ROLLBACK") }
                        throw error
                    }
                }
            } catch let broken as BrokenBeforeBegin {
                if freshTried { throw broken.error }
                freshTried = true
            } catch let error as PostgreSQLError where error.isRetryable && attempt < 5 {
                usleep(UInt32.random(in: 1_000...20_000))
            }
        }
    }

    private struct BrokenBeforeBegin: Error { let error: PostgreSQLError }

    private func lend<T>(_ body: (Connection) throws -> T) throws -> T {
        let connection = try self.borrow()
        defer { self.giveBack(connection) }
        return try body(connection)
    }

    private enum Take {
        case idle(Connection)
        case open
        case wait
    }

    private func borrow() throws -> Connection {
        while true {
            let take: Take = self.state.withLock { state in
                if let connection = state.idle.popLast() { return .idle(connection) }
                if state.open < self.size {
                    state.open += 1
                    return .open
                }
                return .wait
            }
            switch take {
            case .idle(let connection):
                // libpq calls a connection healthy until a statement fails on it (a database
                // restarted since): the callers above retry that once on a fresh one.
                if connection.isHealthy { return connection }
                self.state.withLock { $0.open -= 1 }  // dropped: its deinit closes it
            case .open:
                do { return try Connection(self.conninfo) } catch {
                    self.state.withLock { $0.open -= 1 }
                    self.available.signal()
                    throw error
                }
            case .wait:
                _ = self.available.wait(timeout: DispatchTime.now() + 1)
            }
        }
    }

    private func giveBack(_ connection: Connection) {
        self.state.withLock { state in
            if connection.isHealthy {
                state.idle.append(connection)
            } else {
                // One broken connection means the server went away: the idle ones went with it.
                state.open -= 1 + state.idle.count
                state.idle.removeAll()
            }
        }
        self.available.signal()
    }
}
