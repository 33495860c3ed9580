import FoundationEssentials
import Glibc
import SCEP
import SCEPCrypto
import SCEPStore

extension SCEPResponder {
    /// Renewal (RFC 8894 §3.3.1.2): a RenewalReq, or a PKCSReq signed by a certificate one of our
    /// CAs issued (certmonger and sscep renew that way; micromdm's scepclient sends RenewalReq).
    /// Both get the same checks: the signer chains to the current or previous CA, is within its
    /// validity, is in our store and not revoked, the renewal window is open, and the request keeps
    /// the subject and asks for no subjectAltName the old certificate lacked.
    ///
    /// - Returns: the certificate being renewed, or nil for an initial enrollment.
    func renewal(of x: Exchange, csr: CertificateSigningRequest, _ record: RequestRecord) throws -> StoredCertificate? {
        let signer = x.signer
        let isRenewalReq = x.message.messageType == .renewalReq
        let namesOurCA = !signer.isSelfIssued && x.material.authorities.contains { signer.isIssued(byNameOf: $0.certificate) }
        if !isRenewalReq && !namesOurCA { return nil }
        guard self.policy.renewal else {
            if isRenewalReq { throw SCEPError(.renewalDisabled) }
            return nil  // a PKCSReq signed with some older certificate is then an initial enrollment
        }
        guard namesOurCA else { throw SCEPError(.renewalSignerUnknown, "signer issuer \(signer.issuer)") }
        record.event.renews = signer.serialNumberHex
        let now = Date()
        switch CertificateVerifier(anchors: x.material.authorities.map(\.certificate)).verify(signer, at: now) {
        case .success: break
        case .failure(.expired), .failure(.notYetValid): throw SCEPError(.renewalSignerExpired, "signer \(signer.serialNumberHex)")
        case .failure(.untrusted(let why)): throw SCEPError(.renewalSignerInvalid, why)
        }
        let stored: StoredCertificate?
        do { stored = try self.store.certificate(serial: signer.serialNumberHex) } catch { throw SCEPError(.storeFailed, "\(error)") }
        guard let stored, stored.certificate.derEncoded == signer.derEncoded else {
            throw SCEPError(.renewalSignerUnknown, "signer \(signer.serialNumberHex) is not in the store")
        }
        switch stored.status {
        case .revoked: throw SCEPError(.renewalSignerRevoked, signer.serialNumberHex)
        case .withheld: throw SCEPError(.renewalSignerUnknown, "signer \(signer.serialNumberHex) was never delivered")
        case .expired: throw SCEPError(.renewalSignerExpired, signer.serialNumberHex)
        case .valid: break
        }
        if self.policy.renewalWindowDays > 0, signer.notAfter.timeIntervalSince(now) > Double(self.policy.renewalWindowDays) * 86400 {
            throw SCEPError(.renewalTooEarly, "signer \(signer.serialNumberHex) expires \(signer.notAfter)")
        }
        if !self.policy.renewalAllowSubjectChange {
            guard signer.subjectEquals(nameDER: csr.subjectNameDER) else { throw SCEPError(.renewalSubjectChanged) }
            let old = Set(signer.subjectAltNames)
            let requested = csr.issuableSubjectAltNames
            guard requested.allSatisfy(old.contains) else { throw SCEPError(.renewalNamesWidened) }
        }
        return stored
    }
}
