import Foundation
import SCEPCrypto
import Testing

@Suite("SCEPCrypto: CMS SignedData and EnvelopedData")
struct CMSTests {
    init() throws { try OpenSSL.bootstrap() }

    static let transports: [KeyTransport] = [.rsaPKCS1v15, .rsaOAEP(.sha1), .rsaOAEP(.sha256)]

    @Test("an envelope opens with every cipher and key transport, and names them", arguments: ContentCipher.allCases, transports)
    func envelopeRoundTrip(cipher: ContentCipher, transport: KeyTransport) throws {
        let content = Array("the PKCS#10 goes here".utf8)
        let sealed = try CMSEnvelope.seal(content, to: TestPKI.ca, cipher: cipher, keyTransport: transport)
        let opened = try CMSEnvelope.open(sealed, certificate: TestPKI.ca, key: TestPKI.caKey)
        #expect(opened.content == content)
        #expect(opened.cipher == cipher)
        #expect(opened.keyTransport == transport)
    }

    @Test("an envelope for another key does not open")
    func envelopeWrongKey() throws {
        let sealed = try CMSEnvelope.seal([1, 2, 3], to: try TestPKI.signer(), cipher: .aes128, keyTransport: .rsaPKCS1v15)
        #expect(throws: OpenSSLError(.decrypt, "")) { try CMSEnvelope.open(sealed, certificate: TestPKI.ca, key: TestPKI.caKey) }
        #expect(throws: OpenSSLError.parse("")) { try CMSEnvelope.open([0x30, 0x00], certificate: TestPKI.ca, key: TestPKI.caKey) }
    }

    @Test("SignedData: signed attributes, digest and signer survive; tampering is caught", arguments: [DigestAlgorithm.sha1, .sha256, .sha512])
    func signedData(digest: DigestAlgorithm) throws {
        let signed = try CMSSigner.sign(
            content: Array("payload".utf8), certificate: TestPKI.ca, key: TestPKI.caKey, digest: digest,
            attributes: [
                SignedAttribute(oid: "2.16.840.1.113733.1.9.7", kind: .printableString, value: Array("tid-1".utf8)),
                SignedAttribute(oid: "2.16.840.1.113733.1.9.5", kind: .octetString, value: [UInt8](repeating: 7, count: 16)),
            ])
        let parsed = try ParsedSignedData.parse(signed)
        #expect(parsed.digest == digest)
        #expect(try parsed.signedAttribute("2.16.840.1.113733.1.9.7")?.stringValue() == "tid-1")
        let verified = try parsed.verify()
        #expect(verified.content == Array("payload".utf8))
        #expect(verified.signer.derEncoded == TestPKI.ca.derEncoded)
        #expect(try verified.signedAttribute("2.16.840.1.113733.1.9.5")?.value.count == 16)
        #expect(try verified.signedAttribute("2.16.840.1.113733.1.9.6") == nil)

        var tampered = signed
        let index = try #require(Self.find(Array("payload".utf8), in: tampered))
        tampered[index] ^= 0x20
        #expect(throws: OpenSSLError(.signature, "")) { try ParsedSignedData.parse(tampered).verify() }
    }

    @Test("a degenerate certs-only SignedData has no signers and no eContent (RFC 8894 §3.4)")
    func degenerate() throws {
        let der = try CMSSigner.certificatesOnly([TestPKI.ca, try TestPKI.signer()])
        let certs = try CMSSigner.certificates(in: der)
        // `certificates` is a SET OF: DER sorts it, so only membership is defined.
        #expect(Set(certs.map(\.derEncoded)) == Set([TestPKI.ca.derEncoded, try TestPKI.signer().derEncoded]))
        // ContentInfo [0] SignedData: version, digestAlgorithms (empty SET), encapContentInfo with
        // only the eContentType, certificates [0], signerInfos (empty SET).
        let signedData = try #require(try DERNode.parseSingle(der).children()[1].children().first)
        let fields = try signedData.children()
        #expect(fields[1].tag == 0x31 && fields[1].value.isEmpty)
        #expect(try fields[2].children().count == 1)
        #expect(fields.last?.tag == 0x31 && fields.last?.value.isEmpty == true)
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        return (0...(haystack.count - needle.count)).first { Array(haystack[$0..<($0 + needle.count)]) == needle }
    }
}
