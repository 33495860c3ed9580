/// The one error type of the libpq wrapper. The message is libpq's, which never contains the
/// password of the connection string.
public struct PostgreSQLError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        /// No connection could be made, or it broke: the server may be down.
        case connection
        /// The server refused a statement (`sqlState` says why).
        case statement
    }

    public let code: Code
    /// The SQLSTATE of a refused statement (`40001` serialization failure, `23505` unique violation, …).
    public let sqlState: String?
    public let message: String

    public init(_ code: Code, _ message: String, sqlState: String? = nil) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
    }

    public var description: String { "postgresql \(self.code.rawValue)\(self.sqlState.map { " \($0)" } ?? ""): \(self.message)" }

    /// Worth running the whole transaction again (RFC-free: PostgreSQL's own advice for these states).
    public var isRetryable: Bool { self.sqlState == "40001" || self.sqlState == "40P01" }
}
