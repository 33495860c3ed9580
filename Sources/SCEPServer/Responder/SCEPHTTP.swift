/// A SCEP HTTP request as any transport (FastCGI, CGI, a test) hands it over.
public struct SCEPHTTPRequest: Sendable {
    public var method: String
    /// The raw query string, not decoded.
    public var query: String
    public var body: [UInt8]
    /// True when the transport stopped reading because the body exceeded `server.max_body_bytes`.
    public var bodyTooLarge: Bool
    public var remoteAddr: String
    /// The request path (without the query), when the transport says it: SCEP ignores it, the
    /// monitoring endpoints (`metrics.path`, `health.path`) are chosen by it.
    public var path: String?
    /// Whether the client is known to be gone (the web server closed the FastCGI connection),
    /// asked before the challenge is validated and before a certificate is issued.
    public var clientGone: @Sendable () -> Bool
    /// The request target exactly as the client sent it (CGI `REQUEST_URI`), when the web server
    /// passes it: OCSP GETs carry base64 in the path, which a decoded, slash-merged path would break.
    public var requestURI: String?

    public init(
        method: String, query: String, body: [UInt8] = [], bodyTooLarge: Bool = false, remoteAddr: String = "", path: String? = nil,
        clientGone: @escaping @Sendable () -> Bool = { false }, requestURI: String? = nil
    ) {
        self.requestURI = requestURI
        self.method = method
        self.query = query
        self.body = body
        self.bodyTooLarge = bodyTooLarge
        self.remoteAddr = remoteAddr
        self.path = path
        self.clientGone = clientGone
    }
}

/// The answer, always complete: status, exact Content-Type, body (Content-Length is its size).
public struct SCEPHTTPResponse: Sendable, Equatable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]
    /// More header fields, in order (OCSP's RFC 5019 caching headers).
    public var headers: [HeaderField]

    public struct HeaderField: Sendable, Equatable {
        public let name: String
        public let value: String
    }

    public init(status: Int, contentType: String, body: [UInt8], headers: [HeaderField] = []) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.headers = headers
    }

    /// A fixed one-line text for HTTP-tier errors; `text/plain` without a charset parameter,
    /// because older sscep compared the header literally (OpenXPKI's fcgi note).
    static func text(_ status: Int, _ text: String) -> SCEPHTTPResponse {
        SCEPHTTPResponse(status: status, contentType: "text/plain", body: Array((text + "\n").utf8))
    }

    public static let reasonPhrases: [Int: String] = [
        200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
        500: "Internal Server Error", 503: "Service Unavailable",
    ]
}

/// RFC 8894 §6 media types.
public enum SCEPContentType {
    public static let caCert = "application/x-x509-ca-cert"
    public static let caRACert = "application/x-x509-ca-ra-cert"
    public static let nextCACert = "application/x-x509-next-ca-cert"
    public static let pkiMessage = "application/x-pki-message"
    public static let caps = "text/plain"
}
