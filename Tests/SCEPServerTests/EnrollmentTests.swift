import Foundation
import SCEP
import SCEPCrypto
import Testing

@testable import SCEPServer
import SCEPStore

@Suite("PKCSReq enrollment through the responder")
struct EnrollmentTests {
    static let algorithms: [(ContentCipher, DigestAlgorithm, KeyTransport)] = [
        (.des, .sha1, .rsaPKCS1v15),  // micromdm scepclient
        (.tripleDES, .sha256, .rsaPKCS1v15),
        (.aes128, .sha256, .rsaOAEP(.sha1)),  // RFC 8894 §2.9 mandatory pair, Windows-style OAEP
        (.aes192, .sha512, .rsaOAEP(.sha256)),
        (.aes256, .sha256, .rsaPKCS1v15),  // certmonger, PyScep
    ]

    @Test("SUCCESS: issued, stored, audited; reply mirrors the request's algorithms", arguments: 0..<algorithms.count)
    func success(_ index: Int) throws {
        let (cipher, digest, transport) = Self.algorithms[index]
        let h = try Harness()
        let client = try TestClient(harness: h, cipher: cipher, digest: digest, keyTransport: transport)
        let response = h.post(client.request)
        #expect(response.status == 200 && response.contentType == "application/x-pki-message")
        let rep = try client.open(response)
        #expect(rep.status == .success)
        #expect(rep.transactionID == client.transactionID)
        // RFC 8894 §3.2.1.5: recipientNonce = the request's senderNonce; senderNonce fresh.
        #expect(rep.recipientNonce == client.senderNonce)
        #expect(rep.senderNonce.count == 16 && rep.senderNonce != client.senderNonce)
        #expect(rep.digest == digest)
        #expect(rep.envelopeCipher == cipher.replyCipher)
        #expect(rep.envelopeKeyTransport == transport)
        #expect(rep.signer.derEncoded == h.ca.certificate.derEncoded)

        let cert = try #require(rep.certificates.first)
        #expect(rep.certificates.count == 1)
        #expect(cert.subject == "CN=device-1,O=Example")
        #expect(cert.isSigned(by: try #require(h.ca.certificate.publicKey)))
        #expect(cert.notBefore < Date().addingTimeInterval(-200))
        #expect(try h.issuedFiles() == ["\(cert.serialNumberHex).pem"])
        #expect(cert.serialNumberHex.count == 32)
        let index = try h.indexLines()
        #expect(index.count == 1 && index[0].hasPrefix("V\t") && index[0].contains("\t\(cert.serialNumberHex)\t\(IssuerID(authority: h.ca.certificate).hex)\t/O=Example/CN=device-1"))

        let event = try #require(h.audit.events.last)
        #expect(h.audit.events.count == 1)
        #expect(event.outcome == .issued && event.reason == nil)
        #expect(event.serial == cert.serialNumberHex)
        #expect(event.sha256 == cert.fingerprint(.sha256).map { String(format: "%02x", $0) }.joined())
        #expect(event.sha1 == cert.fingerprint(.sha1).map { String(format: "%02x", $0) }.joined())
        #expect(event.transactionID == client.transactionID)
        #expect(event.messageType == "PKCSReq")
        #expect(event.subjectAltNames == ["DNS:device-1.example"])
        #expect(event.cipher == cipher.rawValue && event.digest == digest.rawValue)
        #expect(event.durationMs != nil)
    }

    @Test("GET PKIOperation in the encodings real clients use")
    func getEncodings() throws {
        let h = try Harness()
        for variant in 0..<4 {
            let client = try TestClient(harness: h)
            let b64 = Data(client.request).base64EncodedString()
            let message: String
            switch variant {
            case 0: message = b64.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!  // certmonger
            case 1: message = b64  // macOS: raw + / =
            case 2: message = b64.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")  // scepclient
            default: message = stride(from: 0, to: b64.count, by: 64).map { String(Array(b64)[$0..<min($0 + 64, b64.count)]) }
                .joined(separator: "%0A")  // Cisco/sscep line breaks
            }
            let rep = try client.open(h.get("message=\(message)&operation=PKIOperation"))
            #expect(rep.status == .success, "variant \(variant)")
        }
        #expect(try h.issuedFiles().count == 4)
    }

    @Test("an 8-byte senderNonce (legacy iOS) gets an 8-byte fresh nonce and is copied back")
    func shortNonce() throws {
        let h = try Harness()
        let client = try TestClient(harness: h, nonceLength: 8)
        let rep = try client.open(h.post(client.request))
        #expect(rep.status == .success && rep.recipientNonce == client.senderNonce && rep.senderNonce.count == 8)
    }

    @Test("wrong or missing challenge: FAILURE badRequest, no certificate, challenge never audited")
    func badChallenge() throws {
        let h = try Harness()
        for (challenge, reason) in [("wrong-\(Harness.challenge)", "challenge-mismatch"), (String(Harness.challenge.dropLast()), "challenge-mismatch"), (nil, "challenge-missing")] {
            let client = try TestClient(harness: h, challenge: challenge)
            let rep = try client.open(h.post(client.request))
            #expect(rep.status == .failure && rep.failInfo == .badRequest)
            #expect(rep.failInfoText != nil)
            #expect(rep.recipientNonce == client.senderNonce && rep.transactionID == client.transactionID)
            #expect(h.audit.events.last?.reason == reason && h.audit.events.last?.outcome == .rejected)
        }
        #expect(try h.issuedFiles().isEmpty)
        #expect(try h.indexLines().isEmpty)
        let all = h.audit.events.map { $0.jsonLine() }.joined()
        #expect(!all.contains(Harness.challenge))
    }

    @Test("FAILURE reasons after the message could be parsed carry the right failInfo")
    func failures() throws {
        let h = try Harness()
        // UpdateReq (18) exists only in old drafts: RFC 8894 §3.2.1.2 undefined types are errors.
        let update = try TestClient(harness: h, messageType: .updateReq)
        #expect(try update.open(h.post(update.request)).failInfo == .badRequest)
        #expect(h.audit.events.last?.reason == "unsupported-message-type")

        // A RenewalReq signed by a certificate we did not issue (here self-signed).
        let renewal = try TestClient(harness: h, messageType: .renewalReq)
        #expect(try renewal.open(h.post(renewal.request)).failInfo == .badRequest)
        #expect(h.audit.events.last?.reason == "renewal-signer-unknown")

        // MD5 (RFC 8894 §2.9: MUST NOT) → badAlg, answered with SHA-256.
        let md5 = try TestClient(harness: h, digest: .md5)
        let md5Rep = try md5.open(h.post(md5.request))
        #expect(md5Rep.failInfo == .badAlg && md5Rep.digest == .sha256)

        // Encrypted to someone else → badMessageCheck.
        let elsewhere = try TestClient(harness: h, recipient: try TestClient.signerCertificate())
        #expect(try elsewhere.open(h.post(elsewhere.request)).failInfo == .badMessageCheck)
        #expect(h.audit.events.last?.reason == "decrypt-failed")

        // A 1024-bit CSR key → key policy.
        let weak = try TestClient(harness: h, csrKey: try PrivateKey.generateRSA(bits: 1024))
        #expect(try weak.open(h.post(weak.request)).failInfo == .badRequest)
        #expect(h.audit.events.last?.reason == "key-policy")

        // Tampered signature → badMessageCheck.
        let good = try TestClient(harness: h)
        var tampered = good.request
        tampered[tampered.count - 3] ^= 0xFF
        let tamperedRep = try good.open(h.post(tampered))
        #expect(tamperedRep.status == .failure && tamperedRep.failInfo == .badMessageCheck)
        #expect(h.audit.events.last?.reason == "bad-signature")
        #expect(try h.issuedFiles().isEmpty)
    }

    @Test("a certificate is never delivered when its audit line cannot be written")
    func auditFailure() throws {
        let h = try Harness()
        h.audit.setFailing(true)
        let client = try TestClient(harness: h)
        let rep = try client.open(h.post(client.request))
        #expect(rep.status == .failure && rep.failInfo == .badRequest)
        #expect(rep.certificates.isEmpty)
    }

    @Test("a store failure is a FAILURE with reason store-failed")
    func storeFailure() throws {
        let h = try Harness(failingStore: true)
        let client = try TestClient(harness: h)
        let rep = try client.open(h.post(client.request))
        #expect(rep.status == .failure)
        #expect(h.audit.events.last?.reason == "store-failed" && h.audit.events.last?.outcome == .failed)
    }

    @Test("validity follows issue.validity_days and never outlives the CA")
    func validity() throws {
        var issue = Configuration.Issue()
        issue.validityDays = 3
        let h = try Harness(issue: issue)
        let client = try TestClient(harness: h)
        let cert = try #require(try client.open(h.post(client.request)).certificates.first)
        #expect(abs(cert.notAfter.timeIntervalSinceNow - 3 * 86400) < 120)
        issue.validityDays = 3650
        let capped = try Harness(issue: issue)
        let c2 = try TestClient(harness: capped)
        let cert2 = try #require(try c2.open(capped.post(c2.request)).certificates.first)
        #expect(cert2.notAfter <= capped.ca.certificate.notAfter)
    }

    @Test("concurrent enrollments from many threads: unique serials, every one stored and audited")
    func concurrent() throws {
        let h = try Harness()
        let clients = try (0..<24).map { _ in try TestClient(harness: h) }
        let collected = Collected()
        DispatchQueue.concurrentPerform(iterations: clients.count) { i in
            let rep = try? clients[i].open(h.post(clients[i].request))
            collected.append(rep?.certificates.first?.serialNumberHex ?? "missing")
        }
        let serials = collected.values
        #expect(Set(serials).count == clients.count && !serials.contains("missing"))
        #expect(try Set(h.issuedFiles()) == Set(serials.map { "\($0).pem" }))
        #expect(try h.indexLines().count == clients.count)
        #expect(Set(h.audit.events.compactMap(\.serial)) == Set(serials))
    }
}

final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [String] = []
    func append(_ value: String) { self.lock.withLock { self.storage.append(value) } }
    var values: [String] { self.lock.withLock { self.storage } }
}
