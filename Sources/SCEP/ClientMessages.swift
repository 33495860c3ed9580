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
        try PKIMessageBuilder.build(
            messageData: csr.derEncoded, messageType: messageType, signerCertificate: signerCertificate, signerKey: signerKey,
            recipient: recipient, cipher: cipher, digest: digest, keyTransport: keyTransport, transactionID: transactionID,
            senderNonce: senderNonce)
    }
}

/// The client side of every PKIOperation (RFC 8894 §3.3): messageData enveloped to the server's
/// recipient certificate, signed with SCEP attributes.
public enum PKIMessageBuilder {
    public static func build(
        messageData: [UInt8], messageType: MessageType, signerCertificate: Certificate, signerKey: PrivateKey,
        recipient: Certificate, cipher: ContentCipher = .aes256, digest: DigestAlgorithm = .sha256,
        keyTransport: KeyTransport = .rsaPKCS1v15, transactionID: String, senderNonce: [UInt8],
        extraCertificates: [Certificate] = []
    ) throws -> [UInt8] {
        let envelope = try CMSEnvelope.seal(messageData, to: recipient, cipher: cipher, keyTransport: keyTransport)
        let attributes: [SignedAttribute] = [
            .init(oid: SCEPObjectIdentifier.transactionID, kind: .printableString, value: Array(transactionID.utf8)),
            .init(oid: SCEPObjectIdentifier.messageType, kind: .printableString, value: Array(String(messageType.rawValue).utf8)),
            .init(oid: SCEPObjectIdentifier.senderNonce, kind: .octetString, value: senderNonce),
        ]
        return try CMSSigner.sign(
            content: envelope, certificate: signerCertificate, key: signerKey, digest: digest, attributes: attributes,
            extraCertificates: extraCertificates)
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
    /// For a GetCRL SUCCESS: the CRLs of the enveloped degenerate SignedData.
    public let crls: [CertificateRevocationList]
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
        var crls: [CertificateRevocationList] = []
        var cipher: ContentCipher? = nil
        var keyTransport: KeyTransport? = nil
        if status == .success {
            let opened = try CMSEnvelope.open(verified.content, certificate: signerCertificate, key: signerKey)
            certificates = try CMSSigner.certificates(in: opened.content)
            crls = try CMSSigner.crls(in: opened.content)
            cipher = opened.cipher
            keyTransport = opened.keyTransport
        }
        return ReceivedCertRep(
            transactionID: message.transactionID, status: status, failInfo: failInfo,
            failInfoText: try string(SCEPObjectIdentifier.failInfoText), senderNonce: message.senderNonce,
            recipientNonce: recipientNonce, digest: verified.digest, signer: verified.signer,
            certificates: certificates, crls: crls, envelopeCipher: cipher, envelopeKeyTransport: keyTransport)
    }
}
