import ArgumentParser
import Foundation
import SCEP
import SCEPCrypto

/// Builds N PKCSReq messages with distinct keys for the load generator (not timed).
struct Prebuild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prebuild",
        abstract: "Write DIR/req-NNNNN.der and DIR/req-NNNNN.pem (signer certificate and key), built on all cores.")

    @Option(help: "CA certificate (PEM) to encrypt to.") var ca: String
    @Option(help: "File holding the challenge password.") var challengeFile: String
    @Option(help: "How many requests.") var count: Int = 200
    @Option(help: "RSA bits of each request's key.") var keyBits: Int = 2048
    @Option(help: "aes128, aes256, 3des.") var cipher: String = "aes256"
    @Option(help: "sha1, sha256, sha512.") var digest: String = "sha256"
    @Option(help: "Output directory.") var outDir: String
    @Option(help: "Rounds: each key gets a fresh transactionID per round, in DIR/round-N/ (a server that replays a repeated transactionID would otherwise not issue again).")
    var rounds: Int = 1

    func run() throws {
        try OpenSSL.bootstrap()
        guard let caCertificate = try Certificate.certificates(pemEncoded: Array(try Data(contentsOf: URL(fileURLWithPath: self.ca)))).first
        else { throw ValidationError("no certificate in \(self.ca)") }
        let ciphers: [String: ContentCipher] = ["aes128": .aes128, "aes256": .aes256, "3des": .tripleDES]
        let digests: [String: DigestAlgorithm] = ["sha1": .sha1, "sha256": .sha256, "sha512": .sha512]
        guard let cipher = ciphers[self.cipher], let digest = digests[self.digest] else { throw ValidationError("unknown cipher or digest") }
        let challenge = String(decoding: try Data(contentsOf: URL(fileURLWithPath: self.challengeFile)), as: UTF8.self)
            .trimmingCharacters(in: .newlines)
        let rounds = max(1, self.rounds)
        let directories = rounds == 1 ? [self.outDir] : (0..<rounds).map { "\(self.outDir)/round-\($0)" }
        for directory in directories { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        let failures = Counter()
        let (count, keyBits) = (self.count, self.keyBits)
        DispatchQueue.concurrentPerform(iterations: count) { index in
            do {
                // RFC 8894 §2.3: the signer certificate SHOULD carry the CSR's key, so one key per request.
                let key = try PrivateKey.generateRSA(bits: keyBits)
                let subject = "CN=load-\(index),O=scep-fcgi benchmark"
                let csr = try CertificateSigningRequest.make(subject: subject, key: key, challengePassword: challenge, digest: digest)
                let now = Date()
                let signer = try CertificateBuilder.selfSigned(
                    subject: subject, key: key, serial: [0x01] + (try SecureRandom.bytes(8)), notBefore: now.addingTimeInterval(-3600),
                    notAfter: now.addingTimeInterval(86400 * 7), isCA: false)
                for directory in directories {
                    let transactionID = try SecureRandom.bytes(20).map { String(format: "%02x", $0) }.joined()
                    let request = try PKCSReqBuilder.build(
                        csr: csr, signerCertificate: signer, signerKey: key, recipient: caCertificate, cipher: cipher, digest: digest,
                        transactionID: transactionID, senderNonce: try SecureRandom.bytes(16))
                    let base = URL(fileURLWithPath: directory).appendingPathComponent(String(format: "req-%05d", index))
                    try Data(request).write(to: base.appendingPathExtension("der"))
                    try Data(Array(signer.pemEncoded.utf8) + (try key.pemEncoded(passphrase: nil))).write(to: base.appendingPathExtension("pem"))
                }
            } catch {
                failures.add(1)
            }
        }
        guard failures.value == 0 else { throw ValidationError("\(failures.value) requests could not be built") }
        print("built \(count) requests × \(rounds) rounds in \(self.outDir)")
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add(_ n: Int) { self.lock.withLock { self.count += n } }
    var value: Int { self.lock.withLock { self.count } }
    /// Returns the current value and increments it.
    func take() -> Int {
        self.lock.withLock {
            defer { self.count += 1 }
            return self.count
        }
    }
}
