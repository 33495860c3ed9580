import CurlHTTP
import FoundationEssentials
import Glibc
import SCEP
import SCEPCrypto
import SCEPServer

/// Microsoft Intune SCEP challenge validation (intune-api.md §0, §3): stateless, no challenge
/// database. validateRequest before issuing; successNotification before delivering; a
/// failureNotification when issuing fails after a successful validation.
public final class IntuneChallengeValidator: ChallengeValidator, @unchecked Sendable {
    let client: IntuneClient
    public var mode: String { "intune" }
    public var acceptedResult: String? { "Success" }
    /// validateRequest checks the CSR's subject and subjectAltNames against the profile
    /// (`SubjectAltNameMismatch` otherwise), so a SID URI it accepted came from Intune.
    public var vouchesForNames: Bool { true }

    let credential: EntraCredential

    public init(settings: IntuneSettings, credential: EntraCredential, transport: any HTTPTransport) {
        self.client = IntuneClient(settings: settings, credential: credential, transport: transport)
        self.credential = credential
    }

    /// With a client secret already read (tests).
    public convenience init(settings: IntuneSettings, secret: [UInt8], transport: any HTTPTransport) {
        self.init(settings: settings, credential: .secret(secret), transport: transport)
    }

    /// When the certificate credential expires (nil with a secret, or when it cannot be read):
    /// for the metrics, so an expiring credential is seen before Entra refuses it.
    public var credentialExpiry: Date? { self.credential.certificateExpiry }

    public func rejectionText(_ detail: String) -> String { "Intune rejected the challenge: \(detail)" }

    public func validate(_ context: ChallengeContext) throws -> ChallengeDecision {
        let body = try Self.json(
            ValidateRequestBody(
                request: .init(
                    transactionId: context.transactionID, certificateRequest: Self.base64(context.csr),
                    callerInfo: self.client.settings.providerName)))
        let result = try self.client.call("validateRequest", body: body, trace: context.trace)
        // Exactly "Success" (case-sensitive, like the reference libraries' enum parse). Anything
        // else, documented or not (BadTenantIdInChallenge is not in the enum), is a rejection.
        if result.code == "Success" { return .accepted }
        return .rejected(.challengeRejected, detail: Self.boundedCode(result.code))
    }

    /// successNotification tells Intune of each certificate.
    public var notifiesIssuance: Bool { true }

    public func issued(_ certificate: Certificate, context: ChallengeContext) throws {
        let body = try Self.json(
            SuccessNotificationBody(
                notification: .init(
                    transactionId: context.transactionID, certificateRequest: Self.base64(context.csr),
                    certificateThumbprint: Self.hex(certificate.fingerprint(.sha1)),
                    certificateSerialNumber: certificate.serialNumberHex,
                    certificateExpirationDateUtc: Self.iso8601(certificate.notAfter),
                    issuingCertificateAuthority: certificate.issuer, callerInfo: self.client.settings.providerName,
                    // Comes back in Intune's revocation requests: stable for a CA, documented in the README.
                    caConfiguration: Self.caConfiguration(self.client.settings, issuer: certificate.issuer),
                    certificateAuthority: certificate.issuer)))
        let result = try self.client.call("successNotification", body: body, trace: context.trace)
        guard result.code == "Success" else {
            throw IntuneError(.notificationRejected, "successNotification answered \(Self.boundedCode(result.code))")
        }
    }

    public func issuanceFailed(_ error: SCEPError, context: ChallengeContext) {
        let description = String("scep-fcgi could not issue the certificate: \(error.auditCode)".prefix(255))
        guard
            let body = try? Self.json(
                FailureNotificationBody(
                    notification: .init(
                        transactionId: context.transactionID, certificateRequest: Self.base64(context.csr),
                        // E_FAIL (0x80004005) as the unsigned 32-bit number the reference sends.
                        hResult: 0x8000_4005, errorDescription: description, callerInfo: self.client.settings.providerName)))
        else { return }
        // Best effort: the client gets FAILURE whatever Intune answers; the trace records the call.
        _ = try? self.client.call("failureNotification", body: body, trace: context.trace)
    }

    /// What successNotification sends as `caConfiguration`: `intune.ca_configuration`, else the
    /// issuing CA's subject. The revocation sync recognises its requests by it.
    public static func caConfiguration(_ settings: IntuneSettings, issuer: String) -> String { settings.caConfiguration ?? issuer }

    /// Tokens and discovery only, for `scep-fcgi check --intune`.
    public func probe() throws -> [String] {
        let deadline = Deadline(seconds: self.client.settings.timeoutSeconds)
        let settings = self.client.settings
        var lines = ["Entra credential: \(try self.credential.describe().text)"]
        let token = try self.client.tokens.token(scope: settings.intuneScope, deadline: deadline)
        lines.append("Intune token: ok (scope \(settings.intuneScope), from \(settings.tokenURL))")
        // Entra lists the application permissions granted with admin consent in the token's
        // `roles` claim; without scep_challenge_provider every validateRequest gets 401/403.
        switch AccessTokenClaims.roles(of: token) {
        case nil:
            lines.append("Intune token roles: not a JWT, not checked")
        case let roles? where roles.contains(Self.requiredRole):
            lines.append("Intune token roles: \(roles.joined(separator: ", "))")
        case let roles?:
            throw IntuneError(
                .consentMissing,
                "the Intune token's roles claim (\(roles.isEmpty ? "empty" : roles.joined(separator: ", "))) lacks \(Self.requiredRole): "
                    + "add the Intune API application permission \(Self.requiredRole) to app \(settings.clientID) and grant admin consent")
        }
        _ = try self.client.tokens.token(scope: settings.graphScope, deadline: deadline)
        lines.append("Graph token: ok (scope \(settings.graphScope))")
        let uri = try self.client.locator.validationService(deadline: deadline)
        lines.append("\(IntuneSettings.validationServiceName): \(uri)")
        // The revocation channel (scep-fcgi intune sync-revocations): same discovery, same list.
        do {
            let revocation = try self.client.locator.service(IntuneSettings.revocationServiceName, deadline: deadline)
            lines.append("\(IntuneSettings.revocationServiceName): \(revocation)")
        } catch let error as IntuneError where error.code == .serviceNotFound {
            lines.append("\(IntuneSettings.revocationServiceName): not listed; scep-fcgi intune sync-revocations cannot run")
        }
        return lines
    }

    /// `check --intune --probe`: validateRequest for a throwaway CSR with a junk challenge. Intune
    /// must refuse it with a result code: that answer proves the credential, the consent, the
    /// network path and the API version, and nothing is issued or notified. An HTTP error, no
    /// answer, or `Success` for a junk challenge is a problem.
    public func selfTest() throws -> String {
        let key = try PrivateKey.generateRSA(bits: 2048)
        let junk = "scep-fcgi-probe-" + UUID().uuidString.lowercased()
        let csr = try CertificateSigningRequest.make(subject: "CN=scep-fcgi probe", key: key, challengePassword: junk)
        let context = ChallengeContext(transactionID: "scep-fcgi-probe-" + UUID().uuidString.lowercased(), csr: csr, challenge: junk, remoteAddr: "check")
        let decision = try self.validate(context)
        let requestID = context.trace.calls.last { $0.operation == "validateRequest" }?.requestID ?? "-"
        guard case .rejected(_, let code) = decision else {
            throw IntuneError(.badResponse, "validateRequest answered Success for a junk challenge (client-request-id \(requestID)): is this Intune?")
        }
        return "validateRequest: refused a junk challenge with \(code ?? "a code") as it should (client-request-id \(requestID)): "
            + "credential, consent, network path and API version work"
    }

    /// The Intune application permission a SCEP challenge provider needs (intune-api.md §1.1).
    static let requiredRole = "scep_challenge_provider"

    /// Token and discovery request counts (tests, diagnostics).
    public var statistics: (tokenFetches: Int, discoveries: Int) { (self.client.tokens.fetches, self.client.locator.lookups) }

    // MARK: - Wire shapes (intune-api.md §3.2-3.4)

    struct ValidateRequestBody: Encodable {
        struct Request: Encodable { let transactionId, certificateRequest, callerInfo: String }
        let request: Request
    }

    struct SuccessNotificationBody: Encodable {
        struct Notification: Encodable {
            let transactionId, certificateRequest, certificateThumbprint, certificateSerialNumber: String
            let certificateExpirationDateUtc, issuingCertificateAuthority, callerInfo: String
            let caConfiguration, certificateAuthority: String
        }
        let notification: Notification
    }

    struct FailureNotificationBody: Encodable {
        struct Notification: Encodable {
            let transactionId, certificateRequest: String
            let hResult: UInt32
            let errorDescription, callerInfo: String
        }
        let notification: Notification
    }

    static func json<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return Array(try encoder.encode(value))
    }

    /// "DER-encoded PKCS #10 Certificate Request Base64 encoded as a string": standard base64, no PEM.
    static func base64(_ csr: CertificateSigningRequest) -> String { Data(csr.derEncoded).base64EncodedString() }

    static func hex(_ bytes: [UInt8]) -> String { HexEncoding.string(bytes, uppercase: true) }

    /// `YYYY-MM-DDThh:mm:ss.sssZ`, the "web UTC time" the reference Javadoc asks for.
    static func iso8601(_ date: Date) -> String { RFC3339.string(date) }

    /// Service codes are an open set; keep what reaches the audit log and failInfoText bounded
    /// (ASCII letters, digits, `_` and `-`, at most 64).
    static func boundedCode(_ code: String) -> String {
        let allowed = code.unicodeScalars.filter { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" || $0 == "-") }
        let text = String(String.UnicodeScalarView(allowed.prefix(64)))
        return text.isEmpty ? "Unknown" : text
    }
}
