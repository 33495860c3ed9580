import Foundation
import SCEPCrypto
import Testing

@Suite("SCEPCrypto: keys, certificates, CSRs")
struct CryptoTests {
    init() throws { try OpenSSL.bootstrap() }

    @Test("a private key survives a PEM round trip, with and without a passphrase")
    func keyPEM() throws {
        let key = TestPKI.clientKey
        let plain = try PrivateKey(pemEncoded: try key.pemEncoded(passphrase: nil), passphrase: nil)
        #expect(plain.bits == 2048 && plain.algorithm == .rsa)
        let encrypted = try key.pemEncoded(passphrase: Array("pass phrase".utf8))
        #expect(String(decoding: encrypted, as: UTF8.self).contains("ENCRYPTED PRIVATE KEY"))
        #expect(try PrivateKey(pemEncoded: encrypted, passphrase: Array("pass phrase".utf8)).matches(try TestPKI.signer()))
        #expect(throws: OpenSSLError(.key, "")) { try PrivateKey(pemEncoded: encrypted, passphrase: Array("wrong".utf8)) }
        #expect(throws: OpenSSLError(.key, "")) { try PrivateKey(pemEncoded: encrypted, passphrase: nil) }
    }

    @Test("a CA certificate carries the SCEP key usages and round-trips through DER and PEM")
    func caCertificate() throws {
        let ca = TestPKI.ca
        #expect(ca.subject == "CN=Test CA,O=scep-fcgi tests")
        #expect(ca.serialNumberHex == "0102")
        #expect(TestPKI.caKey.matches(ca))
        #expect(!TestPKI.clientKey.matches(ca))
        // keyCertSign (0x04), cRLSign (0x02), digitalSignature (0x80), keyEncipherment (0x20).
        #expect(ca.keyUsage == UInt32(0x80 | 0x20 | 0x04 | 0x02))
        let again = try Certificate(derEncoded: ca.derEncoded)
        #expect(again.derEncoded == ca.derEncoded)
        #expect(try Certificate.certificates(pemEncoded: Array(ca.pemEncoded.utf8)).first?.derEncoded == ca.derEncoded)
        #expect(ca.fingerprint(.sha256).count == 32 && ca.fingerprint(.sha1).count == 20)
        #expect(throws: OpenSSLError.parse("")) { try Certificate(derEncoded: [0x30, 0x03, 0x02, 0x01, 0x01]) }
    }

    @Test("a CSR carries its challenge, SANs and a valid signature")
    func csr() throws {
        let csr = try CertificateSigningRequest.make(
            subject: "CN=device,O=Example", key: TestPKI.clientKey, challengePassword: "s3cret",
            subjectAltNames: ["DNS:device.example", "URI:tag:microsoft.com,2022-09-14:sid:S-1-5-21-1"])
        let parsed = try CertificateSigningRequest(derEncoded: csr.derEncoded)
        #expect(parsed.verifySignature())
        #expect(try parsed.challengePassword() == "s3cret")
        #expect(parsed.subject == "CN=device,O=Example")
        #expect(parsed.subjectAltNames == ["DNS:device.example", "URI:tag:microsoft.com,2022-09-14:sid:S-1-5-21-1"])
        let none = try CertificateSigningRequest.make(subject: "CN=x", key: TestPKI.clientKey, challengePassword: nil)
        #expect(try none.challengePassword() == nil)
    }

    @Test("a CSR whose signature was tampered with fails proof of possession")
    func tamperedCSR() throws {
        var der = try CertificateSigningRequest.make(subject: "CN=device", key: TestPKI.clientKey, challengePassword: "x")
            .derEncoded
        der[der.count - 5] ^= 0x01  // inside the signature BIT STRING
        #expect(try !CertificateSigningRequest(derEncoded: der).verifySignature())
    }

    @Test("issuance copies subject and allowed SANs, adds KU/EKU/SKI/AKI, drops other name forms")
    func issue() throws {
        let csr = try CertificateSigningRequest.make(
            subject: "CN=device,O=Example", key: TestPKI.clientKey, challengePassword: "x",
            subjectAltNames: [
                "DNS:d.example", "email:u@example.com", "IP:192.0.2.7", "URI:tag:microsoft.com,2022-09-14:sid:S-1",
                "otherName:1.3.6.1.4.1.311.20.2.3;UTF8:u@example.com", "RID:1.2.3.4",
                "otherName:1.2.3.4;UTF8:not-a-upn",
            ])
        let notBefore = Date().addingTimeInterval(-300)
        let notAfter = Date().addingTimeInterval(86400)
        let cert = try CertificateBuilder.issue(
            csr: csr, issuer: TestPKI.ca, issuerKey: TestPKI.caKey, serial: [0x4A, 0xBC, 0x01], notBefore: notBefore,
            notAfter: notAfter, profile: IssuanceProfile(extendedKeyUsage: ["clientAuth", "serverAuth"]))
        #expect(cert.subject == "CN=device,O=Example")
        #expect(cert.issuer == TestPKI.ca.subject)
        #expect(cert.serialNumberHex == "4ABC01")
        #expect(abs(cert.notBefore.timeIntervalSince(notBefore)) < 1)
        #expect(cert.isSigned(by: try #require(TestPKI.ca.publicKey)))
        #expect(cert.keyUsage == UInt32(0x80 | 0x20))
        let text = try OpenSSLText.certificate(cert)
        #expect(text.contains("TLS Web Client Authentication, TLS Web Server Authentication"))
        #expect(text.contains("X509v3 Subject Key Identifier"))
        #expect(text.contains("X509v3 Authority Key Identifier"))
        #expect(text.contains("CA:FALSE"))
        #expect(text.contains("DNS:d.example"))
        #expect(text.contains("email:u@example.com"))
        #expect(text.contains("IP Address:192.0.2.7"))
        #expect(text.contains("URI:tag:microsoft.com,2022-09-14:sid:S-1"))
        #expect(text.contains("UPN::u@example.com") || text.contains("UPN:u@example.com"))
        #expect(!text.contains("Registered ID"))
        #expect(!text.contains("not-a-upn"))
    }

    @Test("the issued certificate carries exactly the CSR's SubjectPublicKeyInfo, RSA and EC alike")
    func publicKeyCopied() throws {
        let ecKey = try #require(try ECKeyFixture.make())
        for key in [TestPKI.clientKey, ecKey] {
            let csr = try CertificateSigningRequest.make(subject: "CN=k", key: key, challengePassword: nil)
            let cert = try CertificateBuilder.issue(
                csr: csr, issuer: TestPKI.ca, issuerKey: TestPKI.caKey, serial: [0x01], notBefore: Date(),
                notAfter: Date().addingTimeInterval(60), profile: IssuanceProfile())
            let reparsed = try Certificate(derEncoded: cert.derEncoded)
            #expect(reparsed.publicKey?.derEncoded == csr.publicKey?.derEncoded)
            #expect(reparsed.publicKey?.algorithm == key.algorithm)
            #expect(reparsed.isSigned(by: try #require(TestPKI.ca.publicKey)))
        }
    }

    @Test("DER reader: OIDs and string types")
    func der() throws {
        let oid = try DERNode.parseSingle([0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x07])
        #expect(try oid.objectIdentifier() == "1.2.840.113549.1.9.7")
        #expect(try DERNode.parseSingle([0x13, 0x02, 0x31, 0x39]).stringValue() == "19")
        #expect(try DERNode.parseSingle([0x1E, 0x04, 0x00, 0x68, 0x00, 0x69]).stringValue() == "hi")
        #expect(throws: OpenSSLError.parse("")) { try DERNode.parseSingle([0x04, 0x05, 0x00]) }
        #expect(throws: OpenSSLError.parse("")) { try DERNode.parseSingle([0x04, 0x80, 0x00, 0x00]) }
    }
}

/// `openssl x509 -text` as an independent view of what we issued.
enum OpenSSLText {
    static func certificate(_ cert: Certificate) throws -> String {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("scep-test-\(UUID().uuidString).pem")
        try Data(cert.pemEncoded.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = ["x509", "-noout", "-text", "-in", file.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}

/// An EC P-256 key, made by the openssl command line (SCEPCrypto only generates RSA).
enum ECKeyFixture {
    static func make() throws -> PrivateKey? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let pem = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return try PrivateKey(pemEncoded: Array(pem), passphrase: nil)
    }
}
