import SCEPCrypto

/// The client side of PKCSReq: what a device does. Used by the tests, the vectors checks and
/// the load generator, never by the server path.
public enum PKCSReqBuilder {
    /// Builds a signed PKCSReq pkiMessage (RFC 8894 §3.3.1) carrying `csr`, enveloped to `recipient`.
    public static func build(
        csr: CertificateSigningRequest, signerCertificate: Certificate, signerKey: PrivateKey,
        recipient: Certificate, cipher: ContentCipher = .aes256, digest: DigestAlgorithm = .sha256,
        keyTransport: KeyTransport = .rsaPKCS1v15, transactionID: String, senderNonce: [UInt8],
        messageType: MessageType = .pkcsReq
    ) throws -> [UInt8] {
        let envelope = try CMSEnvelope.seal(csr.derEncoded, to: recipient, cipher: cipher, keyTransport: keyTransport)
        let attributes: [SignedAttribute] = [
            .init(oid: SCEPObjectIdentifier.transactionID, kind: .printableString, value: Array(transactionID.utf8)),
            .init(oid: SCEPObjectIdentifier.messageType, kind: .printableString, value: Array(String(messageType.rawValue).utf8)),
            .init(oid: SCEPObjectIdentifier.senderNonce, kind: .octetString, value: senderNonce),
        ]
        return try CMSSigner.sign(
            content: envelope, certificate: signerCertificate, key: signerKey, digest: digest, attributes: attributes)
    }
}

/// A CertRep as a client reads it.
public struct ReceivedCertRep: Sendable {
    public let transactionID: String
    public let status: PKIStatus
    public let failInfo: FailInfo?
    public let failInfoText: String?
    public let senderNonce: [UInt8]
    public let recipientNonce: [UInt8]
    public let digest: DigestAlgorithm?
    /// The reply signer's certificate (the CA's, here).
    public let signer: Certificate
    /// For SUCCESS: the certificates of the enveloped degenerate SignedData, issued one first.
    public let certificates: [Certificate]
    /// For SUCCESS: how the envelope was encrypted.
    public let envelopeCipher: ContentCipher?
    public let envelopeKeyTransport: KeyTransport?

    /// Verifies and, for SUCCESS, decrypts a CertRep.
    public static func open(_ bytes: [UInt8], signerCertificate: Certificate, signerKey: PrivateKey) throws -> ReceivedCertRep {
        let message = try PKIMessage.decode(bytes, requireSenderNonce: false)
        guard message.messageType == .certRep else { throw SCEPError(.malformedMessage, "not a CertRep") }
        let verified = try message.verify()
        func string(_ oid: String) throws -> String? { try verified.signedAttribute(oid)?.stringValue() }
        guard let statusText = try string(SCEPObjectIdentifier.pkiStatus), let statusValue = Int(statusText),
            let status = PKIStatus(rawValue: statusValue)
        else { throw SCEPError(.malformedMessage, "pkiStatus") }
        let failInfo = try string(SCEPObjectIdentifier.failInfo).flatMap(Int.init).flatMap(FailInfo.init(rawValue:))
        let recipientNonce = try verified.signedAttribute(SCEPObjectIdentifier.recipientNonce).map { Array($0.value) } ?? []
        var certificates: [Certificate] = []
        var cipher: ContentCipher? = nil
        var keyTransport: KeyTransport? = nil
        if status == .success {
            let opened = try CMSEnvelope.open(verified.content, certificate: signerCertificate, key: signerKey)
            certificates = try CMSSigner.certificates(in: opened.content)
            cipher = opened.cipher
            keyTransport = opened.keyTransport
        }
        return ReceivedCertRep(
            transactionID: message.transactionID, status: status, failInfo: failInfo,
            failInfoText: try string(SCEPObjectIdentifier.failInfoText), senderNonce: message.senderNonce,
            recipientNonce: recipientNonce, digest: verified.digest, signer: verified.signer,
            certificates: certificates, envelopeCipher: cipher, envelopeKeyTransport: keyTransport)
    }
}
