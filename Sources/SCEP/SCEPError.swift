/// The one error type of the `SCEP` wire layer and of the responder built on it.
///
/// Each code belongs to one of the two tiers of RFC 8894 error reporting:
/// - before a reply can be signed (no transactionID/senderNonce yet): an HTTP 4xx with a fixed
///   one-line text (``httpStatus`` is non-nil);
/// - after: a signed CertRep FAILURE with ``failInfo`` (RFC 8894 §3.3.2.2).
///
/// ``auditCode`` is the closed set of `reason` values written to the audit log. Equal by code.
public struct SCEPError: Error, Hashable, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable, CaseIterable {
        // HTTP tier.
        case methodNotAllowed = "method-not-allowed"
        case missingOperation = "missing-operation"
        case unknownOperation = "unknown-operation"
        case missingMessage = "missing-message"
        case badEncoding = "bad-encoding"
        case bodyTooLarge = "body-too-large"
        case malformedMessage = "malformed-message"
        case missingTransactionID = "missing-transaction-id"
        case missingSenderNonce = "missing-sender-nonce"
        case missingMessageType = "missing-message-type"
        case noNextCA = "no-next-ca"
        // CertRep FAILURE tier.
        case badSignature = "bad-signature"
        case unsupportedDigest = "unsupported-digest"
        case unsupportedMessageType = "unsupported-message-type"
        case malformedEnvelope = "malformed-envelope"
        case decryptFailed = "decrypt-failed"
        case unsupportedCipher = "unsupported-cipher"
        case malformedCSR = "malformed-csr"
        case badCSRSignature = "bad-csr-signature"
        case keyPolicy = "key-policy"
        case signerKeyNotRSA = "signer-key-not-rsa"
        /// The signer certificate is outside its validity by more than the allowed clock skew.
        case signerNotValid = "signer-not-valid"
        /// The signer certificate has a keyUsage without digitalSignature (RFC 5280 §4.2.1.3).
        case signerKeyUsage = "signer-key-usage"
        /// The signingTime attribute is further from our clock than the allowed skew (RFC 8894 §3.3.2.2 badTime).
        case signingTimeSkew = "signing-time-skew"
        case challengeMissing = "challenge-missing"
        case challengeMismatch = "challenge-mismatch"
        case challengeRejected = "challenge-rejected"
        case challengeUnavailable = "challenge-unavailable"
        case issuanceFailed = "issuance-failed"
        case storeFailed = "store-failed"
        case notificationFailed = "notification-failed"
        case auditFailed = "audit-failed"
        case internalError = "internal-error"
        // Lifecycle (RFC 8894 §3.3.1.2 renewal, §3.3.3 polling and retransmission, §3.3.4 GetCert/GetCRL).
        case malformedPayload = "malformed-payload"
        case csrDigest = "csr-digest"
        case cipherPolicy = "cipher-policy"
        case renewalDisabled = "renewal-disabled"
        case renewalSignerUnknown = "renewal-signer-unknown"
        case renewalSignerInvalid = "renewal-signer-invalid"
        case renewalSignerExpired = "renewal-signer-expired"
        case renewalSignerRevoked = "renewal-signer-revoked"
        case renewalTooEarly = "renewal-too-early"
        case renewalSubjectChanged = "renewal-subject-changed"
        case renewalNamesWidened = "renewal-names-widened"
        case transactionKeyMismatch = "transaction-key-mismatch"
        case transactionRejected = "transaction-rejected"
        case certificateRevoked = "certificate-revoked"
        case unknownTransaction = "unknown-transaction"
        case unknownCertificate = "unknown-certificate"
        case unknownIssuer = "unknown-issuer"
        case crlUnavailable = "crl-unavailable"
        // Name policy (RFC 5280 §4.2.1.6), checked before the challenge.
        case subjectTooLarge = "subject-too-large"
        case subjectInvalid = "subject-invalid"
        case tooManyNames = "too-many-names"
        case nameInvalid = "name-invalid"
        // Requested extensions (RFC 5280 §4.2): checked with the names.
        /// The CSR asks for basicConstraints cA TRUE; this server issues end-entity certificates only.
        case csrCARequested = "csr-ca-requested"
        /// The CSR asks critically for an extension this server neither understands nor issues.
        case csrCriticalExtension = "csr-critical-extension"
        /// A SID (strong certificate mapping) that nobody validated: a static challenge, manual
        /// approval, or a renewal that adds or changes one.
        case sidNotValidated = "sid-not-validated"
        /// A SID that is not `S-1-` and decimal sub-authorities, or two different SIDs.
        case sidInvalid = "sid-invalid"
        /// The web server closed the connection (its client gave up) before issuance.
        case clientGone = "client-gone"
    }

    public let code: Code
    /// Detail for the diagnostic log only; never sent to a client or written to the audit log.
    public let reason: String
    /// A failInfoText that replaces the fixed one (e.g. naming Intune's result code); the caller
    /// guarantees it holds no secret and no unbounded request data.
    private let customFailInfoText: String?
    public let file: String
    public let line: Int

    public init(_ code: Code, _ reason: String = "", failInfoText: String? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.reason = reason
        self.customFailInfoText = failInfoText
        self.file = file
        self.line = line
    }

    public var auditCode: String { self.code.rawValue }

    /// The HTTP status for HTTP-tier errors; nil for errors answered with a CertRep FAILURE.
    public var httpStatus: Int? {
        switch self.code {
        case .methodNotAllowed: return 405
        case .bodyTooLarge: return 413
        case .noNextCA: return 404
        case .missingOperation, .unknownOperation, .missingMessage, .badEncoding, .malformedMessage,
            .missingTransactionID, .missingSenderNonce, .missingMessageType:
            return 400
        default: return nil
        }
    }

    /// The fixed text sent with an HTTP-tier error.
    public var publicText: String {
        switch self.code {
        case .methodNotAllowed: return "method not allowed: use GET or POST"
        case .missingOperation:
            // Apache mod_proxy_fcgi drops a query string over 16 KiB without a word (AH02536).
            return "missing operation parameter (was an over-long query string dropped by a proxy?)"
        case .unknownOperation: return "unknown operation"
        case .missingMessage: return "missing or empty message parameter"
        case .badEncoding: return "message is not valid base64"
        case .bodyTooLarge: return "request body too large"
        case .malformedMessage: return "message is not a CMS SignedData pkiMessage"
        case .missingTransactionID: return "pkiMessage has no valid transactionID"
        case .missingSenderNonce: return "pkiMessage has no valid senderNonce"
        case .missingMessageType: return "pkiMessage has no valid messageType"
        case .noNextCA: return "no next CA certificate is configured"
        default: return "internal error, see server logs"
        }
    }

    /// The failInfo of the CertRep FAILURE for this error (RFC 8894 §3.2.1.4.5).
    public var failInfo: FailInfo {
        // One answer for everything that can follow a key-transport decryption, so that the reply
        // never tells an RSA padding failure from content that decrypted to garbage (no
        // Bleichenbacher oracle, whatever OpenSSL's own countermeasure does).
        if self.isEnvelopeContentError { return .badMessageCheck }
        switch self.code {
        case .badSignature, .malformedEnvelope, .badCSRSignature, .renewalSignerInvalid, .signerKeyUsage: return .badMessageCheck
        case .unsupportedDigest, .unsupportedCipher, .signerKeyNotRSA, .csrDigest, .cipherPolicy: return .badAlg
        case .renewalTooEarly, .signerNotValid, .signingTimeSkew: return .badTime
        case .unknownTransaction, .unknownCertificate, .unknownIssuer: return .badCertID
        default: return .badRequest
        }
    }

    /// The failInfoText of the CertRep FAILURE: fixed text, no input echoed back.
    public var failInfoText: String {
        if let custom = self.customFailInfoText { return custom }
        if self.isEnvelopeContentError { return Self.envelopeContentText }
        switch self.code {
        case .badSignature: return "pkiMessage signature does not verify"
        case .unsupportedDigest: return "digest algorithm not supported"
        case .unsupportedMessageType: return "message type not supported by this server"
        case .malformedEnvelope: return "pkcsPKIEnvelope is malformed"
        case .unsupportedCipher: return "content encryption algorithm not supported"
        case .badCSRSignature: return "PKCS#10 signature does not verify"
        case .keyPolicy: return "requested key does not meet the key policy"
        case .signerKeyNotRSA: return "signer certificate key must be RSA"
        case .signerNotValid: return "signer certificate is expired or not yet valid"
        case .signerKeyUsage: return "signer certificate keyUsage does not allow digitalSignature"
        case .signingTimeSkew: return "signingTime is too far from the server's clock"
        case .challengeMissing: return "challenge password missing"
        case .challengeMismatch: return "challenge password rejected"
        case .challengeRejected: return "challenge rejected by the validator"
        case .challengeUnavailable: return "challenge could not be validated, try again later"
        case .csrDigest: return "PKCS#10 signature algorithm not allowed"
        case .cipherPolicy: return "content encryption algorithm not allowed"
        case .renewalDisabled: return "renewal is not enabled on this server"
        case .renewalSignerUnknown: return "renewal signer certificate was not issued by this CA"
        case .renewalSignerInvalid: return "renewal signer certificate does not verify"
        case .renewalSignerExpired: return "renewal signer certificate has expired"
        case .renewalSignerRevoked: return "renewal signer certificate is revoked"
        case .renewalTooEarly: return "renewal window is not open yet"
        case .renewalSubjectChanged: return "renewal must keep the subject of the certificate it renews"
        case .renewalNamesWidened: return "renewal must not add subjectAltNames"
        case .transactionKeyMismatch: return "transactionID already used with another key"
        case .transactionRejected: return "request was rejected"
        case .certificateRevoked: return "certificate is revoked"
        case .unknownTransaction: return "no request with this transactionID"
        case .unknownCertificate: return "no certificate with this issuer and serial number"
        case .unknownIssuer: return "issuer is not a CA of this server"
        case .crlUnavailable: return "CRL could not be produced, try again later"
        case .subjectTooLarge: return "requested subject is larger than this server accepts"
        case .subjectInvalid: return "requested subject contains control characters"
        case .tooManyNames: return "more subjectAltNames than this server accepts"
        case .nameInvalid: return "a subjectAltName is not valid for its type"
        case .csrCARequested: return "this server does not issue CA certificates"
        case .csrCriticalExtension: return "PKCS#10 requests a critical extension this server does not issue"
        case .sidNotValidated: return "a security identifier (SID) in the request was not validated; it cannot be issued"
        case .sidInvalid: return "the security identifier (SID) in the request is not well formed"
        case .clientGone: return "the request was abandoned before it could be completed"
        default: return "internal error, see server logs"
        }
    }

    /// The one failInfoText of ``isEnvelopeContentError`` codes.
    static let envelopeContentText = "pkcsPKIEnvelope cannot be decrypted, or its content is malformed"

    /// Errors a client sees identically (badMessageCheck, one text): a failed decryption and
    /// decrypted content that is not the expected structure. OpenSSL substitutes a random key when
    /// RSA key transport fails (its MMA countermeasure), so either can follow a bad padding; the
    /// audit log still tells them apart.
    public var isEnvelopeContentError: Bool { [.decryptFailed, .malformedCSR, .malformedPayload].contains(self.code) }

    /// Whether the fault lies with the server rather than the request (audit `outcome: failed`).
    public var isServerFault: Bool {
        switch self.code {
        case .challengeUnavailable, .issuanceFailed, .storeFailed, .notificationFailed, .auditFailed, .internalError, .crlUnavailable:
            return true
        default: return false
        }
    }

    public var description: String { "SCEPError.\(self.code.rawValue): \(self.reason) (\(self.file):\(self.line))" }
    public static func == (lhs: SCEPError, rhs: SCEPError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }
}
