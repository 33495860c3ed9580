import Foundation
import SCEP
import SCEPCrypto
import Testing

/// RFC 8894 §3.2.1 attributes are read once each: a repeated or retyped one is an HTTP-tier error
/// (which of two transactionIDs a reply should answer cannot be known). The same cases go through
/// nginx in Tests/Integration/test_corpus_layers.py.
@Suite("pkiMessage signed attributes")
struct PKIMessageAttributeTests {
    static let key: PrivateKey = try! PrivateKey.generateRSA(bits: 2048)

    static func message(_ attributes: [SignedAttribute]) throws -> [UInt8] {
        let signer = try CertificateBuilder.selfSigned(
            subject: "CN=attribute test", key: key, serial: [0x21], notBefore: Date().addingTimeInterval(-60),
            notAfter: Date().addingTimeInterval(3600), isCA: false)
        return try CMSSigner.sign(content: [0x30, 0x00], certificate: signer, key: key, digest: .sha256, attributes: attributes)
    }

    static func id(_ text: String) -> SignedAttribute { .init(oid: SCEPObjectIdentifier.transactionID, kind: .printableString, value: Array(text.utf8)) }
    static func type(_ text: String) -> SignedAttribute { .init(oid: SCEPObjectIdentifier.messageType, kind: .printableString, value: Array(text.utf8)) }
    static let nonce = SignedAttribute(oid: SCEPObjectIdentifier.senderNonce, kind: .octetString, value: Array(repeating: 7, count: 16))

    @Test("each attribute once: decoded; with signingTime readable")
    func valid() throws {
        let message = try PKIMessage.decode(try Self.message([Self.id("t-1"), Self.type("19"), Self.nonce]))
        #expect(message.transactionID == "t-1" && message.messageType == .pkcsReq)
        // CMSSigner adds signingTime (OpenSSL's default), which the server reads for badTime.
        let signed = try #require(try message.signingTime())
        #expect(abs(signed.timeIntervalSinceNow) < 300)
    }

    @Test("a repeated transactionID, messageType or senderNonce is refused")
    func repeated() throws {
        #expect(throws: SCEPError(.missingTransactionID)) {
            try PKIMessage.decode(try Self.message([Self.id("t-1"), Self.id("t-2"), Self.type("19"), Self.nonce]))
        }
        #expect(throws: SCEPError(.missingMessageType)) {
            try PKIMessage.decode(try Self.message([Self.id("t-1"), Self.type("19"), Self.type("17"), Self.nonce]))
        }
        #expect(throws: SCEPError(.missingSenderNonce)) {
            try PKIMessage.decode(try Self.message([Self.id("t-1"), Self.type("19"), Self.nonce, Self.nonce]))
        }
    }

    @Test("messageType is decimal digits only")
    func messageTypeDigits() throws {
        for bad in ["+19", " 19", "19 ", "0x13", "", "12345"] {
            #expect(throws: SCEPError(.missingMessageType), "\(bad)") {
                try PKIMessage.decode(try Self.message([Self.id("t-1"), Self.type(bad), Self.nonce]))
            }
        }
        #expect(try PKIMessage.decode(try Self.message([Self.id("t-1"), Self.type("019"), Self.nonce])).messageType == .pkcsReq)
    }
}
