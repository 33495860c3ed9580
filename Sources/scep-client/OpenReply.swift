import ArgumentParser
import Foundation
import SCEP
import SCEPCrypto

struct OpenReply: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certrep", abstract: "Verify and open a CertRep; print it as JSON; write the issued certificate.")

    @Option(help: "The CertRep (DER).") var reply: String
    @Option(help: "Directory written by pkcsreq (signer.pem, signer-key.pem).") var requestDir: String
    @Option(help: "Write the issued certificate (PEM) here on SUCCESS.") var out: String?
    @Option(help: "Write the CRL (DER) of a GetCRL SUCCESS here.") var crlOut: String?

    func run() throws {
        try OpenSSL.bootstrap()
        let dir = URL(fileURLWithPath: self.requestDir)
        let signerPEM = try Data(contentsOf: dir.appendingPathComponent("signer.pem"))
        let keyPEM = try Data(contentsOf: dir.appendingPathComponent("signer-key.pem"))
        guard let signer = try Certificate.certificates(pemEncoded: Array(signerPEM)).first else {
            throw ValidationError("no signer certificate")
        }
        let key = try PrivateKey(pemEncoded: Array(keyPEM), passphrase: nil)
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: self.reply)))
        let rep = try ReceivedCertRep.open(bytes, signerCertificate: signer, signerKey: key)
        if let out = self.out, let issued = rep.certificates.first {
            try Data(issued.pemEncoded.utf8).write(to: URL(fileURLWithPath: out))
        }
        if let crlOut = self.crlOut, let crl = rep.crls.first {
            try Data(crl.derEncoded).write(to: URL(fileURLWithPath: crlOut))
        }
        func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }
        let fields: [(String, String)] = [
            ("status", String(describing: rep.status)),
            ("failInfo", rep.failInfo.map(\.name) ?? ""),
            ("failInfoText", rep.failInfoText ?? ""),
            ("transactionID", rep.transactionID),
            ("senderNonce", hex(rep.senderNonce)),
            ("recipientNonce", hex(rep.recipientNonce)),
            ("digest", rep.digest?.rawValue ?? ""),
            ("cipher", rep.envelopeCipher?.rawValue ?? ""),
            ("keyTransport", rep.envelopeKeyTransport?.description ?? ""),
            ("signer", rep.signer.subject),
            ("certificates", String(rep.certificates.count)),
            ("serial", rep.certificates.first?.serialNumberHex ?? ""),
            ("crls", String(rep.crls.count)),
        ]
        let body = fields.map { "\"\($0.0)\": \"\($0.1.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\"" }
        print("{" + body.joined(separator: ", ") + "}")
    }
}

