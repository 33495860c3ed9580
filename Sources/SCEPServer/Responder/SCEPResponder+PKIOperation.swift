import FoundationEssentials
import Glibc
import SCEP
import SCEPCrypto

extension SCEPResponder {
    /// PKIOperation (RFC 8894 §4.3): HTTP-tier errors until the pkiMessage's transactionID and
    /// senderNonce are known, signed CertRep FAILURE after.
    func pkiOperation(
        _ request: SCEPHTTPRequest, _ query: SCEPQuery, _ started: ContinuousClock.Instant, _ event: inout AuditEvent,
        _ audited: inout Bool
    ) -> SCEPHTTPResponse {
        let message: PKIMessage
        do {
            message = try PKIMessage.decode(try self.messageBytes(request, query))
        } catch let error as SCEPError {
            return self.httpError(error, &event)
        } catch {
            return self.httpError(SCEPError(.malformedMessage), &event)
        }
        event.transactionID = message.transactionID
        event.messageType = message.messageType?.name ?? String(message.messageTypeValue)

        var context: ChallengeContext? = nil
        do {
            return try self.enroll(message, request, started, &event, &audited, &context)
        } catch {
            if let calls = context?.trace.calls, !calls.isEmpty { event.validatorCalls = calls }
            let scepError = (error as? SCEPError) ?? SCEPError(.internalError, "\(error)")
            if scepError.isServerFault || !(error is SCEPError) {
                self.diagnostics.log(.error, "request \(event.requestID) transaction \(message.transactionID): \(error)")
            } else {
                self.diagnostics.log(.info, "request \(event.requestID) transaction \(message.transactionID) rejected: \(scepError)")
            }
            if let context, [.issuanceFailed, .storeFailed, .internalError].contains(scepError.code) {
                self.validator.issuanceFailed(scepError, context: context)
                event.validatorCalls = context.trace.calls
            }
            return self.failure(message, scepError, &event)
        }
    }

    /// The pkiMessage bytes: the POST body (any Content-Type), or the GET `message` parameter.
    private func messageBytes(_ request: SCEPHTTPRequest, _ query: SCEPQuery) throws -> [UInt8] {
        if request.method == "POST" {
            if request.bodyTooLarge { throw SCEPError(.bodyTooLarge) }
            guard !request.body.isEmpty else { throw SCEPError(.missingMessage) }
            // DER/BER starts with a SEQUENCE tag; anything else is tried as base64 text.
            if request.body.first == 0x30 { return request.body }
            return try SCEPQuery.decodeMessage(String(decoding: request.body, as: UTF8.self))
        }
        // Apache mod_proxy_fcgi silently drops a QUERY_STRING over ~16 KB: that arrives here as
        // no message at all and must be a clear 400, never an empty request.
        guard let raw = query.rawMessage, !raw.isEmpty else { throw SCEPError(.missingMessage) }
        return try SCEPQuery.decodeMessage(raw)
    }

    private func enroll(
        _ message: PKIMessage, _ request: SCEPHTTPRequest, _ started: ContinuousClock.Instant, _ event: inout AuditEvent,
        _ audited: inout Bool,
        _ contextOut: inout ChallengeContext?
    ) throws -> SCEPHTTPResponse {
        let verified = try message.verify()
        event.digest = verified.digest?.rawValue ?? verified.digestOID
        guard let digest = verified.digest, digest.isAcceptable else {
            throw SCEPError(.unsupportedDigest, verified.digestOID)
        }
        // RFC 8894 §3.2.1.2: undefined types MUST be treated as errors. Renewal, polling, GetCert
        // and GetCRL are not offered (GetCACaps does not list Renewal).
        guard message.messageType == .pkcsReq else {
            throw SCEPError(.unsupportedMessageType, "messageType \(message.messageTypeValue)")
        }
        // The SUCCESS reply is enveloped to the signer certificate with RSA key transport.
        guard verified.signer.publicKey?.algorithm == .rsa else { throw SCEPError(.signerKeyNotRSA) }

        let opened: OpenedEnvelope
        do { opened = try self.decrypter.open(verified.content) } catch let error as OpenSSLError {
            switch error.code {
            case .parse: throw SCEPError(.malformedEnvelope, "\(error)")
            case .unsupportedAlgorithm: throw SCEPError(.unsupportedCipher, "\(error)")
            default: throw SCEPError(.decryptFailed, "\(error)")
            }
        }
        event.keyTransport = opened.keyTransport.description
        event.cipher = opened.cipher?.rawValue ?? opened.cipherOID
        guard let cipher = opened.cipher else { throw SCEPError(.unsupportedCipher, opened.cipherOID) }

        let csr: CertificateSigningRequest
        do { csr = try CertificateSigningRequest(derEncoded: opened.content) } catch {
            throw SCEPError(.malformedCSR, "\(error)")
        }
        event.subject = csr.subject
        let names = csr.subjectAltNames
        if !names.isEmpty { event.subjectAltNames = names }
        // Proof of possession (RFC 8894 §3.3.1 via PKCS#10): micromdm never checks it; we do.
        guard csr.verifySignature() else { throw SCEPError(.badCSRSignature) }
        guard let csrKey = csr.publicKey, self.policy.accepts(csrKey) else {
            throw SCEPError(.keyPolicy, "CSR key \(csr.publicKey.map { "\($0.algorithm.rawValue)-\($0.bits)" } ?? "missing")")
        }
        let challenge: String?
        do { challenge = try csr.challengePassword() } catch { throw SCEPError(.malformedCSR, "challengePassword") }

        // Challenge (RFC 8894 §2.4): a pluggable validator decides.
        let context = ChallengeContext(
            transactionID: message.transactionID, csr: csr, challenge: challenge, remoteAddr: request.remoteAddr)
        contextOut = context
        event.challengeMode = self.validator.mode
        let decision: ChallengeDecision
        do { decision = try self.validator.validate(context) } catch {
            event.challengeError = (error as? AuditCodedError)?.auditCode
            throw SCEPError(.challengeUnavailable, "\(error)")
        }
        switch decision {
        case .accepted:
            event.challengeResult = self.validator.acceptedResult
        case .rejected(let code, let detail):
            event.challengeResult = detail
            throw SCEPError(code, detail.map { "validator result \($0)" } ?? "", failInfoText: detail.map(self.validator.rejectionText))
        }

        // Issue, store, notify, audit; only then deliver.
        let (notBefore, notAfter) = self.policy.validity(now: Date(), caNotAfter: self.issuer.caCertificate.notAfter)
        let certificate: Certificate
        do {
            certificate = try self.issuer.issue(
                csr: csr, serial: try SerialNumber.random(), notBefore: notBefore, notAfter: notAfter,
                profile: self.policy.profile(for: csrKey))
        } catch { throw SCEPError(.issuanceFailed, "\(error)") }
        do { try self.store.record(certificate, transactionID: message.transactionID) } catch {
            throw SCEPError(.storeFailed, "\(error)")
        }
        event.serial = certificate.serialNumberHex
        event.notBefore = certificate.notBefore
        event.notAfter = certificate.notAfter
        event.sha1 = HexEncoding.string(certificate.fingerprint(.sha1))
        event.sha256 = HexEncoding.string(certificate.fingerprint(.sha256))
        do { try self.validator.issued(certificate, context: context) } catch {
            event.challengeError = (error as? AuditCodedError)?.auditCode
            throw SCEPError(.notificationFailed, "\(error)")
        }
        let calls = context.trace.calls
        if !calls.isEmpty { event.validatorCalls = calls }

        // RFC 8894 §3.3.2.1: the messageData is a degenerate certs-only SignedData with the issued cert.
        let reply: [UInt8]
        do {
            reply = try self.signer.sign(
                CertRep(
                    transactionID: message.transactionID, recipientNonce: message.senderNonce,
                    status: .success(content: try CMSSigner.certificatesOnly([certificate]))),
                digest: digest, recipient: verified.signer, cipher: cipher, keyTransport: opened.keyTransport)
        } catch { throw SCEPError(.internalError, "sign CertRep: \(error)") }

        event.outcome = .issued
        event.durationMs = Self.milliseconds(since: started)
        do { try self.audit.record(event) } catch {
            // Stored but never delivered: the client gets FAILURE and may retry.
            throw SCEPError(.auditFailed, "\(error); certificate \(certificate.serialNumberHex) withheld")
        }
        audited = true
        return SCEPHTTPResponse(status: 200, contentType: SCEPContentType.pkiMessage, body: reply)
    }

    /// A signed CertRep FAILURE (RFC 8894 §3.3.2.2) in the request's digest (SHA-256 if unusable).
    func failure(_ message: PKIMessage, _ error: SCEPError, _ event: inout AuditEvent) -> SCEPHTTPResponse {
        event.outcome = error.isServerFault ? .failed : .rejected
        event.reason = error.auditCode
        event.failInfo = error.failInfo.name
        let digest = message.digest.flatMap { $0.isAcceptable ? $0 : nil } ?? .sha256
        let certRep = CertRep(
            transactionID: message.transactionID, recipientNonce: message.senderNonce,
            status: .failure(error.failInfo, text: error.failInfoText))
        do {
            let body = try self.signer.sign(certRep, digest: digest, recipient: nil, cipher: .aes256, keyTransport: .rsaPKCS1v15)
            return SCEPHTTPResponse(status: 200, contentType: SCEPContentType.pkiMessage, body: body)
        } catch {
            self.diagnostics.log(.error, "request \(event.requestID): cannot sign CertRep FAILURE: \(error)")
            event.httpStatus = 500
            return SCEPHTTPResponse.text(500, "internal error, see server logs")
        }
    }
}
