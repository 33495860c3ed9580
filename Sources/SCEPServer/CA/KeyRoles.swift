import FoundationEssentials
import Glibc
import SCEP
import SCEPCrypto
import SCEPLocking

/// A certificate and its private key, parsed once per process and shared by every worker
/// (OpenSSL 3 keys are safe for concurrent signing and decryption, see ``PrivateKey``).
public struct KeyPair: Sendable {
    public let certificate: Certificate
    public let key: PrivateKey

    public init(certificate: Certificate, key: PrivateKey) {
        self.certificate = certificate
        self.key = key
    }

    /// Signs a CertRep with this pair (RFC 8894 §3.3.2), as an HTTP response.
    func sign(
        _ certRep: CertRep, digest: DigestAlgorithm, recipient: Certificate?, cipher: ContentCipher, keyTransport: KeyTransport
    ) throws -> SCEPHTTPResponse {
        let body = try certRep.encode(
            signer: self.certificate, key: self.key, digest: digest, recipient: recipient, cipher: cipher, keyTransport: keyTransport)
        return SCEPHTTPResponse(status: 200, contentType: SCEPContentType.pkiMessage, body: body)
    }
}

/// Everything a CA directory holds, split into the roles SCEP gives keys:
///
/// - **issuer**: the current CA signs certificates and CRLs;
/// - **signer**: the RA if there is one, else the CA, signs CertReps (RFC 8894 §3.3.2) and the
///   GetNextCACert reply (§4.7.1);
/// - **decrypters**: every key a client may have encrypted to: the encryption RA, the RA, the
///   current CA, the previous CA during a rollover and the next CA; the RecipientInfo picks one;
/// - **authorities**: the current and previous CA, whose certificates renewal, GetCert and
///   GetCRL answer for.
///
/// GetCACert and GetCACaps are derived from what exists, never from a fixed list.
public struct CAMaterial: Sendable {
    public let current: KeyPair
    /// Certificates above the CA (`chain.pem`).
    public let chain: [Certificate]
    public let ra: KeyPair?
    /// A separate encryption RA (NDES style), when `ra-encrypt.pem` exists.
    public let raEncryption: KeyPair?
    public let previous: KeyPair?
    public let next: KeyPair?
    /// A delegated OCSP responder of the current CA (`ocsp.pem`, RFC 6960 §4.2.2.2); without one
    /// each CA signs its own OCSP answers.
    public let ocspSigner: KeyPair?

    public init(
        current: KeyPair, chain: [Certificate] = [], ra: KeyPair? = nil, raEncryption: KeyPair? = nil, previous: KeyPair? = nil,
        next: KeyPair? = nil, ocspSigner: KeyPair? = nil
    ) {
        self.ocspSigner = ocspSigner
        self.current = current
        self.chain = chain
        self.ra = ra
        self.raEncryption = raEncryption
        self.previous = previous
        self.next = next
    }

    public var signer: KeyPair { self.ra ?? self.current }

    /// The keys a request may be enveloped to: RSA only (RFC 8894 §3.1 key transport), so an EC
    /// CA is never among them.
    public var decrypters: [KeyPair] {
        [self.raEncryption, self.ra, self.current, self.previous, self.next].compactMap { $0 }.filter { $0.key.algorithm == .rsa }
    }

    public var authorities: [KeyPair] { [self.current, self.previous].compactMap { $0 } }

    /// The authority whose subject is `issuerNameDER`, current first.
    public func authority(named issuerNameDER: [UInt8]) -> KeyPair? {
        self.authorities.first { $0.certificate.subjectEquals(nameDER: issuerNameDER) }
    }

    /// The authority that signed `certificate` (by name and signature, so a rollover that keeps
    /// the CA's name still tells the two apart).
    public func authority(of certificate: Certificate) -> KeyPair? {
        self.authorities.first { authority in
            certificate.isIssued(byNameOf: authority.certificate) && authority.certificate.publicKey.map(certificate.isSigned(by:)) == true
        }
    }

    /// GetCACert (RFC 8894 §4.2): the CA alone as DER `application/x-x509-ca-cert`; with an RA or
    /// a chain, a degenerate certs-only SignedData `application/x-x509-ca-ra-cert` holding the RA
    /// certificate(s), the CA and the chain (a DER SET OF, so in encoding order: clients tell the
    /// RA from the CA by basicConstraints and key usage, RFC 8894 §3.5.2).
    public func caCertificateReply() throws -> (contentType: String, body: [UInt8]) {
        let ras = [self.ra, self.raEncryption].compactMap { $0?.certificate }
        if ras.isEmpty && self.chain.isEmpty { return (SCEPContentType.caCert, self.current.certificate.derEncoded) }
        return (SCEPContentType.caRACert, try CMSSigner.certificatesOnly(ras + [self.current.certificate] + self.chain))
    }

    /// GetNextCACert (RFC 8894 §4.7.1): a SignedData signed by the current signer whose content is a
    /// degenerate certs-only SignedData of the next CA; the next CA certificate is in the outer
    /// `certificates` too, where jscep- and EJBCA-style parsers look for it.
    public func nextCACertificateReply() throws -> [UInt8]? {
        guard let next = self.next else { return nil }
        let inner = try CMSSigner.certificatesOnly([next.certificate])
        return try CMSSigner.sign(
            content: inner, certificate: self.signer.certificate, key: self.signer.key, digest: .sha256, attributes: [],
            extraCertificates: [next.certificate])
    }

    /// The certificates of every key, for `check` and the lists: name → certificate.
    public var named: [(String, Certificate)] {
        var out: [(String, Certificate)] = [("ca", self.current.certificate)]
        if let ra = self.ra { out.append(("ra", ra.certificate)) }
        if let enc = self.raEncryption { out.append(("ra-encrypt", enc.certificate)) }
        if let previous = self.previous { out.append(("previous", previous.certificate)) }
        if let next = self.next { out.append(("next", next.certificate)) }
        if let ocsp = self.ocspSigner { out.append(("ocsp", ocsp.certificate)) }
        return out
    }
}

/// Gives the responder the CA material in force, reloading it when the directory changes
/// (`ca rollover --activate`, `ca ra` while servers run). Checks at most once a second with a
/// few `stat(2)` calls; a directory caught half-changed (a key not matching its certificate)
/// keeps the old material until the next check.
public final class CAMaterialSource: Sendable {
    private struct State {
        var material: CAMaterial
        var fingerprint: [String]
        var checked: ContinuousClock.Instant
        var reported = false
    }

    public let directory: CADirectory?
    /// Read by `ca.key_passphrase_file`'s users here and by the OCSP signer's renewal.
    let passphraseFile: String?
    private let diagnostics: Diagnostics
    private let state: Locked<State>

    /// Fixed material (tests, one-shot commands).
    public init(_ material: CAMaterial) {
        self.directory = nil
        self.passphraseFile = nil
        self.diagnostics = Diagnostics()
        self.state = Locked(State(material: material, fingerprint: [], checked: .now))
    }

    /// Material loaded from `directory`, reloaded when it changes.
    public init(directory: CADirectory, passphraseFile: String?, diagnostics: Diagnostics) throws(CAProblems) {
        self.directory = directory
        self.passphraseFile = passphraseFile
        self.diagnostics = diagnostics
        let fingerprint = directory.fingerprint()
        let material = try directory.loadMaterial(passphraseFile: passphraseFile).get()
        self.state = Locked(State(material: material, fingerprint: fingerprint, checked: .now))
    }

    public func current() -> CAMaterial {
        guard let directory = self.directory else { return self.state.withLock { $0.material } }
        let (due, material, known) = self.state.withLock { state -> (Bool, CAMaterial, [String]) in
            let due = ContinuousClock.now - state.checked >= .seconds(1)
            if due { state.checked = .now }
            return (due, state.material, state.fingerprint)
        }
        guard due else { return material }
        let fingerprint = directory.fingerprint()
        guard fingerprint != known else { return material }
        switch directory.loadMaterial(passphraseFile: self.passphraseFile) {
        case .success(let loaded):
            self.state.withLock {
                $0.material = loaded
                $0.fingerprint = fingerprint
                $0.reported = false
            }
            self.diagnostics.log(.notice, "CA material in \(directory.path) reloaded (CA \(loaded.current.certificate.subject))")
            return loaded
        case .failure(let problems):
            let report = self.state.withLock { state -> Bool in
                defer { state.reported = true }
                return !state.reported
            }
            if report {
                self.diagnostics.log(.warning, "CA material in \(directory.path) changed but cannot be loaded yet: \(problems.lines.joined(separator: "; "))")
            }
            return material
        }
    }
}
