import FoundationEssentials
import Glibc
import SCEPCrypto
import SCEPStore

/// The one revocation path: store → audit → CRL. `scep-fcgi ca revoke` and the Intune revocation
/// sync (`scep-fcgi intune sync-revocations`) both come through ``revoke(_:now:)``.
public struct Revocation: Sendable {
    /// One certificate to revoke, as an operator or Intune asked.
    public struct Request: Sendable, Equatable {
        /// Hex, any case, with or without leading zeros or colons.
        public let serial: String
        public let reason: RevocationReason?
        /// Intune's `requestContext`, carried into the audit line (nil for the CLI).
        public let context: String?

        public init(serial: String, reason: RevocationReason?, context: String? = nil) {
            self.serial = serial
            self.reason = reason
            self.context = context
        }
    }

    /// What became of one request.
    public enum Status: Sendable, Equatable {
        case revoked
        /// Revoked before: nothing changed (the first revocation's time and reason stand).
        case alreadyRevoked
        /// No certificate with that serial in the store.
        case unknown
        /// The store could not answer or write, or the audit line failed: try again later.
        case failed(String)
    }

    public struct Result: Sendable, Equatable {
        public let request: Request
        public let status: Status
        /// The store's entry (nil for unknown serials and store failures).
        public let entry: CertificateEntry?

        public init(request: Request, status: Status, entry: CertificateEntry?) {
            self.request = request
            self.status = status
            self.entry = entry
        }
    }

    /// Every result, in the order asked, and the CRLs published afterwards.
    public struct Outcome: Sendable {
        public let results: [Result]
        public let crls: [(CRLPublisher.Slot, CertificateRevocationList)]
        /// Why a CRL could not be published now (servers republish it at their next housekeeping,
        /// since the store holds a revocation newer than the CRL).
        public let crlError: String?

        public init(results: [Result], crls: [(CRLPublisher.Slot, CertificateRevocationList)], crlError: String?) {
            self.results = results
            self.crls = crls
            self.crlError = crlError
        }
    }

    let store: any CertificateStore
    let audit: any AuditSink
    let crls: CRLPublisher
    let material: CAMaterial
    /// A fresh audit event naming the caller (operation, method, remote address).
    let event: @Sendable () -> AuditEvent

    /// Revokes each request in the store and writes its audit line, then publishes the CRL of
    /// every CA that had a certificate revoked, once.
    public func revoke(_ requests: [Request], now: Date = Date()) -> Outcome {
        var results: [Result] = []
        var slots: [CRLPublisher.Slot] = []
        for request in requests {
            let result = self.revokeOne(request, now: now)
            results.append(result)
            // Newly revoked (even when only its audit line failed): its CA needs a new CRL.
            if result.status != .alreadyRevoked, let entry = result.entry {
                let slot = self.slot(of: entry)
                if !slots.contains(slot) { slots.append(slot) }
            }
        }
        var published: [(CRLPublisher.Slot, CertificateRevocationList)] = []
        var crlError: String? = nil
        for slot in slots {
            do {
                if let crl = try self.crls.publish(slot, material: self.material, store: self.store, now: now) { published.append((slot, crl)) }
            } catch {
                crlError = "\(error)"
            }
        }
        return Outcome(results: results, crls: published, crlError: crlError)
    }

    private func revokeOne(_ request: Request, now: Date) -> Result {
        var event = self.event()
        event.serial = SerialHex.normalize(request.serial) ?? String(request.serial.prefix(64))
        event.requestContext = request.context
        event.revocationReason = (request.reason ?? .unspecified).name
        let status: Status
        var entry: CertificateEntry? = nil
        do {
            switch try self.store.revoke(serial: request.serial, reason: request.reason, at: now) {
            case .revoked(let revoked):
                (status, entry) = (.revoked, revoked)
                event.outcome = .revoked
            case .alreadyRevoked(let revoked):
                (status, entry) = (.alreadyRevoked, revoked)
                event.outcome = .revoked
                event.reason = "already-revoked"
                if case .revoked(_, let reason) = revoked.status { event.revocationReason = (reason ?? .unspecified).name }
            case .unknown:
                status = .unknown
                event.outcome = .rejected
                event.reason = "unknown-certificate"
            }
        } catch {
            status = .failed("\(error)")
            event.outcome = .failed
            event.reason = "store-failed"
        }
        event.subject = entry?.subject
        do { try self.audit.record(event) } catch {
            // The revocation stands; only its line is missing. Reported as failed, so the caller
            // tries again: the retry finds it already revoked and writes the line then.
            return Result(request: request, status: status == .revoked ? .failed("audit: \(error)") : status, entry: entry)
        }
        return Result(request: request, status: status, entry: entry)
    }

    /// The CRL slot of the CA that issued `entry`: by the issuer the store recorded, else by the
    /// certificate's signature (the current CA for a certificate the store no longer has).
    private func slot(of entry: CertificateEntry) -> CRLPublisher.Slot {
        if let issuer = entry.issuer, let authority = self.material.authorities.first(where: { IssuerID(authority: $0.certificate) == issuer }) {
            return CRLPublisher.Slot(of: authority, in: self.material)
        }
        let issuer = (try? self.store.certificate(serial: entry.serial)).flatMap { $0.flatMap { self.material.authority(of: $0.certificate) } }
        return issuer.map { CRLPublisher.Slot(of: $0, in: self.material) } ?? .current
    }
}
