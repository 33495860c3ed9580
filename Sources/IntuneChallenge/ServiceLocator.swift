import CurlHTTP
import Foundation

/// Finds the ScepRequestValidationFEService URL in Microsoft Graph's endpoint list of the Intune
/// service principal (intune-api.md §2.1, §2.3) and caches it until a call shows it is stale.
final class ServiceLocator: @unchecked Sendable {
    private let settings: IntuneSettings
    private let tokens: EntraTokenProvider
    private let transport: any HTTPTransport
    private let lock = NSLock()
    private var cached: String?
    private var lookupCount = 0
    /// How many discoveries were made (for diagnostics and tests).
    var lookups: Int { self.lock.withLock { self.lookupCount } }

    init(settings: IntuneSettings, tokens: EntraTokenProvider, transport: any HTTPTransport) {
        self.settings = settings
        self.tokens = tokens
        self.transport = transport
    }

    /// The validation service base URL (no trailing slash).
    func validationService(deadline: Deadline, trace: (String, Int) -> Void = { _, _ in }) throws -> String {
        try self.lock.withLock {
            if let cached = self.cached { return cached }
            let uri = try self.discover(deadline: deadline, trace: trace)
            self.cached = uri
            self.lookupCount += 1
            return uri
        }
    }

    /// Forget the URL after a transport error, 404 or 5xx from it (as the C# reference does).
    func invalidate() { self.lock.withLock { self.cached = nil } }

    private func discover(deadline: Deadline, trace: (String, Int) -> Void) throws -> String {
        var retriedUnauthorized = false
        while true {
            let token = try self.tokens.token(scope: self.settings.graphScope, deadline: deadline)
            let requestID = UUID().uuidString.lowercased()
            let request = HTTPRequest(
                url: self.settings.discoveryURL,
                headers: [("Authorization", "Bearer \(token)"), ("client-request-id", requestID), ("Accept", "application/json")])
            let response: HTTPResponse
            do { response = try self.transport.send(request, timeout: deadline.remaining) } catch let error as HTTPTransportError {
                trace(requestID, 0)
                throw IntuneError.transport(error, "Graph service discovery")
            }
            trace(requestID, response.status)
            switch response.status {
            case 200..<300:
                return try Self.validationURI(in: response.body)
            case 401 where !retriedUnauthorized:
                self.tokens.invalidate(scope: self.settings.graphScope, token: token)
                retriedUnauthorized = true
                continue
            case 401, 403:
                throw IntuneError(
                    .discoveryDenied,
                    "Graph refused service discovery (HTTP \(response.status) \(Self.graphErrorCode(response.body) ?? "")): "
                        + "grant the app Microsoft Graph Application.Read.All with admin consent")
            default:
                throw IntuneError(.discoveryFailed, "Graph service discovery answered HTTP \(response.status)")
            }
        }
    }

    /// `value[]`: the first entry whose `providerName` matches case-insensitively (Java reference).
    static func validationURI(in body: [UInt8]) throws -> String {
        guard let json = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let entries = json["value"] as? [[String: Any]]
        else { throw IntuneError(.badResponse, "Graph discovery response has no value array") }
        let wanted = IntuneSettings.validationServiceName.lowercased()
        for entry in entries {
            // providerName on Microsoft Graph; serviceName on the retired Azure AD Graph.
            let name = (entry["providerName"] as? String) ?? (entry["serviceName"] as? String) ?? ""
            if name.lowercased() == wanted, let uri = entry["uri"] as? String, uri.hasPrefix("http") {
                var trimmed = Substring(uri)
                while trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
                return String(trimmed)
            }
        }
        throw IntuneError(
            .serviceNotFound,
            "\(IntuneSettings.validationServiceName) is not in the Graph discovery list (\(entries.count) services listed)")
    }

    static func graphErrorCode(_ body: [UInt8]) -> String? {
        guard let json = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else { return nil }
        if let error = json["error"] as? [String: Any] { return error["code"] as? String }
        if let error = json["odata.error"] as? [String: Any] { return error["code"] as? String }
        return nil
    }
}
