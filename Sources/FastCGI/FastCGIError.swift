/// The one error type of the FastCGI wrapper.
public struct FastCGIError: Error, Hashable, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable { case initialize, socket }
    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { self.message }
    public static func == (lhs: FastCGIError, rhs: FastCGIError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }
}

/// A request as the web server passed it: every parameter copied into Swift strings while the
/// libfcgi request is live (its strings are freed by the next `FCGX_Finish_r`/`FCGX_Accept_r`).
public struct GatewayRequest: Sendable {
    public let params: [String: String]
    public let body: [UInt8]
    /// The declared or actual body exceeded the limit; `body` is then empty.
    public let bodyTooLarge: Bool
    /// Whether the web server has closed the connection (its client went away), checked without
    /// blocking while the request is being handled; always false for CGI.
    public let peerClosed: @Sendable () -> Bool

    public init(params: [String: String], body: [UInt8], bodyTooLarge: Bool, peerClosed: @escaping @Sendable () -> Bool = { false }) {
        self.params = params
        self.body = body
        self.bodyTooLarge = bodyTooLarge
        self.peerClosed = peerClosed
    }
}

/// A complete response: CGI `Status:` line, headers, body with its Content-Length.
public struct GatewayResponse: Sendable {
    public let status: Int
    public let reason: String
    public let contentType: String
    public let body: [UInt8]
    /// More header fields (name, value), e.g. RFC 5019's caching headers; ours, never from a request.
    public let headers: [(String, String)]

    public init(status: Int, reason: String, contentType: String, body: [UInt8], headers: [(String, String)] = []) {
        self.status = status
        self.reason = reason
        self.contentType = contentType
        self.body = body
        self.headers = headers
    }

    /// The CGI response head (RFC 3875 §6.3): Status, Content-Type, Content-Length, then the others.
    var head: [UInt8] {
        let extra = self.headers.map { "\($0.0): \($0.1)\r\n" }.joined()
        return Array("Status: \(self.status) \(self.reason)\r\nContent-Type: \(self.contentType)\r\nContent-Length: \(self.body.count)\r\n\(extra)\r\n".utf8)
    }
}
