import FoundationEssentials
import SCEPCrypto

/// A received pkiMessage (RFC 8894 §3.2) whose SCEP attributes have been read but whose
/// signature has not been checked yet.
///
/// The attributes come first so that every later failure (bad signature included) can be
/// answered with a CertRep FAILURE the client can match to its request.
public struct PKIMessage: Sendable {
    public let transactionID: String
    /// The messageType value as sent; ``messageType`` is nil for values RFC 8894 does not define.
    public let messageTypeValue: Int
    public var messageType: MessageType? { MessageType(rawValue: self.messageTypeValue) }
    public let senderNonce: [UInt8]
    /// The request's digest algorithm as its SignerInfo names it (nil when unknown).
    public var digest: DigestAlgorithm? { self.signedData.digest }
    /// The digest algorithm's dotted OID (for audit lines about unknown ones).
    public var digestOID: String { self.signedData.digestOID }
    private let signedData: ParsedSignedData

    /// The longest transactionID accepted. RFC 8894 sets no limit; real ones are 20–80 characters.
    public static let maxTransactionIDLength = 256

    /// Decodes the outer SignedData of a pkiMessage (BER or DER) and its SCEP attributes.
    ///
    /// - Throws: HTTP-tier ``SCEPError``s: `malformedMessage`, `missingTransactionID`,
    ///   `missingSenderNonce`, `missingMessageType`.
    /// - Parameter requireSenderNonce: false only when reading replies: jscep's CertRep carries
    ///   no senderNonce (it sends a randomNonce instead).
    public static func decode(_ bytes: [UInt8], requireSenderNonce: Bool = true) throws -> PKIMessage {
        let signed: ParsedSignedData
        do { signed = try ParsedSignedData.parse(bytes) } catch { throw SCEPError(.malformedMessage, "\(error)") }

        // RFC 8894 §3.2.1.1: transactionID is a PrintableString; any string type is read.
        guard let idNode = try? signed.signedAttribute(SCEPObjectIdentifier.transactionID),
            let transactionID = try? idNode.stringValue(), !transactionID.isEmpty,
            transactionID.count <= maxTransactionIDLength,
            transactionID.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value < 0x7F })
        else { throw SCEPError(.missingTransactionID) }

        // RFC 8894 §3.2.1.5: a 16-byte OCTET STRING; legacy iOS sent 8 bytes (OpenXPKI comment).
        let nonceNode = try? signed.signedAttribute(SCEPObjectIdentifier.senderNonce)
        let nonceValid = nonceNode.map { $0.tag == 0x04 && (8...64).contains($0.value.count) } ?? false
        guard nonceValid || (!requireSenderNonce && nonceNode == nil) else { throw SCEPError(.missingSenderNonce) }

        // RFC 8894 §3.2.1.2: a PrintableString of decimal digits ("19"); "+19" or " 19" is not one.
        guard let typeNode = try? signed.signedAttribute(SCEPObjectIdentifier.messageType),
            let typeText = try? typeNode.stringValue(), (1...4).contains(typeText.utf8.count),
            typeText.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let typeValue = Int(typeText)
        else { throw SCEPError(.missingMessageType) }

        return PKIMessage(
            transactionID: transactionID, messageTypeValue: typeValue, senderNonce: nonceNode.map { Array($0.value) } ?? [],
            signedData: signed)
    }

    /// The signingTime signed attribute, nil when absent (PyScep sends none).
    /// - Throws: ``SCEPError/Code/signingTimeSkew`` when it is present but not a time.
    public func signingTime() throws -> Date? {
        do { return try self.signedData.signingTime() } catch { throw SCEPError(.signingTimeSkew, "\(error)") }
    }

    /// Checks the signature with the signer certificate the message carries.
    /// - Throws: ``SCEPError/Code/badSignature``.
    public func verify() throws -> VerifiedSignedData {
        do { return try self.signedData.verify() } catch { throw SCEPError(.badSignature, "\(error)") }
    }
}

/// A CertRep (RFC 8894 §3.3.2) ready to be signed.
public struct CertRep: Sendable {
    public enum Status: Sendable {
        /// The reply carries `content` (a degenerate SignedData) enveloped to the requester.
        case success(content: [UInt8])
        case failure(FailInfo, text: String?)
        case pending
    }

    public let transactionID: String
    public let recipientNonce: [UInt8]
    public let status: Status

    public init(transactionID: String, recipientNonce: [UInt8], status: Status) {
        self.transactionID = transactionID
        self.recipientNonce = recipientNonce
        self.status = status
    }

    /// Signs the CertRep with the CA (or RA) key and returns DER.
    ///
    /// - Parameters:
    ///   - recipient: the request's signer certificate; a SUCCESS is enveloped to it
    ///     (RFC 8894 §3.3.2: "encrypted to the requester's signer certificate").
    ///   - cipher/keyTransport: those of the request (see ``ContentCipher/replyCipher``).
    public func encode(
        signer: Certificate, key: PrivateKey, digest: DigestAlgorithm, recipient: Certificate?,
        cipher: ContentCipher, keyTransport: KeyTransport, extraCertificates: [Certificate] = []
    ) throws -> [UInt8] {
        // RFC 8894 §3.2.1.5: a fresh senderNonce. Its length follows the client's when that is
        // not 16 bytes, as OpenXPKI does for legacy iOS clients with 8-byte nonces.
        let nonceLength = (8...64).contains(self.recipientNonce.count) ? self.recipientNonce.count : 16
        var attributes: [SignedAttribute] = [
            .init(oid: SCEPObjectIdentifier.transactionID, kind: .printableString, value: Array(self.transactionID.utf8)),
            .init(oid: SCEPObjectIdentifier.messageType, kind: .printableString, value: Array("3".utf8)),
            .init(oid: SCEPObjectIdentifier.senderNonce, kind: .octetString, value: try SecureRandom.bytes(nonceLength)),
            // RFC 8894 §3.2.1.5: the recipientNonce is the senderNonce of the request, copied byte for byte.
            .init(oid: SCEPObjectIdentifier.recipientNonce, kind: .octetString, value: self.recipientNonce),
        ]
        // FAILURE and PENDING carry no pkcsPKIEnvelope (RFC 8894 §3.3.2) but still an eContent of
        // zero length, as the Go peers send: OpenSSL-based clients (certmonger, sscep) cannot
        // verify a SignedData whose content is absent altogether.
        var content: [UInt8] = []
        switch self.status {
        case .success(let degenerate):
            guard let recipient else { throw SCEPError(.internalError, "SUCCESS without a recipient") }
            attributes.append(.init(oid: SCEPObjectIdentifier.pkiStatus, kind: .printableString, value: Array("0".utf8)))
            content = try CMSEnvelope.seal(degenerate, to: recipient, cipher: cipher.replyCipher, keyTransport: keyTransport)
        case .failure(let failInfo, let text):
            // RFC 8894 §3.3.2: FAILURE and PENDING omit the pkcsPKIEnvelope; failInfo MUST be present.
            attributes.append(.init(oid: SCEPObjectIdentifier.pkiStatus, kind: .printableString, value: Array("2".utf8)))
            attributes.append(.init(oid: SCEPObjectIdentifier.failInfo, kind: .printableString, value: Array(String(failInfo.rawValue).utf8)))
            if let text {
                attributes.append(.init(oid: SCEPObjectIdentifier.failInfoText, kind: .utf8String, value: Array(text.utf8)))
            }
        case .pending:
            attributes.append(.init(oid: SCEPObjectIdentifier.pkiStatus, kind: .printableString, value: Array("3".utf8)))
        }
        return try CMSSigner.sign(
            content: content, certificate: signer, key: key, digest: digest, attributes: attributes,
            extraCertificates: extraCertificates)
    }
}
