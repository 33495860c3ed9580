import Foundation
import SCEP
import SCEPCrypto
import Testing

@testable import SCEPServer
import SCEPStore
import DurableFiles
@testable import FileStore

/// Enrolls one device and returns the client, its CSR key and the issued certificate.
func enrollOnce(_ h: Harness, subject: String = "CN=device-1,O=Example", sans: [String] = ["DNS:device-1.example"]) throws
    -> (TestClient, PrivateKey, Certificate)
{
    let key = try PrivateKey.generateRSA(bits: 2048)
    let client = try TestClient(harness: h, csrKey: key, subject: subject, sans: sans)
    let rep = try client.open(h.post(client.request))
    #expect(rep.status == .success)
    return (client, key, try #require(rep.certificates.first))
}

@Suite("Retransmission and replay (RFC 8894 §3.3.3)")
struct ReplayTests {
    @Test("same transactionID and key: the same certificate again, issued once, audited as delivered")
    func sameKey() throws {
        let h = try Harness()
        let (first, key, certificate) = try enrollOnce(h)
        // A retransmission: same transactionID and key, new nonce and envelope.
        let again = try TestClient(harness: h, csrKey: key, transactionID: first.transactionID, signer: (first.signer, first.signerKey))
        let rep = try again.open(h.post(again.request))
        #expect(rep.status == .success && rep.recipientNonce == again.senderNonce)
        #expect(rep.certificates.first?.derEncoded == certificate.derEncoded)
        #expect(try h.issuedFiles().count == 1 && h.indexLines().count == 1)
        #expect(h.audit.events.map(\.outcome) == [.issued, .delivered])
        #expect(h.audit.events.last?.serial == certificate.serialNumberHex)
    }

    @Test("same transactionID with another key: FAILURE badRequest, nothing issued")
    func otherKey() throws {
        let h = try Harness()
        let (first, _, _) = try enrollOnce(h)
        let other = try TestClient(harness: h, csrKey: try PrivateKey.generateRSA(bits: 2048), transactionID: first.transactionID)
        let rep = try other.open(h.post(other.request))
        #expect(rep.status == .failure && rep.failInfo == .badRequest)
        #expect(h.audit.events.last?.reason == "transaction-key-mismatch")
        #expect(try h.issuedFiles().count == 1)
    }

    @Test("a refused request is not remembered: the corrected retry is issued")
    func rejectedThenRetried() throws {
        let h = try Harness()
        let key = try PrivateKey.generateRSA(bits: 2048)
        let wrong = try TestClient(harness: h, challenge: "wrong", csrKey: key)
        #expect(try wrong.open(h.post(wrong.request)).status == .failure)
        let right = try TestClient(harness: h, csrKey: key, transactionID: wrong.transactionID)
        #expect(try right.open(h.post(right.request)).status == .success)
    }

    @Test("two stores on one directory (two processes): only one claims a transactionID")
    func crossProcessClaim() throws {
        let h = try Harness()
        let (_, csrKey, issued) = try enrollOnce(h)
        let a = try FileCertificateStore(root: h.directory.path)
        let b = try FileCertificateStore(root: h.directory.path)
        let keyHash = HexEncoding.string(try DigestAlgorithm.sha256.hash(try #require(issued.publicKey).derEncoded))
        _ = csrKey
        let key = TransactionKey(transactionID: "shared-tid", keyHash: keyHash)
        #expect(try a.claim(key, lease: 600) == .claimed)
        guard case .existing(let seen) = try b.claim(key, lease: 600) else { Issue.record("second claim succeeded"); return }
        #expect(seen.state == .inFlight)
        try a.issued(key, serial: issued.serialNumberHex)
        // The record is a link to the certificate: serial and key hash come from it.
        let found = try #require(try b.transaction("shared-tid"))
        #expect(found.state == .issued && found.serial == issued.serialNumberHex && found.keyHash == keyHash)
        // A claim left by a process that died is taken over.
        let dead = TransactionKey(transactionID: "dead-tid", keyHash: "cd")
        let record = TransactionRecord(transactionID: "dead-tid", keyHash: "cd", state: .inFlight)
        let path = h.layout.transactionsPath + "/" + FileCertificateStore.hashName("dead-tid")
        try Data(TransactionLine.text(record, pid: 999_999).utf8).write(to: URL(fileURLWithPath: path))
        #expect(try b.claim(dead, lease: 600) == .claimed)
    }
}

@Suite("Renewal (RFC 8894 §3.3.1.2)")
struct RenewalTests {
    @Test("RenewalReq and PKCSReq signed by our certificate renew without a challenge")
    func renews() throws {
        let h = try Harness()
        let (_, oldKey, old) = try enrollOnce(h)
        for type in [MessageType.renewalReq, .pkcsReq] {
            let renewal = try TestClient(
                harness: h, challenge: nil, messageType: type, csrKey: try PrivateKey.generateRSA(bits: 2048), signer: (old, oldKey))
            let rep = try renewal.open(h.post(renewal.request))
            #expect(rep.status == .success, "\(type)")
            let new = try #require(rep.certificates.first)
            #expect(new.subject == old.subject && new.serialNumberHex != old.serialNumberHex)
            let event = try #require(h.audit.events.last)
            #expect(event.outcome == .issued && event.renews == old.serialNumberHex && event.challengeMode == "renewal")
        }
    }

    @Test("refused renewals: revoked, subject changed, SANs widened, too early, disabled; each with its reason")
    func refused() throws {
        let h = try Harness()
        let (_, oldKey, old) = try enrollOnce(h)
        func renew(_ h: Harness, subject: String = "CN=device-1,O=Example", sans: [String] = ["DNS:device-1.example"]) throws -> ReceivedCertRep {
            let c = try TestClient(
                harness: h, challenge: nil, messageType: .renewalReq, csrKey: try PrivateKey.generateRSA(bits: 2048), subject: subject,
                sans: sans, signer: (old, oldKey))
            return try c.open(h.post(c.request))
        }
        #expect(try renew(h, subject: "CN=other,O=Example").failInfo == .badRequest)
        #expect(h.audit.events.last?.reason == "renewal-subject-changed")
        #expect(try renew(h, sans: ["DNS:device-1.example", "DNS:extra.example"]).failInfo == .badRequest)
        #expect(h.audit.events.last?.reason == "renewal-names-widened")
        // Fewer SANs is fine.
        #expect(try renew(h, sans: []).status == .success)

        var windowed = Configuration.Issue()
        windowed.renewalWindowDays = 5  // the certificate has ~30 days left
        let w = try Harness(issue: windowed)
        let (_, wKey, wOld) = try enrollOnce(w)
        let early = try TestClient(harness: w, challenge: nil, messageType: .renewalReq, csrKey: try PrivateKey.generateRSA(bits: 2048), signer: (wOld, wKey))
        #expect(try early.open(w.post(early.request)).failInfo == .badTime)
        #expect(w.audit.events.last?.reason == "renewal-too-early")

        var off = Configuration.Issue()
        off.renewal = false
        let d = try Harness(issue: off)
        let (_, dKey, dOld) = try enrollOnce(d)
        let disabled = try TestClient(harness: d, challenge: nil, messageType: .renewalReq, csrKey: try PrivateKey.generateRSA(bits: 2048), signer: (dOld, dKey))
        #expect(try disabled.open(d.post(disabled.request)).failInfo == .badRequest)
        #expect(d.audit.events.last?.reason == "renewal-disabled")
        #expect(String(decoding: d.get("operation=GetCACaps").body, as: UTF8.self).contains("Renewal") == false)

        _ = try h.operations().revoke(serial: old.serialNumberHex, reason: .keyCompromise)
        #expect(try renew(h).failInfo == .badRequest)
        #expect(h.audit.events.last?.reason == "renewal-signer-revoked")
    }

    @Test("a signer that claims our CA but does not verify is badMessageCheck")
    func forged() throws {
        let h = try Harness()
        let forger = try PrivateKey.generateRSA(bits: 2048)
        // Issued by a CA with our CA's name but another key.
        let fake = try CertificateBuilder.selfSigned(
            subject: h.ca.certificate.subject, key: forger, serial: [0x42], notBefore: Date().addingTimeInterval(-60),
            notAfter: Date().addingTimeInterval(3600), isCA: true)
        let csr = try CertificateSigningRequest.make(subject: "CN=device-1,O=Example", key: forger, challengePassword: nil)
        let forged = try CertificateBuilder.issue(
            csr: csr, issuer: fake, issuerKey: forger, serial: [0x43], notBefore: Date().addingTimeInterval(-60),
            notAfter: Date().addingTimeInterval(3600), profile: IssuanceProfile())
        let c = try TestClient(harness: h, challenge: nil, messageType: .renewalReq, signer: (forged, forger))
        #expect(try c.open(h.post(c.request)).failInfo == .badMessageCheck)
        #expect(h.audit.events.last?.reason == "renewal-signer-invalid")
    }
}

@Suite("Manual approval, CertPoll, GetCert, GetCRL")
struct RetrievalTests {
    @Test("manual approval: PENDING, poll PENDING, approve, poll SUCCESS; reject; unknown poll is badCertId")
    func approval() throws {
        var manual = Configuration.Issue()
        manual.approval = .manual
        let h = try Harness(issue: manual)
        let client = try TestClient(harness: h)
        #expect(try client.open(h.post(client.request)).status == .pending)
        #expect(h.audit.events.last?.outcome == .pending)
        #expect(try h.issuedFiles().isEmpty)
        let operations = try h.operations(manual)
        let waiting = try operations.store.pendingRequests()
        #expect(waiting.map(\.transactionID) == [client.transactionID] && waiting.first?.remoteAddr == "192.0.2.1")

        let subject = try CertificateSigningRequest.make(subject: "CN=device-1,O=Example", key: TestClient.csrKey, challengePassword: nil).subjectNameDER
        let pollData = IssuerAndSubject(issuer: h.ca.certificate.subjectNameDER, subject: subject).derEncoded
        let poll = { try TestClient(harness: h, messageType: .certPoll, messageData: pollData, transactionID: client.transactionID) }
        let p1 = try poll()
        #expect(try p1.open(h.post(p1.request)).status == .pending)
        // A retransmission of the PKCSReq is PENDING too, not a second request.
        let again = try TestClient(harness: h, transactionID: client.transactionID)
        #expect(try again.open(h.post(again.request)).status == .pending)

        let certificate = try operations.approve(client.transactionID)
        #expect(h.audit.events.last?.outcome == .approved)
        #expect(h.audit.events.last?.serial == certificate.serialNumberHex)
        #expect(try operations.store.pendingRequests().isEmpty)
        // The approval went through the one issuance path: its crash-recovery note is gone once
        // its audit line is written, so housekeeping never turns it into a withheld certificate.
        let notes = (try? FileManager.default.contentsOfDirectory(atPath: h.directory.path + "/unaudited")) ?? []
        #expect(notes.isEmpty)
        #expect(try operations.store.certificate(serial: certificate.serialNumberHex)?.status == .valid)
        let p2 = try poll()
        let rep = try p2.open(h.post(p2.request))
        #expect(rep.status == .success && rep.certificates.first?.derEncoded == certificate.derEncoded)
        #expect(h.audit.events.last?.outcome == .delivered)

        let otherKey = try PrivateKey.generateRSA(bits: 2048)
        let other = try TestClient(harness: h, csrKey: otherKey)
        _ = h.post(other.request)
        try operations.reject(other.transactionID)
        let retry = try TestClient(harness: h, csrKey: otherKey, transactionID: other.transactionID)
        let retried = try retry.open(h.post(retry.request))
        #expect(retried.status == .failure && retried.failInfo == .badRequest)
        #expect(h.audit.events.last?.reason == "transaction-rejected")
        let refused = try TestClient(harness: h, messageType: .certPoll, messageData: pollData, transactionID: other.transactionID)
        #expect(try refused.open(h.post(refused.request)).failInfo == .badRequest)
        #expect(h.audit.events.last?.reason == "transaction-rejected")

        let unknown = try TestClient(harness: h, messageType: .certPoll, messageData: pollData, transactionID: "never-seen")
        #expect(try unknown.open(h.post(unknown.request)).failInfo == .badCertID)
        #expect(h.audit.events.last?.reason == "unknown-transaction")
    }

    @Test("GetCert by issuer and serial; unknown serial or issuer is badCertId")
    func getCert() throws {
        let h = try Harness()
        let (_, _, certificate) = try enrollOnce(h)
        let ask = { (issuer: [UInt8], serial: String) in
            try TestClient(harness: h, messageType: .getCert, messageData: IssuerAndSerialNumber(issuer: issuer, serialHex: serial).derEncoded)
        }
        let found = try ask(h.ca.certificate.subjectNameDER, certificate.serialNumberHex.lowercased())
        #expect(try found.open(h.post(found.request)).certificates.first?.derEncoded == certificate.derEncoded)
        let missing = try ask(h.ca.certificate.subjectNameDER, "0102")
        #expect(try missing.open(h.post(missing.request)).failInfo == .badCertID)
        let stranger = try ask(TestClient.signerCertificate().subjectNameDER, certificate.serialNumberHex)
        #expect(try stranger.open(h.post(stranger.request)).failInfo == .badCertID)
        #expect(h.audit.events.last?.reason == "unknown-issuer")
    }

    @Test("GetCRL: a CRL signed by the CA, listing what was revoked, number increasing")
    func getCRL() throws {
        let h = try Harness()
        let (_, _, certificate) = try enrollOnce(h)
        let data = IssuerAndSerialNumber(issuer: h.ca.certificate.subjectNameDER, serialHex: certificate.serialNumberHex).derEncoded
        let first = try TestClient(harness: h, messageType: .getCRL, messageData: data)
        let crl1 = try #require(try first.open(h.post(first.request)).crls.first)
        #expect(crl1.isSigned(by: h.ca.certificate) && crl1.revokedSerials.isEmpty)
        let (entry, published) = try h.operations().revoke(serial: certificate.serialNumberHex.lowercased(), reason: .keyCompromise)
        #expect(entry.status.name == "revoked" && published?.revokedSerials == [certificate.serialNumberHex])
        let second = try TestClient(harness: h, messageType: .getCRL, messageData: data)
        let crl2 = try #require(try second.open(h.post(second.request)).crls.first)
        #expect(crl2.revokedSerials == [certificate.serialNumberHex])
        #expect(UInt64(crl2.number ?? "0", radix: 16)! > UInt64(crl1.number ?? "0", radix: 16)!)
        #expect(try h.indexLines().first?.hasPrefix("R\t") == true)
        #expect(try h.indexLines().first?.contains(",keyCompromise\t") == true)
    }
}

@Suite("Algorithm policy, RA and rollover")
struct KeyRoleTests {
    @Test("a CSR signed with MD5 is badAlg; single DES is badAlg when disallowed")
    func algorithms() throws {
        let h = try Harness()
        let md5 = try TestClient(harness: h, csrDigest: .md5)
        #expect(try md5.open(h.post(md5.request)).failInfo == .badAlg)
        #expect(h.audit.events.last?.reason == "csr-digest")
        var noDES = Configuration.Issue()
        noDES.allowDESRequests = false
        let d = try Harness(issue: noDES)
        let des = try TestClient(harness: d, cipher: .des)
        #expect(try des.open(d.post(des.request)).failInfo == .badAlg)
        #expect(d.audit.events.last?.reason == "cipher-policy")
    }

    @Test("an issued certificate built in memory exposes its public key without re-parsing")
    func issuedPublicKey() throws {
        let h = try Harness()
        let csr = try CertificateSigningRequest.make(subject: "CN=k", key: TestClient.csrKey, challengePassword: nil)
        let certificate = try IssuancePolicy(Configuration.Issue()).certificate(for: csr, issuer: h.ca)
        let key = try #require(certificate.publicKey)
        #expect(key.derEncoded == csr.publicKey?.derEncoded && certificate.subjectPublicKeyInfoDER == key.derEncoded)
    }

    @Test("RA: GetCACert lists RA then CA, CertReps are signed by the RA, requests to RA or CA both open")
    func registrationAuthority() throws {
        for separate in [false, true] {
            var ras: [Certificate] = []
            let h = try Harness(prepare: { directory in
                let ops = CAOperations(directory: directory, store: try FileCertificateStore(root: directory.path), passphraseFile: nil, audit: InMemoryAuditSink(), policy: IssuancePolicy(Configuration.Issue()), crlValidityHours: 168)
                ras = try ops.createRA(subject: "CN=Harness RA,O=scep-fcgi tests", keyBits: 2048, days: 30, separateEncryption: separate)
            })
            let caCert = h.get("operation=GetCACert")
            #expect(caCert.contentType == "application/x-x509-ca-ra-cert")
            let served = try CMSSigner.certificates(in: caCert.body)
            // A SET OF in DER is sorted by encoding, so the order is not kept; clients pick by key usage.
            #expect(Set(served.map(\.serialNumberHex)) == Set((ras + [h.ca.certificate]).map(\.serialNumberHex)))
            let encryptTo = separate ? ras[1] : ras[0]
            for recipient in [encryptTo, h.ca.certificate] {
                let client = try TestClient(harness: h, csrKey: try PrivateKey.generateRSA(bits: 2048), recipient: recipient)
                let rep = try client.open(h.post(client.request))
                #expect(rep.status == .success && rep.signer.serialNumberHex == ras[0].serialNumberHex)
                #expect(try #require(rep.certificates.first).isSigned(by: try #require(h.ca.certificate.publicKey)))
            }
        }
    }

    @Test("rollover: GetNextCACert while next/ exists; after activation the previous CA still decrypts and answers GetCert")
    func rollover() throws {
        let h = try Harness()
        let (_, _, oldCert) = try enrollOnce(h)
        let operations = try h.operations()
        let next = try operations.prepareRollover(subject: "CN=Harness CA 2,O=scep-fcgi tests", key: .rsa(bits: 2048), days: 60)
        Thread.sleep(forTimeInterval: 1.1)  // the responder looks for new material at most once a second
        #expect(String(decoding: h.get("operation=GetCACaps").body, as: UTF8.self).contains("GetNextCACert"))
        let reply = h.get("operation=GetNextCACert")
        #expect(reply.status == 200 && reply.contentType == "application/x-x509-next-ca-cert")
        let message = try ParsedSignedData.parse(reply.body).verify()
        #expect(message.signer.derEncoded == h.ca.certificate.derEncoded)
        #expect(try CMSSigner.certificates(in: message.content).map(\.derEncoded) == [next.derEncoded])
        #expect(try CMSSigner.certificates(in: reply.body).contains { $0.derEncoded == next.derEncoded })

        _ = try operations.activateRollover()
        Thread.sleep(forTimeInterval: 1.1)
        #expect(h.get("operation=GetCACert").body == next.derEncoded)
        #expect(h.get("operation=GetNextCACert").status == 404)
        // A client that still has the old CA certificate encrypts to it.
        // (h.ca is the material the harness loaded: the CA that is now the previous one.)
        let late = try TestClient(harness: h, csrKey: try PrivateKey.generateRSA(bits: 2048), recipient: h.ca.certificate)
        let rep = try late.open(h.post(late.request))
        #expect(rep.status == .success)
        #expect(try #require(rep.certificates.first).isSigned(by: try #require(next.publicKey)))
        let ask = try TestClient(
            harness: h, messageType: .getCert,
            messageData: IssuerAndSerialNumber(issuer: h.ca.certificate.subjectNameDER, serialHex: oldCert.serialNumberHex).derEncoded,
            recipient: next)
        #expect(try ask.open(h.post(ask.request)).certificates.first?.derEncoded == oldCert.derEncoded)
        #expect(FileManager.default.fileExists(atPath: h.directory.previousPath + "/ca.pem"))
    }
}

@Suite("index.txt under concurrent writers")
struct IndexTests {
    @Test("revocations while many threads issue: no line lost, revocations kept")
    func revokeWhileIssuing() throws {
        let h = try Harness()
        let (_, _, first) = try enrollOnce(h)
        let store = try FileCertificateStore(root: h.directory.path)
        let count = 40
        DispatchQueue.concurrentPerform(iterations: count + 1) { i in
            if i == count {
                _ = try? store.revoke(serial: first.serialNumberHex, reason: .superseded, at: Date())
                return
            }
            let client = try? TestClient(harness: h, csrKey: TestClient.csrKey, subject: "CN=load-\(i)")
            if let client { _ = h.post(client.request) }
        }
        let lines = try h.indexLines()
        #expect(lines.count == count + 1)
        #expect(try h.issuedFiles().count == count + 1)
        #expect(lines.filter { $0.hasPrefix("R\t") }.count == 1)
        // Looked up by subject (OpenSSL one-line form, as index.txt has it).
        #expect(try store.certificates(subject: "/O=Example/CN=device-1").map(\.serial) == [first.serialNumberHex])
    }
}

@Suite("Renewal that repeats the transactionID")
struct RenewalReplayTests {
    @Test("a RenewalReq with the original transactionID and key (scepclient) gets a new certificate")
    func sameTransaction() throws {
        let h = try Harness()
        let (first, key, old) = try enrollOnce(h)
        let renewal = try TestClient(
            harness: h, challenge: nil, messageType: .renewalReq, csrKey: key, transactionID: first.transactionID, signer: (old, key))
        let rep = try renewal.open(h.post(renewal.request))
        let new = try #require(rep.certificates.first)
        #expect(rep.status == .success && new.serialNumberHex != old.serialNumberHex)
        #expect(h.audit.events.last?.outcome == .issued && h.audit.events.last?.renews == old.serialNumberHex)
        // Retransmitting that renewal replays the new certificate.
        let again = try TestClient(
            harness: h, challenge: nil, messageType: .renewalReq, csrKey: key, transactionID: first.transactionID, signer: (old, key))
        #expect(try again.open(h.post(again.request)).certificates.first?.serialNumberHex == new.serialNumberHex)
    }
}

@Suite("Retention, expiry and housekeeping")
struct HousekeepingTests {
    @Test("a transactionID whose certificate expired is issued anew, not replayed")
    func expiredIsReissued() throws {
        let h = try Harness()
        let (first, key, old) = try enrollOnce(h)
        // Age the certificate's index entry past its expiry.
        try (h.store as! FileCertificateStore).index.rewrite { entries in entries[0].expiry = Date().addingTimeInterval(-60) }
        let again = try TestClient(harness: h, csrKey: key, transactionID: first.transactionID)
        let rep = try again.open(h.post(again.request))
        #expect(rep.status == .success && rep.certificates.first?.serialNumberHex != old.serialNumberHex)
        #expect(h.audit.events.last?.outcome == .issued)
    }

    @Test("records past store.transaction_retention_days are as good as absent")
    func retention() throws {
        let h = try Harness()
        let store = try FileCertificateStore(root: h.directory.path, retentionDays: 1)
        let key = TransactionKey(transactionID: "old-tid", keyHash: "ab")
        let old = TransactionRecord(transactionID: "old-tid", keyHash: "ab", state: .issued, serial: "0A", updated: Date().addingTimeInterval(-2 * 86400))
        let path = h.layout.transactionsPath + "/" + FileCertificateStore.hashName("old-tid")
        try Data(TransactionLine.text(old).utf8).write(to: URL(fileURLWithPath: path))
        #expect(try store.transaction("old-tid") == nil)
        #expect(try store.claim(key, lease: 600) == .claimed)
        store.release(key)
        // An operator's rejection is kept for the retention too, then pruned.
        let rejected = TransactionRecord(transactionID: "rejected-tid", keyHash: "cd", state: .rejected, updated: Date().addingTimeInterval(-3600))
        try Data(TransactionLine.text(rejected).utf8).write(to: URL(fileURLWithPath: h.layout.transactionsPath + "/" + FileCertificateStore.hashName("rejected-tid")))
        #expect(try store.transaction("rejected-tid")?.state == .rejected)
        #expect(store.maintain(now: Date().addingTimeInterval(86400 + 60)).transactionsPruned == 1)
        #expect(try store.transaction("rejected-tid") == nil)
    }

    @Test("housekeeping publishes a missing CRL and reissues it after a revocation made elsewhere")
    func crlRefresh() throws {
        let h = try Harness()
        let (_, _, certificate) = try enrollOnce(h)
        let crls = CRLPublisher(directory: h.directory, validityHours: 168)
        #expect(crls.published(.current) == nil)
        h.responder.housekeeping()
        let first = try #require(crls.published(.current))
        #expect(first.revokedSerials.isEmpty && !crls.needsRefresh(.current, latestRevocation: nil))
        // A revocation one second later, written straight to the store (as another process would).
        _ = try h.store.revoke(serial: certificate.serialNumberHex, reason: nil, at: first.thisUpdate.addingTimeInterval(1))
        h.responder.housekeeping(now: first.thisUpdate.addingTimeInterval(2))
        #expect(crls.published(.current)?.revokedSerials == [certificate.serialNumberHex])
        // Older than half its validity: reissued with the next number.
        let later = first.thisUpdate.addingTimeInterval(85 * 3600)
        #expect(crls.needsRefresh(.current, latestRevocation: nil, now: later))
    }

    @Test("hosts sharing a store: one signs, the others serve what it kept; a revocation makes the next one sign")
    func crlSharedByHosts() throws {
        let h = try Harness()
        let (_, _, certificate) = try enrollOnce(h)
        let other = h.root.path + "-host-b"  // the second host's copy of the CA directory
        try FileManager.default.copyItem(atPath: h.root.path, toPath: other)
        defer { try? FileManager.default.removeItem(atPath: other) }
        let (a, b) = (CRLPublisher(directory: h.directory, validityHours: 168), CRLPublisher(directory: CADirectory(other), validityHours: 168))
        let issuer = IssuerID(authority: h.ca.certificate)
        let now = Date()
        let signed = try #require(try a.publish(.current, material: h.material, store: h.store, now: now))
        let served = try #require(try b.publish(.current, material: h.material, store: h.store, now: now.addingTimeInterval(1), wait: false))
        #expect(served.derEncoded == signed.derEncoded, "host B serves host A's CRL")
        #expect(b.published(.current)?.derEncoded == signed.derEncoded)
        // A revocation after it: the next publisher signs (one number on), and the other takes that one.
        _ = try h.store.revoke(serial: certificate.serialNumberHex, reason: .keyCompromise, at: signed.thisUpdate.addingTimeInterval(1))
        #expect(b.needsRefresh(.current, latestRevocation: try h.store.latestRevocation(), now: now.addingTimeInterval(2)))
        let resigned = try #require(try b.publish(.current, material: h.material, store: h.store, now: now.addingTimeInterval(2)))
        #expect(resigned.revokedSerials == [certificate.serialNumberHex])
        #expect(resigned.number.flatMap { UInt64($0, radix: 16) } == signed.number.flatMap { UInt64($0, radix: 16) }.map { $0 + 1 })
        let adopted = try #require(try a.publish(.current, material: h.material, store: h.store, now: now.addingTimeInterval(3)))
        #expect(adopted.derEncoded == resigned.derEncoded)
        #expect(try h.store.newestCRL(issuer: issuer) == resigned.derEncoded)
        // An operator's `ca crl` signs anew whatever is kept.
        let forced = try #require(try a.publish(.current, material: h.material, store: h.store, now: now.addingTimeInterval(4), fresh: true))
        #expect(forced.derEncoded != resigned.derEncoded)
        #expect(try h.store.newestCRL(issuer: issuer) == forced.derEncoded)
    }

    @Test("renewals need the challenge with Intune, not with a static password, unless configured")
    func renewalChallengeDefault() {
        #expect(IssuancePolicy(Configuration.Issue(), challengeMode: .intune).renewalRequiresChallenge)
        #expect(!IssuancePolicy(Configuration.Issue(), challengeMode: .static).renewalRequiresChallenge)
        var issue = Configuration.Issue()
        issue.renewalRequiresChallenge = true
        #expect(IssuancePolicy(issue, challengeMode: .static).renewalRequiresChallenge)
    }
}

@Suite("Claim markers")
struct ClaimMarkerTests {
    @Test("a live process's marker is alive, a dead pid's or a reused pid's is not")
    func liveness() throws {
        let me = ProcessIdentity.current
        #expect(me.pid == getpid() && me.start > 0)
        #expect(TransactionDirectory.markerIsAlive("scep-fcgi-claim \(me.pid) \(me.start)\n"))
        #expect(!TransactionDirectory.markerIsAlive("scep-fcgi-claim \(me.pid) \(me.start + 1)\n"))  // pid reused
        #expect(!TransactionDirectory.markerIsAlive("scep-fcgi-claim 999999 1\n"))
        // This boot's marker is alive; the same pid and tick of another boot (a service started
        // early at every boot) is not; a marker of an older version (no boot) is judged as before.
        #expect(TransactionDirectory.markerIsAlive("scep-fcgi-claim \(me.pid) \(me.start) \(me.boot)\n"))
        #expect(!TransactionDirectory.markerIsAlive("scep-fcgi-claim \(me.pid) \(me.start) 0bad0b00\n"))
        #expect(ProcessIdentity.running(tag: Substring(me.tag)) && me.tag.hasSuffix("-" + ProcessIdentity.boot) && !me.boot.isEmpty)
        #expect(!ProcessIdentity.running(tag: "\(me.pid)-\(me.start)-0bad0b00"))
        #expect(ProcessIdentity.running(tag: "\(me.pid)-\(me.start)"))
    }
}
