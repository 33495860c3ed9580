import FoundationEssentials
import Glibc
import SCEP
import SCEPCrypto
import SCEPStore

extension SCEPResponder {
    /// PKCSReq and RenewalReq (RFC 8894 §3.3.1): checks, renewal rules, one issuance per
    /// transactionID + key (§3.3.3), challenge, approval, then issue → store → notify → audit →
    /// deliver, in that order.
    func enroll(_ x: Exchange, _ record: RequestRecord, _ contextOut: inout ChallengeContext?) throws -> SCEPHTTPResponse {
        let csr: CertificateSigningRequest
        do { csr = try CertificateSigningRequest(derEncoded: x.content) } catch { throw SCEPError(.malformedCSR, "\(error)") }
        let names = self.recordNames(of: csr, record)
        // Names before anything costly (signature checks, the validator): RFC 5280 §4.2.1.6.
        try self.policy.names.check(subjectDER: csr.subjectNameDER, subjectValues: csr.subjectValues, names: csr.requestedNames)
        try self.policy.checkExtensions(of: csr)
        let requestedSID = try self.policy.requestedSID(of: csr)
        guard self.policy.acceptsCSRDigest(csr.signatureDigest) else { throw SCEPError(.csrDigest, csr.signatureAlgorithmOID) }
        // Proof of possession (RFC 8894 §3.3.1 via PKCS#10): micromdm never checks it; we do.
        guard csr.verifySignature() else { throw SCEPError(.badCSRSignature) }
        guard let csrKey = csr.publicKey, self.policy.accepts(csrKey) else {
            throw SCEPError(.keyPolicy, "CSR key \(csr.publicKey.map { "\($0.algorithm.rawValue)-\($0.bits)" } ?? "missing")")
        }
        let challenge: String?
        do { challenge = try csr.challengePassword() } catch { throw SCEPError(.malformedCSR, "challengePassword") }
        let renewed = try self.renewal(of: x, csr: csr, record)

        let key: TransactionKey
        do { key = try TransactionKey(transactionID: x.transactionID, csr: csr) } catch { throw SCEPError(.internalError, "\(error)") }
        let claim: ClaimResult
        do { claim = try self.store.claim(key, lease: Self.claimLease) } catch { throw SCEPError(.storeFailed, "\(error)") }
        if case .existing(let existing) = claim {
            guard self.supersedes(existing, key, renewed), let serial = existing.serial else { return try self.replay(existing, key, x, record) }
            let won: Bool
            do { won = try self.store.supersede(key, issued: serial, lease: Self.claimLease) } catch { throw SCEPError(.storeFailed, "\(error)") }
            // Another request superseded it first: answer as a retransmission of that one.
            guard won else { return try self.replay(self.currentRecord(key), key, x, record) }
        }
        var held = true
        defer { if held { self.store.release(key) } }

        // Challenge (RFC 8894 §2.4): a pluggable validator decides; optional for renewals (§3.3.1.2).
        var validated: ChallengeContext? = nil
        if renewed == nil || self.policy.renewalRequiresChallenge {
            let context = ChallengeContext(transactionID: x.transactionID, csr: csr, challenge: challenge, remoteAddr: x.request.remoteAddr)
            contextOut = context
            record.event.challengeMode = self.validator.mode
            // A client that already gave up gets no validator call (Intune would count it validated).
            guard !x.request.clientGone() else { throw SCEPError(.clientGone, "before validation") }
            let decision: ChallengeDecision
            do { decision = try self.validator.validate(context) } catch {
                record.event.challengeError = (error as? AuditCodedError)?.auditCode
                throw SCEPError(.challengeUnavailable, "\(error)")
            }
            switch decision {
            case .accepted:
                record.event.challengeResult = self.validator.acceptedResult
            case .rejected(let code, let detail):
                record.event.challengeResult = detail
                throw SCEPError(code, detail.map { "validator result \($0)" } ?? "", failInfoText: detail.map(self.validator.rejectionText))
            }
            validated = context
        } else {
            record.event.challengeMode = "renewal"
        }

        // Strong certificate mapping: a SID only when the validator vouched for it, or kept on renewal.
        let sid = try self.policy.mappedSID(requestedSID, vouched: validated != nil && self.validator.vouchesForNames, renewing: renewed?.certificate)

        // Manual approval: the request waits for `scep-fcgi ca approve`; the client polls (§3.3.3).
        // A renewal signed by a valid certificate of ours needs no second approval.
        if self.policy.manualApproval && renewed == nil {
            do {
                try self.store.hold(
                    PendingRequest(
                        transactionID: x.transactionID, keyHash: key.keyHash, subject: csr.subject, subjectAltNames: names,
                        received: Date(), remoteAddr: x.request.remoteAddr, csr: csr.derEncoded, renews: nil))
            } catch { throw SCEPError(.storeFailed, "\(error)") }
            held = false
            record.event.outcome = .pending
            return try x.reply(.pending)
        }

        // Nobody would receive it: no certificate for a request whose client is gone.
        guard !x.request.clientGone() else { throw SCEPError(.clientGone, "before issuance") }
        // Only a validator that tells someone (Intune's successNotification) is called after issuance.
        var notify: ((Certificate) throws -> Void)?
        if let validated, self.validator.notifiesIssuance {
            notify = { certificate in
                defer {
                    let calls = validated.trace.calls
                    if !calls.isEmpty { record.event.validatorCalls = calls }
                }
                do { try self.validator.issued(certificate, context: validated) } catch {
                    record.event.challengeError = (error as? AuditCodedError)?.auditCode
                    throw SCEPError(.notificationFailed, "\(error)")
                }
            }
        }
        let issued = try self.issuance.issue(
            IssuanceRequest(csr: csr, securityIdentifier: self.policy.sidExtension(for: sid)), by: x.material.current, transaction: key, record: record, outcome: .issued,
            notify: notify,
            deliver: { try x.success([$0]) })
        // Only a delivered, audited certificate may answer a retransmission.
        held = !issued.transactionRecorded
        return issued.delivery
    }

    /// Puts the requested subject and names into the audit record, or, past the caps, only their
    /// sizes and digests: an audit line stays bounded whatever a request holds. Returns the names.
    private func recordNames(of csr: CertificateSigningRequest, _ record: RequestRecord) -> [String] {
        let subjectDER = csr.subjectNameDER
        if subjectDER.count <= self.policy.names.maxSubjectBytes {
            record.event.subject = csr.subject
        } else {
            record.event.subjectBytes = subjectDER.count
            record.event.subjectSHA256 = (try? DigestAlgorithm.sha256.hash(subjectDER)).map { HexEncoding.string($0) }
        }
        let names = csr.subjectAltNames
        if names.count <= self.policy.names.maxNames && names.reduce(0, { $0 + $1.utf8.count }) <= Self.maxRecordedNameBytes {
            if !names.isEmpty { record.event.subjectAltNames = names }
        } else {
            record.event.subjectAltNameCount = names.count
            record.event.subjectAltNamesSHA256 = csr.subjectAltNamesDER.flatMap { try? DigestAlgorithm.sha256.hash($0) }.map { HexEncoding.string($0) }
        }
        return names
    }

    /// How long a claim may stay in flight: the longest a request can take (a validator call
    /// within its deadline, a notification, the store), with room to spare.
    static let claimLease: TimeInterval = 600

    /// The transaction's record now; in flight when the store cannot say (the replay then waits).
    private func currentRecord(_ key: TransactionKey) -> TransactionRecord {
        (try? self.store.transaction(key.transactionID)).flatMap { $0 } ?? TransactionRecord(
            transactionID: key.transactionID, keyHash: "", state: .inFlight)
    }

    /// The most name text one audit line carries; more is recorded as a count and a digest.
    static let maxRecordedNameBytes = 8192

    /// Whether a request that repeats an issued transaction's transactionID and key asks for a new
    /// certificate rather than the old one again. micromdm's scepclient derives its transactionID
    /// from the key it keeps, so both its RenewalReq (signed by the very certificate this
    /// transaction issued) and its re-enrollment after that certificate expired repeat them.
    private func supersedes(_ existing: TransactionRecord, _ key: TransactionKey, _ renewed: StoredCertificate?) -> Bool {
        guard existing.state == .issued, existing.keyHash == key.keyHash, let serial = existing.serial else { return false }
        if let renewed, serial == renewed.certificate.serialNumberHex { return true }
        if case .expired? = (try? self.store.certificate(serial: serial))?.status { return true }
        return false
    }

    /// A transactionID seen before (RFC 8894 §3.3.3, §7.4): the same key gets the same answer with
    /// no second issuance and no second validator call; another key is refused.
    private func replay(_ existing: TransactionRecord, _ key: TransactionKey, _ x: Exchange, _ record: RequestRecord) throws -> SCEPHTTPResponse {
        // (An in-flight claim does not say its key: it is compared once the claim resolves.)
        guard existing.state == .inFlight || existing.keyHash == key.keyHash else {
            throw SCEPError(.transactionKeyMismatch, "transaction \(key.transactionID)")
        }
        switch existing.state {
        case .issued:
            return try self.deliver(existing, x, record)
        case .pending:
            record.event.outcome = .pending
            return try x.reply(.pending)
        case .rejected:
            throw SCEPError(.transactionRejected)
        case .inFlight:
            // Another worker or process is on it (the client retried while the first request waited
            // on the validator). Give it a moment, then answer PENDING: the client polls.
            for _ in 0..<40 {
                usleep(50_000)
                guard let now = try? self.store.transaction(key.transactionID) else { break }
                if now.state != .inFlight { return try self.replay(now, key, x, record) }
            }
            record.event.outcome = .pending
            return try x.reply(.pending)
        }
    }

    /// SUCCESS with a stored certificate (retransmission, or CertPoll after approval).
    func deliver(_ existing: TransactionRecord, _ x: Exchange, _ record: RequestRecord, subject: [UInt8]? = nil) throws -> SCEPHTTPResponse {
        guard let serial = existing.serial, let stored = try? self.store.certificate(serial: serial) else {
            throw SCEPError(.storeFailed, "transaction \(existing.transactionID): certificate \(existing.serial ?? "-") not found")
        }
        if let subject, !stored.certificate.subjectEquals(nameDER: subject) {
            throw SCEPError(.unknownTransaction, "CertPoll subject does not match certificate \(serial)")
        }
        if case .revoked = stored.status { throw SCEPError(.certificateRevoked, serial) }
        let reply = try x.success([stored.certificate])
        record.event.describe(stored.certificate)
        record.event.outcome = .delivered
        do { try record.finish() } catch { throw SCEPError(.auditFailed, "\(error); certificate \(serial) not delivered again") }
        return reply
    }
}
