import CurlHTTP
import FoundationEssentials
import Glibc
import SCEPCrypto
import SCEPServer

/// One revocation request from Intune (a device retired, wiped or out of the profile's scope).
public struct IntuneRevocationRequest: Sendable, Equatable, Decodable {
    public let requestContext: String
    public let serialNumber: String
    public let issuerName: String?
    public let caConfiguration: String?

    public init(requestContext: String, serialNumber: String, issuerName: String?, caConfiguration: String?) {
        self.requestContext = requestContext
        self.serialNumber = serialNumber
        self.issuerName = issuerName
        self.caConfiguration = caConfiguration
    }
}

/// What we answer for one request (`CARevocationResult`; error codes `CARequestErrorCodes`).
public struct IntuneRevocationResult: Sendable, Equatable, Encodable {
    public let requestContext: String
    public let succeeded: Bool
    /// A numeric string, as the Java reference sends it: "0" None, "4004" CertificateNotFoundError,
    /// "4100" RetryableServiceException.
    public let errorCode: String
    public let errorMessage: String

    static func answer(_ request: IntuneRevocationRequest, _ status: Revocation.Status) -> IntuneRevocationResult {
        switch status {
        case .revoked, .alreadyRevoked:
            return IntuneRevocationResult(requestContext: request.requestContext, succeeded: true, errorCode: "0", errorMessage: "")
        case .unknown:
            return IntuneRevocationResult(
                requestContext: request.requestContext, succeeded: false, errorCode: "4004",
                errorMessage: "no certificate with this serial number was issued by this CA")
        case .failed:
            return IntuneRevocationResult(
                requestContext: request.requestContext, succeeded: false, errorCode: "4100",
                errorMessage: "the CA could not record the revocation now; it will be retried")
        }
    }
}

/// `scep-fcgi intune sync-revocations`: takes Intune's revocation requests for this CA, revokes
/// through the one revocation path (store → audit → CRL) and reports each result back.
///
/// Intune's own `issuerName` filter is applied after its `maxRequests` cut and matches loosely
/// (Intune-Resource-Access #133), so requests are downloaded unfiltered and sorted here: ours are
/// answered, the other CAs' are left in the queue for them. Since those stay queued, the next page
/// would bring them again: the sync downloads again only while a page brings a request not yet
/// seen in this run.
public final class IntuneRevocationSync: @unchecked Sendable {
    let client: IntuneClient
    let identity: Identity

    /// How this CA recognises its own requests.
    public struct Identity: Sendable {
        /// What we send as `caConfiguration` in successNotification (it comes back in the requests).
        public let caConfigurations: [String]
        /// Subjects (RFC 2253) of our CAs: current, previous, next.
        public let issuerNames: [String]

        public init(caConfigurations: [String], issuerNames: [String]) {
            self.caConfigurations = caConfigurations
            self.issuerNames = issuerNames
        }

        /// A request names us by its caConfiguration; one without a caConfiguration, by its issuer.
        public func owns(_ request: IntuneRevocationRequest) -> Bool {
            if let configuration = request.caConfiguration, !configuration.isEmpty {
                return self.caConfigurations.contains { Self.same($0, configuration) }
            }
            guard let issuer = request.issuerName, !issuer.isEmpty else { return false }
            return self.issuerNames.contains { Self.same($0, issuer) }
        }

        /// Equal but for case and the spaces around RFC 4514's separators ("CN=A, O=B" = "cn=a,o=b").
        static func same(_ a: String, _ b: String) -> Bool { Self.folded(a) == Self.folded(b) }

        private static func folded(_ text: String) -> String {
            text.split(separator: ",", omittingEmptySubsequences: false)
                .map { $0.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map { $0.trimmedWhitespace.lowercased() }.joined(separator: "=") }
                .joined(separator: ",")
        }
    }

    /// What one run did.
    public struct Report: Sendable, Equatable {
        public var pages = 0
        public var downloaded = 0
        public var othersLeft = 0
        public var revoked = 0
        public var alreadyRevoked = 0
        public var unknown = 0
        public var failed = 0
        public var uploaded = 0
        /// Why the CRL could not be published after revoking (servers republish it themselves).
        public var crlError: String? = nil
    }

    /// At most this many requests per download (the API's limit).
    public static let pageSize = 500
    /// A bound on downloads per run whatever the service answers.
    static let maxPages = 200
    /// The CRLReason Intune revocations get: the device left management (RFC 5280 §5.3.1).
    public static let reason = RevocationReason.cessationOfOperation

    public init(settings: IntuneSettings, credential: EntraCredential, transport: any HTTPTransport, identity: Identity) {
        self.client = IntuneClient(settings: settings, credential: credential, transport: transport)
        self.identity = identity
    }

    /// With a client secret already read (tests).
    public convenience init(settings: IntuneSettings, secret: [UInt8], transport: any HTTPTransport, identity: Identity) {
        self.init(settings: settings, credential: .secret(secret), transport: transport, identity: identity)
    }

    /// One run: download, revoke ours with `revoke`, upload their results, until nothing new comes.
    /// - Throws: ``IntuneError`` when Intune cannot be reached or answers badly; what was uploaded
    ///   before stays done, and the rest is downloaded again next run.
    public func run(revoke: ([Revocation.Request]) -> Revocation.Outcome) throws -> Report {
        var report = Report()
        var seen = Set<String>()
        while report.pages < Self.maxPages {
            let page = try self.download()
            report.pages += 1
            let fresh = page.filter { seen.insert($0.requestContext).inserted }
            guard !fresh.isEmpty else { break }
            report.downloaded += fresh.count
            let ours = fresh.filter(self.identity.owns)
            report.othersLeft += fresh.count - ours.count
            guard !ours.isEmpty else { continue }
            let outcome = revoke(ours.map { Revocation.Request(serial: $0.serialNumber, reason: Self.reason, context: $0.requestContext) })
            if let crlError = outcome.crlError { report.crlError = crlError }
            var results: [IntuneRevocationResult] = []
            for (request, result) in zip(ours, outcome.results) {
                switch result.status {
                case .revoked: report.revoked += 1
                case .alreadyRevoked: report.alreadyRevoked += 1
                case .unknown: report.unknown += 1
                case .failed: report.failed += 1
                }
                results.append(.answer(request, result.status))
            }
            try self.upload(results)
            report.uploaded += results.count
        }
        return report
    }

    // MARK: - Wire (intune-api.md, Revocation API)

    struct DownloadBody: Encodable {
        struct Parameters: Encodable {
            let maxRequests: Int
            /// Sent as null: the service's filter is unreliable (see the type's comment).
            let issuerName: String?

            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(self.maxRequests, forKey: .maxRequests)
                try container.encodeNil(forKey: .issuerName)
            }
            enum CodingKeys: String, CodingKey { case maxRequests, issuerName }
        }
        let downloadParameters: Parameters
    }

    struct DownloadAnswer: Decodable { let value: [IntuneRevocationRequest] }

    struct UploadBody: Encodable { let results: [IntuneRevocationResult] }

    struct UploadAnswer: Decodable { let value: Bool }

    func download() throws -> [IntuneRevocationRequest] {
        let body = try IntuneChallengeValidator.json(DownloadBody(downloadParameters: .init(maxRequests: Self.pageSize, issuerName: nil)))
        let response = try self.client.post(.revocation("downloadRevocationRequests"), body: body, trace: ValidatorTrace())
        guard let answer = try? JSONDecoder().decode(DownloadAnswer.self, from: Data(response.body)) else {
            throw IntuneError(.badResponse, "downloadRevocationRequests answered HTTP \(response.status) without a value array of requests")
        }
        return answer.value
    }

    /// Never called with nothing to say (both reference libraries refuse an empty upload).
    func upload(_ results: [IntuneRevocationResult]) throws {
        precondition(!results.isEmpty)
        let response = try self.client.post(
            .revocation("uploadRevocationResults"), body: try IntuneChallengeValidator.json(UploadBody(results: results)), trace: ValidatorTrace())
        guard (try? JSONDecoder().decode(UploadAnswer.self, from: Data(response.body)))?.value == true else {
            throw IntuneError(.badResponse, "uploadRevocationResults answered HTTP \(response.status) without {\"value\":true}")
        }
    }
}
