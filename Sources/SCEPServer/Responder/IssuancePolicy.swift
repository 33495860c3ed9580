import FoundationEssentials
import Glibc
import SCEP
import SCEPCrypto

/// Issuance and lifecycle rules from `[issue]` (and `[store]`), outside the crypto layer.
public struct IssuancePolicy: Sendable {
    public var validityDays: Int
    public var backdateMinutes: Int
    public var extendedKeyUsage: [String]
    public var minRSABits: Int
    public var renewal: Bool
    public var renewalRequiresChallenge: Bool
    public var renewalWindowDays: Int
    public var renewalAllowSubjectChange: Bool
    public var manualApproval: Bool
    public var allowDESRequests: Bool
    public var crlURLs: [String]
    public var aiaURLs: [String]
    public var ocspURLs: [String]
    public var transactionRetentionDays: Int
    /// How far a signer certificate's validity and a signingTime may be from our clock.
    public var signerClockSkewMinutes: Int
    /// Subject and subjectAltName rules and caps.
    var names: NamePolicy
    /// Strong certificate mapping: whether a vouched-for SID gets the SID extension, and whether
    /// a SID nobody vouched for may be issued (``mappedSID(_:vouched:renewing:)``).
    var sidExtension: Configuration.SIDExtension
    var allowRequestedSID: Bool
    /// Whether the validity in a request's name/value pairs is used (capped by ``validityDays``).
    var honorRequestedValidity: Bool

    public init(_ issue: Configuration.Issue, challengeMode: Configuration.ChallengeMode = .static, store: Configuration.Store = .init()) {
        self.validityDays = issue.validityDays
        self.backdateMinutes = issue.backdateMinutes
        self.extendedKeyUsage = issue.extendedKeyUsage
        self.minRSABits = issue.minRSABits
        self.renewal = issue.renewal
        // RFC 8894 §2.4: the challenge is optional for renewals; Intune requires it (its profile
        // renews through the same validateRequest).
        self.renewalRequiresChallenge = issue.renewalRequiresChallenge ?? (challengeMode == .intune)
        self.renewalWindowDays = issue.renewalWindowDays
        self.renewalAllowSubjectChange = issue.renewalAllowSubjectChange
        self.manualApproval = issue.approval == .manual
        self.allowDESRequests = issue.allowDESRequests
        self.crlURLs = issue.crlURLs
        self.aiaURLs = issue.aiaURLs
        self.ocspURLs = issue.ocspURLs
        self.transactionRetentionDays = store.transactionRetentionDays
        self.signerClockSkewMinutes = issue.signerClockSkewMinutes
        self.names = NamePolicy(maxNames: issue.maxSubjectAltNames, maxSubjectBytes: issue.maxSubjectBytes)
        self.sidExtension = issue.sidExtension
        self.allowRequestedSID = issue.allowRequestedSID
        self.honorRequestedValidity = issue.honorRequestedValidity
    }

    /// The pkiMessage signer certificate and signingTime (RFC 8894 §2.3, §3.3.2.2 badTime).
    ///
    /// The signer's own signature is not checked (it is self-signed, or a renewal checked later),
    /// but it must be a certificate its key may sign with, valid now: a keyUsage without
    /// digitalSignature is refused (no keyUsage at all allows every use, RFC 5280 §4.2.1.3, as
    /// sscep reads it). Validity and signingTime get `issue.signer_clock_skew_minutes` of slack
    /// (24 h by default: certmonger's signer starts at midnight of its local date, which can be
    /// hours ahead of UTC).
    func checkSigner(_ signer: Certificate, signingTime: Date?, now: Date = Date()) throws {
        guard signer.permits(.digitalSignature) else { throw SCEPError(.signerKeyUsage, "signer \(signer.serialNumberHex)") }
        let skew = Double(self.signerClockSkewMinutes) * 60
        guard signer.notBefore.timeIntervalSince(now) <= skew, now.timeIntervalSince(signer.notAfter) <= skew else {
            throw SCEPError(.signerNotValid, "signer valid \(signer.notBefore) to \(signer.notAfter)")
        }
        if let signingTime, abs(signingTime.timeIntervalSince(now)) > skew {
            throw SCEPError(.signingTimeSkew, "signingTime \(signingTime)")
        }
    }

    /// Extensions a request may ask for critically: the ones this server decides itself (keyUsage,
    /// extendedKeyUsage, basicConstraints, key identifiers: set by the profile) or copies after
    /// checking (subjectAltName). Windows and PyScep mark keyUsage critical; certmonger,
    /// basicConstraints CA:FALSE.
    static let understoodExtensions: Set<String> = ["2.5.29.14", "2.5.29.15", "2.5.29.17", "2.5.29.19", "2.5.29.35", "2.5.29.37"]

    /// RFC 5280 §4.2: a certificate consumer must refuse a critical extension it does not know;
    /// a CA asked critically for one it will not issue says so rather than silently dropping
    /// it. Non-critical unknown extensions (Microsoft template names, S/MIME capabilities) are
    /// ignored. A request for a CA certificate is refused: this server issues end entities only.
    func checkExtensions(of csr: CertificateSigningRequest) throws {
        let requested = csr.requestedExtensions
        if requested.requestsCA { throw SCEPError(.csrCARequested) }
        if let unknown = requested.all.first(where: { $0.critical && !Self.understoodExtensions.contains($0.oid) }) {
            throw SCEPError(.csrCriticalExtension, unknown.oid)
        }
    }

    /// Whether a CSR key is acceptable: RSA of at least `minRSABits`, or an EC key. The reply
    /// envelope is encrypted to the *signer* certificate, which must be RSA (checked elsewhere).
    func accepts(_ key: PublicKey) -> Bool {
        switch key.algorithm {
        case .rsa: return key.bits >= self.minRSABits
        case .ec: return key.bits >= 256
        case .other: return false
        }
    }

    /// RFC 8894 §2.9: MD5 MUST NOT be supported, for the pkiMessage and for the CSR's own
    /// signature alike (a PKCS#10 signed with md5WithRSAEncryption gets badAlg).
    func acceptsCSRDigest(_ digest: DigestAlgorithm?) -> Bool { digest?.isAcceptable ?? false }

    /// Single DES requests are accepted unless `issue.allow_des_requests = false`; every other
    /// cipher the envelope opener knows is.
    func acceptsCipher(_ cipher: ContentCipher) -> Bool { cipher != .des || self.allowDESRequests }

    /// keyUsage per key type: keyEncipherment only makes sense for RSA (RFC 5280 §4.2.1.3).
    /// The signature uses the issuing key's digest (SHA-384 for a P-384 CA, else SHA-256).
    func profile(for key: PublicKey, issuer: KeyPair, securityIdentifier: String? = nil) -> IssuanceProfile {
        var profile = IssuanceProfile(
            keyUsage: key.algorithm == .rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature",
            extendedKeyUsage: self.extendedKeyUsage, signatureDigest: issuer.key.signatureDigest, crlURLs: self.crlURLs,
            caIssuersURLs: self.aiaURLs, securityIdentifier: securityIdentifier)
        profile.ocspURLs = self.ocspURLs
        return profile
    }

    /// Signs a certificate for `csr` with `issuer`: subject and SANs from the request, the
    /// profile's extensions, a random serial, this policy's validity.
    public func certificate(for csr: CertificateSigningRequest, issuer: KeyPair, now: Date = Date()) throws -> Certificate {
        let request = IssuanceRequest(csr: csr)
        return try self.certificate(for: request, issuer: issuer, validity: self.validity(request.validity, now: now, caNotAfter: issuer.certificate.notAfter))
    }

    /// Signs a certificate for `request` (its SID extension, if any) valid for `validity`.
    func certificate(for request: IssuanceRequest, issuer: KeyPair, validity: Validity) throws -> Certificate {
        let csr = request.csr
        guard let key = csr.publicKey else { throw OpenSSLError.parse("CSR public key") }
        return try CertificateBuilder.issue(
            csr: csr, issuer: issuer.certificate, issuerKey: issuer.key, serial: try SerialNumber.random(), notBefore: validity.notBefore,
            notAfter: validity.notAfter, profile: self.profile(for: key, issuer: issuer, securityIdentifier: request.securityIdentifier))
    }

    /// A certificate's validity and, when the request asked for one, what became of it.
    struct Validity: Equatable {
        let notBefore: Date
        let notAfter: Date
        /// For the audit line (`validityRule`): `honored`, `capped`, `ignored-disabled` or
        /// `ignored-` and the reason the pairs are malformed; nil when none was asked for.
        let rule: String?
    }

    /// notBefore a few minutes back (devices with slow clocks); notAfter by the requested validity
    /// when honoured, never past `issue.validity_days` nor the CA's own notAfter.
    func validity(_ requested: RequestedValidity?, now: Date, caNotAfter: Date) -> Validity {
        let notBefore = now.addingTimeInterval(-Double(self.backdateMinutes) * 60)
        let cap = min(now.addingTimeInterval(Double(self.validityDays) * 86400), caNotAfter)
        guard let requested else { return Validity(notBefore: notBefore, notAfter: cap, rule: nil) }
        if case .malformed(let reason) = requested { return Validity(notBefore: notBefore, notAfter: cap, rule: "ignored-" + reason) }
        guard self.honorRequestedValidity else { return Validity(notBefore: notBefore, notAfter: cap, rule: "ignored-disabled") }
        guard let end = requested.end(from: now), end <= cap else { return Validity(notBefore: notBefore, notAfter: cap, rule: "capped") }
        return Validity(notBefore: notBefore, notAfter: end, rule: "honored")
    }
}
