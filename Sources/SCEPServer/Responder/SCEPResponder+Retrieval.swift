import FoundationEssentials
import Glibc
import SCEP
import SCEPCrypto
import SCEPStore

extension SCEPResponder {
    /// CertPoll, formerly GetCertInitial (RFC 8894 §3.3.3): keyed on the transactionID; the
    /// IssuerAndSubject must match what was issued. A poll with no matching request MUST be
    /// rejected (§4.4): FAILURE badCertId.
    func poll(_ x: Exchange, _ record: RequestRecord) throws -> SCEPHTTPResponse {
        let query = try IssuerAndSubject(derEncoded: x.content)
        record.event.subject = DistinguishedName.describe(der: query.subject)
        // The issuer names one of our CAs (clients that take the RA for the CA name the RA).
        let names = x.material.authorities + [x.material.ra, x.material.raEncryption].compactMap { $0 }
        guard names.contains(where: { $0.certificate.subjectEquals(nameDER: query.issuer) }) else {
            throw SCEPError(.unknownIssuer, "CertPoll issuer \(DistinguishedName.describe(der: query.issuer))")
        }
        let existing: TransactionRecord?
        do { existing = try self.store.transaction(x.transactionID) } catch { throw SCEPError(.storeFailed, "\(error)") }
        guard let existing else { throw SCEPError(.unknownTransaction) }
        switch existing.state {
        case .pending, .inFlight:
            record.event.outcome = .pending
            return try x.reply(.pending)
        case .rejected:
            throw SCEPError(.transactionRejected)
        case .issued:
            return try self.deliver(existing, x, record, subject: query.subject)
        }
    }

    /// GetCert (RFC 8894 §3.3.4): the certificate with this issuer and serial, or badCertId.
    func getCert(_ x: Exchange, _ record: RequestRecord) throws -> SCEPHTTPResponse {
        let query = try IssuerAndSerialNumber(derEncoded: x.content)
        record.event.serial = query.serialHex
        guard let authority = x.material.authority(named: query.issuer) else { throw SCEPError(.unknownIssuer) }
        // The CA certificates themselves can be fetched too (their issuer is their own name when self-signed).
        if let ca = x.material.named.map(\.1).first(where: { $0.serialNumberHex == query.serialHex && $0.issuerEquals(nameDER: query.issuer) }) {
            record.event.outcome = .served
            return try x.success([ca])
        }
        let stored: StoredCertificate?
        do { stored = try self.store.certificate(serial: query.serialHex) } catch { throw SCEPError(.storeFailed, "\(error)") }
        guard let stored, x.material.authority(of: stored.certificate)?.certificate === authority.certificate
        else { throw SCEPError(.unknownCertificate, query.serialHex) }
        record.event.describe(stored.certificate)
        record.event.outcome = .served
        return try x.success([stored.certificate])
    }

    /// GetCRL (RFC 8894 §3.3.4): SUCCESS with a degenerate SignedData holding the CRL of the CA
    /// named by the IssuerAndSerialNumber; a missing or stale CRL is published first.
    func getCRL(_ x: Exchange, _ record: RequestRecord) throws -> SCEPHTTPResponse {
        let query = try IssuerAndSerialNumber(derEncoded: x.content)
        guard let authority = x.material.authority(named: query.issuer) else { throw SCEPError(.unknownIssuer) }
        guard let crls = self.crls else { throw SCEPError(.crlUnavailable, "no CRL publisher") }
        let slot = CRLPublisher.Slot(of: authority, in: x.material)
        var crl = crls.published(slot)
        if crl == nil || crls.needsRefresh(slot, latestRevocation: CRLPublisher.latestRevocation(in: self.store)) {
            do { crl = try crls.publish(slot, material: x.material, store: self.store) ?? crl } catch {
                if crl == nil { throw SCEPError(.crlUnavailable, "\(error)") }
                self.diagnostics.log(.error, "CRL refresh failed, serving the published one: \(error)")
            }
        }
        guard let crl else { throw SCEPError(.crlUnavailable) }
        record.event.outcome = .served
        return try x.success([], crls: [crl])
    }
}
