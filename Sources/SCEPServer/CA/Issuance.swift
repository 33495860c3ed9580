import FoundationEssentials
import Glibc
import SCEP
import SCEPCrypto
import SCEPStore

/// The one issuance path: sign → store → notify → audit → deliver, or withhold.
///
/// Every certificate this server issues to an end entity comes through ``issue(_:by:transaction:record:outcome:notify:deliver:)``:
/// a PKCSReq, a RenewalReq, a re-enrollment that supersedes an issued transaction, and
/// `scep-fcgi ca approve`. Keeping the steps in one place keeps the crash-recovery note, the
/// withheld marker and the transaction record in step for all of them (a hand-written copy in
/// `ca approve` once forgot to clear the note, and its certificates were later audited as withheld).
struct Issuance: Sendable {
    let store: any CertificateStore
    let policy: IssuancePolicy
    let diagnostics: Diagnostics

    /// A certificate issued, audited and ready to hand over.
    struct Issued<Delivery> {
        let certificate: Certificate
        /// What `deliver` built (a CertRep for a client; nothing for the CLI).
        let delivery: Delivery
        /// Whether the transaction now says `issued` with this serial (a retransmission or CertPoll
        /// then gets this certificate). When false the caller gives up its claim: the client's
        /// retry is issued anew rather than answered from a record that was not written.
        let transactionRecorded: Bool
    }

    /// Issues `request` with `authority`, in this order:
    /// 1. sign (``IssuancePolicy/certificate(for:issuer:validity:)``), for the validity the policy allows;
    /// 2. commit it to the store (``CertificateStore/commit(_:issuer:transaction:durableNow:)``), as
    ///    unaudited until its line is written; durably at once when there is a `notify` (nobody
    ///    outside hears of a certificate a power loss could still take);
    /// 3. `notify` (Intune's successNotification): throwing stops the delivery;
    /// 4. `deliver` builds the reply (a signed CertRep), before the audit line, so that a line
    ///    saying `outcome` is only written for a certificate that can be handed over;
    /// 5. the audit line (`record.finish()`), then ``CertificateStore/audited(serial:line:)``: for a
    ///    store that ``CertificateStore/sealsWithAuditLine``, the one durable write of both;
    /// 6. the transaction record (``CertificateStore/issued(_:serial:)``).
    ///
    /// A failure after step 2 marks the certificate withheld (and, when the audit line itself
    /// failed, leaves it to housekeeping to audit later): it is never delivered, and always audited.
    ///
    /// - Throws: ``SCEPError`` with `issuance-failed`, `store-failed`, `notification-failed` or
    ///   `audit-failed`, or what `deliver` threw.
    func issue<Delivery>(
        _ request: IssuanceRequest, by authority: KeyPair, transaction key: TransactionKey, record: RequestRecord,
        outcome: AuditEvent.Outcome, notify: ((Certificate) throws -> Void)? = nil, deliver: (Certificate) throws -> Delivery
    ) throws -> Issued<Delivery> {
        let validity = self.policy.validity(request.validity, now: Date(), caNotAfter: authority.certificate.notAfter)
        record.event.requestedValidity = request.validity?.text
        record.event.validityRule = validity.rule
        record.event.sid = request.securityIdentifier
        let certificate: Certificate
        do { certificate = try self.policy.certificate(for: request, issuer: authority, validity: validity) } catch {
            throw SCEPError(.issuanceFailed, "\(error)")
        }
        do { try self.store.commit(certificate, issuer: IssuerID(authority: authority.certificate), transaction: key, durableNow: notify != nil) } catch {
            throw SCEPError(.storeFailed, "\(error)")
        }
        let store = self.store
        let serial = certificate.serialNumberHex
        record.onWritten { try store.audited(serial: serial, line: $0) }  // issued, or withheld: in the log either way
        record.event.describe(certificate)
        do {
            do { try notify?(certificate) } catch let error as SCEPError { throw error } catch {
                throw SCEPError(.notificationFailed, "\(error)")
            }
            let delivery = try deliver(certificate)
            record.event.outcome = outcome
            record.sealedByStore = self.store.sealsWithAuditLine
            do { try record.finish() } catch let failure as RequestRecord.FollowUpFailed {
                // The line says issued, the store could not make it durable: housekeeping adds `withheld`.
                throw SCEPError(.storeFailed, "\(failure.error); certificate \(serial) withheld")
            } catch { throw SCEPError(.auditFailed, "\(error); certificate \(serial) withheld") }
            var recorded = true
            do { try self.store.issued(key, serial: serial) } catch {
                recorded = false
                self.diagnostics.log(.error, "transaction \(key.transactionID): replay record not written: \(error)")
            }
            return Issued(certificate: certificate, delivery: delivery, transactionRecorded: recorded)
        } catch {
            self.withhold(serial, auditWritten: (error as? SCEPError)?.code != .auditFailed)
            throw error
        }
    }

    /// Marks a committed certificate as never delivered. Without an audit line at all yet, the
    /// store hands it to housekeeping, which writes the `withheld` line when the log takes lines again.
    private func withhold(_ serial: String, auditWritten: Bool) {
        do { try self.store.withhold(serial: serial, auditLineWritten: auditWritten) } catch {
            self.diagnostics.log(.error, "certificate \(serial) withheld but not marked\(auditWritten ? "" : ", its audit record pending"): \(error)")
        }
    }
}

/// What is to be issued: the request, the SID someone vouched for, and the validity it asks for.
struct IssuanceRequest {
    let csr: CertificateSigningRequest
    /// The SID for the SID security extension (already decided: ``IssuancePolicy/mappedSID(_:vouched:renewing:)``
    /// and `issue.sid_extension`); nil writes none.
    let securityIdentifier: String?
    /// The validity the request's name/value pairs ask for.
    let validity: RequestedValidity?

    init(csr: CertificateSigningRequest, securityIdentifier: String? = nil) {
        self.csr = csr
        self.securityIdentifier = securityIdentifier
        self.validity = RequestedValidity(csr)
    }
}
