import FoundationEssentials
import Glibc
import SCEP
import SCEPCrypto

/// Opens pkcsPKIEnvelopes addressed to the server (RFC 8894 §3.2.2). Today the CA key does it;
/// a separate RA key, or a key in an HSM through an OpenSSL provider, is another conformer.
public protocol MessageDecrypter: Sendable {
    /// The certificate clients encrypt to (the first GetCACert certificate).
    var recipientCertificate: Certificate { get }
    func open(_ envelope: [UInt8]) throws -> OpenedEnvelope
}

/// Signs CertReps (RFC 8894 §3.3.2).
public protocol MessageSigner: Sendable {
    var signerCertificate: Certificate { get }
    func sign(
        _ certRep: CertRep, digest: DigestAlgorithm, recipient: Certificate?, cipher: ContentCipher, keyTransport: KeyTransport
    ) throws -> [UInt8]
}

/// Signs end-entity certificates.
public protocol CertificateIssuer: Sendable {
    var caCertificate: Certificate { get }
    func issue(
        csr: CertificateSigningRequest, serial: [UInt8], notBefore: Date, notAfter: Date, profile: IssuanceProfile
    ) throws -> Certificate
}

/// The CA certificate and key loaded from `ca.dir`, doing all three jobs (no RA yet).
///
/// Parsed once per process and shared by every worker thread (see ``PrivateKey``).
public struct LocalCA: MessageDecrypter, MessageSigner, CertificateIssuer {
    public let caCertificate: Certificate
    /// Certificates above the CA (`chain.pem`), served by GetCACert after the CA.
    public let chain: [Certificate]
    let key: PrivateKey

    public var recipientCertificate: Certificate { self.caCertificate }
    public var signerCertificate: Certificate { self.caCertificate }

    public init(certificate: Certificate, key: PrivateKey, chain: [Certificate] = []) {
        self.caCertificate = certificate
        self.key = key
        self.chain = chain
    }

    public func open(_ envelope: [UInt8]) throws -> OpenedEnvelope {
        try CMSEnvelope.open(envelope, certificate: self.caCertificate, key: self.key)
    }

    public func sign(
        _ certRep: CertRep, digest: DigestAlgorithm, recipient: Certificate?, cipher: ContentCipher, keyTransport: KeyTransport
    ) throws -> [UInt8] {
        try certRep.encode(
            signer: self.caCertificate, key: self.key, digest: digest, recipient: recipient, cipher: cipher,
            keyTransport: keyTransport)
    }

    public func issue(
        csr: CertificateSigningRequest, serial: [UInt8], notBefore: Date, notAfter: Date, profile: IssuanceProfile
    ) throws -> Certificate {
        try CertificateBuilder.issue(
            csr: csr, issuer: self.caCertificate, issuerKey: self.key, serial: serial, notBefore: notBefore,
            notAfter: notAfter, profile: profile)
    }
}
