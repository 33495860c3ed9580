import FoundationEssentials
import Glibc
import SCEPCrypto

/// The on-disk layout of `ca.dir` (see docs/ca-layout.md):
///
/// ```
/// ca.pem            CA certificate (first PEM block)
/// ca.key            CA private key, PEM, mode 0600, optionally encrypted
/// chain.pem         optional: certificates above the CA, issuing order
/// issued/SERIAL.pem one file per issued certificate
/// index.txt         OpenSSL `ca`-compatible index, one line per issued certificate
/// index.txt.attr    `unique_subject = no`, so `openssl ca` accepts re-enrolled subjects
/// ```
public struct CADirectory: Sendable {
    public let path: String

    public init(_ path: String) { self.path = path }

    public var certificatePath: String { self.path + "/ca.pem" }
    public var keyPath: String { self.path + "/ca.key" }
    public var chainPath: String { self.path + "/chain.pem" }
    public var issuedPath: String { self.path + "/issued" }
    public var indexPath: String { self.path + "/index.txt" }

    /// Creates a new CA: RSA key, self-signed certificate, empty store. Refuses to overwrite.
    public func initialize(subject: String, keyBits: Int, days: Int, passphrase: [UInt8]?) throws -> Certificate {
        let fm = FileManager.default
        for existing in [self.certificatePath, self.keyPath] where fm.fileExists(atPath: existing) {
            throw ServerError(.caMaterial, "\(existing) already exists; refusing to overwrite a CA")
        }
        try fm.createDirectory(atPath: self.issuedPath, withIntermediateDirectories: true)
        let key = try PrivateKey.generateRSA(bits: keyBits)
        let now = Date()
        let certificate = try CertificateBuilder.selfSigned(
            subject: subject, key: key, serial: try SerialNumber.random(), notBefore: now.addingTimeInterval(-300),
            notAfter: now.addingTimeInterval(Double(days) * 86400), isCA: true)
        try AtomicFile.create(self.keyPath, contents: try key.pemEncoded(passphrase: passphrase), mode: 0o600)
        try AtomicFile.create(self.certificatePath, contents: Array(certificate.pemEncoded.utf8), mode: 0o644)
        if !fm.fileExists(atPath: self.indexPath) { try AtomicFile.create(self.indexPath, contents: [], mode: 0o644) }
        if !fm.fileExists(atPath: self.indexPath + ".attr") {
            try AtomicFile.create(self.indexPath + ".attr", contents: Array("unique_subject = no\n".utf8), mode: 0o644)
        }
        return certificate
    }

    /// Loads and checks the CA material. Every problem is collected, one line each.
    public func load(passphrase: [UInt8]?) -> Result<LocalCA, CAProblems> {
        var problems: [String] = []
        var certificate: Certificate? = nil
        var key: PrivateKey? = nil
        var chain: [Certificate] = []

        if let pem = FileManager.default.contents(atPath: self.certificatePath) {
            do { certificate = try Certificate.certificates(pemEncoded: Array(pem)).first } catch {
                problems.append("\(self.certificatePath): not a PEM certificate")
            }
        } else {
            problems.append("\(self.certificatePath): missing or unreadable")
        }

        var info = stat()
        if stat(self.keyPath, &info) != 0 {
            problems.append("\(self.keyPath): missing")
        } else {
            if info.st_mode & 0o077 != 0 {
                problems.append("\(self.keyPath): readable by group or others (mode \(String(info.st_mode & 0o777, radix: 8))); chmod 600")
            }
            if let pem = FileManager.default.contents(atPath: self.keyPath) {
                do { key = try PrivateKey(pemEncoded: Array(pem), passphrase: passphrase) } catch {
                    problems.append(
                        "\(self.keyPath): cannot be read as a PEM private key"
                            + (passphrase == nil ? " (encrypted? set ca.key_passphrase_file)" : " (wrong passphrase?)"))
                }
            } else {
                problems.append("\(self.keyPath): not readable by this user")
            }
        }

        if FileManager.default.fileExists(atPath: self.chainPath) {
            if let pem = FileManager.default.contents(atPath: self.chainPath),
                let parsed = try? Certificate.certificates(pemEncoded: Array(pem))
            {
                chain = parsed
            } else {
                problems.append("\(self.chainPath): not a PEM certificate bundle")
            }
        }

        if let key {
            // RFC 8894 §3.1: envelopes use RSA key transport, so the decrypting key must be RSA.
            if key.algorithm != .rsa { problems.append("\(self.keyPath): key is \(key.algorithm.rawValue), SCEP needs RSA") }
            if let certificate, !key.matches(certificate) {
                problems.append("\(self.keyPath) does not match the certificate in \(self.certificatePath)")
            }
        }
        if let certificate, certificate.notAfter < Date() {
            problems.append("\(self.certificatePath): CA certificate expired on \(certificate.notAfter)")
        }
        if !FileManager.default.fileExists(atPath: self.issuedPath) {
            problems.append("\(self.issuedPath): missing (scep-fcgi ca init creates it)")
        } else if access(self.issuedPath, W_OK) != 0 {
            problems.append("\(self.issuedPath): not writable by this user")
        }
        if access(self.indexPath, F_OK) == 0, access(self.indexPath, W_OK) != 0 {
            problems.append("\(self.indexPath): not writable by this user")
        }

        guard problems.isEmpty, let certificate, let key else { return .failure(CAProblems(lines: problems)) }
        return .success(LocalCA(certificate: certificate, key: key, chain: chain))
    }
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
