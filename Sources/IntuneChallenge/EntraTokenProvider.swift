import CurlHTTP
import SCEPCrypto
import SCEPServer
import Dispatch
import FoundationEssentials
import SCEPLocking
import Glibc

/// App-only tokens from Entra ID by the OAuth 2.0 client-credentials grant (v2 endpoint), cached
/// per scope and shared by every worker thread until shortly before they expire.
///
/// Single flight, never under a lock: at most one fetch per scope runs at a time, outside the
/// state lock. A caller that finds no valid token waits for that fetch (within its deadline); a
/// caller whose token is merely due for renewal (within ``refreshMargin`` of expiry) keeps using it
/// and starts the renewal in the background, so no enrollment waits on Entra while its token is
/// still good. A renewal that fails leaves the old token in use until it really expires.
final class EntraTokenProvider: @unchecked Sendable {
    struct CachedToken {
        let value: String
        let refreshAfter: ContinuousClock.Instant
        let expires: ContinuousClock.Instant
    }

    struct State {
        var cache: [String: CachedToken] = [:]
        /// The fetch in progress per scope; its group is left when it ends.
        var inFlight: [String: DispatchGroup] = [:]
        var fetches = 0
    }

    private let settings: IntuneSettings
    private let credential: EntraCredential
    private let transport: any HTTPTransport
    private let diagnostics: Diagnostics
    /// Held only to read or update the cache, never across a fetch.
    private let state = Locked(State())
    /// How many tokens were fetched (for diagnostics and tests).
    var fetches: Int { self.state.withLock { $0.fetches } }

    /// Renew this long before `expires_in` runs out (intune-api.md §1.4 recommendation).
    static let refreshMargin: Double = 300

    init(settings: IntuneSettings, credential: EntraCredential, transport: any HTTPTransport, diagnostics: Diagnostics = Diagnostics()) {
        self.settings = settings
        self.credential = credential
        self.transport = transport
        self.diagnostics = diagnostics
    }

    private enum Step {
        case use(String)
        case wait(DispatchGroup)
        case fetch(DispatchGroup)
    }

    /// A valid token for `scope`: cached, or fetched now (once, whoever else asks meanwhile).
    func token(scope: String, deadline: Deadline, trace: ValidatorTrace? = nil) throws -> String {
        while true {
            var renewInBackground: DispatchGroup? = nil
            let step: Step = self.state.withLock { state in
                let now = ContinuousClock.now
                let cached = state.cache[scope].flatMap { now < $0.expires ? $0 : nil }
                if let cached, now < cached.refreshAfter { return .use(cached.value) }
                if let flight = state.inFlight[scope] { return cached.map { .use($0.value) } ?? .wait(flight) }
                let group = DispatchGroup()
                group.enter()
                state.inFlight[scope] = group
                guard let cached else { return .fetch(group) }
                renewInBackground = group
                return .use(cached.value)
            }
            if let group = renewInBackground {
                // Still valid: renew without making this request wait. The renewal's own call is
                // not part of this request, so it is logged rather than audited.
                DispatchQueue.global().async {
                    do { _ = try self.fetchAndStore(scope: scope, deadline: Deadline(seconds: self.settings.timeoutSeconds), trace: nil, group: group) } catch {
                        self.diagnostics.log(.warning, "Entra token renewal for \(scope) failed; the current token stays in use until it expires: \(error)")
                    }
                }
            }
            switch step {
            case .use(let token):
                return token
            case .wait(let group):
                guard group.wait(timeout: .now() + deadline.remaining) == .success else {
                    throw IntuneError(.timeout, "no Entra token within intune.timeout_seconds (another request's fetch is still running)")
                }
                continue  // the fetch ended: use its token, or fetch again if it failed
            case .fetch(let group):
                return try self.fetchAndStore(scope: scope, deadline: deadline, trace: trace, group: group)
            }
        }
    }

    /// Fetches, caches, and ends the flight `group` (waiters then find the new token, or fetch anew).
    private func fetchAndStore(scope: String, deadline: Deadline, trace: ValidatorTrace?, group: DispatchGroup) throws -> String {
        defer {
            self.state.withLock { _ = $0.inFlight.removeValue(forKey: scope) }
            group.leave()
        }
        let (token, lifetime) = try self.fetch(scope: scope, deadline: deadline, trace: trace)
        let now = ContinuousClock.now
        let cached = CachedToken(
            value: token, refreshAfter: now + .milliseconds(Int64(max(0, lifetime - Self.refreshMargin) * 1000)),
            expires: now + .milliseconds(Int64(max(0, lifetime - 30) * 1000)))
        self.state.withLock { state in
            state.cache[scope] = cached
            state.fetches += 1
        }
        return token
    }

    /// Drops a token the resource server refused (HTTP 401), unless another thread already replaced it.
    func invalidate(scope: String, token: String) {
        self.state.withLock { state in
            if state.cache[scope]?.value == token { state.cache[scope] = nil }
        }
    }

    /// The token endpoint's answer, success or error (v2 sends `expires_in` as a number, v1 as a string).
    struct TokenResponse: Decodable {
        let accessToken: String?
        let expiresIn: FlexibleNumber?
        let error: String?
        let errorDescription: String?
        let errorCodes: [Int]?

        enum CodingKeys: String, CodingKey {
            case accessToken = "access_token", expiresIn = "expires_in", error, errorDescription = "error_description"
            case errorCodes = "error_codes"
        }
    }

    private func fetch(scope: String, deadline: Deadline, trace: ValidatorTrace?) throws -> (String, Double) {
        // client-request-id: Entra logs it and echoes it, as MSAL sends it; the audit line names it.
        let requestID = UUID().uuidString.lowercased()
        var request = HTTPRequest(
            method: "POST", url: self.settings.tokenURL,
            headers: [
                ("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json"), ("client-request-id", requestID),
            ],
            body: try self.form(scope: scope))
        // The body is the only copy of the encoded secret (no String of it is ever made): wiped
        // once the call is over, when nothing else references the buffer.
        defer { if request.body != nil { OpenSSL.cleanse(&request.body!) } }
        let response: HTTPResponse
        let started = ContinuousClock.now
        do { response = try self.transport.send(request, timeout: deadline.remaining) } catch let error as HTTPTransportError {
            trace?.record(ValidatorCall(operation: "token", requestID: requestID, status: 0, code: nil, durationMs: milliseconds(since: started)))
            throw IntuneError.transport(error, "Entra token endpoint \(self.settings.tokenURL)")
        }
        let json = try? JSONDecoder().decode(TokenResponse.self, from: Data(response.body))
        // Entra: {"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret…","error_codes":[7000215]}
        let aadsts = Self.aadstsCode(json?.errorDescription ?? "") ?? json?.errorCodes?.first.map { "AADSTS\($0)" }
        trace?.record(
            ValidatorCall(operation: "token", requestID: requestID, status: response.status, code: aadsts, durationMs: milliseconds(since: started)))
        guard (200..<300).contains(response.status) else {
            let error = json?.error ?? "HTTP \(response.status)"
            let summary = [error, aadsts].compactMap { $0 }.joined(separator: " ")
            if (400..<500).contains(response.status) {
                throw IntuneError(.credentialsRejected, "Entra refused the token request for \(scope): \(summary)")
            }
            throw IntuneError(.tokenUnavailable, "Entra token endpoint answered \(response.status) for \(scope): \(summary)")
        }
        guard let token = json?.accessToken, !token.isEmpty else {
            throw IntuneError(.tokenUnavailable, "Entra token response has no access_token")
        }
        return (token, json?.expiresIn?.value ?? 3599)
    }

    /// The client-credentials form, with the credential's proof (the secret percent-encoded
    /// straight into the one buffer, or a fresh client assertion).
    private func form(scope: String) throws -> [UInt8] {
        var form = Array(
            [("grant_type", "client_credentials"), ("client_id", self.settings.clientID), ("scope", scope)]
                .map { "\(FormEncoding.encode($0.0))=\(FormEncoding.encode($0.1))" }.joined(separator: "&").utf8)
        try self.credential.appendProof(to: &form, clientID: self.settings.clientID, tokenURL: self.settings.tokenURL)
        return form
    }

    static func aadstsCode(_ text: String) -> String? {
        guard let pattern = try? Regex("AADSTS[0-9]+"), let match = text.firstMatch(of: pattern) else { return nil }
        return String(text[match.range])
    }
}

/// A JSON number that may arrive as a string.
struct FlexibleNumber: Decodable {
    let value: Double

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(Double.self) {
            self.value = number
        } else if let text = try? container.decode(String.self), let number = Double(text) {
            self.value = number
        } else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a number")
        }
    }
}

/// application/x-www-form-urlencoded: everything but RFC 3986 unreserved characters escaped.
enum FormEncoding {
    static func encode(_ text: String) -> String {
        var out: [UInt8] = []
        Self.append(bytes: Array(text.utf8), to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// application/x-www-form-urlencoded: unreserved characters as they are, the rest %XX,
    /// appended in place (no intermediate buffer holds the value).
    static func append(bytes: [UInt8], to out: inout [UInt8]) {
        let hex = Array("0123456789ABCDEF".utf8)
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(byte)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0F)])
            }
        }
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
