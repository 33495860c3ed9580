import FoundationEssentials
import SCEP
import SCEPCrypto
import SCEPServer

/// What each fuzz target feeds one input to (libFuzzer's `scep-fuzz` and the regression tests
/// run the same code). Each must return normally for any input: a trap or a sanitizer report is
/// the bug. Results are discarded; the work done is the point.
public enum FuzzHarness {
    public enum Target: String, CaseIterable, Sendable {
        /// The GET query: parameter split, percent- and base64-decoding of `message` (RFC 8894 §4.1).
        case query
        /// A pkiMessage: CMS SignedData decoding, signed attributes, signature verification (§3.2).
        case pkimessage
        /// A pkcsPKIEnvelope opened with a real CA key (§3.2.2).
        case envelope
        /// A PKCS#10 request: parse, signature, challengePassword, every subjectAltName.
        case csr
        /// The configuration file parser.
        case config
    }

    /// The repository this file is in (Sources/SCEPFuzzHarness/..): the test CA and seeds live there.
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The smallstep test CA (its key decrypts that project's vectors), for the envelope target.
    static let recipient: (Certificate, PrivateKey)? = {
        try? OpenSSL.bootstrap()
        let directory = Self.repository.appendingPathComponent("Tests/SCEPTests/Vectors/smallstep-scep/testca")
        guard let pem = FileManager.default.contents(atPath: directory.appendingPathComponent("ca.crt").path),
            let keyPEM = FileManager.default.contents(atPath: directory.appendingPathComponent("ca.key").path),
            let certificate = try? Certificate.certificates(pemEncoded: Array(pem)).first,
            let key = try? PrivateKey(pemEncoded: Array(keyPEM), passphrase: [])  // DES-EDE3 under an empty passphrase
        else { return nil }
        return (certificate, key)
    }()

    /// One-time set-up (OpenSSL's lazily made tables, the test CA key) done before fuzzing, so
    /// the leak check does not count it against the first input.
    public static func warmUp(_ target: Target, seed: [UInt8]) {
        _ = Self.recipient
        Self.run(target, [])
        Self.run(target, seed)
    }

    /// Whether the envelope target's key is loaded and opens the committed seed (else that
    /// target would fuzz nothing but an early return).
    public static func opensEnvelopeSeed() -> Bool {
        guard let (certificate, key) = Self.recipient else { return false }
        let seed = Self.repository.appendingPathComponent("Tests/FuzzRegressionTests/corpus/envelope/smallstep-pkcsreq-envelope.der")
        guard let bytes = FileManager.default.contents(atPath: seed.path) else { return false }
        return (try? CMSEnvelope.open(Array(bytes), certificate: certificate, key: key)) != nil
    }

    public static func run(_ target: Target, _ bytes: [UInt8]) {
        OpenSSL.clearErrors()
        switch target {
        case .query:
            let query = SCEPQuery(rawQuery: String(decoding: bytes, as: UTF8.self))
            _ = query.operation.map { Operation(lenient: $0) }
            if let raw = query.rawMessage, let message = try? SCEPQuery.decodeMessage(raw) { _ = try? PKIMessage.decode(message) }
        case .pkimessage:
            guard let message = try? PKIMessage.decode(bytes) else { return }
            _ = message.messageType
            _ = try? message.signingTime()
            _ = try? message.verify()
        case .envelope:
            guard let (certificate, key) = Self.recipient else { return }
            if let opened = try? CMSEnvelope.open(bytes, certificate: certificate, key: key) { _ = opened }
        case .csr:
            guard let csr = try? CertificateSigningRequest(derEncoded: bytes) else { return }
            _ = csr.subject
            _ = csr.verifySignature()
            _ = try? csr.challengePassword()
            _ = csr.requestedNames
            _ = csr.subjectAltNames
            _ = csr.subjectAltNamesDER
            _ = csr.subjectValues
            _ = csr.requestedExtensions
            _ = csr.publicKey.map { ($0.algorithm, $0.bits) }
        case .config:
            _ = Configuration.parse(ini: String(decoding: bytes, as: UTF8.self))
        }
    }
}
