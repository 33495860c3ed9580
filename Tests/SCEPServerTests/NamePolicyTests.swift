import SCEPStore
import Foundation
import SCEP
import SCEPCrypto
import Testing

@testable import SCEPServer
import DurableFiles
@testable import FileStore

@Suite("Subject and subjectAltName policy (RFC 5280 §4.2.1.6)")
struct NamePolicyTests {
    static func dns(_ text: String) -> RequestedName { RequestedName(kind: .dns, value: Array(text.utf8)) }

    @Test("dNSName: hostnames and a whole leftmost wildcard label only")
    func dnsNames() {
        for good in ["device-1.example.com", "a.b", "*.example.com", "xn--bcher-kva.example", String(repeating: "a", count: 63) + ".example"] {
            #expect(NamePolicy.valid(Self.dns(good)), "\(good)")
        }
        for bad in ["good.example.com\0.evil.example", "line1\nline2", "*.*.example", "not a hostname!", "tab\there.example",
            "*.com", "f*o.example.com", "-lead.example", "trail-.example", "double..dot", "trailing.dot.", "", "under_score.example",
            String(repeating: "a", count: 64) + ".example", Array(repeating: "abcdefgh", count: 32).joined(separator: ".")]
        {
            #expect(!NamePolicy.valid(Self.dns(bad)), "\(bad.debugDescription)")
        }
    }

    @Test("other name forms: email, URI (Intune's tag: SID), IP, UPN")
    func otherForms() {
        #expect(NamePolicy.valid(RequestedName(kind: .email, value: Array("user@example.com".utf8))))
        #expect(!NamePolicy.valid(RequestedName(kind: .email, value: Array("no-at-sign".utf8))))
        #expect(!NamePolicy.valid(RequestedName(kind: .email, value: Array("a b@example.com".utf8))))
        #expect(NamePolicy.valid(RequestedName(kind: .uri, value: Array("tag:microsoft.com,2022-09-14:sid:S-1-5-21-1-2-3-1001".utf8))))
        #expect(!NamePolicy.valid(RequestedName(kind: .uri, value: Array("no scheme here".utf8))))
        #expect(!NamePolicy.valid(RequestedName(kind: .uri, value: Array("https://x/\0".utf8))))
        #expect(NamePolicy.valid(RequestedName(kind: .ip, value: [192, 0, 2, 1])))
        #expect(!NamePolicy.valid(RequestedName(kind: .ip, value: [192, 0, 2])))
        #expect(NamePolicy.valid(RequestedName(kind: .upn, value: Array("user@contoso.com".utf8))))
        #expect(!NamePolicy.valid(RequestedName(kind: .upn, value: Array("user\n@contoso.com".utf8))))
    }

    @Test("caps: number of names, subject size, control characters in the subject")
    func caps() throws {
        let policy = NamePolicy(maxNames: 2, maxSubjectBytes: 100)
        let two = [Self.dns("a.example"), Self.dns("b.example")]
        try policy.check(subjectDER: Array(repeating: 0, count: 100), subjectValues: ["x"], names: two)
        #expect(throws: SCEPError(.tooManyNames)) { try policy.check(subjectDER: [], subjectValues: ["x"], names: two + two) }
        #expect(throws: SCEPError(.subjectTooLarge)) { try policy.check(subjectDER: Array(repeating: 0, count: 101), subjectValues: ["x"], names: []) }
        #expect(throws: SCEPError(.subjectInvalid)) { try policy.check(subjectDER: [], subjectValues: ["a\nb"], names: []) }
        #expect(throws: SCEPError(.subjectInvalid)) { try policy.check(subjectDER: [], subjectValues: ["ok", "nul\u{0}"], names: []) }
        #expect(throws: SCEPError(.subjectInvalid)) { try policy.check(subjectDER: [], subjectValues: nil, names: []) }
        #expect(throws: SCEPError(.nameInvalid)) { try policy.check(subjectDER: [], subjectValues: ["x"], names: [Self.dns("*.*.example")]) }
    }

    @Test("through the responder: refused before the challenge, FAILURE badRequest, a bounded audit line")
    func responder() throws {
        let h = try Harness()
        let many = (0..<3000).map { "DNS:host-\($0).example.com" }
        for (sans, challenge, code) in [
            (many, "wrong", SCEPError.Code.tooManyNames), (["DNS:*.*.example"], Harness.challenge, .nameInvalid),
            (["DNS:line1\nline2"], Harness.challenge, .nameInvalid),
        ] {
            let client = try TestClient(harness: h, challenge: challenge, sans: sans)
            let rep = try client.open(h.post(client.request))
            #expect(rep.status == .failure && rep.failInfo == .badRequest)
            let event = try #require(h.audit.events.last)
            #expect(event.outcome == .rejected && event.reason == code.rawValue && event.challengeMode == nil)
            #expect(event.jsonLine().utf8.count < 4096)
        }
        let event = try #require(h.audit.events.first)
        #expect(event.subjectAltNames == nil && event.subjectAltNameCount == 3000 && event.subjectAltNamesSHA256?.count == 64)
        #expect(try h.issuedFiles().isEmpty)
    }
}

@Suite("A client that went away")
struct ClientGoneTests {
    @Test("no validation and no certificate once the web server has closed the connection")
    func gone() throws {
        let h = try Harness()
        let client = try TestClient(harness: h)
        let response = h.responder.respond(
            to: SCEPHTTPRequest(method: "POST", query: "operation=PKIOperation", body: client.request, clientGone: { true }))
        let rep = try client.open(response)
        #expect(rep.status == .failure)
        let event = try #require(h.audit.events.last)
        #expect(event.reason == "client-gone" && event.outcome == .rejected && event.serial == nil)
        #expect(try h.issuedFiles().isEmpty)
    }
}

@Suite("A certificate whose audit record failed")
struct UnauditedTests {
    @Test("withheld, noted, and recorded as withheld once the audit log takes lines again")
    func recordedLater() throws {
        let h = try Harness()
        h.audit.setFailing(true)
        let client = try TestClient(harness: h)
        #expect(try client.open(h.post(client.request)).status == .failure)
        let pending = try h.store.unaudited()
        let files = try h.issuedFiles()
        #expect(pending.map(\.cause) == [.auditFailed] && files.count == 1)
        h.responder.recordUnaudited()  // still failing: kept for next time
        #expect(try h.store.unaudited() == pending)
        h.audit.setFailing(false)
        h.responder.recordUnaudited()
        let event = try #require(h.audit.events.last)
        #expect(event.outcome == .withheld && event.serial == pending.first?.serial && event.reason == "audit-failed" && event.sha256 != nil)
        #expect(try h.store.unaudited().isEmpty)
        if case .withheld? = try h.store.certificate(serial: pending[0].serial)?.status {} else { Issue.record("not withheld") }
    }

    @Test("a process killed after signing leaves a note: the certificate is completed, withheld and audited")
    func crashed() throws {
        let h = try Harness()
        let csr = try CertificateSigningRequest.make(subject: "CN=crashed", key: TestClient.csrKey, challengePassword: nil)
        let certificate = try IssuancePolicy(Configuration.Issue()).certificate(for: csr, issuer: h.ca)
        let serial = certificate.serialNumberHex
        // Killed right after the intent link: no issued/ file, no index line; pid 1 started at 1 is not us.
        let unaudited = h.directory.path + "/unaudited"
        try FileManager.default.createDirectory(atPath: unaudited, withIntermediateDirectories: true)
        try Data(certificate.pemEncoded.utf8).write(to: URL(fileURLWithPath: unaudited + "/\(serial).1-1"))
        // A note of a live process (this one) is a request in progress: left alone.
        try Data(certificate.pemEncoded.utf8).write(to: URL(fileURLWithPath: unaudited + "/ABCD.\(getpid())-\(ProcessIdentity.current.start)"))
        #expect(try (h.store as! FileCertificateStore).recover().map(\.serial) == [serial])
        h.responder.recordUnaudited()
        let event = try #require(h.audit.events.last)
        #expect(event.outcome == .withheld && event.reason == "crash-recovered" && event.serial == serial)
        #expect(try h.issuedFiles() == ["\(serial).pem"])
        #expect(try h.indexLines().contains { $0.contains(serial) })
        if case .withheld? = try h.store.certificate(serial: serial)?.status {} else { Issue.record("not withheld") }
        #expect(try h.store.unaudited().isEmpty)
    }

    @Test("an enrollment that completes leaves no note")
    func clean() throws {
        let h = try Harness()
        let client = try TestClient(harness: h)
        #expect(try client.open(h.post(client.request)).status == .success)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: h.directory.path + "/unaudited")) ?? []).isEmpty)
    }
}
