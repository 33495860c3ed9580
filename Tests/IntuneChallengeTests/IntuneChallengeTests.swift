import CurlHTTP
import Foundation
import SCEP
import SCEPCrypto
import SCEPServer
import SCEPLocking
import Testing

@testable import IntuneChallenge

/// Answers requests with a closure and records them.
final class StubHTTPTransport: HTTPTransport, @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [HTTPRequest] = []
    let respond: @Sendable (HTTPRequest, Int) throws -> HTTPResponse

    init(_ respond: @escaping @Sendable (HTTPRequest, Int) throws -> HTTPResponse) { self.respond = respond }

    var requests: [HTTPRequest] { self.lock.withLock { self.recorded } }

    func send(_ request: HTTPRequest, timeout: Double) throws -> HTTPResponse {
        let index = self.lock.withLock { () -> Int in
            self.recorded.append(request)
            return self.recorded.count
        }
        return try self.respond(request, index)
    }

    func count(_ fragment: String) -> Int { self.requests.filter { $0.url.contains(fragment) }.count }
}

func json(_ status: Int, _ object: Any) -> HTTPResponse {
    HTTPResponse(status: status, headers: [("content-type", "application/json")], body: Array(try! JSONSerialization.data(withJSONObject: object)))
}

let serviceURI = "https://fef.msuc02.manage.microsoft.com/RACerts/ScepRequestValidationFEService/Gateway/StatelessScepRequestValidationService"

/// A well-behaved Intune: tokens, discovery, and `code` for every ScepActions call.
func healthy(code: @escaping @Sendable (HTTPRequest) -> String = { _ in "Success" }) -> @Sendable (HTTPRequest, Int) throws -> HTTPResponse {
    { request, _ in
        if request.url.hasSuffix("/oauth2/v2.0/token") {
            return json(200, ["token_type": "Bearer", "expires_in": 3599, "access_token": "tok-\(UUID().uuidString)"])
        }
        if request.url.contains("/servicePrincipals/") {
            return json(200, ["value": [
                ["providerName": "PkiConnectorFEService", "uri": "https://other"],
                ["providerName": "scePREQUESTvalidationFEservice", "uri": serviceURI + "/"],
                ["providerName": "ScepRequestValidationFEService", "uri": "https://second-entry-is-ignored"],
            ]])
        }
        return json(200, ["@odata.context": "x", "code": code(request), "errorDescription": ""])
    }
}

func settings(timeout: Double = 5) -> IntuneSettings {
    var config = Configuration.Intune()
    config.tenant = "contoso.onmicrosoft.com"
    config.clientID = "client-1"
    config.authority = "https://login.example//"
    config.graph = "https://graph.example"
    config.timeoutSeconds = timeout
    return IntuneSettings(config)
}

enum Fixture {
    static let key: PrivateKey = { try! OpenSSL.bootstrap(); return try! PrivateKey.generateRSA(bits: 2048) }()
    static func context() throws -> ChallengeContext {
        let csr = try CertificateSigningRequest.make(subject: "CN=device", key: key, challengePassword: "blob")
        return ChallengeContext(transactionID: "tid-42", csr: csr, challenge: "blob", remoteAddr: "192.0.2.1")
    }
    static func certificate() throws -> Certificate {
        try CertificateBuilder.selfSigned(
            subject: "CN=Issuing CA", key: key, serial: [0x0A, 0xBC], notBefore: Date(timeIntervalSince1970: 1_790_000_000),
            notAfter: Date(timeIntervalSince1970: 1_800_000_000.5), isCA: false)
    }
}

func body(_ request: HTTPRequest) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(request.body ?? [])) as? [String: Any])
}

@Suite("Intune validator against a stub transport")
struct IntuneChallengeTests {
    @Test("URLs and scopes are normalised to exactly one slash (intune-api.md §1.3)")
    func normalisation() {
        let s = settings()
        #expect(s.tokenURL == "https://login.example/contoso.onmicrosoft.com/oauth2/v2.0/token")
        #expect(s.graphScope == "https://graph.example/.default")
        #expect(s.intuneScope == "https://api.manage.microsoft.com//.default")
        #expect(s.discoveryURL == "https://graph.example/v1.0/servicePrincipals/appId=0000000a-0000-0000-c000-000000000000/endpoints")
    }

    @Test("validateRequest: token, discovery, exact body and headers; Success accepts")
    func validate() throws {
        let stub = StubHTTPTransport(healthy())
        let validator = IntuneChallengeValidator(settings: settings(), secret: Array("s3cr&t=".utf8), transport: stub)
        let context = try Fixture.context()
        #expect(try validator.validate(context) == .accepted)
        let requests = stub.requests
        #expect(requests.map(\.url).map { $0.components(separatedBy: "/").last! } == ["token", "endpoints", "token", "validateRequest"])
        let form = String(decoding: requests[0].body ?? [], as: UTF8.self)
        #expect(form.contains("grant_type=client_credentials") && form.contains("client_secret=s3cr%26t%3D"))
        #expect(form.contains("scope=https%3A%2F%2Fgraph.example%2F.default"))
        let call = requests[3]
        #expect(call.url == serviceURI + "/ScepActions/validateRequest")
        let headers = Dictionary(call.headers, uniquingKeysWith: { a, _ in a })
        #expect(headers["api-version"] == "2018-02-20")
        #expect(headers["Authorization"]?.hasPrefix("Bearer tok-") == true)
        #expect(headers["client-request-id"]?.count == 36 && headers["client-request-id"] == headers["client-request-id"]?.lowercased())
        #expect(headers["UserAgent"]?.hasPrefix("scep-fcgi/") == true)
        let request = try #require(try body(call)["request"] as? [String: String])
        #expect(Set(request.keys) == ["transactionId", "certificateRequest", "callerInfo"])
        #expect(request["transactionId"] == "tid-42")
        #expect(request["certificateRequest"] == Data(context.csr.derEncoded).base64EncodedString())
        // The Graph token before discovery, the Intune token before the call: each traced with its duration.
        #expect(context.trace.calls.map(\.operation) == ["token", "discovery", "token", "validateRequest"])
        #expect(context.trace.calls.allSatisfy { $0.durationMs != nil && !$0.requestID.isEmpty })
        #expect(context.trace.calls.last?.requestID == headers["client-request-id"])
    }

    @Test("any code but exactly Success rejects, unknown ones included, bounded for the audit log")
    func rejections() throws {
        for (code, expected) in [("ChallengeExpired", "ChallengeExpired"), ("success", "success"), ("BadTenantIdInChallenge", "BadTenantIdInChallenge"),
            ("Weird code\n<script>", "Weirdcodescript")]
        {
            let validator = IntuneChallengeValidator(settings: settings(), secret: [1], transport: StubHTTPTransport(healthy { _ in code }))
            #expect(try validator.validate(try Fixture.context()) == .rejected(.challengeRejected, detail: expected))
        }
    }

    @Test("tokens and discovery are fetched once for many calls")
    func caching() throws {
        let stub = StubHTTPTransport(healthy())
        let validator = IntuneChallengeValidator(settings: settings(), secret: [1], transport: stub)
        for _ in 0..<5 { _ = try validator.validate(try Fixture.context()) }
        #expect(stub.count("/token") == 2 && stub.count("/endpoints") == 1 && stub.count("validateRequest") == 5)
        #expect(validator.statistics.tokenFetches == 2 && validator.statistics.discoveries == 1)
    }

    @Test("cold start under concurrency: one token per scope and one discovery, fetched outside any lock")
    func singleFlightColdStart() throws {
        let stub = StubHTTPTransport { request, index in
            if request.url.hasSuffix("/oauth2/v2.0/token") || request.url.contains("/servicePrincipals/") { usleep(200_000) }
            return try healthy()(request, index)
        }
        let validator = IntuneChallengeValidator(settings: settings(), secret: [1], transport: stub)
        let results = Locked<[ChallengeDecision]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            let decision = try? validator.validate(try Fixture.context())
            results.withLock { $0.append(decision ?? .rejected(.internalError, detail: "threw")) }
        }
        #expect(results.withLock { $0 } == Array(repeating: .accepted, count: 8))
        #expect(stub.count("/token") == 2 && stub.count("/endpoints") == 1 && stub.count("validateRequest") == 8)
    }

    @Test("a token due for renewal stays in use while Entra is slow: requests do not wait on the renewal")
    func renewalDoesNotBlock() throws {
        let release = DispatchSemaphore(value: 0)
        let intuneTokens = Locked(0)
        let stub = StubHTTPTransport { request, index in
            if request.url.hasSuffix("/oauth2/v2.0/token") {
                let form = String(decoding: request.body ?? [], as: UTF8.self)
                guard form.contains("manage.microsoft.com") else { return try healthy()(request, index) }
                let n = intuneTokens.withLock { $0 += 1; return $0 }
                // The first token is due for renewal after 1 s (expires_in - refreshMargin); the
                // renewal hangs until the test lets it go.
                if n == 2 { release.wait() }
                return json(200, ["token_type": "Bearer", "expires_in": 301, "access_token": "intune-token-\(n)"])
            }
            return try healthy()(request, index)
        }
        let validator = IntuneChallengeValidator(settings: settings(), secret: [1], transport: stub)
        #expect(try validator.validate(try Fixture.context()) == .accepted)
        usleep(1_200_000)
        for _ in 0..<3 { #expect(try validator.validate(try Fixture.context()) == .accepted) }
        func bearers() -> [String] {
            stub.requests.filter { $0.url.contains("validateRequest") }.compactMap { r in r.headers.first { $0.0 == "Authorization" }?.1 }
        }
        // All four used the first token; the renewal is still hanging in the background.
        #expect(bearers() == Array(repeating: "Bearer intune-token-1", count: 4))
        for _ in 0..<100 where intuneTokens.withLock({ $0 }) < 2 { usleep(20_000) }  // the renewal reaches Entra
        #expect(intuneTokens.withLock { $0 } == 2)
        #expect(try validator.validate(try Fixture.context()) == .accepted)
        #expect(bearers().last == "Bearer intune-token-1", "still hanging: the old token serves on")
        release.signal()
        for _ in 0..<100 where validator.statistics.tokenFetches < 3 { usleep(20_000) }
        #expect(try validator.validate(try Fixture.context()) == .accepted)
        #expect(bearers().last == "Bearer intune-token-2")
        #expect(intuneTokens.withLock { $0 } == 2, "one renewal, however many requests saw it due")
    }

    @Test("a 401 drops the token and retries once; a second 401 is intune-unauthorized")
    func unauthorized() throws {
        let once = StubHTTPTransport { request, index in
            if request.url.contains("ScepActions"), !request.url.hasSuffix("x"), index == 4 { return json(401, ["error": ["code": "Unauthorized"]]) }
            return try healthy()(request, index)
        }
        let validator = IntuneChallengeValidator(settings: settings(), secret: [1], transport: once)
        #expect(try validator.validate(try Fixture.context()) == .accepted)
        #expect(once.count("/token") == 3 && once.count("validateRequest") == 2)

        let always = StubHTTPTransport { request, index in
            request.url.contains("ScepActions") ? json(401, [:]) : try healthy()(request, index)
        }
        let denied = IntuneChallengeValidator(settings: settings(), secret: [1], transport: always)
        #expect(throws: IntuneError(.unauthorized, "")) { try denied.validate(try Fixture.context()) }
        #expect(always.count("validateRequest") == 2)
    }

    @Test("5xx is retried with backoff inside the deadline and drops the discovered URL")
    func serverErrors() throws {
        let stub = StubHTTPTransport { request, index in
            request.url.contains("ScepActions") ? json(503, ["error": ["code": "ServiceUnavailable"]]) : try healthy()(request, index)
        }
        let validator = IntuneChallengeValidator(settings: settings(timeout: 3), secret: [1], transport: stub)
        let context = try Fixture.context()
        #expect(throws: IntuneError(.httpError, "")) { try validator.validate(context) }
        #expect(stub.count("validateRequest") == 4)
        #expect(stub.count("/endpoints") == 4, "each failure forgets the URL, so each attempt rediscovers it")
        #expect(context.trace.calls.filter { $0.operation == "validateRequest" }.allSatisfy { $0.status == 503 })
    }

    @Test("transport failures map to precise codes")
    func transportErrors() throws {
        for (error, expected) in [
            (HTTPTransportError(.timeout, "t"), IntuneError.Code.timeout), (HTTPTransportError(.tls, "t"), .tls),
            (HTTPTransportError(.connect, "t"), .unreachable),
        ] {
            let stub = StubHTTPTransport { _, _ in throw error }
            let validator = IntuneChallengeValidator(settings: settings(timeout: 1), secret: [1], transport: stub)
            #expect(throws: IntuneError(expected, "")) { try validator.validate(try Fixture.context()) }
        }
    }

    @Test("Entra errors name their AADSTS code; Graph 403 names the missing permission; a missing service is reported")
    func configurationErrors() throws {
        let badSecret = StubHTTPTransport { _, _ in
            json(401, ["error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.", "error_codes": [7_000_215]])
        }
        do {
            _ = try IntuneChallengeValidator(settings: settings(), secret: [1], transport: badSecret).validate(try Fixture.context())
            Issue.record("must throw")
        } catch let error as IntuneError {
            #expect(error.code == .credentialsRejected && error.message.contains("AADSTS7000215"))
        }
        let forbidden = StubHTTPTransport { request, index in
            request.url.contains("/endpoints") ? json(403, ["error": ["code": "Authorization_RequestDenied"]]) : try healthy()(request, index)
        }
        do {
            _ = try IntuneChallengeValidator(settings: settings(), secret: [1], transport: forbidden).probe()
            Issue.record("must throw")
        } catch let error as IntuneError {
            #expect(error.code == .discoveryDenied && error.message.contains("Application.Read.All"))
        }
        let pkiOnly = try ServiceLocator.services(in: Array(#"{"value":[{"providerName":"PkiConnectorFEService","uri":"https://x/"}]}"#.utf8))
        #expect(pkiOnly == ["pkiconnectorfeservice": "https://x"])
        #expect(throws: IntuneError(.badResponse, "")) { try ServiceLocator.services(in: Array("<html/>".utf8)) }
        #expect(try ServiceLocator.services(in: Array(#"{"value":[{"serviceName":"ScepRequestValidationFEService","uri":"https://legacy/"}]}"#.utf8)) == ["sceprequestvalidationfeservice": "https://legacy"])
        let missing = StubHTTPTransport { request, index in
            request.url.contains("/endpoints")
                ? json(200, ["value": [["providerName": "PkiConnectorFEService", "uri": "https://x"]]]) : try healthy()(request, index)
        }
        #expect(throws: IntuneError(.serviceNotFound, "")) {
            _ = try IntuneChallengeValidator(settings: settings(), secret: [1], transport: missing).probe()
        }
    }

    @Test("a 2xx without a JSON code is intune-bad-response")
    func badResponse() throws {
        let stub = StubHTTPTransport { request, index in
            request.url.contains("ScepActions") ? HTTPResponse(status: 200, headers: [], body: Array("<html>".utf8)) : try healthy()(request, index)
        }
        #expect(throws: IntuneError(.badResponse, "")) {
            try IntuneChallengeValidator(settings: settings(), secret: [1], transport: stub).validate(try Fixture.context())
        }
    }

    @Test("successNotification carries thumbprint, serial, ISO 8601 expiry and issuer; a non-Success code fails delivery")
    func successNotification() throws {
        let stub = StubHTTPTransport(healthy())
        let validator = IntuneChallengeValidator(settings: settings(), secret: [1], transport: stub)
        let certificate = try Fixture.certificate()
        try validator.issued(certificate, context: try Fixture.context())
        let last = try #require(stub.requests.last)
        let notification = try #require(try body(last)["notification"] as? [String: String])
        #expect(notification["certificateThumbprint"] == certificate.fingerprint(.sha1).map { String(format: "%02X", $0) }.joined())
        #expect(notification["certificateSerialNumber"] == "0ABC")
        #expect(notification["certificateExpirationDateUtc"] == "2027-01-15T08:00:00.000Z")
        #expect(notification["issuingCertificateAuthority"] == "CN=Issuing CA")
        #expect(notification["transactionId"] == "tid-42" && notification["certificateRequest"]?.isEmpty == false)

        let refusing = IntuneChallengeValidator(settings: settings(), secret: [1], transport: StubHTTPTransport(healthy { _ in "Failure" }))
        #expect(throws: IntuneError(.notificationRejected, "")) { try refusing.issued(certificate, context: try Fixture.context()) }
    }

    @Test("failureNotification sends hResult as a number and a bounded description")
    func failureNotification() throws {
        let stub = StubHTTPTransport(healthy())
        let validator = IntuneChallengeValidator(settings: settings(), secret: [1], transport: stub)
        let context = try Fixture.context()
        validator.issuanceFailed(SCEPError(.storeFailed), context: context)
        let last = try #require(stub.requests.last)
        let notification = try #require(try body(last)["notification"] as? [String: Any])
        #expect((notification["hResult"] as? NSNumber)?.int64Value == 2_147_500_037)
        #expect((notification["errorDescription"] as? String)?.contains("store-failed") == true)
        #expect(context.trace.calls.last?.operation == "failureNotification")
    }
}
