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

    /// Runs `body` with a connection of the pool (waiting while all are lent out).
    public func withConnection<T>(_ body: (Connection) throws -> T) throws -> T {
        let connection = try self.borrow()
        do {
            let result = try body(connection)
            self.giveBack(connection)
            return result
        } catch {
            self.giveBack(connection)
            throw error
        }
    }

    /// Runs `body` in one transaction (READ COMMITTED): committed if it returns, rolled back if
    /// it throws; run again (up to 5 times) on a serialization failure or deadlock.
    public func transaction<T>(_ body: (Connection) throws -> T) throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try self.withConnection { connection in
                    try connection.execute("BEGIN")
                    do {
                        let result = try body(connection)
                        try connection.execute("COMMIT")
                        return result
                    } catch {
                        if connection.isHealthy { _ = try? connection.execute("ROLLBACK") }
                        throw error
                    }
                }
            } catch let error as PostgreSQLError where error.isRetryable && attempt < 5 {
                usleep(UInt32.random(in: 1_000...20_000))
            }
        }
    }

    private func borrow() throws -> Connection {
        while true {
            let taken: (Connection?, Bool) = self.state.withLock { state in
                if let connection = state.idle.popLast() { return (connection, false) }
                if state.open < self.size {
                    state.open += 1
                    return (nil, true)
                }
                return (nil, false)
            }
            if let connection = taken.0 {
                if connection.isHealthy { return connection }
                self.state.withLock { $0.open -= 1 }
                continue
            }
            if taken.1 {
                do { return try Connection(self.conninfo) } catch {
                    self.state.withLock { $0.open -= 1 }
                    self.available.signal()
                    throw error
                }
            }
            // All lent out: wait for one to come back.
            _ = self.available.wait(timeout: DispatchTime.now() + 1)
        }
    }

    private func giveBack(_ connection: Connection) {
        self.state.withLock { state in
            if connection.isHealthy { state.idle.append(connection) } else { state.open -= 1 }
        }
        self.available.signal()
    }
}
