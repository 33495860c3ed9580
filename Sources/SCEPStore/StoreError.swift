/// The one error type of the stores: the store could not answer or could not write. Every
/// implementation of ``CertificateStore`` throws it, so callers tell a store fault (FAILURE, or
/// HTTP 503) from a bad request without knowing which store it is.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        /// A read or write failed (a full disk, a permission, a lost connection mid-transaction).
        case failed
        /// The store cannot be reached at all (a database down): nothing was changed.
        case unavailable
    }

    public let code: Code
    /// One line an operator can act on (never a password or a connection string).
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// A failed read or write.
    public init(_ message: String) { self.init(.failed, message) }

    public var description: String { self.message }
}
