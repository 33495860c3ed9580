import Foundation
import SCEP
import SCEPCrypto
@testable import SCEPServer

/// Keeps audit events in memory; can be told to fail.
final class InMemoryAuditSink: AuditSink, @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [AuditEvent] = []
    private var failing = false

    var events: [AuditEvent] { self.lock.withLock { self.storage } }
    func setFailing(_ value: Bool) { self.lock.withLock { self.failing = value } }

    func record(_ event: AuditEvent) throws {
        try self.lock.withLock {
            if self.failing { throw ServerError(.audit, "in-memory sink set to fail") }
            self.storage.append(event)
        }
    }
}

/// A store that always fails (disk full, read-only filesystem).
struct FailingStore: CertificateStore {
    func record(_ certificate: Certificate, transactionID: String) throws { throw ServerError(.store, "disk full") }
}

/// A temporary CA directory with a real file store, a static challenge and an in-memory audit sink.
final class Harness: @unchecked Sendable {
    static let challenge = "s3cret-Challenge"
    let root: URL
    let directory: CADirectory
    let ca: LocalCA
    let audit = InMemoryAuditSink()
    let responder: SCEPResponder

    /// One CA for the whole test process (RSA key generation is slow); each harness copies it.
    static let template: (URL, CADirectory) = {
        try! OpenSSL.bootstrap()
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("scep-ca-template-\(UUID().uuidString)")
        let dir = CADirectory(url.path)
        _ = try! dir.initialize(subject: "CN=Harness CA,O=scep-fcgi tests", keyBits: 2048, days: 30, passphrase: nil)
        return (url, dir)
    }()

    init(store: (any CertificateStore)? = nil, issue: Configuration.Issue = Configuration.Issue(), chain: Bool = false) throws {
        self.root = FileManager.default.temporaryDirectory.appendingPathComponent("scep-harness-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: Self.template.0, to: self.root)
        self.directory = CADirectory(self.root.path)
        if chain {
            // Any second certificate will do to exercise the chain reply.
            try Data(try TestClient.signerCertificate().pemEncoded.utf8).write(to: URL(fileURLWithPath: self.directory.chainPath))
        }
        guard case .success(let ca) = self.directory.load(passphrase: nil) else { throw ServerError(.caMaterial, "load") }
        self.ca = ca
        self.responder = try SCEPResponder(
            ca: ca, store: try store ?? FileCertificateStore(directory: self.directory),
            validator: StaticChallengeValidator(password: Array(Self.challenge.utf8)), audit: self.audit,
            policy: IssuancePolicy(issue))
    }

    deinit { try? FileManager.default.removeItem(at: self.root) }

    func issuedFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: self.directory.issuedPath).filter { $0.hasSuffix(".pem") }
    }

    func indexLines() throws -> [String] {
        try String(contentsOfFile: self.directory.indexPath, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    func post(_ body: [UInt8]) -> SCEPHTTPResponse {
        self.responder.respond(to: SCEPHTTPRequest(method: "POST", query: "operation=PKIOperation", body: body, remoteAddr: "192.0.2.1"))
    }

    func get(_ query: String) -> SCEPHTTPResponse {
        self.responder.respond(to: SCEPHTTPRequest(method: "GET", query: query, remoteAddr: "192.0.2.1"))
    }
}

/// A SCEP client: one signer identity, requests built with chosen algorithms.
struct TestClient {
    static let signerKey: PrivateKey = try! PrivateKey.generateRSA(bits: 2048)
    static let csrKey: PrivateKey = try! PrivateKey.generateRSA(bits: 2048)

    static func signerCertificate() throws -> Certificate {
        try CertificateBuilder.selfSigned(
            subject: "CN=test client", key: signerKey, serial: [0x11], notBefore: Date().addingTimeInterval(-60),
            notAfter: Date().addingTimeInterval(3600), isCA: false)
    }

    let signer: Certificate
    let transactionID: String
    let senderNonce: [UInt8]
    let request: [UInt8]

    init(
        harness: Harness, challenge: String? = Harness.challenge, cipher: ContentCipher = .aes256, digest: DigestAlgorithm = .sha256,
        keyTransport: KeyTransport = .rsaPKCS1v15, messageType: MessageType = .pkcsReq, nonceLength: Int = 16,
        csrKey: PrivateKey = TestClient.csrKey, subject: String = "CN=device-1,O=Example", recipient: Certificate? = nil
    ) throws {
        self.signer = try Self.signerCertificate()
        self.transactionID = "tid-" + UUID().uuidString
        self.senderNonce = try SecureRandom.bytes(nonceLength)
        let csr = try CertificateSigningRequest.make(
            subject: subject, key: csrKey, challengePassword: challenge, subjectAltNames: ["DNS:device-1.example"])
        self.request = try PKCSReqBuilder.build(
            csr: csr, signerCertificate: self.signer, signerKey: Self.signerKey, recipient: recipient ?? harness.ca.caCertificate,
            cipher: cipher, digest: digest, keyTransport: keyTransport, transactionID: self.transactionID,
            senderNonce: self.senderNonce, messageType: messageType)
    }

    func open(_ response: SCEPHTTPResponse) throws -> ReceivedCertRep {
        try ReceivedCertRep.open(response.body, signerCertificate: self.signer, signerKey: Self.signerKey)
    }
}
