import Foundation
import SCEP
import SCEPCrypto
import Testing

@testable import SCEPServer

@Suite("The delegated OCSP responder certificate")
struct OCSPSignerTests {
    @Test("id-kp-OCSPSigning and id-pkix-ocsp-nocheck; renewed once a third of its life is left, not before")
    func renewal() throws {
        let h = try Harness()
        let operations = try h.operations()
        let first = try operations.createOCSPSigner(days: 9)
        #expect(first.allowsOCSPSigning && first.extensionValue(oid: "1.3.6.1.5.5.7.48.1.5") != nil)
        #expect(!first.permits(.keyEncipherment) && first.isIssued(byNameOf: h.ca.certificate))
        #expect(try operations.material().ocspSigner?.certificate.serialNumberHex == first.serialNumberHex)
        #expect(try operations.renewOCSPSignerIfDue(now: Date().addingTimeInterval(5 * 86400)) == nil)
        let renewed = try #require(try operations.renewOCSPSignerIfDue(now: Date().addingTimeInterval(7 * 86400)))
        #expect(renewed.serialNumberHex != first.serialNumberHex && renewed.allowsOCSPSigning)
        #expect(try operations.material().ocspSigner?.certificate.serialNumberHex == renewed.serialNumberHex)
        #expect(h.audit.events.filter { $0.operation == "ca-ocsp-signer" }.count == 2)
    }
}
