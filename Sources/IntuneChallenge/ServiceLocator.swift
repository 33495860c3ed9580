import CurlHTTP
import Dispatch
import FoundationEssentials
import SCEPServer
import SCEPLocking
import Glibc

/// Finds Intune's service URLs (ScepRequestValidationFEService, PkiConnectorFEService) in Microsoft
/// Graph's endpoint list of the Intune service principal (intune-api.md §2.1, §2.3) and caches the
/// list until a call shows it is stale.
final class ServiceLocator: @unchecked Sendable {
    private let settings: IntuneSettings
    private let tokens: EntraTokenProvider
    private let transport: any HTTPTransport
    struct State {
        /// Service name (lower case) → URL without trailing slash, from one discovery.
        var cached: [String: String]?
        /// The discovery in progress; its group is left when it ends.
        var inFlight: DispatchGroup?
        var lookups = 0
    }
    /// Held only to read or update the cache, never across a discovery (which needs a token).
    private let state = Locked(State())
    /// How many discoveries were made (for diagnostics and tests).
    var lookups: Int { self.state.withLock { $0.lookups } }

    init(settings: IntuneSettings, tokens: EntraTokenProvider, transport: any HTTPTransport) {
        self.settings = settings
        self.tokens = tokens
        self.transport = transport
    }

    /// The validation service base URL (no trailing slash).
    func validationService(deadline: Deadline, trace: ValidatorTrace? = nil) throws -> String {
        try self.service(IntuneSettings.validationServiceName, deadline: deadline, trace: trace)
    }

    /// The base URL (no trailing slash) of the service `name`: cached, or discovered now, once,
    /// however many requests ask meanwhile (they wait for that one discovery, within their deadline).
    func service(_ name: String, deadline: Deadline, trace: ValidatorTrace? = nil) throws -> String {
        let services = try self.services(deadline: deadline, trace: trace)
        guard let uri = services[name.lowercased()] else {
            // Not listed (yet): the next call discovers again rather than trusting this list
            // forever (the Java reference never refreshes a non-empty map; a tenant fixed by
            // Microsoft would then need a restart).
            self.invalidate()
            throw IntuneError(.serviceNotFound, "\(name) is not in the Graph discovery list (\(services.count) services listed)")
        }
        return uri
    }

    private func services(deadline: Deadline, trace: ValidatorTrace?) throws -> [String: String] {
        while true {
            let (cached, flight, mine): ([String: String]?, DispatchGroup?, Bool) = self.state.withLock { state in
                if let cached = state.cached { return (cached, nil, false) }
                if let flight = state.inFlight { return (nil, flight, false) }
                let group = DispatchGroup()
                group.enter()
                state.inFlight = group
                return (nil, group, true)
            }
            if let cached { return cached }
            guard let flight else { continue }
            guard mine else {
                guard flight.wait(timeout: .now() + deadline.remaining) == .success else {
                    throw IntuneError(.timeout, "no Intune service URL within intune.timeout_seconds (another request's discovery is still running)")
                }
                continue
            }
            defer {
                self.state.withLock { $0.inFlight = nil }
                flight.leave()
            }
            let services = try self.discover(deadline: deadline, trace: trace)
            self.state.withLock { state in
                state.cached = services
                state.lookups += 1
            }
            return services
        }
    }

    /// Forget the URL after a transport error, 404 or 5xx from it (as the C# reference does).
    func invalidate() { self.state.withLock { $0.cached = nil } }

    private func discover(deadline: Deadline, trace: ValidatorTrace?) throws -> [String: String] {
        var retriedUnauthorized = false
        while true {
            let token = try self.tokens.token(scope: self.settings.graphScope, deadline: deadline, trace: trace)
            let requestID = UUID().uuidString.lowercased()
            let request = HTTPRequest(
                url: self.settings.discoveryURL,
                headers: [("Authorization", "Bearer \(token)"), ("client-request-id", requestID), ("Accept", "application/json")])
            let response: HTTPResponse
            let started = ContinuousClock.now
            do { response = try self.transport.send(request, timeout: deadline.remaining) } catch let error as HTTPTransportError {
                trace?.record(ValidatorCall(operation: "discovery", requestID: requestID, status: 0, code: nil, durationMs: milliseconds(since: started)))
                throw IntuneError.transport(error, "Graph service discovery")
            }
            trace?.record(
                ValidatorCall(operation: "discovery", requestID: requestID, status: response.status, code: nil, durationMs: milliseconds(since: started)))
            switch response.status {
            case 200..<300:
                return try Self.services(in: response.body)
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
    struct EndpointList: Decodable {
        struct Endpoint: Decodable {
            let providerName: String?
            let serviceName: String?
            let uri: String?
        }
        let value: [Endpoint]
    }

    /// Every listed service with an http(s) URI, by lower-cased name; the first entry of a name
    /// wins (Java reference).
    static func services(in body: [UInt8]) throws -> [String: String] {
        guard let entries = (try? JSONDecoder().decode(EndpointList.self, from: Data(body)))?.value else {
            throw IntuneError(.badResponse, "Graph discovery response has no value array")
        }
        var services: [String: String] = [:]
        for entry in entries {
            // providerName on Microsoft Graph; serviceName on the retired Azure AD Graph.
            let name = (entry.providerName ?? entry.serviceName ?? "").lowercased()
            if !name.isEmpty, services[name] == nil, let uri = entry.uri, uri.hasPrefix("http") {
                services[name] = IntuneSettings.withoutTrailingSlashes(uri)
            }
        }
        return services
    }

    /// `{"error":{"code":…}}` (Graph) or `{"odata.error":{"code":…}}` (Azure AD Graph).
    struct GraphError: Decodable {
        struct Body: Decodable { let code: String? }
        let error: Body?
        let odataError: Body?
        enum CodingKeys: String, CodingKey { case error, odataError = "odata.error" }
    }

    static func graphErrorCode(_ body: [UInt8]) -> String? {
        guard let json = try? JSONDecoder().decode(GraphError.self, from: Data(body)) else { return nil }
        return json.error?.code ?? json.odataError?.code
    }
}
