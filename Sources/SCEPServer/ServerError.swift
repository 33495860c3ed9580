/// The one error type of `SCEPServer` outside the wire protocol: configuration, CA material,
/// the certificate store and the audit log. Equal by code.
public struct ServerError: Error, Hashable, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case configuration
        case caMaterial = "ca-material"
        case store
        case audit
        case metrics
    }

    public let code: Code
    /// One line an operator can act on (no secrets).
    public let message: String
    public let file: String
    public let line: Int

    public init(_ code: Code, _ message: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.file = file
        self.line = line
    }

    public var description: String { self.message }
    public static func == (lhs: ServerError, rhs: ServerError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }
}
