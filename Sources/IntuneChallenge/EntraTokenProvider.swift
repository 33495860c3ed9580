import CurlHTTP
import Foundation

/// App-only tokens from Entra ID by the OAuth 2.0 client-credentials grant (v2 endpoint), cached
/// per scope and shared by every worker thread until shortly before they expire.
///
/// One fetch at a time: a thread that finds no valid token fetches it while the others wait, so a
/// burst of enrollments costs one token request, not one each.
final class EntraTokenProvider: @unchecked Sendable {
    struct CachedToken {
        let value: String
        let refreshAfter: ContinuousClock.Instant
    }

    private let settings: IntuneSettings
    private let secret: [UInt8]
    private let transport: any HTTPTransport
    private let lock = NSLock()
    private var cache: [String: CachedToken] = [:]
    private var fetchCount = 0
    /// How many tokens were fetched (for diagnostics and tests).
    var fetches: Int { self.lock.withLock { self.fetchCount } }

    /// Refresh this long before `expires_in` runs out (intune-api.md §1.4 recommendation).
    static let refreshMargin: Double = 300

    init(settings: IntuneSettings, secret: [UInt8], transport: any HTTPTransport) {
        self.settings = settings
        self.secret = secret
        self.transport = transport
    }

    /// A valid token for `scope`, from the cache or fetched now.
    func token(scope: String, deadline: Deadline) throws -> String {
        try self.lock.withLock {
            if let cached = self.cache[scope], ContinuousClock.now < cached.refreshAfter { return cached.value }
            let (token, lifetime) = try self.fetch(scope: scope, deadline: deadline)
            let keep = max(0, lifetime - Self.refreshMargin)
            self.cache[scope] = CachedToken(value: token, refreshAfter: ContinuousClock.now + .milliseconds(Int64(keep * 1000)))
            self.fetchCount += 1
            return token
        }
    }

    /// Drops a token the resource server refused (HTTP 401), unless another thread already replaced it.
    func invalidate(scope: String, token: String) {
        self.lock.withLock {
            if self.cache[scope]?.value == token { self.cache[scope] = nil }
        }
    }

    private func fetch(scope: String, deadline: Deadline) throws -> (String, Double) {
        let form = [
            ("grant_type", "client_credentials"), ("client_id", self.settings.clientID),
            ("client_secret", String(decoding: self.secret, as: UTF8.self)), ("scope", scope),
        ].map { "\(FormEncoding.encode($0.0))=\(FormEncoding.encode($0.1))" }.joined(separator: "&")
        let request = HTTPRequest(
            method: "POST", url: self.settings.tokenURL,
            headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")],
            body: Array(form.utf8))
        let response: HTTPResponse
        do { response = try self.transport.send(request, timeout: deadline.remaining) } catch let error as HTTPTransportError {
            throw IntuneError.transport(error, "Entra token endpoint \(self.settings.tokenURL)")
        }
        let json = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
        guard (200..<300).contains(response.status) else {
            // Entra: {"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret…","error_codes":[7000215]}
            let error = json?["error"] as? String ?? "HTTP \(response.status)"
            let description = json?["error_description"] as? String ?? ""
            let aadsts = Self.aadstsCode(description) ?? (json?["error_codes"] as? [Int])?.first.map { "AADSTS\($0)" }
            let summary = [error, aadsts].compactMap { $0 }.joined(separator: " ")
            if (400..<500).contains(response.status) {
                throw IntuneError(.credentialsRejected, "Entra refused the token request for \(scope): \(summary)")
            }
            throw IntuneError(.tokenUnavailable, "Entra token endpoint answered \(response.status) for \(scope): \(summary)")
        }
        guard let token = json?["access_token"] as? String, !token.isEmpty else {
            throw IntuneError(.tokenUnavailable, "Entra token response has no access_token")
        }
        // v2 sends expires_in as a number; v1-style answers send strings.
        let lifetime = (json?["expires_in"] as? Double) ?? (json?["expires_in"] as? String).flatMap(Double.init) ?? 3599
        return (token, lifetime)
    }

    static func aadstsCode(_ text: String) -> String? {
        guard let range = text.range(of: #"AADSTS\d+"#, options: .regularExpression) else { return nil }
        return String(text[range])
    }
}

/// application/x-www-form-urlencoded: everything but RFC 3986 unreserved characters escaped.
enum FormEncoding {
    static func encode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }
}

extension IntuneError {
    /// Maps a transport failure to the precise code.
    static func transport(_ error: HTTPTransportError, _ what: String) -> IntuneError {
        switch error.code {
        case .timeout: return IntuneError(.timeout, "\(what): \(error.message)")
        case .tls: return IntuneError(.tls, "\(what): TLS failure: \(error.message)")
        default: return IntuneError(.unreachable, "\(what): \(error.message)")
        }
    }
}
