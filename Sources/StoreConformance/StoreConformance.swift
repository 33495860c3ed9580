import FoundationEssentials
import Glibc
import SCEPCrypto
import SCEPStore

/// The behaviour every ``CertificateStore`` must have, as cases any store's tests run: the file
/// store's and the PostgreSQL store's. A case gets a ``StoreFixture`` (fresh, empty store) and
/// throws ``ConformanceFailure`` at the first expectation that does not hold.
///
/// Several processes: ``StoreFixture/spawn(_:_:)`` starts workers (`store-conformance worker`)
/// on the same store, as a second server process or host would be.
public enum StoreConformance {
    public struct Case: Sendable, CustomStringConvertible {
        public let name: String
        public let run: @Sendable (any StoreFixture) throws -> Void
        public var description: String { self.name }
    }

    /// Every case, in a fixed order.
    public static let cases: [Case] = TransactionCases.all + IssuanceCases.all + CertificateCases.all + ConcurrencyCases.all
}

/// What a case needs from the store under test.
public protocol StoreFixture: Sendable {
    /// A new handle on the store under test (as another server process would open it).
    func open() throws -> any CertificateStore
    /// Runs `count` workers in their own processes on the same store, each given `arguments`
    /// after `worker`; returns each one's standard output (one result per line).
    func spawn(_ count: Int, _ arguments: [String]) throws -> [String]
}

/// An expectation that did not hold.
public struct ConformanceFailure: Error, CustomStringConvertible {
    public let message: String
    public let line: Int
    public var description: String { "line \(self.line): \(self.message)" }
}

func expect(_ condition: @autoclosure () throws -> Bool, _ message: @autoclosure () -> String, line: Int = #line) throws {
    guard try condition() else { throw ConformanceFailure(message: message(), line: line) }
}

func unwrap<T>(_ value: T?, _ message: @autoclosure () -> String, line: Int = #line) throws -> T {
    guard let value else { throw ConformanceFailure(message: message(), line: line) }
    return value
}

/// Certificates for the cases: an EC P-256 CA (fast to make) issuing leaf certificates.
public struct TestAuthority: Sendable {
    public let certificate: Certificate
    let key: PrivateKey
    public var id: IssuerID { IssuerID(authority: self.certificate) }

    public init(name: String = "Conformance CA") throws {
        try OpenSSL.bootstrap()
        self.key = try PrivateKey.generateEC(curve: .p256)
        self.certificate = try CertificateBuilder.selfSigned(
            subject: "CN=\(name),O=scep-fcgi conformance", key: self.key, serial: Self.serial(), notBefore: Date().addingTimeInterval(-60),
            notAfter: Date().addingTimeInterval(86400), isCA: true)
    }

    /// A leaf certificate for `subject` valid until `notAfter` (an hour from now by default).
    public func issue(_ subject: String = "CN=device,O=Example", notAfter: Date? = nil) throws -> Certificate {
        let key = try PrivateKey.generateEC(curve: .p256)
        let csr = try CertificateSigningRequest.make(subject: subject, key: key, challengePassword: nil)
        let notAfter = notAfter ?? Date().addingTimeInterval(3600)
        return try CertificateBuilder.issue(
            csr: csr, issuer: self.certificate, issuerKey: self.key, serial: Self.serial(), notBefore: min(Date(), notAfter).addingTimeInterval(-60),
            notAfter: notAfter, profile: IssuanceProfile(keyUsage: "critical,digitalSignature", extendedKeyUsage: ["clientAuth"]))
    }

    /// 16 random octets, positive (as the server's serials are).
    static func serial() -> [UInt8] {
        var bytes = (0..<16).map { _ in UInt8.random(in: 0...255) }
        bytes[0] = 0x40 | (bytes[0] & 0x3F)
        return bytes
    }
}

/// A transaction key for `certificate`'s key (as a request for it would carry).
func key(_ transactionID: String, for certificate: Certificate) throws -> TransactionKey {
    TransactionKey(transactionID: transactionID, keyHash: HexEncoding.string(try DigestAlgorithm.sha256.hash(certificate.subjectPublicKeyInfoDER)))
}

/// A transactionID no other case or run uses.
func freshID(_ label: String) -> String { "\(label)-\(UInt64.random(in: 0...UInt64.max))" }

/// Claims, commits and marks issued: what one delivered enrollment does to the store.
func enroll(_ store: any CertificateStore, _ authority: TestAuthority, subject: String = "CN=device,O=Example") throws -> (TransactionKey, Certificate) {
    let certificate = try authority.issue(subject)
    let k = try key(freshID("enroll"), for: certificate)
    try expect(try store.claim(k, lease: 600) == .claimed, "a fresh transactionID is claimed")
    try deliver(certificate, by: authority, for: k, to: store)
    return (k, certificate)
}

/// Commits, audits and marks issued: what the one issuance path does once a claim is held.
func deliver(_ certificate: Certificate, by authority: TestAuthority, for k: TransactionKey, to store: any CertificateStore) throws {
    try store.commit(certificate, issuer: authority.id, transaction: k)
    try store.audited(serial: certificate.serialNumberHex, line: nil)
    try store.issued(k, serial: certificate.serialNumberHex)
}
