import Foundation
import SCEPCrypto

/// A PKI generated per run through our own API: a CA and helpers to make clients.
/// RSA keys are costly, so one CA is shared by every test in the process.
enum TestPKI {
    static let caKey: PrivateKey = try! PrivateKey.generateRSA(bits: 2048)
    static let ca: Certificate = try! CertificateBuilder.selfSigned(
        subject: "CN=Test CA,O=scep-fcgi tests", key: caKey, serial: [0x01, 0x02], notBefore: Date().addingTimeInterval(-600),
        notAfter: Date().addingTimeInterval(86400 * 30), isCA: true)
    static let clientKey: PrivateKey = try! PrivateKey.generateRSA(bits: 2048)

    static func signer(_ subject: String = "CN=client") throws -> Certificate {
        try CertificateBuilder.selfSigned(
            subject: subject, key: clientKey, serial: [0x05], notBefore: Date().addingTimeInterval(-600),
            notAfter: Date().addingTimeInterval(86400), isCA: false)
    }
}
