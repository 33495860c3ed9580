import FoundationEssentials
import Glibc
import SCEP
import SCEPCrypto

/// A decoded, verified and decrypted pkiMessage with what its reply needs (RFC 8894 §3.3.2:
/// the request's digest, cipher and key transport, enveloped to the request's signer).
struct Exchange {
    let message: PKIMessage
    let signer: Certificate
    let content: [UInt8]
    let digest: DigestAlgorithm
    let cipher: ContentCipher
    let keyTransport: KeyTransport
    let material: CAMaterial
    let request: SCEPHTTPRequest

    var transactionID: String { self.message.transactionID }

    /// A signed CertRep: SUCCESS carries a degenerate SignedData enveloped to the requester.
    func reply(_ status: CertRep.Status) throws -> SCEPHTTPResponse {
        do {
            return try self.material.signer.sign(
                CertRep(transactionID: self.transactionID, recipientNonce: self.message.senderNonce, status: status),
                digest: self.digest, recipient: self.signer, cipher: self.cipher, keyTransport: self.keyTransport)
        } catch { throw SCEPError(.internalError, "sign CertRep: \(error)") }
    }

    /// RFC 8894 §3.3.2.1: SUCCESS with a degenerate certs-only SignedData (or one holding a CRL).
    func success(_ certificates: [Certificate], crls: [CertificateRevocationList] = []) throws -> SCEPHTTPResponse {
        let degenerate: [UInt8]
        do { degenerate = try CMSSigner.certificatesOnly(certificates, crls: crls) } catch {
            throw SCEPError(.internalError, "degenerate SignedData: \(error)")
        }
        return try self.reply(.success(content: degenerate))
    }
}

extension SCEPResponder {
    /// PKIOperation (RFC 8894 §4.3): HTTP-tier errors until the pkiMessage's transactionID and
    /// senderNonce are known, signed CertRep FAILURE after.
    func pkiOperation(_ request: SCEPHTTPRequest, _ query: SCEPQuery, _ material: CAMaterial, _ record: RequestRecord) -> SCEPHTTPResponse {
        let message: PKIMessage
        do {
            message = try PKIMessage.decode(try self.messageBytes(request, query))
        } catch let error as SCEPError {
            return self.httpError(error, record)
        } catch {
            return self.httpError(SCEPError(.malformedMessage), record)
        }
        record.event.transactionID = message.transactionID
        record.event.messageType = message.messageType?.name ?? String(message.messageTypeValue)

        var context: ChallengeContext? = nil
        do {
            let exchange = try self.open(message, request, material, record)
            switch exchange.message.messageType {
            case .pkcsReq, .renewalReq: return try self.enroll(exchange, record, &context)
            case .certPoll: return try self.poll(exchange, record)
            case .getCert: return try self.getCert(exchange, record)
            case .getCRL: return try self.getCRL(exchange, record)
            default: throw SCEPError(.unsupportedMessageType, "messageType \(message.messageTypeValue)")
            }
        } catch {
            if let calls = context?.trace.calls, !calls.isEmpty { record.event.validatorCalls = calls }
            let scepError = (error as? SCEPError) ?? SCEPError(.internalError, "\(error)")
            if scepError.isServerFault || !(error is SCEPError) {
                self.diagnostics.log(.error, "request \(record.event.requestID) transaction \(message.transactionID): \(error)")
            } else {
                self.diagnostics.log(.info, "request \(record.event.requestID) transaction \(message.transactionID) rejected: \(scepError)")
            }
            if let context, [.issuanceFailed, .storeFailed, .internalError, .clientGone, .sidNotValidated].contains(scepError.code), record.event.serial == nil {
                self.validator.issuanceFailed(scepError, context: context)
                record.event.validatorCalls = context.trace.calls
            }
            return self.failure(message, scepError, material, record)
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

    /// Verifies the signature, applies the algorithm policy and opens the envelope with whichever
    /// of our keys it is addressed to.
    private func open(_ message: PKIMessage, _ request: SCEPHTTPRequest, _ material: CAMaterial, _ record: RequestRecord) throws -> Exchange {
        record.event.digest = message.digest?.rawValue ?? message.digestOID
        // RFC 8894 §2.9: MD5 MUST NOT be supported; a digest OpenSSL does not know cannot be
        // verified at all. Both are badAlg, decided before any signature work.
        guard let digest = message.digest, digest.isAcceptable else { throw SCEPError(.unsupportedDigest, message.digestOID) }
        let verified = try message.verify()
        // RFC 8894 §3.2.1.2: undefined types MUST be treated as errors.
        guard let type = message.messageType, [.pkcsReq, .renewalReq, .certPoll, .getCert, .getCRL].contains(type) else {
            throw SCEPError(.unsupportedMessageType, "messageType \(message.messageTypeValue)")
        }
        // Every SUCCESS is enveloped to the signer certificate with RSA key transport.
        guard verified.signer.publicKey?.algorithm == .rsa else { throw SCEPError(.signerKeyNotRSA) }
        try self.policy.checkSigner(verified.signer, signingTime: try message.signingTime())

        let opened: OpenedEnvelope
        do {
            opened = try CMSEnvelope.open(verified.content, candidates: material.decrypters.map { ($0.certificate, $0.key) })
        } catch let error as OpenSSLError {
            switch error.code {
            case .parse: throw SCEPError(.malformedEnvelope, "\(error)")
            case .unsupportedAlgorithm:
                // Which cipher a client tried is worth a line in the audit log (the key transport,
                // when that was the unknown part, is in the diagnostic log).
                let oid = CMSEnvelope.contentCipherOID(of: verified.content)
                record.event.cipher = oid.map { ContentCipher(oid: $0)?.rawValue ?? $0 }
                throw SCEPError(.unsupportedCipher, "\(error)")
            default: throw SCEPError(.decryptFailed, "\(error)")
            }
        }
        record.event.keyTransport = opened.keyTransport.description
        record.event.cipher = opened.cipher.rawValue
        let cipher = opened.cipher
        guard self.policy.acceptsCipher(cipher) else { throw SCEPError(.cipherPolicy, cipher.rawValue) }
        return Exchange(
            message: message, signer: verified.signer, content: opened.content, digest: digest, cipher: cipher,
            keyTransport: opened.keyTransport, material: material, request: request)
    }

    /// A signed CertRep FAILURE (RFC 8894 §3.3.2.2) in the request's digest (SHA-256 if unusable).
    func failure(_ message: PKIMessage, _ error: SCEPError, _ material: CAMaterial, _ record: RequestRecord) -> SCEPHTTPResponse {
        // A certificate that was stored but is not being delivered is withheld, not merely failed.
        record.event.outcome = record.event.serial != nil ? .withheld : error.isServerFault ? .failed : .rejected
        record.event.reason = error.auditCode
        record.event.failInfo = error.failInfo.name
        let digest = message.digest.flatMap { $0.isAcceptable ? $0 : nil } ?? .sha256
        let certRep = CertRep(
            transactionID: message.transactionID, recipientNonce: message.senderNonce,
            status: .failure(error.failInfo, text: error.failInfoText))
        do {
            return try material.signer.sign(certRep, digest: digest, recipient: nil, cipher: .aes256, keyTransport: .rsaPKCS1v15)
        } catch {
            self.diagnostics.log(.error, "request \(record.event.requestID): cannot sign CertRep FAILURE: \(error)")
            record.event.httpStatus = 500
            return SCEPHTTPResponse.text(500, "internal error, see server logs")
        }
    }
}
