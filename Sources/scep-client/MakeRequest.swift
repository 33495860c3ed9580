import ArgumentParser
import Foundation
import SCEP
import SCEPCrypto

struct MakeRequest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pkcsreq",
        abstract: "Write DIR/request.der, DIR/key.pem (CSR key), DIR/signer.pem and DIR/signer-key.pem.")

    @Option(help: "CA certificate (PEM) to encrypt to.") var ca: String
    @Option(help: "Subject, RFC 4514, e.g. \"CN=device-1,O=Example\".") var subject: String
    @Option(help: "File holding the challenge password (omit for none).") var challengeFile: String?
    @Option(help: "des, 3des, aes128, aes192, aes256.") var cipher: String = "aes256"
    @Option(help: "md5, sha1, sha256, sha512.") var digest: String = "sha256"
    @Option(help: "Digest of the CSR's own signature (default: --digest, SHA-256 for md5).") var csrDigest: String?
    @Option(help: "Key transport: pkcs1, oaep-sha1, oaep-sha256.") var keyTransport: String = "pkcs1"
    @Option(help: "RSA bits of the CSR key.") var keyBits: Int = 2048
    @Option(help: "Reuse this CSR key (PEM) instead of generating one (retransmission with the same key).") var key: String?
    @Option(help: "Sign the pkiMessage with this certificate (renewal: the certificate being renewed).") var signerCert: String?
    @Option(help: "Private key of --signer-cert.") var signerKey: String?
    @Option(help: "A subjectAltName entry TYPE:value (DNS, email, IP, URI, RID, otherName); repeatable.")
    var san: [String] = []
    @Option(help: "An enrollment name/value pair NAME=VALUE (e.g. ValidityPeriod=Days); repeatable, kept in order.")
    var nameValue: [String] = []
    @Option(help: "Ask for the SID security extension (1.3.6.1.4.1.311.25.2) with this SID.") var sidExtension: String?
    @Option(help: "messageType value.") var messageType: Int = 19
    @Option(help: "transactionID (default: random hex).") var transactionID: String?
    @Option(help: "senderNonce length in bytes.") var nonceLength: Int = 16
    @Option(help: "Output directory.") var outDir: String

    func run() throws {
        try OpenSSL.bootstrap()
        let caCertificate = try ClientFiles.certificate(self.ca)
        guard let cipher = ClientFiles.ciphers[self.cipher], let digest = ClientFiles.digests[self.digest],
            let transport = ClientFiles.transports[self.keyTransport], let type = MessageType(rawValue: self.messageType)
        else { throw ValidationError("unknown cipher, digest, key transport or message type") }
        let challenge = try self.challengeFile.map {
            String(decoding: try Data(contentsOf: URL(fileURLWithPath: $0)), as: UTF8.self)
                .trimmingCharacters(in: .newlines)
        }
        let key = try self.key.map { try ClientFiles.privateKey($0) } ?? PrivateKey.generateRSA(bits: self.keyBits)
        // MD5 in the pkiMessage is refused by the server before the CSR is read, so the CSR
        // is signed with SHA-256 then unless --csr-digest asks otherwise.
        let csrDigest = try self.csrDigest.map { name -> DigestAlgorithm in
            guard let d = ClientFiles.digests[name] else { throw ValidationError("unknown --csr-digest") }
            return d
        } ?? (digest == .md5 ? .sha256 : digest)
        let pairs = try self.nameValue.map { text -> (String, String) in
            guard let equals = text.firstIndex(of: "=") else { throw ValidationError("--name-value takes NAME=VALUE") }
            return (String(text[..<equals]), String(text[text.index(after: equals)...]))
        }
        let csr = try CertificateSigningRequest.make(
            subject: self.subject, key: key, challengePassword: challenge, subjectAltNames: self.san, digest: csrDigest,
            nameValuePairs: pairs,
            extraExtensions: self.sidExtension.map { [(SecurityIdentifier.extensionOID, SecurityIdentifier.extensionValue($0))] } ?? [])
        let (signer, signerKey) = try ClientFiles.identity(subject: self.subject, certificate: self.signerCert, key: self.signerKey)
        let transactionID = self.transactionID ?? ClientFiles.randomTransactionID()
        let request = try PKCSReqBuilder.build(
            csr: csr, signerCertificate: signer, signerKey: signerKey, recipient: caCertificate, cipher: cipher,
            digest: digest, keyTransport: transport, transactionID: transactionID,
            senderNonce: try SecureRandom.bytes(self.nonceLength), messageType: type)
        try ClientFiles.write(self.outDir, request: request, signer: signer, signerKey: signerKey)
        try Data(try key.pemEncoded(passphrase: nil)).write(to: URL(fileURLWithPath: self.outDir).appendingPathComponent("key.pem"))
        print(transactionID)
    }
}

/// GetCert, GetCRL and CertPoll (RFC 8894 §3.3.3, §3.3.4) messages.
struct MakeQuery: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query", abstract: "Write DIR/request.der for GetCert, GetCRL or CertPoll, with DIR/signer.pem and DIR/signer-key.pem.")

    @Option(help: "getcert, getcrl or certpoll.") var kind: String
    @Option(help: "Certificate (PEM) to encrypt to.") var ca: String
    @Option(help: "Issuer certificate (PEM) whose subject is the IssuerAndSerial/IssuerAndSubject issuer (default --ca).") var issuer: String?
    @Option(help: "Serial number, hex (getcert, getcrl).") var serial: String = "01"
    @Option(help: "Subject, RFC 4514 (certpoll).") var subject: String = "CN=poll"
    @Option(help: "transactionID (certpoll: the one of the pending request).") var transactionID: String?
    @Option(help: "Sign with this certificate instead of a new self-signed one.") var signerCert: String?
    @Option(help: "Private key of --signer-cert.") var signerKey: String?
    @Option(help: "aes128, aes256, 3des.") var cipher: String = "aes256"
    @Option(help: "Output directory.") var outDir: String

    func run() throws {
        try OpenSSL.bootstrap()
        let recipient = try ClientFiles.certificate(self.ca)
        let issuer = try self.issuer.map(ClientFiles.certificate) ?? recipient
        let (type, data): (MessageType, [UInt8])
        switch self.kind {
        case "getcert": (type, data) = (.getCert, IssuerAndSerialNumber(issuer: issuer.subjectNameDER, serialHex: self.serial).derEncoded)
        case "getcrl": (type, data) = (.getCRL, IssuerAndSerialNumber(issuer: issuer.subjectNameDER, serialHex: self.serial).derEncoded)
        case "certpoll":
            let name = try CertificateSigningRequest.make(subject: self.subject, key: ClientFiles.sharedKey, challengePassword: nil).subjectNameDER
            (type, data) = (.certPoll, IssuerAndSubject(issuer: issuer.subjectNameDER, subject: name).derEncoded)
        default: throw ValidationError("--kind must be getcert, getcrl or certpoll")
        }
        guard let cipher = ClientFiles.ciphers[self.cipher] else { throw ValidationError("unknown cipher") }
        let (signer, signerKey) = try ClientFiles.identity(subject: self.subject, certificate: self.signerCert, key: self.signerKey)
        let transactionID = self.transactionID ?? ClientFiles.randomTransactionID()
        let request = try PKIMessageBuilder.build(
            messageData: data, messageType: type, signerCertificate: signer, signerKey: signerKey, recipient: recipient, cipher: cipher,
            transactionID: transactionID, senderNonce: try SecureRandom.bytes(16))
        try ClientFiles.write(self.outDir, request: request, signer: signer, signerKey: signerKey)
        print(transactionID)
    }
}

enum ClientFiles {
    static let ciphers: [String: ContentCipher] = ["des": .des, "3des": .tripleDES, "aes128": .aes128, "aes192": .aes192, "aes256": .aes256]
    static let digests: [String: DigestAlgorithm] = ["md5": .md5, "sha1": .sha1, "sha256": .sha256, "sha512": .sha512]
    static let transports: [String: KeyTransport] = ["pkcs1": .rsaPKCS1v15, "oaep-sha1": .rsaOAEP(.sha1), "oaep-sha256": .rsaOAEP(.sha256)]
    static let sharedKey = try! PrivateKey.generateRSA(bits: 2048)

    static func certificate(_ path: String) throws -> Certificate {
        guard let first = try Certificate.certificates(pemEncoded: Array(try Data(contentsOf: URL(fileURLWithPath: path)))).first else {
            throw ValidationError("no certificate in \(path)")
        }
        return first
    }

    static func privateKey(_ path: String) throws -> PrivateKey {
        try PrivateKey(pemEncoded: Array(try Data(contentsOf: URL(fileURLWithPath: path))), passphrase: nil)
    }

    static func randomTransactionID() -> String {
        ((try? SecureRandom.bytes(20)) ?? []).map { String(format: "%02x", $0) }.joined()
    }

    /// The given signer, or (RFC 8894 §2.3) a new self-signed certificate with the same subject.
    static func identity(subject: String, certificate: String?, key: String?) throws -> (Certificate, PrivateKey) {
        if let certificate, let key { return (try self.certificate(certificate), try self.privateKey(key)) }
        let signerKey = try PrivateKey.generateRSA(bits: 2048)
        let now = Date()
        let signer = try CertificateBuilder.selfSigned(
            subject: subject, key: signerKey, serial: [0x01] + (try SecureRandom.bytes(8)),
            notBefore: now.addingTimeInterval(-3600), notAfter: now.addingTimeInterval(86400), isCA: false)
        return (signer, signerKey)
    }

    static func write(_ outDir: String, request: [UInt8], signer: Certificate, signerKey: PrivateKey) throws {
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        let dir = URL(fileURLWithPath: outDir)
        try Data(request).write(to: dir.appendingPathComponent("request.der"))
        try Data(signer.pemEncoded.utf8).write(to: dir.appendingPathComponent("signer.pem"))
        try Data(try signerKey.pemEncoded(passphrase: nil)).write(to: dir.appendingPathComponent("signer-key.pem"))
    }
}
