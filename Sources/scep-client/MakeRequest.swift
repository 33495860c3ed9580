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
    @Option(help: "Key transport: pkcs1, oaep-sha1, oaep-sha256.") var keyTransport: String = "pkcs1"
    @Option(help: "RSA bits of the CSR key.") var keyBits: Int = 2048
    @Option(help: "A subjectAltName entry TYPE:value (DNS, email, IP, URI, RID, otherName); repeatable.")
    var san: [String] = []
    @Option(help: "messageType value.") var messageType: Int = 19
    @Option(help: "transactionID (default: random hex).") var transactionID: String?
    @Option(help: "senderNonce length in bytes.") var nonceLength: Int = 16
    @Option(help: "Output directory.") var outDir: String

    func run() throws {
        try OpenSSL.bootstrap()
        let caPEM = try Data(contentsOf: URL(fileURLWithPath: self.ca))
        guard let caCertificate = try Certificate.certificates(pemEncoded: Array(caPEM)).first else {
            throw ValidationError("no certificate in \(self.ca)")
        }
        let ciphers: [String: ContentCipher] = [
            "des": .des, "3des": .tripleDES, "aes128": .aes128, "aes192": .aes192, "aes256": .aes256,
        ]
        let digests: [String: DigestAlgorithm] = ["md5": .md5, "sha1": .sha1, "sha256": .sha256, "sha512": .sha512]
        let transports: [String: KeyTransport] = [
            "pkcs1": .rsaPKCS1v15, "oaep-sha1": .rsaOAEP(.sha1), "oaep-sha256": .rsaOAEP(.sha256),
        ]
        guard let cipher = ciphers[self.cipher], let digest = digests[self.digest],
            let transport = transports[self.keyTransport], let type = MessageType(rawValue: self.messageType)
        else { throw ValidationError("unknown cipher, digest, key transport or message type") }
        let challenge = try self.challengeFile.map {
            String(decoding: try Data(contentsOf: URL(fileURLWithPath: $0)), as: UTF8.self)
                .trimmingCharacters(in: .newlines)
        }

        let key = try PrivateKey.generateRSA(bits: self.keyBits)
        let signerKey = try PrivateKey.generateRSA(bits: 2048)
        // MD5 is refused by OpenSSL 3 for signatures; the CSR is signed with SHA-256 in that case
        // and only the pkiMessage carries the refused digest.
        let csrDigest: DigestAlgorithm = digest == .md5 ? .sha256 : digest
        let csr = try CertificateSigningRequest.make(
            subject: self.subject, key: key, challengePassword: challenge, subjectAltNames: self.san, digest: csrDigest)
        let now = Date()
        // RFC 8894 §2.3: a self-signed signer certificate with the same subject and key usage.
        let signer = try CertificateBuilder.selfSigned(
            subject: self.subject, key: signerKey, serial: [0x01] + (try SecureRandom.bytes(8)),
            notBefore: now.addingTimeInterval(-3600), notAfter: now.addingTimeInterval(86400), isCA: false)
        let randomID = try SecureRandom.bytes(20).map { String(format: "%02x", $0) }.joined()
        let transactionID = self.transactionID ?? randomID
        let request = try PKCSReqBuilder.build(
            csr: csr, signerCertificate: signer, signerKey: signerKey, recipient: caCertificate, cipher: cipher,
            digest: digest, keyTransport: transport, transactionID: transactionID,
            senderNonce: try SecureRandom.bytes(self.nonceLength), messageType: type)
        try FileManager.default.createDirectory(atPath: self.outDir, withIntermediateDirectories: true)
        let dir = URL(fileURLWithPath: self.outDir)
        try Data(request).write(to: dir.appendingPathComponent("request.der"))
        try Data(try key.pemEncoded(passphrase: nil)).write(to: dir.appendingPathComponent("key.pem"))
        try Data(signer.pemEncoded.utf8).write(to: dir.appendingPathComponent("signer.pem"))
        try Data(try signerKey.pemEncoded(passphrase: nil)).write(to: dir.appendingPathComponent("signer-key.pem"))
        print(transactionID)
    }
}

