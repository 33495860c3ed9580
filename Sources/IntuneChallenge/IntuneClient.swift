import CurlHTTP
import FoundationEssentials
import Glibc
import SCEPServer

/// The answer of a ScepActions call (intune-api.md §3.5).
struct ScepActionResult: Sendable, Equatable {
    /// `Success`, a documented failure code, or any other string the service returns.
    let code: String
    let errorDescription: String
}

/// `{"@odata.context":…,"code":"Success","errorDescription":""}`; a non-string code reads as absent.
struct ResultBody: Decodable {
    let code: String?
    let errorDescription: String?

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.code = try? container.decode(String.self, forKey: .code)
        self.errorDescription = try? container.decode(String.self, forKey: .errorDescription)
    }

    enum CodingKeys: String, CodingKey { case code, errorDescription }
}

/// A JSON answer of an Intune service (ScepActions, or the PKI connector's revocation calls).
struct ServiceResponse {
    let status: Int
    let body: [UInt8]
}

/// Calls the Intune services found by discovery: `{validation service}/ScepActions/{operation}`
/// and `{PKI connector}/CertificateAuthorityRequests/{operation}`. Token, discovery, retries,
/// all inside one deadline (`intune.timeout_seconds`), shorter than the web server's FastCGI
/// read timeout.
final class IntuneClient: @unchecked Sendable {
    let settings: IntuneSettings
    let tokens: EntraTokenProvider
    let locator: ServiceLocator
    private let transport: any HTTPTransport

    /// At most this many attempts per operation; backoff doubles from `firstBackoff`.
    static let maxAttempts = 4
    static let firstBackoff = 0.2

    init(settings: IntuneSettings, credential: EntraCredential, transport: any HTTPTransport) {
        self.settings = settings
        self.transport = transport
        self.tokens = EntraTokenProvider(settings: settings, credential: credential, transport: transport)
        self.locator = ServiceLocator(settings: settings, tokens: self.tokens, transport: transport)
    }

    /// An Intune service call: which service, which path under it, which API version.
    struct Endpoint {
        let service: String
        let path: String
        let apiVersion: String
        /// The operation's name in traces and the audit line.
        let operation: String

        static func scepAction(_ operation: String) -> Endpoint {
            Endpoint(
                service: IntuneSettings.validationServiceName, path: "ScepActions/\(operation)", apiVersion: IntuneSettings.apiVersion,
                operation: operation)
        }

        static func revocation(_ operation: String) -> Endpoint {
            Endpoint(
                service: IntuneSettings.revocationServiceName, path: "CertificateAuthorityRequests/\(operation)",
                apiVersion: IntuneSettings.revocationAPIVersion, operation: operation)
        }
    }

    /// POSTs `body` (the JSON object) to ScepActions/`operation`, recording each attempt in `trace`.
    func call(_ operation: String, body: [UInt8], trace: ValidatorTrace) throws -> ScepActionResult {
        let response = try self.post(.scepAction(operation), body: body, trace: trace)
        let json = try? JSONDecoder().decode(ResultBody.self, from: Data(response.body))
        guard let code = json?.code, !code.isEmpty else {
            throw IntuneError(.badResponse, "Intune \(operation) answered HTTP \(response.status) without a JSON code")
        }
        return ScepActionResult(code: code, errorDescription: json?.errorDescription ?? "")
    }

    /// POSTs `body` to `endpoint` and returns its 2xx answer.
    ///
    /// Retries: transport failures, timeouts, 5xx and 429 with exponential backoff while the deadline
    /// allows; a 401 drops the token and retries once; a 404, 5xx or transport failure also drops
    /// the discovered URLs. Other statuses fail at once.
    func post(_ endpoint: Endpoint, body: [UInt8], trace: ValidatorTrace) throws -> ServiceResponse {
        let deadline = Deadline(seconds: self.settings.timeoutSeconds)
        var attempt = 0
        var retriedUnauthorized = false
        var lastError: IntuneError? = nil
        while attempt < Self.maxAttempts {
            attempt += 1
            if attempt > 1 {
                let pause = min(Self.firstBackoff * Double(1 << (attempt - 2)), deadline.remaining - 0.5)
                if pause <= 0 { break }
                usleep(UInt32(pause * 1_000_000))
            }
            do {
                return try self.attempt(endpoint, body: body, deadline: deadline, trace: trace)
            } catch let error as IntuneError where error.code == .unauthorized && !retriedUnauthorized {
                retriedUnauthorized = true
                attempt -= 1  // the fresh-token retry does not count against the budget of attempts
                lastError = error
            } catch let error as IntuneError where error.isTransient && deadline.remaining > 0.5 {
                lastError = error
            }
        }
        throw lastError ?? IntuneError(.timeout, "no time left for \(endpoint.operation)")
    }

    private func attempt(_ endpoint: Endpoint, body: [UInt8], deadline: Deadline, trace: ValidatorTrace) throws -> ServiceResponse {
        let operation = endpoint.operation
        let service = try self.locator.service(endpoint.service, deadline: deadline, trace: trace)
        let token = try self.tokens.token(scope: self.settings.intuneScope, deadline: deadline, trace: trace)
        // client-request-id: a new GUID per HTTP call (the reference libraries' "activityId").
        let requestID = UUID().uuidString.lowercased()
        let request = HTTPRequest(
            method: "POST", url: "\(service)/\(endpoint.path)",
            headers: [
                ("Authorization", "Bearer \(token)"), ("Content-Type", "application/json"),
                ("client-request-id", requestID), ("api-version", endpoint.apiVersion),
                // "UserAgent" without a hyphen is what the Java reference sends; a normal
                // User-Agent goes too (libcurl's CURLOPT_USERAGENT).
                ("UserAgent", self.settings.providerName), ("Accept", "application/json"),
            ],
            body: body)
        let response: HTTPResponse
        let started = ContinuousClock.now
        do { response = try self.transport.send(request, timeout: deadline.remaining) } catch let error as HTTPTransportError {
            trace.record(ValidatorCall(operation: operation, requestID: requestID, status: 0, code: nil, durationMs: milliseconds(since: started)))
            self.locator.invalidate()
            throw IntuneError.transport(error, "Intune \(operation)")
        }
        let code = (try? JSONDecoder().decode(ResultBody.self, from: Data(response.body)))?.code
        trace.record(ValidatorCall(operation: operation, requestID: requestID, status: response.status, code: code, durationMs: milliseconds(since: started)))
        switch response.status {
        case 200..<300:
            return ServiceResponse(status: response.status, body: response.body)
        case 401, 403:
            self.tokens.invalidate(scope: self.settings.intuneScope, token: token)
            throw IntuneError(
                .unauthorized,
                "Intune \(operation) answered HTTP \(response.status): does the app have the Intune scep_challenge_provider permission?")
        case 404, 500..<600:
            self.locator.invalidate()
            throw IntuneError(.httpError, "Intune \(operation) answered HTTP \(response.status)")
        case 429:
            throw IntuneError(.httpError, "Intune \(operation) answered HTTP 429 (throttled)")
        default:
            throw IntuneError(.httpError, "Intune \(operation) answered HTTP \(response.status)")
        }
    }
}
