import Foundation
import SCEP
import SCEPCrypto
import Testing

@testable import SCEPServer

@Suite("SCEPResponder without a transport")
struct ResponderTests {
    @Test("GetCACaps: bare text/plain with the implemented keywords, any message value")
    func caps() throws {
        let h = try Harness()
        for query in ["operation=GetCACaps", "operation=GetCACaps&message=CAIdentifier", "message=0&operation=getcacaps"] {
            let r = h.get(query)
            #expect(r.status == 200 && r.contentType == "text/plain")
            #expect(String(decoding: r.body, as: UTF8.self) == CACapabilities(renewal: true, nextCA: false).text)
        }
        #expect(h.audit.events.count == 3 && h.audit.events.allSatisfy { $0.outcome == .served && $0.operation == "GetCACaps" })
    }

    @Test("GetCACert: the CA as DER x-x509-ca-cert; with chain.pem a degenerate PKCS#7 x-x509-ca-ra-cert")
    func caCert() throws {
        let h = try Harness()
        let r = h.get("operation=GetCACert&message=anything")
        #expect(r.status == 200 && r.contentType == "application/x-x509-ca-cert")
        #expect(r.body == h.ca.certificate.derEncoded)
        let chained = try Harness(chain: true)
        let c = chained.get("operation=GetCACert")
        #expect(c.contentType == "application/x-x509-ca-ra-cert")
        #expect(try CMSSigner.certificates(in: c.body).count == 2)
    }

    @Test("HTTP-tier errors: fixed texts, right status, audited with a reason")
    func httpErrors() throws {
        let h = try Harness()
        let cases: [(SCEPHTTPRequest, Int, String)] = [
            (SCEPHTTPRequest(method: "PUT", query: "operation=GetCACert"), 405, "method-not-allowed"),
            (SCEPHTTPRequest(method: "GET", query: ""), 400, "missing-operation"),
            (SCEPHTTPRequest(method: "GET", query: "operation=GetCert"), 400, "unknown-operation"),
            (SCEPHTTPRequest(method: "GET", query: "operation=GetNextCACert"), 404, "no-next-ca"),
            (SCEPHTTPRequest(method: "GET", query: "operation=PKIOperation"), 400, "missing-message"),
            (SCEPHTTPRequest(method: "GET", query: "operation=PKIOperation&message="), 400, "missing-message"),
            (SCEPHTTPRequest(method: "GET", query: "operation=PKIOperation&message=%%%"), 400, "bad-encoding"),
            (SCEPHTTPRequest(method: "GET", query: "operation=PKIOperation&message=AAAA"), 400, "malformed-message"),
            (SCEPHTTPRequest(method: "POST", query: "operation=PKIOperation"), 400, "missing-message"),
            (SCEPHTTPRequest(method: "POST", query: "operation=PKIOperation", body: [0x30, 0x82, 0xFF, 0xFF, 0x01]), 400, "malformed-message"),
            (SCEPHTTPRequest(method: "POST", query: "operation=PKIOperation", body: [], bodyTooLarge: true), 413, "body-too-large"),
        ]
        for (request, status, reason) in cases {
            let r = h.responder.respond(to: request)
            #expect(r.status == status, "\(reason)")
            #expect(r.contentType == "text/plain")
            #expect(!String(decoding: r.body, as: UTF8.self).contains("Error"), "no internal error text leaks")
            #expect(h.audit.events.last?.reason == reason)
            #expect(h.audit.events.last?.outcome == .rejected)
            #expect(h.audit.events.last?.httpStatus == status)
        }
        #expect(h.audit.events.count == cases.count)
        #expect(try h.issuedFiles().isEmpty)
    }

    @Test("a pkiMessage without SCEP attributes is an HTTP 400, not a crash")
    func noAttributes() throws {
        let h = try Harness()
        let signed = try CMSSigner.sign(
            content: [1, 2, 3], certificate: try TestClient.signerCertificate(), key: TestClient.signerKey, digest: .sha256, attributes: [])
        #expect(h.post(signed).status == 400)
        #expect(h.audit.events.last?.reason == "missing-transaction-id")
    }
}
