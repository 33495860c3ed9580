/// An outgoing HTTP request (the Intune calls of issue 2/3 are its first users).
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(String, String)]
    public var body: [UInt8]?

    public init(method: String = "GET", url: String, headers: [(String, String)] = [], body: [UInt8]? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

public struct HTTPResponse: Sendable {
    public let status: Int
    /// Header names lower-cased, in arrival order (the last response's headers after redirects).
    public let headers: [(String, String)]
    public let body: [UInt8]

    public init(status: Int, headers: [(String, String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return self.headers.last { $0.0 == lowered }?.1
    }
}

/// Sends HTTP requests; blocking, callable from any worker thread.
public protocol HTTPTransport: Sendable {
    /// Sends `request`, giving up after `timeout` seconds in total.
    func send(_ request: HTTPRequest, timeout: Double) throws -> HTTPResponse
}

/// The one error type of `CurlHTTP`. Equal by code.
public struct HTTPTransportError: Error, Hashable, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case connect
        case timeout
        case tls
        case protocolError = "protocol"
        case setup
    }

    public let code: Code
    /// libcurl's message for the diagnostic log.
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// Bounded code for audit lines.
    public var auditCode: String { "http-\(self.code.rawValue)" }
    public var description: String { "HTTPTransportError.\(self.code.rawValue): \(self.message)" }
    public static func == (lhs: HTTPTransportError, rhs: HTTPTransportError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }
}
