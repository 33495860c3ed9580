import Foundation
import SCEP
import SCEPCrypto
import Testing

@testable import SCEPServer

@Suite("Validity from the request's name/value pairs (Intune profile validity)")
struct RequestedValidityTests {
    static let key: PrivateKey = try! PrivateKey.generateRSA(bits: 2048)

    private func requested(_ pairs: [(String, String)]) throws -> RequestedValidity? {
        RequestedValidity(try CertificateSigningRequest.make(subject: "CN=v", key: Self.key, challengePassword: nil, nameValuePairs: pairs))
    }

    @Test("both pairs in either order; units and names as Windows writes them")
    func parsing() throws {
        #expect(try self.requested([]) == nil)
        #expect(try self.requested([("CertificateTemplate", "User")]) == nil)
        #expect(try self.requested([("ValidityPeriod", "Days"), ("ValidityPeriodUnits", "30")]) == .period(.days, 30))
        #expect(try self.requested([("ValidityPeriodUnits", "2"), ("ValidityPeriod", "Years")]) == .period(.years, 2))
        #expect(try self.requested([("validityperiod", "months"), ("ValidityPeriodUnits", " 6 ")]) == .period(.months, 6))
        #expect(try self.requested([("ValidityPeriod", "Days")]) == .malformed("incomplete-pair"))
        #expect(try self.requested([("ValidityPeriod", "Fortnights"), ("ValidityPeriodUnits", "1")]) == .malformed("unknown-period"))
        for units in ["0", "-1", "1.5", "", "x", "1234567", "٣"] {
            #expect(try self.requested([("ValidityPeriod", "Days"), ("ValidityPeriodUnits", units)]) == .malformed("bad-units"), "\(units)")
        }
        #expect(try self.requested([("ValidityPeriod", "Days"), ("ValidityPeriod", "Years"), ("ValidityPeriodUnits", "1")]) == .malformed("repeated-pair"))
    }

    @Test("honoured below the cap, capped by validity_days and by the CA's expiry, ignored when disabled or malformed")
    func rule() throws {
        var issue = Configuration.Issue()
        issue.validityDays = 365
        let policy = IssuancePolicy(issue)
        let now = Date(timeIntervalSince1970: 1_767_225_600)  // 2026-01-01T00:00:00Z
        let caEnd = now.addingTimeInterval(3650 * 86400)
        let month = policy.validity(.period(.months, 1), now: now, caNotAfter: caEnd)
        #expect(month.rule == "honored" && month.notAfter == Date(timeIntervalSince1970: 1_769_904_000))  // 2026-02-01
        #expect(policy.validity(.period(.hours, 12), now: now, caNotAfter: caEnd).notAfter == now.addingTimeInterval(12 * 3600))
        #expect(policy.validity(.period(.weeks, 2), now: now, caNotAfter: caEnd).notAfter == now.addingTimeInterval(14 * 86400))
        let long = policy.validity(.period(.years, 2), now: now, caNotAfter: caEnd)
        #expect(long.rule == "capped" && long.notAfter == now.addingTimeInterval(365 * 86400))
        let pastCA = policy.validity(.period(.days, 30), now: now, caNotAfter: now.addingTimeInterval(10 * 86400))
        #expect(pastCA.rule == "capped" && pastCA.notAfter == now.addingTimeInterval(10 * 86400))
        #expect(policy.validity(.malformed("bad-units"), now: now, caNotAfter: caEnd).rule == "ignored-bad-units")
        #expect(policy.validity(nil, now: now, caNotAfter: caEnd).rule == nil)
        issue.honorRequestedValidity = false
        let off = IssuancePolicy(issue).validity(.period(.days, 30), now: now, caNotAfter: caEnd)
        #expect(off.rule == "ignored-disabled" && off.notAfter == now.addingTimeInterval(365 * 86400))
    }

    @Test("through the responder: the certificate ends when the profile says, and the audit line says why")
    func enrollment() throws {
        let h = try Harness()
        let client = try TestClient(
            harness: h, csrKey: try PrivateKey.generateRSA(bits: 2048), nameValuePairs: [("ValidityPeriodUnits", "3"), ("ValidityPeriod", "Days")])
        let rep = try client.open(h.post(client.request))
        let certificate = try #require(rep.certificates.first)
        let days = certificate.notAfter.timeIntervalSince(certificate.notBefore) / 86400
        #expect(days > 3 && days < 3.01)  // three days plus the five-minute backdate
        let event = try #require(h.audit.events.last)
        #expect(event.requestedValidity == "3 Days" && event.validityRule == "honored")
    }
}
