import Foundation
import SCEP
import SCEPCrypto
import Testing

/// Third-party messages (see Vectors/README.md for provenance and licences): they were made by
/// other implementations, so they catch what our own round trips cannot.
@Suite("Third-party SCEP vectors")
struct VectorTests {
    init() throws { try OpenSSL.bootstrap() }

    static func vector(_ path: String) throws -> [UInt8] {
        let base = try #require(Bundle.module.url(forResource: "Vectors", withExtension: nil))
        return Array(try Data(contentsOf: base.appendingPathComponent(path)))
    }

    @Test("jscep scep_req0: PKCS#10 with challenge and a valid self-signature")
    func jscepCSR() throws {
        let csr = try CertificateSigningRequest(derEncoded: try Self.vector("jscep-samples/scep_req0.der"))
        #expect(csr.verifySignature())
        #expect(try csr.challengePassword() == "NQ3C6-GS3ZN-2XPGL-SEJTQ")
        #expect(csr.publicKey?.algorithm == .rsa)
    }

    @Test("jscep scep_req2: signed pkiMessage decodes, verifies, and wraps scep_req1")
    func jscepPKIMessage() throws {
        let message = try PKIMessage.decode(try Self.vector("jscep-samples/scep_req2.der"))
        #expect(message.messageType == .pkcsReq)
        #expect(message.senderNonce.count == 16)
        #expect(!message.transactionID.isEmpty)
        let verified = try message.verify()
        #expect(verified.digest == .sha256)
        #expect(verified.content == (try Self.vector("jscep-samples/scep_req1.der")))
    }

    @Test("jscep scep_resp2: CertRep decodes and verifies")
    func jscepCertRep() throws {
        let message = try PKIMessage.decode(try Self.vector("jscep-samples/scep_resp2.der"), requireSenderNonce: false)
        #expect(message.messageType == .certRep)
        #expect(message.senderNonce.isEmpty)
        let verified = try message.verify()
        #expect(try verified.signedAttribute(SCEPObjectIdentifier.pkiStatus)?.stringValue() == "0")
        #expect(throws: SCEPError(.missingSenderNonce)) { try PKIMessage.decode(try Self.vector("jscep-samples/scep_resp2.der")) }
    }

    @Test("smallstep PKCSReq (micromdm client, 3DES, SHA-1) decrypts with its CA key")
    func smallstepPKCSReq() throws {
        let ca = try #require(try Certificate.certificates(pemEncoded: try Self.vector("smallstep-scep/testca/ca.pem")).first)
        // The key is legacy PEM, DES-EDE3 encrypted under an *empty* passphrase.
        let key = try PrivateKey(pemEncoded: try Self.vector("smallstep-scep/testca/ca.key"), passphrase: [])
        #expect(key.matches(ca))
        let message = try PKIMessage.decode(try Self.vector("smallstep-scep/PKCSReq.der"))
        #expect(message.messageType == .pkcsReq)
        let verified = try message.verify()
        #expect(verified.digest == .sha1)
        let opened = try CMSEnvelope.open(verified.content, certificate: ca, key: key)
        #expect(opened.cipher == .tripleDES)
        #expect(opened.keyTransport == .rsaPKCS1v15)
        let csr = try CertificateSigningRequest(derEncoded: opened.content)
        #expect(csr.verifySignature())
        #expect(csr.subject.contains("com.apple.security.scep"))
    }

    @Test("smallstep PKCSReq gets a CertRep SUCCESS that verifies and is enveloped to the requester")
    func smallstepRoundTrip() throws {
        let ca = try #require(try Certificate.certificates(pemEncoded: try Self.vector("smallstep-scep/testca/ca.pem")).first)
        let key = try PrivateKey(pemEncoded: try Self.vector("smallstep-scep/testca/ca.key"), passphrase: [])
        let message = try PKIMessage.decode(try Self.vector("smallstep-scep/PKCSReq.der"))
        let verified = try message.verify()
        let opened = try CMSEnvelope.open(verified.content, certificate: ca, key: key)
        let csr = try CertificateSigningRequest(derEncoded: opened.content)
        let issued = try CertificateBuilder.issue(
            csr: csr, issuer: ca, issuerKey: key, serial: try SecureRandom.bytes(16).map { $0 & 0x7F },
            notBefore: Date(), notAfter: Date().addingTimeInterval(86400), profile: IssuanceProfile())
        #expect(issued.isSigned(by: try #require(ca.publicKey)))
        let reply = try CertRep(
            transactionID: message.transactionID, recipientNonce: message.senderNonce,
            status: .success(content: try CMSSigner.certificatesOnly([issued]))
        ).encode(
            signer: ca, key: key, digest: try #require(verified.digest), recipient: verified.signer,
            cipher: opened.cipher, keyTransport: opened.keyTransport)
        let decoded = try PKIMessage.decode(reply)
        #expect(decoded.transactionID == message.transactionID)
        #expect(decoded.messageType == .certRep)
        let replyVerified = try decoded.verify()
        #expect(replyVerified.digest == .sha1)
        #expect(replyVerified.signer.derEncoded == ca.derEncoded)
        #expect(try replyVerified.signedAttribute(SCEPObjectIdentifier.recipientNonce).map { Array($0.value) } == message.senderNonce)
        // We do not hold the requester's key, but the envelope must name its signer certificate.
        #expect(throws: OpenSSLError.self) { try CMSEnvelope.open(replyVerified.content, certificate: ca, key: key) }
    }

    @Test("smallstep CertRep and the one without signer certificates")
    func smallstepCertReps() throws {
        let message = try PKIMessage.decode(try Self.vector("smallstep-scep/CertRep.der"), requireSenderNonce: false)
        #expect(message.messageType == .certRep)
        _ = try message.verify()
        let noSigners = try PKIMessage.decode(try Self.vector("smallstep-scep/testca2/CertRep_NoCertificatesForSigners.der"), requireSenderNonce: false)
        #expect(throws: SCEPError(.badSignature)) { try noSigners.verify() }
    }
}
