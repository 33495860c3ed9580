import Foundation
import SCEP
import SCEPCrypto
import Testing

@testable import SCEPServer

/// A validator that accepts the static challenge and, like Intune's validateRequest, vouches for
/// the request's subjectAltNames.
struct VouchingValidator: ChallengeValidator {
    var mode: String { "vouching" }
    var vouchesForNames: Bool { true }
    func validate(_ context: ChallengeContext) throws -> ChallengeDecision {
        context.challenge == Harness.challenge ? .accepted : .rejected(.challengeMismatch, detail: nil)
    }
}

@Suite("Strong certificate mapping (KB5014754): the SID extension and who may name a SID")
struct StrongMappingTests {
    static let sid = "S-1-5-21-3623811015-3361044348-30300820-1013"
    static let uri = "URI:tag:microsoft.com,2022-09-14:sid:" + sid

    @Test("extension value byte for byte as MS-WCCE 2.2.2.7.7.4 and docs/partner-ca.md give it")
    func encoding() throws {
        let value = SecurityIdentifier.extensionValue(Self.sid)
        let expected: [UInt8] =
            [0x30, 0x3E, 0xA0, 0x3C, 0x06, 0x0A, 0x2B, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x19, 0x02, 0x01, 0xA0, 0x2E, 0x04, 0x2C]
            + Array(Self.sid.utf8)
        #expect(Self.sid.utf8.count == 44)
        #expect(value == expected)
        #expect(SecurityIdentifier.parse(extensionValue: value) == Self.sid)
        #expect(SecurityIdentifier.parse(extensionValue: [0x30, 0x00]) == nil)
    }

    @Test("SID text: S-1-, decimal authority, 1 to 15 decimal sub-authorities")
    func wellFormed() {
        for good in [Self.sid, "S-1-5-18", "S-1-1-0", "S-1-5-21-1-2-3-" + Array(repeating: "4294967295", count: 11).joined(separator: "-")] {
            #expect(SecurityIdentifier.isWellFormed(good), "\(good)")
        }
        for bad in ["", "S-1-5", "S-1-", "s-1-5-18", "S-2-5-18", "S-1-5-18-", "S-1--5", "S-1-5-+18", "S-1-5- 18", "S-1-0x5-18",
            "S-1-5-4294967296", "S-1-5-018", "S-1-5-18\0", "S-1-5-18\n", "S-1-281474976710656-1",
            "S-1-5-" + Array(repeating: "1", count: 16).joined(separator: "-")]
        {
            #expect(!SecurityIdentifier.isWellFormed(bad), "\(bad.debugDescription)")
        }
        #expect(SecurityIdentifier.fromURI("TAG:Microsoft.com,2022-09-14:SID:S-1-5-18") == "S-1-5-18")
        #expect(SecurityIdentifier.fromURI("https://example.com/") == nil)
    }

    private func enroll(_ h: Harness, sans: [String], challenge: String? = Harness.challenge) throws -> (ReceivedCertRep, AuditEvent?) {
        let client = try TestClient(harness: h, challenge: challenge, csrKey: try PrivateKey.generateRSA(bits: 2048), sans: sans)
        return (try client.open(h.post(client.request)), h.audit.events.last)
    }

    @Test("a vouched-for SID URI is kept and gains the non-critical SID extension")
    func vouched() throws {
        let h = try Harness(validator: VouchingValidator())
        let (rep, event) = try self.enroll(h, sans: ["DNS:device.example", Self.uri])
        #expect(rep.status == .success)
        let certificate = try #require(rep.certificates.first)
        #expect(certificate.extensionValue(oid: SecurityIdentifier.extensionOID) == SecurityIdentifier.extensionValue(Self.sid))
        #expect(certificate.subjectAltNames.contains(Self.uri))
        #expect(certificate.securityIdentifiers == [Self.sid, Self.sid])
        #expect(event?.sid == Self.sid)

        var never = Configuration.Issue()
        never.sidExtension = .never
        let n = try Harness(issue: never, validator: VouchingValidator())
        let (plain, _) = try self.enroll(n, sans: [Self.uri])
        #expect(plain.status == .success && plain.certificates.first?.extensionValue(oid: SecurityIdentifier.extensionOID) == nil)
        #expect(plain.certificates.first?.subjectAltNames == [Self.uri])
    }

    @Test("a static challenge vouches for no SID: badRequest sid-not-validated, unless allow_requested_sid")
    func staticRefused() throws {
        let h = try Harness()
        let (rep, event) = try self.enroll(h, sans: [Self.uri])
        #expect(rep.status == .failure && rep.failInfo == .badRequest)
        #expect(event?.reason == "sid-not-validated")
        #expect(try h.issuedFiles().isEmpty)
        // A requested SID extension alone is refused the same way, even by a vouching validator.
        let v = try Harness(validator: VouchingValidator())
        let client = try TestClient(
            harness: v, csrKey: try PrivateKey.generateRSA(bits: 2048),
            csrExtensions: [(SecurityIdentifier.extensionOID, SecurityIdentifier.extensionValue(Self.sid))])
        #expect(try client.open(v.post(client.request)).failInfo == .badRequest)
        #expect(v.audit.events.last?.reason == "sid-not-validated")

        var allow = Configuration.Issue()
        allow.allowRequestedSID = true
        let a = try Harness(issue: allow)
        let (allowed, _) = try self.enroll(a, sans: [Self.uri])
        #expect(allowed.status == .success && allowed.certificates.first?.securityIdentifiers.first == Self.sid)
    }

    @Test("malformed or conflicting SIDs are badRequest sid-invalid before the challenge")
    func malformed() throws {
        let h = try Harness(validator: VouchingValidator())
        for sans in [["URI:tag:microsoft.com,2022-09-14:sid:S-1-5-x"], [Self.uri, "URI:tag:microsoft.com,2022-09-14:sid:S-1-5-18"]] {
            let (rep, event) = try self.enroll(h, sans: sans, challenge: "wrong")
            #expect(rep.failInfo == .badRequest && event?.reason == "sid-invalid", "\(sans)")
        }
    }

    @Test("a renewal keeps the SID it renews and may not add or change one, even where names may change")
    func renewal() throws {
        // With renewal_allow_subject_change the name rules let new names in; the SID rule still holds.
        var loose = Configuration.Issue()
        loose.renewalAllowSubjectChange = true
        let h = try Harness(issue: loose, validator: VouchingValidator())
        let key = try PrivateKey.generateRSA(bits: 2048)
        let first = try TestClient(harness: h, csrKey: key, sans: [Self.uri])
        let old = try #require(try first.open(h.post(first.request)).certificates.first)
        func renew(_ sans: [String]) throws -> ReceivedCertRep {
            let client = try TestClient(
                harness: h, challenge: nil, messageType: .renewalReq, csrKey: try PrivateKey.generateRSA(bits: 2048), sans: sans,
                signer: (old, key))
            return try client.open(h.post(client.request))
        }
        let kept = try renew([])
        #expect(kept.status == .success && kept.certificates.first?.securityIdentifiers == [Self.sid])
        #expect(try renew(["URI:tag:microsoft.com,2022-09-14:sid:S-1-5-21-1-2-3-500"]).failInfo == .badRequest)
        #expect(h.audit.events.last?.reason == "sid-not-validated")

        let s = try Harness(issue: loose)
        let plainKey = try PrivateKey.generateRSA(bits: 2048)
        let plain = try TestClient(harness: s, csrKey: plainKey, sans: [])
        let withoutSID = try #require(try plain.open(s.post(plain.request)).certificates.first)
        let adding = try TestClient(
            harness: s, challenge: nil, messageType: .renewalReq, csrKey: try PrivateKey.generateRSA(bits: 2048), sans: [Self.uri],
            signer: (withoutSID, plainKey))
        #expect(try adding.open(s.post(adding.request)).failInfo == .badRequest)
        #expect(s.audit.events.last?.reason == "sid-not-validated")
    }
}
