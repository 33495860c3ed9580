import FoundationEssentials
import Glibc
import SCEP
import SCEPCrypto

/// The transport-neutral core: one SCEP HTTP request in, one complete response out.
///
/// Synchronous on purpose: libfcgi, OpenSSL and libcurl all block, so concurrency comes from
/// worker threads (and processes), each calling ``respond(to:)``. It never throws and never
/// traps on input; every request leaves exactly one audit record.
public final class SCEPResponder: Sendable {
    let decrypter: any MessageDecrypter
    let signer: any MessageSigner
    let issuer: any CertificateIssuer
    let store: any CertificateStore
    let validator: any ChallengeValidator
    let audit: any AuditSink
    let policy: IssuancePolicy
    let diagnostics: Diagnostics
    /// Built once: GetCACert is the hottest unauthenticated request.
    let caCertResponse: SCEPHTTPResponse
    let capsResponse: SCEPHTTPResponse

    public init(
        ca: LocalCA, store: any CertificateStore, validator: any ChallengeValidator, audit: any AuditSink,
        policy: IssuancePolicy, diagnostics: Diagnostics = Diagnostics()
    ) throws {
        self.decrypter = ca
        self.signer = ca
        self.issuer = ca
        self.store = store
        self.validator = validator
        self.audit = audit
        self.policy = policy
        self.diagnostics = diagnostics
        // RFC 8894 §4.2: one certificate → DER `application/x-x509-ca-cert`; a chain → a degenerate
        // certs-only SignedData `application/x-x509-ca-ra-cert`, recipient (CA) first.
        if ca.chain.isEmpty {
            self.caCertResponse = SCEPHTTPResponse(status: 200, contentType: SCEPContentType.caCert, body: ca.caCertificate.derEncoded)
        } else {
            self.caCertResponse = SCEPHTTPResponse(
                status: 200, contentType: SCEPContentType.caRACert,
                body: try CMSSigner.certificatesOnly([ca.caCertificate] + ca.chain))
        }
        self.capsResponse = SCEPHTTPResponse(status: 200, contentType: SCEPContentType.caps, body: Array(CACapabilities.text.utf8))
    }

    public func respond(to request: SCEPHTTPRequest) -> SCEPHTTPResponse {
        OpenSSL.clearErrors()
        let started = ContinuousClock.now
        var event = AuditEvent()
        event.requestID = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        event.method = request.method
        event.remoteAddr = request.remoteAddr
        var audited = false
        let response = self.route(request, started, &event, &audited)
        if !audited {
            event.durationMs = Self.milliseconds(since: started)
            do { try self.audit.record(event) } catch {
                self.diagnostics.log(.error, "request \(event.requestID): audit record not written: \(error)")
            }
        }
        return response
    }

    private func route(
        _ request: SCEPHTTPRequest, _ started: ContinuousClock.Instant, _ event: inout AuditEvent, _ audited: inout Bool
    ) -> SCEPHTTPResponse {
        guard request.method == "GET" || request.method == "POST" else {
            return self.httpError(SCEPError(.methodNotAllowed), &event)
        }
        let query = SCEPQuery(rawQuery: request.query)
        // RFC 8894 §4.1 notes that many CAs ignore the operation of a POST: so do we, when it is absent.
        let operationText = query.operation ?? (request.method == "POST" ? Operation.pkiOperation.rawValue : nil)
        guard let operationText else { return self.httpError(SCEPError(.missingOperation), &event) }
        guard let operation = Operation(lenient: operationText) else {
            return self.httpError(SCEPError(.unknownOperation), &event)
        }
        event.operation = operation.rawValue
        switch operation {
        case .getCACaps:
            // Any `message` value (certmonger sends 0, sscep CAIdentifier) is ignored: one CA.
            return self.capsResponse
        case .getCACert:
            return self.caCertResponse
        case .getNextCACert:
            return self.httpError(SCEPError(.noNextCA), &event)
        case .pkiOperation:
            return self.pkiOperation(request, query, started, &event, &audited)
        }
    }

    func httpError(_ error: SCEPError, _ event: inout AuditEvent) -> SCEPHTTPResponse {
        let status = error.httpStatus ?? 500
        event.outcome = error.isServerFault ? .failed : .rejected
        event.reason = error.auditCode
        event.httpStatus = status
        return SCEPHTTPResponse.text(status, error.publicText)
    }

    static func milliseconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
    }
}
