import Foundation
import SCEP
import SCEPCrypto
@testable import SCEPServer
import SCEPStore
@testable import FileStore

/// Keeps audit events in memory; can be told to fail.
final class InMemoryAuditSink: AuditSink, @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [AuditEvent] = []
    private var failing = false

    var events: [AuditEvent] { self.lock.withLock { self.storage } }
    func setFailing(_ value: Bool) { self.lock.withLock { self.failing = value } }

    private var restoredLines: [[UInt8]] = []
    var restored: [[UInt8]] { self.lock.withLock { self.restoredLines } }

    func record(_ event: AuditEvent, sealedByStore: Bool) throws -> WrittenAuditLine? {
        try self.lock.withLock {
            if self.failing { throw ServerError(.audit, "in-memory sink set to fail") }
            self.storage.append(event)
        }
        return nil
    }

    func restore(lostLine: [UInt8]) throws {
        try self.lock.withLock {
            if self.failing { throw ServerError(.audit, "in-memory sink set to fail") }
            self.restoredLines.append(lostLine)
        }
    }
}

/// A file store whose certificate writes fail (disk full, read-only filesystem); the rest works.
final class FailingStore: CertificateStore, Sendable {
    let base: FileCertificateStore
    init(_ base: FileCertificateStore) { self.base = base }
    func claim(_ key: TransactionKey, lease: TimeInterval) throws -> ClaimResult { try self.base.claim(key, lease: lease) }
    func supersede(_ key: TransactionKey, issued serial: String, lease: TimeInterval) throws -> Bool {
        try self.base.supersede(key, issued: serial, lease: lease)
    }
    func release(_ key: TransactionKey) { self.base.release(key) }
    func transaction(_ transactionID: String) throws -> TransactionRecord? { try self.base.transaction(transactionID) }
    func hold(_ request: PendingRequest) throws { try self.base.hold(request) }
    func pendingRequests() throws -> [PendingRequest] { try self.base.pendingRequests() }
    func pendingRequest(_ transactionID: String) throws -> PendingRequest? { try self.base.pendingRequest(transactionID) }
    func reject(_ key: TransactionKey) throws { try self.base.reject(key) }
    var sealsWithAuditLine: Bool { self.base.sealsWithAuditLine }
    func commit(_ certificate: Certificate, issuer: IssuerID, transaction: TransactionKey, durableNow: Bool) throws { throw ServerError(.store, "disk full") }
    func issued(_ key: TransactionKey, serial: String) throws { try self.base.issued(key, serial: serial) }
    func withhold(serial: String, auditLineWritten: Bool) throws { try self.base.withhold(serial: serial, auditLineWritten: auditLineWritten) }
    func audited(serial: String, line: WrittenAuditLine?) throws { try self.base.audited(serial: serial, line: line) }
    func unaudited() throws -> [UnauditedCertificate] { try self.base.unaudited() }
    func certificate(serial: String) throws -> StoredCertificate? { try self.base.certificate(serial: serial) }
    func certificates(subject: String) throws -> [CertificateEntry] { try self.base.certificates(subject: subject) }
    func certificates() throws -> [CertificateEntry] { try self.base.certificates() }
    func revoke(serial: String, reason: RevocationReason?, at: Date) throws -> StoreRevocation { try self.base.revoke(serial: serial, reason: reason, at: at) }
    func revoked() throws -> [RevokedEntry] { try self.base.revoked() }
    func latestRevocation() throws -> Date? { try self.base.latestRevocation() }
    func nextCRLNumber(issuer: IssuerID, atLeast: UInt64) throws -> UInt64 { try self.base.nextCRLNumber(issuer: issuer, atLeast: atLeast) }
    func keepCRL(_ crl: [UInt8], number: UInt64, issuer: IssuerID) throws { try self.base.keepCRL(crl, number: number, issuer: issuer) }
    func newestCRL(issuer: IssuerID) throws -> [UInt8]? { try self.base.newestCRL(issuer: issuer) }
    func maintain(now: Date) -> StoreMaintenance { self.base.maintain(now: now) }
    func exclusively<T>(_ job: String, _ body: () throws -> T) throws -> T? { try self.base.exclusively(job, body) }
    func healthProblem() -> String? { self.base.healthProblem() }
}

/// A temporary CA directory with a real file store, a static challenge and an in-memory audit sink.
final class Harness: @unchecked Sendable {
    static let challenge = "s3cret-Challenge"
    let root: URL
    let directory: CADirectory
    let material: CAMaterial
    let store: any CertificateStore
    var ca: KeyPair { self.material.current }
    /// The audit sink unless the harness writes a real log (`auditLog`).
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

    let metrics: Metrics?

    init(
        failingStore: Bool = false, issue: Configuration.Issue = Configuration.Issue(), chain: Bool = false, monitoring: Configuration.Monitoring? = nil,
        validator: (any ChallengeValidator)? = nil, auditLog: String? = nil, reopening root: URL? = nil, prepare: (CADirectory) throws -> Void = { _ in }
    ) throws {
        if let root {
            self.root = root  // another process on the same CA directory (a restart)
        } else {
            self.root = FileManager.default.temporaryDirectory.appendingPathComponent("scep-harness-\(UUID().uuidString)")
            try FileManager.default.copyItem(at: Self.template.0, to: self.root)
        }
        self.directory = CADirectory(self.root.path)
        if chain {
            // Any second certificate will do to exercise the chain reply.
            try Data(try TestClient.signerCertificate().pemEncoded.utf8).write(to: URL(fileURLWithPath: self.directory.chainPath))
        }
        try prepare(self.directory)
        let loaded = self.directory.load(passphrase: nil)
        guard case .success(let material) = loaded else {
            if case .failure(let problems) = loaded { throw ServerError(.caMaterial, problems.lines.joined(separator: "; ")) }
            throw ServerError(.caMaterial, "load")
        }
        self.material = material
        let fileStore = try FileCertificateStore(root: self.directory.path)
        self.store = failingStore ? FailingStore(fileStore) : fileStore
        let directory = self.directory
        let metrics = try monitoring.map { _ in try Metrics(path: Metrics.defaultPath(caDirectory: directory.path), create: true) }
        self.metrics = metrics
        let audit: any AuditSink = try auditLog.map { try JSONLinesAuditSink(path: $0, sync: true) } ?? self.audit
        self.responder = try SCEPResponder(
            material: CAMaterialSource(directory: directory, passphraseFile: nil, diagnostics: Diagnostics()), store: self.store,
            validator: validator ?? StaticChallengeValidator(password: Array(Self.challenge.utf8)),
            audit: metrics.map { CountingAuditSink(audit, metrics: $0) } ?? audit,
            policy: IssuancePolicy(issue), crls: CRLPublisher(directory: directory, validityHours: 168), metrics: metrics,
            monitoring: monitoring ?? Configuration.Monitoring())
    }

    deinit { try? FileManager.default.removeItem(at: self.root) }

    /// The file store's paths in this harness's CA directory.
    var layout: FileStoreLayout { FileStoreLayout(root: self.directory.path) }

    func issuedFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: self.layout.issuedPath).filter { $0.hasSuffix(".pem") }
    }

    func indexLines() throws -> [String] {
        try String(contentsOfFile: self.layout.indexPath, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    /// The `ca` commands on this directory, auditing into the same in-memory sink.
    func operations(_ issue: Configuration.Issue = Configuration.Issue()) throws -> CAOperations {
        CAOperations(directory: self.directory, store: self.store, passphraseFile: nil, audit: self.audit, policy: IssuancePolicy(issue), crlValidityHours: 168)
    }

    func post(_ body: [UInt8]) -> SCEPHTTPResponse {
        self.responder.respond(to: SCEPHTTPRequest(method: "POST", query: "operation=PKIOperation", body: body, remoteAddr: "192.0.2.1"))
    }

    func get(_ query: String, path: String? = nil) -> SCEPHTTPResponse {
        self.responder.respond(to: SCEPHTTPRequest(method: "GET", query: query, remoteAddr: "192.0.2.1", path: path))
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
    let signerKey: PrivateKey
    let transactionID: String
    let senderNonce: [UInt8]
    let request: [UInt8]

    init(
        harness: Harness, challenge: String? = Harness.challenge, cipher: ContentCipher = .aes256, digest: DigestAlgorithm = .sha256,
        keyTransport: KeyTransport = .rsaPKCS1v15, messageType: MessageType = .pkcsReq, nonceLength: Int = 16,
        csrKey: PrivateKey = TestClient.csrKey, subject: String = "CN=device-1,O=Example", recipient: Certificate? = nil,
        sans: [String] = ["DNS:device-1.example"], csrDigest: DigestAlgorithm = .sha256, transactionID: String? = nil,
        signer: (Certificate, PrivateKey)? = nil, nameValuePairs: [(String, String)] = [], csrExtensions: [(oid: String, value: [UInt8])] = []
    ) throws {
        (self.signer, self.signerKey) = try signer ?? (Self.signerCertificate(), Self.signerKey)
        self.transactionID = transactionID ?? "tid-" + UUID().uuidString
        self.senderNonce = try SecureRandom.bytes(nonceLength)
        let csr = try CertificateSigningRequest.make(
            subject: subject, key: csrKey, challengePassword: challenge, subjectAltNames: sans, digest: csrDigest,
            nameValuePairs: nameValuePairs, extraExtensions: csrExtensions)
        self.request = try PKCSReqBuilder.build(
            csr: csr, signerCertificate: self.signer, signerKey: self.signerKey, recipient: recipient ?? harness.ca.certificate,
            cipher: cipher, digest: digest, keyTransport: keyTransport, transactionID: self.transactionID,
            senderNonce: self.senderNonce, messageType: messageType)
    }

    /// A GetCert, GetCRL or CertPoll with `messageData`.
    init(harness: Harness, messageType: MessageType, messageData: [UInt8], transactionID: String? = nil, recipient: Certificate? = nil) throws {
        (self.signer, self.signerKey) = (try Self.signerCertificate(), Self.signerKey)
        self.transactionID = transactionID ?? "tid-" + UUID().uuidString
        self.senderNonce = try SecureRandom.bytes(16)
        self.request = try PKIMessageBuilder.build(
            messageData: messageData, messageType: messageType, signerCertificate: self.signer, signerKey: self.signerKey,
            recipient: recipient ?? harness.ca.certificate, transactionID: self.transactionID, senderNonce: self.senderNonce)
    }

    func open(_ response: SCEPHTTPResponse) throws -> ReceivedCertRep {
        try ReceivedCertRep.open(response.body, signerCertificate: self.signer, signerKey: self.signerKey)
    }
}
