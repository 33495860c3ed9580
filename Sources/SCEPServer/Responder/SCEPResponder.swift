import FoundationEssentials
import Glibc
import SCEP
import SCEPCrypto
import SCEPLocking
import SCEPStore
import DurableFiles

/// The transport-neutral core: one SCEP HTTP request in, one complete response out.
///
/// Synchronous on purpose: libfcgi, OpenSSL and libcurl all block, so concurrency comes from
/// worker threads (and processes), each calling ``respond(to:)``. It never throws and never
/// traps on input; every request leaves exactly one audit record (``RequestRecord``).
public final class SCEPResponder: Sendable {
    let material: CAMaterialSource
    let store: any CertificateStore
    let validator: any ChallengeValidator
    let audit: any AuditSink
    let policy: IssuancePolicy
    let crls: CRLPublisher?
    let diagnostics: Diagnostics
    /// The shared counters (nil when neither metrics nor health is configured); the audit sink
    /// given to ``init`` already counts into them (``CountingAuditSink``).
    let metrics: Metrics?
    let monitoring: Configuration.Monitoring
    let health = HealthCheck()
    /// `ocsp.path`: answered before any audit record exists, like the monitoring endpoints.
    let ocsp: OCSPResponder?
    /// The one issuance path, shared with `scep-fcgi ca approve` (``CAOperations``).
    var issuance: Issuance { Issuance(store: self.store, policy: self.policy, diagnostics: self.diagnostics) }
    /// GetCACert, GetCACaps and GetNextCACert bodies, rebuilt only when the material changes:
    /// GetCACert is the hottest unauthenticated request.
    private let published = Locked<PublishedReplies?>(nil)

    struct PublishedReplies {
        /// The material these were built from: every reload parses all certificates afresh, so the
        /// current CA certificate object identifies it (held here, so it cannot be freed and reused).
        let current: Certificate
        let caCert: SCEPHTTPResponse
        let caps: SCEPHTTPResponse
        let nextCACert: SCEPHTTPResponse?
    }

    public init(
        material: CAMaterialSource, store: any CertificateStore, validator: any ChallengeValidator, audit: any AuditSink,
        policy: IssuancePolicy, crls: CRLPublisher?, diagnostics: Diagnostics = Diagnostics(), metrics: Metrics? = nil,
        monitoring: Configuration.Monitoring = .init(), ocsp: Configuration.OCSP = .init()
    ) throws {
        self.ocsp = ocsp.path.map { OCSPResponder(path: $0, validityMinutes: ocsp.validityMinutes, store: store, metrics: metrics, diagnostics: diagnostics) }
        self.metrics = metrics
        self.monitoring = monitoring
        self.material = material
        self.store = store
        self.validator = validator
        self.audit = audit
        self.policy = policy
        self.crls = crls
        self.diagnostics = diagnostics
        _ = try self.replies(for: material.current())
    }

    public func respond(to request: SCEPHTTPRequest) -> SCEPHTTPResponse {
        OpenSSL.clearErrors()
        if let path = request.path, let response = self.monitoringResponse(path, request) { return response }
        if let ocsp = self.ocsp, ocsp.handles(request.path) { return ocsp.respond(to: request, material: self.material.current()) }
        let record = RequestRecord(sink: self.audit, diagnostics: self.diagnostics, request: request)
        let response = self.route(request, record)
        record.finishLogging()
        return response
    }

    private func route(_ request: SCEPHTTPRequest, _ record: RequestRecord) -> SCEPHTTPResponse {
        guard request.method == "GET" || request.method == "POST" else {
            return self.httpError(SCEPError(.methodNotAllowed), record)
        }
        let query = SCEPQuery(rawQuery: request.query)
        // RFC 8894 §4.1 notes that many CAs ignore the operation of a POST: so do we, when it is absent.
        let operationText = query.operation ?? (request.method == "POST" ? Operation.pkiOperation.rawValue : nil)
        guard let operationText else { return self.httpError(SCEPError(.missingOperation), record) }
        guard let operation = Operation(lenient: operationText) else {
            return self.httpError(SCEPError(.unknownOperation), record)
        }
        record.event.operation = operation.rawValue
        let material = self.material.current()
        let replies: PublishedReplies
        do { replies = try self.replies(for: material) } catch {
            self.diagnostics.log(.error, "cannot build the CA replies: \(error)")
            return self.httpError(SCEPError(.internalError, "\(error)"), record, status: 500)
        }
        switch operation {
        case .getCACaps:
            // Any `message` value (certmonger sends 0, sscep CAIdentifier) is ignored: one CA.
            return replies.caps
        case .getCACert:
            return replies.caCert
        case .getNextCACert:
            return replies.nextCACert ?? self.httpError(SCEPError(.noNextCA), record)
        case .pkiOperation:
            return self.pkiOperation(request, query, material, record)
        }
    }

    /// `metrics.path` and `health.path`: answered before any audit record exists, since a scrape
    /// every 15 s would otherwise be most of the audit log.
    private func monitoringResponse(_ path: String, _ request: SCEPHTTPRequest) -> SCEPHTTPResponse? {
        let isMetrics = path == self.monitoring.metricsPath
        guard isMetrics || path == self.monitoring.healthPath else { return nil }
        guard request.method == "GET" else { return SCEPHTTPResponse.text(405, "method not allowed: use GET") }
        let material = self.material.current()
        let intune = self.validator.mode == "intune"
        if isMetrics {
            guard let metrics = self.metrics else { return SCEPHTTPResponse.text(503, "metrics unavailable") }
            let body = metrics.exposition(
                material: material, crls: self.crls, pendingRequests: try? self.store.pendingRequests().count, intune: intune,
                credentialExpiry: self.validator.credentialExpiry)
            return SCEPHTTPResponse(status: 200, contentType: Metrics.contentType, body: Array(body.utf8))
        }
        let result = self.health.run(material: material, audit: self.audit, store: self.store, metrics: self.metrics, intune: intune)
        if !result.healthy { self.diagnostics.log(.warning, "health check failed: \(result.json.dropLast())") }
        return SCEPHTTPResponse(status: result.healthy ? 200 : 503, contentType: "application/json", body: Array(result.json.utf8))
    }

    /// The derived replies of `material`, built once per material.
    private func replies(for material: CAMaterial) throws -> PublishedReplies {
        if let cached = self.published.withLock({ $0 }), cached.current === material.current.certificate { return cached }
        let (contentType, body) = try material.caCertificateReply()
        let caps = CACapabilities(renewal: self.policy.renewal, nextCA: material.next != nil)
        let next = try material.nextCACertificateReply().map {
            SCEPHTTPResponse(status: 200, contentType: SCEPContentType.nextCACert, body: $0)
        }
        let replies = PublishedReplies(
            current: material.current.certificate, caCert: SCEPHTTPResponse(status: 200, contentType: contentType, body: body),
            caps: SCEPHTTPResponse(status: 200, contentType: SCEPContentType.caps, body: Array(caps.text.utf8)), nextCACert: next)
        self.published.withLock { $0 = replies }
        return replies
    }

    func httpError(_ error: SCEPError, _ record: RequestRecord, status: Int? = nil) -> SCEPHTTPResponse {
        let status = status ?? error.httpStatus ?? 500
        record.event.outcome = error.isServerFault ? .failed : .rejected
        record.event.reason = error.auditCode
        record.event.httpStatus = status
        return SCEPHTTPResponse.text(status, error.publicText)
    }

    /// Certificates stored without an audit record, by a process that died (kill -9, a crash) or
    /// while the audit log could not take lines: each is completed (issued file, index line),
    /// marked withheld and recorded as `withheld` now, so every stored certificate is in the audit
    /// log and none is delivered later as if new. At start-up, every minute, and at SIGHUP.
    public func recordUnaudited(now: Date = Date()) {
        let unaudited: [UnauditedCertificate]
        do { unaudited = try self.store.unaudited() } catch {
            self.diagnostics.log(.error, "certificates without audit record not listed: \(error)")
            return
        }
        for pending in unaudited {
            if let problem = pending.problem {
                self.diagnostics.log(.error, "certificate \(pending.serial) without audit record not reconciled: \(problem)")
                continue
            }
            if let line = pending.lostLine {
                // Its line was written, then a power loss took the log's unsynced tail: the
                // journal kept it. Written again as it was (marked restored), not as withheld.
                do { try self.audit.restore(lostLine: line) } catch {
                    self.diagnostics.log(.error, "audit line of certificate \(pending.serial) not restored: \(error)")
                    return
                }
                self.diagnostics.log(.notice, "wrote again the audit line of certificate \(pending.serial), lost with the log's tail in a power loss")
                self.settle(pending.serial)
                continue
            }
            var event = AuditEvent()
            event.ts = now
            event.requestID = AuditEvent.newRequestID()
            event.operation = "PKIOperation"
            event.method = "reconcile"
            event.outcome = .withheld
            event.reason = pending.cause.rawValue
            event.httpStatus = 0
            if let certificate = pending.certificate {
                event.describe(certificate)
                event.subject = certificate.subject
            } else {
                event.serial = pending.serial
            }
            do { try self.audit.record(event) } catch {
                return  // the log still takes no lines: next time
            }
            self.diagnostics.log(.notice, "recorded withheld certificate \(pending.serial) in the audit log (\(pending.cause.rawValue))")
            self.settle(pending.serial)
        }
    }

    /// Tells the store a handed-back certificate's line is written (the log synced it itself).
    private func settle(_ serial: String) {
        do { try self.store.audited(serial: serial, line: nil) } catch {
            self.diagnostics.log(.error, "certificate \(serial): audit line written, store not told: \(error)")
        }
    }

    /// The delegated OCSP responder is short-lived: renewed here once a third of its life is left,
    /// by whichever process gets the CRL lock's sibling first (the others find it renewed).
    private func renewOCSPSigner(_ material: CAMaterial, now: Date) {
        guard let signer = material.ocspSigner, let directory = self.material.directory else { return }
        let life = signer.certificate.notAfter.timeIntervalSince(signer.certificate.notBefore)
        guard signer.certificate.notAfter.timeIntervalSince(now) < life / 3 else { return }
        do {
            guard let lock = try RunLock(path: directory.path + "/.ocsp-signer.lock") else { return }
            defer { lock.release() }
            let operations = CAOperations(
                directory: directory, store: self.store, passphraseFile: self.material.passphraseFile, audit: self.audit, policy: self.policy, crlValidityHours: 168)
            if let renewed = try operations.renewOCSPSignerIfDue(now: now) {
                self.diagnostics.log(.notice, "renewed the OCSP responder certificate (serial \(renewed.serialNumberHex), until \(RFC3339.string(renewed.notAfter)))")
            }
        } catch {
            self.diagnostics.log(.error, "OCSP responder certificate not renewed: \(error)")
        }
    }

    /// Reopens the files held open (the audit log) after log rotation: SIGHUP / SIGUSR1.
    public func reopenLogs() {
        do {
            try self.audit.reopen()
            self.diagnostics.log(.notice, "reopened the audit log (SIGHUP/SIGUSR1)")
        } catch {
            self.diagnostics.log(.error, "cannot reopen the audit log: \(error)")
        }
        self.recordUnaudited()  // an operator who freed the audit disk often rotates too
    }

    /// Periodic work, called by the server about once a minute (and cheap when there is none):
    /// reissue a CRL older than half its validity or than a revocation, drop transaction records
    /// past their retention. One process does each job at a time; the others skip it.
    public func housekeeping(now: Date = Date()) {
        let material = self.material.current()
        if let crls = self.crls {
            let latest = CRLPublisher.latestRevocation(in: self.store)
            for slot in CRLPublisher.Slot.all(in: material) {
                guard crls.needsRefresh(slot, latestRevocation: latest, now: now) else { continue }
                do {
                    if let crl = try crls.publish(slot, material: material, store: self.store, now: now, wait: false) {
                        self.diagnostics.log(.notice, "published CRL \(crls.derPath(slot)) number \(crl.number ?? "?")")
                    }
                } catch {
                    self.diagnostics.log(.error, "CRL \(crls.derPath(slot)) not published: \(error)")
                }
            }
        }
        self.recordUnaudited(now: now)
        self.renewOCSPSigner(material, now: now)
        let done = self.store.maintain(now: now)
        if done.leftoversRemoved > 0 { self.diagnostics.log(.notice, "removed \(done.leftoversRemoved) leftovers of processes that died") }
        if done.transactionsPruned > 0 { self.diagnostics.log(.info, "dropped \(done.transactionsPruned) transaction records past retention") }
    }
}
