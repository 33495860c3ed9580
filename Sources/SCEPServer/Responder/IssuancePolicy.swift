import FoundationEssentials
import Glibc
import SCEPCrypto

/// Issuance rules from `[issue]`.
public struct IssuancePolicy: Sendable {
    public var validityDays: Int
    public var backdateMinutes: Int
    public var extendedKeyUsage: [String]
    public var minRSABits: Int

    public init(_ issue: Configuration.Issue) {
        self.validityDays = issue.validityDays
        self.backdateMinutes = issue.backdateMinutes
        self.extendedKeyUsage = issue.extendedKeyUsage
        self.minRSABits = issue.minRSABits
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

    /// keyUsage per key type: keyEncipherment only makes sense for RSA (RFC 5280 §4.2.1.3).
    func profile(for key: PublicKey) -> IssuanceProfile {
        IssuanceProfile(
            keyUsage: key.algorithm == .rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature",
            extendedKeyUsage: self.extendedKeyUsage, signatureDigest: .sha256)
    }

    /// notBefore a few minutes back (devices with slow clocks), notAfter by the validity but never
    /// past the CA's own notAfter.
    func validity(now: Date, caNotAfter: Date) -> (Date, Date) {
        let notBefore = now.addingTimeInterval(-Double(self.backdateMinutes) * 60)
        let notAfter = min(now.addingTimeInterval(Double(self.validityDays) * 86400), caNotAfter)
        return (notBefore, notAfter)
    }
}
