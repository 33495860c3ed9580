import SCEPServer

/// The Intune endpoints, normalised once at startup.
///
/// The reference libraries concatenate strings blindly (`authority + tenant`, `resource +
/// "/.default"`), so a missing or doubled trailing slash breaks the scope or the URL. Here every
/// base gets exactly one trailing slash first (intune-api.md §1.3).
public struct IntuneSettings: Sendable, Equatable {
    public let tenant: String
    public let clientID: String
    public let authority: String
    public let graph: String
    public let resource: String
    public let appID: String
    public let providerName: String
    public let timeoutSeconds: Double
    /// `intune.ca_configuration`; nil: the issuing CA's subject.
    public let caConfiguration: String?

    public init(_ config: Configuration.Intune) {
        self.tenant = config.tenant
        self.clientID = config.clientID
        self.authority = Self.slashed(config.authority)
        self.graph = Self.slashed(config.graph)
        self.resource = Self.slashed(config.resource)
        self.appID = config.appID
        self.providerName = config.providerName
        self.timeoutSeconds = config.timeoutSeconds
        self.caConfiguration = config.caConfiguration
    }

    /// Entra v2 token endpoint: `{authority}{tenant}/oauth2/v2.0/token`.
    public var tokenURL: String { "\(self.authority)\(self.tenant)/oauth2/v2.0/token" }
    /// `https://api.manage.microsoft.com//.default`: the reference library's double slash, which
    /// Entra reads as audience `https://api.manage.microsoft.com/` (everything before the last slash).
    public var intuneScope: String { self.resource + "/.default" }
    /// `https://graph.microsoft.com/.default`.
    public var graphScope: String { self.graph + ".default" }
    /// Graph's endpoint list of the Intune first-party service principal (intune-api.md §2.1).
    public var discoveryURL: String { "\(self.graph)v1.0/servicePrincipals/appId=\(self.appID)/endpoints" }

    static let validationServiceName = "ScepRequestValidationFEService"
    /// The ScepActions API version, sent as a header (intune-api.md §3.1).
    static let apiVersion = "2018-02-20"
    /// The revocation channel (intune-api.md, Revocation API): its service and API version.
    static let revocationServiceName = "PkiConnectorFEService"
    static let revocationAPIVersion = "5019-05-05"

    static func slashed(_ url: String) -> String { withoutTrailingSlashes(url) + "/" }

    static func withoutTrailingSlashes(_ url: String) -> String {
        var trimmed = Substring(url)
        while trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        return String(trimmed)
    }
}

/// The end of an operation's time budget.
struct Deadline {
    let end: ContinuousClock.Instant

    init(seconds: Double) { self.end = ContinuousClock.now + .milliseconds(Int64(seconds * 1000)) }

    var remaining: Double {
        let left = self.end - ContinuousClock.now
        return max(0, Double(left.components.seconds) + Double(left.components.attoseconds) / 1e18)
    }
}

/// Milliseconds since `start`, for the durations recorded in ``ValidatorCall``: measured as the
/// audit line's own `durationMs` is.
func milliseconds(since start: ContinuousClock.Instant) -> Double { AuditEvent.milliseconds(since: start) }
