import CurlHTTP
import Foundation
import SCEPCrypto
import SCEPServer
import Testing

@testable import IntuneChallenge

@Suite("Intune revocation sync: which requests are ours, paging, what is uploaded")
struct RevocationSyncTests {
    static let identity = IntuneRevocationSync.Identity(
        caConfigurations: ["CN=Example CA,O=Example"], issuerNames: ["CN=Example CA,O=Example", "CN=Old CA,O=Example"])

    static func request(_ context: String, serial: String = "0A", issuer: String? = nil, configuration: String? = nil) -> IntuneRevocationRequest {
        IntuneRevocationRequest(requestContext: context, serialNumber: serial, issuerName: issuer, caConfiguration: configuration)
    }

    @Test("ours by caConfiguration; by issuer only without one; never by issuer against another caConfiguration")
    func ownership() {
        let id = Self.identity
        #expect(id.owns(Self.request("a", configuration: "cn=example ca, o=example")))
        #expect(id.owns(Self.request("b", issuer: "CN=Old CA, O=Example")))
        #expect(!id.owns(Self.request("c", issuer: "CN=Example CA,O=Example", configuration: "pki.example.com\\Other CA")))
        #expect(!id.owns(Self.request("d", issuer: "CN=Example CA")))
        #expect(!id.owns(Self.request("e")))
    }

    /// Pages from a queue the stub keeps: answered requests leave it, as the service does.
    final class Queue: @unchecked Sendable {
        let lock = NSLock()
        var pending: [IntuneRevocationRequest]
        var uploads: [[[String: Any]]] = []
        var downloads = 0
        init(_ pending: [IntuneRevocationRequest]) { self.pending = pending }

        func respond(_ request: HTTPRequest, _ index: Int) throws -> HTTPResponse {
            if request.url.hasSuffix("/oauth2/v2.0/token") || request.url.contains("/servicePrincipals/") { return try healthy()(request, index) }
            return self.lock.withLock {
                if request.url.hasSuffix("downloadRevocationRequests") {
                    self.downloads += 1
                    let page = self.pending.prefix(500).map { ["requestContext": $0.requestContext, "serialNumber": $0.serialNumber,
                        "issuerName": $0.issuerName ?? "", "caConfiguration": $0.caConfiguration ?? ""] }
                    return json(200, ["value": page])
                }
                let body = try! JSONSerialization.jsonObject(with: Data(request.body ?? [])) as! [String: Any]
                let results = body["results"] as! [[String: Any]]
                self.uploads.append(results)
                let done = Set(results.map { $0["requestContext"] as! String })
                self.pending.removeAll { done.contains($0.requestContext) }
                return json(200, ["value": true])
            }
        }
    }

    @Test("answers ours with typed results, leaves the others queued, stops when a page brings nothing new")
    func run() throws {
        let ours = "CN=Example CA,O=Example"
        let queue = Queue(
            [Self.request("r1", serial: "0a", configuration: ours), Self.request("r2", serial: "0B", configuration: ours),
             Self.request("r3", serial: "0C", configuration: ours), Self.request("f1", configuration: "other")]
                + (0..<600).map { Self.request("f-\($0)", configuration: "other") })
        let stub = StubHTTPTransport { try queue.respond($0, $1) }
        let sync = IntuneRevocationSync(settings: settings(), secret: [1], transport: stub, identity: Self.identity)
        var asked: [Revocation.Request] = []
        let report = try sync.run { requests in
            asked += requests
            let statuses: [Revocation.Status] = [.revoked, .alreadyRevoked, .unknown]
            return Revocation.Outcome(
                results: zip(requests, statuses).map { Revocation.Result(request: $0, status: $1, entry: nil) }, crls: [], crlError: nil)
        }
        #expect(asked.map(\.serial) == ["0a", "0B", "0C"] && asked.allSatisfy { $0.reason == .cessationOfOperation && $0.context != nil })
        #expect(report.revoked == 1 && report.alreadyRevoked == 1 && report.unknown == 1 && report.uploaded == 3)
        #expect(queue.uploads.count == 1)
        let results = queue.uploads[0].map { "\($0["requestContext"]!) \($0["succeeded"]!) \($0["errorCode"]!)" }
        #expect(results == ["r1 1 0", "r2 1 0", "r3 0 4004"])
        // Page 1: 500 (3 ours answered); page 2: the head of what stays queued, 3 not seen yet;
        // page 3: nothing new, so the run ends although 601 other CAs' requests remain (101 of
        // them never seen: Intune pages from the head of the queue).
        #expect(queue.downloads == 3 && report.downloaded == 503 && report.othersLeft == 500 && queue.pending.count == 601)
        let body = try #require(stub.requests.first { $0.url.hasSuffix("downloadRevocationRequests") }?.body)
        // Key order is the encoder's; the content is what counts: 500, and an explicit null filter.
        let parameters = try #require((try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])?["downloadParameters"] as? [String: Any])
        #expect(parameters.count == 2 && parameters["maxRequests"] as? Int == 500 && parameters["issuerName"] is NSNull)
        #expect(stub.requests.first { $0.url.hasSuffix("downloadRevocationRequests") }?.url == "https://other/CertificateAuthorityRequests/downloadRevocationRequests")
    }
}
