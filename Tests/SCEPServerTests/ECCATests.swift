import Foundation
import SCEP
import SCEPCrypto
import Testing

@testable import SCEPServer
@testable import FileStore

@Suite("An EC issuing CA behind an RSA RA")
struct ECCATests {
    /// Replaces the harness's RSA CA with an EC one on `curve` and, unless `withoutRA`, gives it an RSA RA.
    static func ecCA(_ curve: ECCurve, withoutRA: Bool = false) -> (CADirectory) throws -> Void {
        { directory in
            let (certificate, key) = try CADirectory.makeCA(subject: "CN=EC Harness CA,O=scep-fcgi tests", key: .ec(curve), days: 30)
            try FileManager.default.removeItem(atPath: directory.keyPath)
            try Data(try key.pemEncoded(passphrase: nil)).write(to: URL(fileURLWithPath: directory.keyPath))
            chmod(directory.keyPath, 0o600)
            try Data(certificate.pemEncoded.utf8).write(to: URL(fileURLWithPath: directory.certificatePath))
            if !withoutRA {
                let operations = CAOperations(
                    directory: directory, store: try FileCertificateStore(root: directory.path), passphraseFile: nil, audit: InMemoryAuditSink(), policy: IssuancePolicy(Configuration.Issue()),
                    crlValidityHours: 168)
                _ = try operations.createRA(subject: "CN=EC Harness RA,O=scep-fcgi tests", keyBits: 2048, days: 30, separateEncryption: false)
            }
        }
    }

    @Test("P-256 and P-384: the CA certificate has no keyEncipherment; issued certificates and CRLs are ECDSA with the curve's hash")
    func issues() throws {
        for (curve, oid) in [(ECCurve.p256, "1.2.840.10045.4.3.2"), (.p384, "1.2.840.10045.4.3.3")] {
            let h = try Harness(prepare: Self.ecCA(curve))
            #expect(h.ca.key.algorithm == .ec && !h.ca.certificate.permits(.keyEncipherment) && h.ca.certificate.permits(.digitalSignature))
            #expect(h.material.decrypters.allSatisfy { $0.key.algorithm == .rsa } && h.material.signer.key.algorithm == .rsa)
            // Clients encrypt to the RA (GetCACert names it); the reply is signed by it.
            let ra = try #require(h.material.ra).certificate
            let client = try TestClient(harness: h, csrKey: try PrivateKey.generateRSA(bits: 2048), recipient: ra)
            let rep = try client.open(h.post(client.request))
            #expect(rep.status == .success && rep.signer.derEncoded == ra.derEncoded)
            let issued = try #require(rep.certificates.first)
            let caKey = try #require(h.ca.certificate.publicKey)
            #expect(issued.signatureAlgorithmOID == oid && issued.isSigned(by: caKey))
            let (_, crl) = try h.operations().revoke(serial: issued.serialNumberHex, reason: .keyCompromise)
            let published = try #require(crl)
            #expect(published.isSigned(by: h.ca.certificate) && published.revokedSerials == [issued.serialNumberHex])
        }
    }

    @Test("an EC CA without an RSA RA is refused at load, with the command that fixes it")
    func needsRA() throws {
        #expect {
            _ = try Harness(prepare: Self.ecCA(.p256, withoutRA: true))
        } throws: { error in
            "\(error)".contains("needs an RSA RA") && "\(error)".contains("scep-fcgi ca ra")
        }
    }

    @Test("rollover from RSA to EC (with an RA) and back: the RA is reissued by the new CA")
    func rollover() throws {
        let h = try Harness()
        let operations = try h.operations()
        #expect(throws: ServerError.self) { try operations.prepareRollover(subject: "CN=EC Next,O=x", key: .ec(.p384), days: 30) }
        _ = try operations.createRA(subject: "CN=Harness RA,O=scep-fcgi tests", keyBits: 2048, days: 30, separateEncryption: false)
        _ = try operations.prepareRollover(subject: "CN=EC Next,O=x", key: .ec(.p384), days: 30)
        let ec = try operations.activateRollover()
        var material = try operations.material()
        #expect(material.current.key.algorithm == .ec && material.previous?.key.algorithm == .rsa)
        #expect(try #require(material.ra).certificate.isIssued(byNameOf: ec))
        _ = try operations.prepareRollover(subject: "CN=RSA Again,O=x", key: .rsa(bits: 2048), days: 30)
        let rsa = try operations.activateRollover()
        material = try operations.material()
        #expect(material.current.certificate.derEncoded == rsa.derEncoded && material.previous?.key.algorithm == .ec)
    }
}
