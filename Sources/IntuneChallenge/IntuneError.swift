import SCEPServer

/// The one error type of `IntuneChallenge`: Intune, Entra or Graph could not give an answer.
///
/// A *rejection* (validateRequest answering a code other than `Success`) is not an error; it is a
/// ``SCEPServer/ChallengeDecision``. Every IntuneError makes the enrollment fail without a
/// certificate; ``auditCode`` says precisely why. Equal by code.
public struct IntuneError: Error, AuditCodedError, Hashable, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        /// Entra refused the client credentials (bad secret, unknown app or tenant): AADSTS code in the message.
        case credentialsRejected = "intune-credentials-rejected"
        /// The credential files cannot be used (missing, unreadable, a key that is not the
        /// certificate's): nothing was sent.
        case credentialUnreadable = "intune-credential-unreadable"
        /// The token endpoint failed otherwise (5xx, bad answer).
        case tokenUnavailable = "intune-token-unavailable"
        /// Graph refused service discovery (403: Application.Read.All missing or not consented).
        case discoveryDenied = "intune-discovery-denied"
        /// Graph discovery failed otherwise.
        case discoveryFailed = "intune-discovery-failed"
        /// ScepRequestValidationFEService is not in the discovered list.
        case serviceNotFound = "intune-service-not-found"
        /// The Intune token's `roles` claim lacks scep_challenge_provider (`check --intune`).
        case consentMissing = "intune-consent-missing"
        /// Intune answered 401/403 even with a fresh token (scep_challenge_provider missing?).
        case unauthorized = "intune-unauthorized"
        /// Intune answered an HTTP error status (5xx after retries, or an unexpected 4xx).
        case httpError = "intune-http-error"
        /// No answer within intune.timeout_seconds.
        case timeout = "intune-timeout"
        /// Connection or TLS failure.
        case unreachable = "intune-unreachable"
        case tls = "intune-tls"
        /// A 2xx answer that is not the expected JSON.
        case badResponse = "intune-bad-response"
        /// successNotification answered a code other than Success.
        case notificationRejected = "intune-notification-rejected"
    }

    public let code: Code
    /// For the diagnostic log and `check --intune`; never contains a secret or token.
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var auditCode: String { self.code.rawValue }
    public var description: String { "\(self.code.rawValue): \(self.message)" }
    public static func == (lhs: IntuneError, rhs: IntuneError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }

    /// Whether another attempt within the deadline may succeed.
    var isTransient: Bool {
        switch self.code {
        case .tokenUnavailable, .discoveryFailed, .httpError, .timeout, .unreachable: return true
        default: return false
        }
    }
}
