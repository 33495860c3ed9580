import FoundationEssentials
import Glibc
import SCEPLocking
internal import CCurl

/// libcurl easy-interface transport.
///
/// Ownership: easy handles live in a ``CurlHandlePool`` (the one owner, which frees them); a `send`
/// borrows one for the duration of the call, so the transport is safe from any number of threads
/// and reuses kept-alive connections across calls. Timeouts are always set; `CURLOPT_NOSIGNAL`
/// because the process has worker threads.
public struct CurlHTTPTransport: HTTPTransport {
    let pool = CurlHandlePool()
    public var connectTimeout: Double
    public var totalTimeout: Double
    /// PEM bundle of trust roots; nil uses the system store.
    public var caBundle: String?
    /// `http://host:port` or `https://…` proxy; nil for none.
    public var proxy: String?
    public var userAgent: String

    public init(
        connectTimeout: Double = 5, totalTimeout: Double = 20, caBundle: String? = nil, proxy: String? = nil,
        userAgent: String = "scep-fcgi"
    ) {
        self.connectTimeout = connectTimeout
        self.totalTimeout = totalTimeout
        self.caBundle = caBundle
        self.proxy = proxy
        self.userAgent = userAgent
    }

    /// Process-wide libcurl setup; call once from `main` before any worker starts.
    public static func bootstrap() throws {
        guard curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK else {
            throw HTTPTransportError(.setup, "curl_global_init failed")
        }
    }

    public static var version: String { String(cString: curl_version()) }

    public func send(_ request: HTTPRequest) throws -> HTTPResponse {
        try self.send(request, timeout: self.totalTimeout)
    }

    /// Sends with a total timeout (seconds) other than the default, e.g. what is left of a deadline.
    public func send(_ request: HTTPRequest, timeout: Double) throws -> HTTPResponse {
        guard let handle = self.pool.take() else { throw HTTPTransportError(.setup, "curl_easy_init failed") }
        defer { self.pool.give(handle) }
        let sink = ResponseSink()
        let context = Unmanaged.passUnretained(sink).toOpaque()
        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        defer { curl_slist_free_all(headerList) }
        for (name, value) in request.headers { headerList = curl_slist_append(headerList, "\(name): \(value)") }
        // Without this curl adds "Expect: 100-continue" to larger POSTs and waits for it.
        headerList = curl_slist_append(headerList, "Expect:")

        var body = request.body ?? []
        let code: CURLcode = body.withUnsafeMutableBytes { raw in
            var ok = CCurl_easy_setopt_str(handle, CURLOPT_URL, request.url) == CURLE_OK
            ok = ok && CCurl_easy_setopt_str(handle, CURLOPT_CUSTOMREQUEST, request.method) == CURLE_OK
            ok = ok && CCurl_easy_setopt_long(handle, CURLOPT_NOSIGNAL, 1) == CURLE_OK
            ok = ok && CCurl_easy_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, Int(self.connectTimeout * 1000)) == CURLE_OK
            ok = ok && CCurl_easy_setopt_long(handle, CURLOPT_TIMEOUT_MS, max(1, Int(timeout * 1000))) == CURLE_OK
            ok = ok && CCurl_easy_setopt_str(handle, CURLOPT_USERAGENT, self.userAgent) == CURLE_OK
            ok = ok && CCurl_easy_setopt_ptr(handle, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(headerList)) == CURLE_OK
            ok = ok && CCurl_easy_setopt_write(handle, CURLOPT_WRITEFUNCTION, ResponseSink.writeBody) == CURLE_OK
            ok = ok && CCurl_easy_setopt_ptr(handle, CURLOPT_WRITEDATA, context) == CURLE_OK
            ok = ok && CCurl_easy_setopt_write(handle, CURLOPT_HEADERFUNCTION, ResponseSink.writeHeader) == CURLE_OK
            ok = ok && CCurl_easy_setopt_ptr(handle, CURLOPT_HEADERDATA, context) == CURLE_OK
            if let caBundle = self.caBundle { ok = ok && CCurl_easy_setopt_str(handle, CURLOPT_CAINFO, caBundle) == CURLE_OK }
            if let proxy = self.proxy { ok = ok && CCurl_easy_setopt_str(handle, CURLOPT_PROXY, proxy) == CURLE_OK }
            if request.body != nil {
                ok = ok && CCurl_easy_setopt_ptr(handle, CURLOPT_POSTFIELDS, raw.baseAddress) == CURLE_OK
                ok = ok && CCurl_easy_setopt_long(handle, CURLOPT_POSTFIELDSIZE, raw.count) == CURLE_OK
            }
            guard ok else { return CURLE_FAILED_INIT }
            return curl_easy_perform(handle)
        }
        guard code == CURLE_OK else { throw Self.error(code) }
        var status = 0
        _ = CCurl_easy_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: sink.headers, body: sink.body)
    }

    static func error(_ code: CURLcode) -> HTTPTransportError {
        let message = String(cString: curl_easy_strerror(code))
        switch code {
        case CURLE_OPERATION_TIMEDOUT: return HTTPTransportError(.timeout, message)
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY:
            return HTTPTransportError(.connect, message)
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CERTPROBLEM:
            return HTTPTransportError(.tls, message)
        case CURLE_FAILED_INIT: return HTTPTransportError(.setup, message)
        default: return HTTPTransportError(.protocolError, message)
        }
    }
}

/// Idle easy handles, reused so that connections (and TLS sessions) to the same host stay alive
/// between calls; `curl_easy_reset` clears options but keeps the connection cache.
final class CurlHandlePool: @unchecked Sendable {
    /// Handle addresses (CURL* is `void *`); only this pool creates and frees them.
    private let idle = Locked<[UInt]>([])
    private let maxIdle = 64

    func take() -> UnsafeMutableRawPointer? {
        if let address = self.idle.withLock({ $0.popLast() }), let handle = UnsafeMutableRawPointer(bitPattern: address) {
            return handle
        }
        return curl_easy_init()
    }

    func give(_ handle: UnsafeMutableRawPointer) {
        curl_easy_reset(handle)
        let kept = self.idle.withLock { idle -> Bool in
            guard idle.count < self.maxIdle else { return false }
            idle.append(UInt(bitPattern: handle))
            return true
        }
        if !kept { curl_easy_cleanup(handle) }
    }

    deinit {
        for address in self.idle.withLock({ $0 }) {
            if let handle = UnsafeMutableRawPointer(bitPattern: address) { curl_easy_cleanup(handle) }
        }
    }
}

/// Collects one response; lives on the stack of `send`, reached by the callbacks through `Unmanaged`.
final class ResponseSink {
    var body: [UInt8] = []
    var headers: [(String, String)] = []

    static let writeBody: CCurl_write_callback = { data, size, count, context in
        guard let context else { return 0 }
        let sink = Unmanaged<ResponseSink>.fromOpaque(context).takeUnretainedValue()
        let n = size * count
        data.withMemoryRebound(to: UInt8.self, capacity: n) { sink.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: n)) }
        return n
    }

    static let writeHeader: CCurl_write_callback = { data, size, count, context in
        guard let context else { return 0 }
        let sink = Unmanaged<ResponseSink>.fromOpaque(context).takeUnretainedValue()
        let n = size * count
        let line = data.withMemoryRebound(to: UInt8.self, capacity: n) { String(decoding: UnsafeBufferPointer(start: $0, count: n), as: UTF8.self) }
        if line.hasPrefix("HTTP/") {
            sink.headers = []  // a new response (after 100 Continue or a redirect)
        } else if let colon = line.firstIndex(of: ":") {
            let name = line[..<colon].lowercased()
            let value = String(line[line.index(after: colon)...].drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
            sink.headers.append((name, value))
        }
        return n
    }
}
