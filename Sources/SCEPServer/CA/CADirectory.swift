import FoundationEssentials
import Glibc
import SCEPCrypto
import DurableFiles

/// The on-disk layout of `ca.dir` (see docs/ca-layout.md):
///
/// ```
/// ca.pem, ca.key           current CA certificate and key (mode 0600, optionally encrypted)
/// chain.pem                optional: certificates above the CA
/// ra.pem, ra.key           optional RA: signs CertReps (and decrypts, unless ra-encrypt exists)
/// ra-encrypt.pem/.key      optional separate encryption RA (NDES style)
/// next/ca.pem, ca.key      the next CA during a rollover (GetNextCACert)
/// previous/ca.pem, ca.key  the CA before the last rollover: decrypts, verifies renewals, GetCert/GetCRL
/// crl/ca.crl, ca.crl.pem   the current CA's CRL (crl/previous.crl for the previous CA)
/// ```
///
/// The file store (`FileStore`, the default) keeps its records here too: `issued/`, `index.txt`,
/// `transactions/`, `pending/`, `unaudited/`.
public struct CADirectory: Sendable {
    public let path: String
    /// How to reach a CA key kept on a PKCS#11 token (`KEY.uri` beside where `KEY` would be).
    public let token: TokenAccess

    public init(_ path: String, token: TokenAccess = TokenAccess()) {
        self.path = path
        self.token = token
    }

    /// The directory of `config`: `ca.dir`, with `ca.key_pin_file` and `ca.pkcs11_module`.
    public init(_ ca: Configuration.CA) {
        self.init(ca.dir, token: TokenAccess(pinFile: ca.keyPINFile, module: ca.pkcs11Module))
    }

    /// The file recording that a key lives on a token: its RFC 7512 `pkcs11:` URI, no PIN.
    public static func uriPath(ofKey keyPath: String) -> String { keyPath + ".uri" }

    public var certificatePath: String { self.path + "/ca.pem" }
    public var keyPath: String { self.path + "/ca.key" }
    public var chainPath: String { self.path + "/chain.pem" }
    public var raCertificatePath: String { self.path + "/ra.pem" }
    public var raKeyPath: String { self.path + "/ra.key" }
    public var raEncryptionCertificatePath: String { self.path + "/ra-encrypt.pem" }
    public var raEncryptionKeyPath: String { self.path + "/ra-encrypt.key" }
    /// The delegated OCSP responder (`scep-fcgi ca ocsp-signer`).
    public var ocspCertificatePath: String { self.path + "/ocsp.pem" }
    public var ocspKeyPath: String { self.path + "/ocsp.key" }
    public var nextPath: String { self.path + "/next" }
    public var previousPath: String { self.path + "/previous" }
    public var crlPath: String { self.path + "/crl" }

    /// Creates a new RSA CA (see ``initialize(subject:key:days:passphrase:)``).
    public func initialize(subject: String, keyBits: Int, days: Int, passphrase: [UInt8]?) throws -> Certificate {
        try self.initialize(subject: subject, key: .rsa(bits: keyBits), days: days, passphrase: passphrase)
    }

    /// Creates a new CA: key and self-signed certificate (the store is the caller's to create).
    /// Refuses to overwrite.
    public func initialize(subject: String, key keySpec: CAKeySpec, days: Int, passphrase: [UInt8]?) throws -> Certificate {
        let fm = FileManager.default
        for existing in [self.certificatePath, self.keyPath, Self.uriPath(ofKey: self.keyPath)] where fm.fileExists(atPath: existing) {
            throw ServerError(.caMaterial, "\(existing) already exists; refusing to overwrite a CA")
        }
        // Everything that can fail on the input (the subject, the key size) happens before the
        // first file is written; a later failure removes what this call created.
        let (certificate, key) = try Self.makeCA(subject: subject, key: keySpec, days: days, token: self.token)
        let createdRoot = !fm.fileExists(atPath: self.path)
        var created: [String] = []
        do {
            return try self.write(certificate, key, keySpec, passphrase: passphrase, created: &created)
        } catch {
            for path in created.reversed() { try? fm.removeItem(atPath: path) }
            if createdRoot { try? fm.removeItem(atPath: self.path) }
            throw error
        }
    }

    private func write(
        _ certificate: Certificate, _ key: PrivateKey, _ keySpec: CAKeySpec, passphrase: [UInt8]?, created: inout [String]
    ) throws -> Certificate {
        let fm = FileManager.default
        // Modes (docs/ca-layout.md): others may traverse the CA directory to reach crl/ and ca.pem
        // (the web server publishes them) but neither list it nor read the key, the issued
        // certificates or the index (device names).
        if !fm.fileExists(atPath: self.path) {
            try fm.createDirectory(atPath: self.path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o751])
        }
        if case .token(let uri) = keySpec {
            // The key stays on the token: only where to find it is written (no PIN).
            try AtomicFile.create(Self.uriPath(ofKey: self.keyPath), contents: Array((uri + "\n").utf8), mode: 0o644)
            created.append(Self.uriPath(ofKey: self.keyPath))
        } else {
            try AtomicFile.create(self.keyPath, contents: try key.pemEncoded(passphrase: passphrase), mode: 0o600)
            created.append(self.keyPath)
        }
        try AtomicFile.create(self.certificatePath, contents: Array(certificate.pemEncoded.utf8), mode: 0o644)
        created.append(self.certificatePath)
        return certificate
    }

    static func makeCA(subject: String, key keySpec: CAKeySpec, days: Int, token: TokenAccess = TokenAccess()) throws -> (Certificate, PrivateKey) {
        let key = try keySpec.generate(token: token)
        let now = Date()
        let certificate = try CertificateBuilder.selfSigned(
            subject: subject, key: key, serial: try SerialNumber.random(), notBefore: now.addingTimeInterval(-300),
            notAfter: now.addingTimeInterval(Double(days) * 86400), isCA: true)
        return (certificate, key)
    }

    /// What identifies the key material on disk: reloading is needed when this changes.
    public func fingerprint() -> [String] {
        [self.certificatePath, self.keyPath, self.raCertificatePath, self.raEncryptionCertificatePath, self.chainPath,
            self.nextPath + "/ca.pem", self.previousPath + "/ca.pem", self.ocspCertificatePath].map { path in
            var info = stat()
            guard stat(path, &info) == 0 else { return "-" }
            return "\(info.st_ino):\(info.st_size):\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
        }
    }

    /// Loads with the passphrase read from `passphraseFile` (wiped after use).
    public func loadMaterial(passphraseFile: String?, servable: Bool = true) -> Result<CAMaterial, CAProblems> {
        var passphrase: [UInt8]? = nil
        if let passphraseFile {
            do { passphrase = try SecretFile.read(passphraseFile, key: "ca.key_passphrase_file", allowEmpty: true) } catch {
                return .failure(CAProblems(lines: ["\(error)"]))
            }
        }
        defer { if passphrase != nil { OpenSSL.cleanse(&passphrase!) } }
        return self.load(passphrase: passphrase, servable: servable)
    }

    /// Loads and checks the CA material. Every problem is collected, one line each.
    ///
    /// - Parameter servable: the material must be able to receive requests (an EC CA has its RSA
    ///   RA); false for `ca ra`, which creates that RA.
    public func load(passphrase: [UInt8]?, servable: Bool = true) -> Result<CAMaterial, CAProblems> {
        var problems: [String] = []
        let current = self.loadPair(self.certificatePath, self.keyPath, passphrase, &problems, required: true, authority: true)
        var chain: [Certificate] = []
        if FileManager.default.fileExists(atPath: self.chainPath) {
            if let pem = FileManager.default.contents(atPath: self.chainPath), let parsed = try? Certificate.certificates(pemEncoded: Array(pem)) {
                chain = parsed
            } else {
                problems.append("\(self.chainPath): not a PEM certificate bundle")
            }
        }
        if let current, current.certificate.notAfter < Date() {
            problems.append("\(self.certificatePath): CA certificate expired on \(current.certificate.notAfter)")
        }
        let ra = self.loadPair(self.raCertificatePath, self.raKeyPath, passphrase, &problems, required: false)
        let raEncryption = self.loadPair(self.raEncryptionCertificatePath, self.raEncryptionKeyPath, passphrase, &problems, required: false)
        let previous = self.loadPair(self.previousPath + "/ca.pem", self.previousPath + "/ca.key", passphrase, &problems, required: false, authority: true)
        let next = self.loadPair(self.nextPath + "/ca.pem", self.nextPath + "/ca.key", passphrase, &problems, required: false, authority: true)
        let ocspSigner = self.loadPair(self.ocspCertificatePath, self.ocspKeyPath, passphrase, &problems, required: false, authority: true)
        if let current {
            if let ra { problems += Self.raProblems(ra, self.raCertificatePath, ca: current, chain: chain, usage: raEncryption == nil ? [.sign, .encrypt] : [.sign]) }
            if raEncryption != nil && ra == nil { problems.append("\(self.raEncryptionCertificatePath) needs \(self.raCertificatePath) (the signing RA)") }
            if let raEncryption { problems += Self.raProblems(raEncryption, self.raEncryptionCertificatePath, ca: current, chain: chain, usage: [.encrypt]) }
            // RFC 8894 §3.1: requests are enveloped with RSA key transport. An EC CA signs
            // certificates and CRLs; an RSA RA receives the requests and signs the replies.
            if let ocspSigner {
                if case .failure(let failure) = CertificateVerifier(anchors: [current.certificate]).verify(ocspSigner.certificate, at: Date()) {
                    problems.append("\(self.ocspCertificatePath): does not chain to ca.pem (\(failure)); renew it: scep-fcgi ca ocsp-signer")
                }
                if !ocspSigner.certificate.allowsOCSPSigning {
                    problems.append("\(self.ocspCertificatePath): extendedKeyUsage lacks id-kp-OCSPSigning (RFC 6960 §4.2.2.2)")
                }
            }
            if servable && current.key.algorithm != .rsa && ra == nil {
                problems.append(
                    "\(self.keyPath): an \(current.key.algorithm.rawValue) CA needs an RSA RA to receive SCEP requests: "
                        + "scep-fcgi ca ra --dir \(self.path) --subject \"CN=… SCEP RA\"")
            }
        }
        guard problems.isEmpty, let current else { return .failure(CAProblems(lines: problems)) }
        return .success(
            CAMaterial(current: current, chain: chain, ra: ra, raEncryption: raEncryption, previous: previous, next: next, ocspSigner: ocspSigner))
    }

    enum KeyUse { case sign, encrypt }

    /// RFC 8894 §2.1.2 / §3.5.2: an RA certificate is issued by the CA, matches its key, and has
    /// digitalSignature to sign CertReps and keyEncipherment to receive requests.
    static func raProblems(_ pair: KeyPair, _ path: String, ca: KeyPair, chain: [Certificate], usage: [KeyUse]) -> [String] {
        var out: [String] = []
        if case .failure(let failure) = CertificateVerifier(anchors: [ca.certificate]).verify(pair.certificate, at: Date()) {
            out.append("\(path): does not chain to ca.pem (\(failure))")
        }
        if usage.contains(.sign), !pair.certificate.permits(.digitalSignature) {
            out.append("\(path): keyUsage lacks digitalSignature (needed to sign CertReps)")
        }
        if usage.contains(.encrypt), !pair.certificate.permits(.keyEncipherment) {
            out.append("\(path): keyUsage lacks keyEncipherment (needed to receive requests)")
        }
        if pair.key.algorithm != .rsa { out.append("\(path): key is \(pair.key.algorithm.rawValue), SCEP needs RSA") }
        return out
    }

    /// One certificate + key; problems are appended. Absent optional pairs are nil without a problem.
    /// `authority`: a CA's key, which may be EC (P-256, P-384); an RA's must be RSA.
    private func loadPair(
        _ certificatePath: String, _ keyPath: String, _ passphrase: [UInt8]?, _ problems: inout [String], required: Bool, authority: Bool = false
    ) -> KeyPair? {
        let fm = FileManager.default
        if !required && !fm.fileExists(atPath: certificatePath) && !fm.fileExists(atPath: keyPath) { return nil }
        var certificate: Certificate? = nil
        var key: PrivateKey? = nil
        if let pem = fm.contents(atPath: certificatePath) {
            do { certificate = try Certificate.certificates(pemEncoded: Array(pem)).first } catch {
                problems.append("\(certificatePath): not a PEM certificate")
            }
        } else {
            problems.append("\(certificatePath): missing or unreadable")
        }
        var info = stat()
        let uriPath = Self.uriPath(ofKey: keyPath)
        if stat(keyPath, &info) != 0, fm.fileExists(atPath: uriPath) {
            key = self.token.load(uriFile: uriPath, problems: &problems)
        } else if stat(keyPath, &info) != 0 {
            problems.append("\(keyPath): missing")
        } else {
            if info.st_mode & 0o077 != 0 {
                problems.append("\(keyPath): readable by group or others (mode \(String(info.st_mode & 0o777, radix: 8))); chmod 600")
            }
            if let pem = fm.contents(atPath: keyPath) {
                do { key = try PrivateKey(pemEncoded: Array(pem), passphrase: passphrase) } catch {
                    problems.append(
                        "\(keyPath): cannot be read as a PEM private key"
                            + (passphrase == nil ? " (encrypted? set ca.key_passphrase_file)" : " (wrong passphrase?)"))
                }
            } else {
                problems.append("\(keyPath): not readable by this user")
            }
        }
        if let key {
            // RFC 8894 §3.1: envelopes use RSA key transport, so decrypting keys must be RSA; a CA
            // that only signs may be EC on a named curve of at least 256 bits.
            if key.algorithm != .rsa && !(authority && key.algorithm == .ec && key.bits >= 256) {
                problems.append("\(keyPath): key is \(key.algorithm.rawValue)-\(key.bits), \(authority ? "a CA needs RSA or EC P-256/P-384" : "SCEP needs RSA")")
            }
            if let certificate, !key.matches(certificate) {
                problems.append("\(keyPath) does not match the certificate in \(certificatePath)")
            }
        }
        guard let certificate, let key else { return nil }
        return KeyPair(certificate: certificate, key: key)
    }
}

/// A CA key on a PKCS#11 token: the PIN comes from `ca.key_pin_file` (never the configuration, a
/// log or the CA directory), the module from `ca.pkcs11_module`. The RA keys stay files: RSA
/// decryption with OAEP varies across tokens and FIPS tokens refuse PKCS#1 v1.5 decryption, which
/// SCEP clients send.
public struct TokenAccess: Sendable, Equatable {
    public var pinFile: String?
    public var module: String?

    public init(pinFile: String? = nil, module: String? = nil) {
        self.pinFile = pinFile
        self.module = module
    }

    /// The key named by the URI in `uriFile`, or nil with the problem appended.
    func load(uriFile: String, problems: inout [String]) -> PrivateKey? {
        guard let data = FileManager.default.contents(atPath: uriFile) else {
            problems.append("\(uriFile): not readable by this user")
            return nil
        }
        let uri = String(decoding: data, as: UTF8.self).trimmedWhitespace
        guard let pinFile = self.pinFile else {
            problems.append("\(uriFile): the key is on a PKCS#11 token (\(uri)): set ca.key_pin_file")
            return nil
        }
        do { return try self.loadKey(uri: uri, pinFile: pinFile) } catch {
            problems.append("\(uriFile): \(error)")
            return nil
        }
    }

    /// The key at `uri`, logging in with the PIN of `pinFile` (wiped after use).
    public func loadKey(uri: String, pinFile: String? = nil) throws -> PrivateKey {
        guard let file = pinFile ?? self.pinFile else { throw ServerError(.caMaterial, "a key on a PKCS#11 token needs its PIN file (ca.key_pin_file, --pin-file)") }
        var pin = try SecretFile.read(file, key: "ca.key_pin_file")
        defer { OpenSSL.cleanse(&pin) }
        return try PKCS11Token.loadPrivateKey(uri: uri, pin: pin, module: self.module)
    }
}

/// The key of a new CA: RSA (the default) or EC on a named curve (RFC 5480).
public enum CAKeySpec: Sendable, Equatable {
    case rsa(bits: Int)
    case ec(ECCurve)
    /// A key already on a PKCS#11 token (RSA or EC), named by its RFC 7512 URI.
    case token(uri: String)

    /// A new key, or for `token` the one on the token (logged in with `token`'s PIN).
    func generate(token access: TokenAccess) throws -> PrivateKey {
        switch self {
        case .rsa(let bits): return try PrivateKey.generateRSA(bits: bits)
        case .ec(let curve): return try PrivateKey.generateEC(curve: curve)
        case .token(let uri): return try access.loadKey(uri: uri)
        }
    }

    /// Whether the CA can receive requests itself (an RSA file key; a token key is treated as
    /// signing-only until it is loaded and found to be RSA).
    public var isRSA: Bool { if case .rsa = self { return true } else { return false } }
}

/// Everything wrong with a CA directory, one line each.
public struct CAProblems: Error, Sendable {
    public let lines: [String]
}

/// Certificate serial numbers (RFC 5280 §4.1.2.2).
public enum SerialNumber {
    /// 16 random octets, positive, top octet non-zero so every serial prints as 32 hex digits:
    /// 126 bits of entropy, so no shared counter is needed and any number of processes can issue.
    public static func random() throws -> [UInt8] {
        var bytes = try SecureRandom.bytes(16)
        bytes[0] = (bytes[0] & 0x3F) | 0x40
        return bytes
    }
}
