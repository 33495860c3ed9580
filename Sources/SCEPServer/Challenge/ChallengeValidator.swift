import SCEP
import SCEPCrypto

import FoundationEssentials
import SCEPLocking
import Glibc

/// What a challenge validator sees of an enrollment.
public struct ChallengeContext: Sendable {
    public let transactionID: String
    public let csr: CertificateSigningRequest
    /// The CSR's challengePassword; never logged, never audited.
    public let challenge: String?
    public let remoteAddr: String
    /// Where the validator records its outgoing calls for this request's audit line.
    public let trace: ValidatorTrace

    public init(transactionID: String, csr: CertificateSigningRequest, challenge: String?, remoteAddr: String, trace: ValidatorTrace = ValidatorTrace()) {
        self.transactionID = transactionID
        self.csr = csr
        self.challenge = challenge
        self.remoteAddr = remoteAddr
        self.trace = trace
    }
}

/// One outgoing call a validator made (Intune: validateRequest, successNotification, …), so an
/// operator can correlate the audit line with the remote service's own logs.
public struct ValidatorCall: Sendable, Equatable {
    public let operation: String
    /// The correlation id sent with the call (Intune's `client-request-id`).
    public let requestID: String
    /// HTTP status, or 0 when no response arrived.
    public let status: Int
    /// The service's result code, when it gave one.
    public let code: String?
    /// How long the call took, for the latency histogram (`scep_intune_call_duration_seconds`).
    public let durationMs: Double?

    public init(operation: String, requestID: String, status: Int, code: String?, durationMs: Double? = nil) {
        self.operation = operation
        self.requestID = requestID
        self.status = status
        self.code = code
        self.durationMs = durationMs
    }

    /// No answer (status 0), or an HTTP error status: the service or the path to it failed. A
    /// challenge the service rejected is an answer (HTTP 200 with a failure code), not a failure.
    public var failed: Bool { self.status == 0 || self.status >= 400 }
}

/// Collects a request's validator calls; written by the validator, read by the responder.
public final class ValidatorTrace: Sendable {
    private let storage = Locked<[ValidatorCall]>([])

    public init() {}

    public func record(_ call: ValidatorCall) { self.storage.withLock { $0.append(call) } }
    public var calls: [ValidatorCall] { self.storage.withLock { $0 } }
}

/// An error that can name itself in the audit log with a bounded code (no dynamic data).
public protocol AuditCodedError: Error {
    var auditCode: String { get }
}

/// A validator's verdict. Rejection is an expected outcome, not an error.
public enum ChallengeDecision: Sendable, Equatable {
    case accepted
    /// `code` is the audit reason; `detail` a bounded code from the validator (e.g. Intune's result code).
    case rejected(SCEPError.Code, detail: String?)
}

/// Decides whether an enrollment may be issued (RFC 8894 §2.4). Static password today; Intune's
/// validateRequest / successNotification / failureNotification fit the same three calls.
public protocol ChallengeValidator: Sendable {
    /// A short name for the audit log (`static`, `intune`).
    var mode: String { get }
    /// Throws only when the validator itself fails (network, bad answer): the request then gets
    /// FAILURE with `challenge-unavailable`, never a certificate.
    func validate(_ context: ChallengeContext) throws -> ChallengeDecision
    /// Called after the certificate is issued and stored, before it is returned. Throwing stops
    /// the delivery (Intune: a failed successNotification means no certificate).
    func issued(_ certificate: Certificate, context: ChallengeContext) throws
    /// Whether ``issued(_:context:)`` tells someone outside (Intune): the certificate is then made
    /// durable before, not only with its audit line after.
    var notifiesIssuance: Bool { get }
    /// Called when issuing failed after an accepted validation.
    func issuanceFailed(_ error: SCEPError, context: ChallengeContext)
    var acceptedResult: String? { get }
    func rejectionText(_ detail: String) -> String
    /// Whether an accepted validation also vouches for the request's subjectAltNames (Intune
    /// compares them with its profile), so a SID among them may be issued (strong mapping).
    var vouchesForNames: Bool { get }
    /// When the validator's own credential expires (Intune's certificate credential), for the metrics.
    var credentialExpiry: Date? { get }
}

extension ChallengeValidator {
    public func issued(_ certificate: Certificate, context: ChallengeContext) throws {}
    public var notifiesIssuance: Bool { false }
    public func issuanceFailed(_ error: SCEPError, context: ChallengeContext) {}
    /// The result code to audit for an accepted challenge (Intune: `Success`).
    public var acceptedResult: String? { nil }
    /// The failInfoText for a rejection carrying `detail`.
    public func rejectionText(_ detail: String) -> String { "challenge rejected: \(detail)" }
    /// A shared password vouches for nothing a request names.
    public var vouchesForNames: Bool { false }
    public var credentialExpiry: Date? { nil }
}

/// One shared challenge password, compared in constant time.
public struct StaticChallengeValidator: ChallengeValidator {
    private let expected: [UInt8]
    public var mode: String { "static" }

    public init(password: [UInt8]) { self.expected = password }

    public func validate(_ context: ChallengeContext) throws -> ChallengeDecision {
        guard let challenge = context.challenge, !challenge.isEmpty else { return .rejected(.challengeMissing, detail: nil) }
        return ConstantTime.equal(Array(challenge.utf8), self.expected) ? .accepted : .rejected(.challengeMismatch, detail: nil)
    }
}

enum ConstantTime {
    /// Compares without an early exit, so timing does not tell how many leading bytes matched.
    /// The length is not secret (a shared password's length leaks through nothing we log).
    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference: UInt8 = a.count == b.count ? 0 : 1
        let n = max(a.count, b.count)
        for i in 0..<n {
            let x = i < a.count ? a[i] : 0
            let y = i < b.count ? b[i] : 0xFF
            difference |= x ^ y
        }
        return difference == 0 && !b.isEmpty
    }
}
