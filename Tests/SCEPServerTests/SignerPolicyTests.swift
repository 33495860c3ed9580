import Foundation
import SCEP
import SCEPCrypto
import Testing

@testable import SCEPServer

/// The pkiMessage signer checks (RFC 8894 §2.3; badTime of §3.3.2.2), on their own; the corpus in
/// Tests/Integration/test_corpus_layers.py sends the same cases through nginx.
@Suite("Signer certificate and signingTime")
struct SignerPolicyTests {
    static let now = Date()
    static let policy = IssuancePolicy(Configuration.Issue())

    static func signer(from start: TimeInterval, to end: TimeInterval) throws -> Certificate {
        try CertificateBuilder.selfSigned(
            subject: "CN=signer", key: TestClient.signerKey, serial: [0x12], notBefore: now.addingTimeInterval(start),
            notAfter: now.addingTimeInterval(end), isCA: false)
    }

    @Test("validity gets the configured slack (24 h by default), then badTime")
    func validity() throws {
        let hour: TimeInterval = 3600
        try Self.policy.checkSigner(try Self.signer(from: -60, to: hour), signingTime: nil, now: Self.now)
        try Self.policy.checkSigner(try Self.signer(from: -30 * 24 * hour, to: -hour), signingTime: nil, now: Self.now)
        try Self.policy.checkSigner(try Self.signer(from: 10 * hour, to: 400 * 24 * hour), signingTime: nil, now: Self.now)
        for (start, end) in [(-400 * 24 * hour, -25 * hour), (25 * hour, 400 * 24 * hour)] {
            let error = #expect(throws: SCEPError(.signerNotValid)) {
                try Self.policy.checkSigner(try Self.signer(from: start, to: end), signingTime: nil, now: Self.now)
            }
            #expect(error?.failInfo == .badTime)
        }
        var strict = Self.policy
        strict.signerClockSkewMinutes = 0
        #expect(throws: SCEPError(.signerNotValid)) {
            try strict.checkSigner(try Self.signer(from: -30 * 24 * hour, to: -hour), signingTime: nil, now: Self.now)
        }
    }

    @Test("signingTime, when present, must be within the slack")
    func signingTime() throws {
        let signer = try Self.signer(from: -60, to: 3600)
        try Self.policy.checkSigner(signer, signingTime: Self.now.addingTimeInterval(-3600), now: Self.now)
        for offset in [-2 * 86400.0, 7 * 86400.0] {
            #expect(throws: SCEPError(.signingTimeSkew)) {
                try Self.policy.checkSigner(signer, signingTime: Self.now.addingTimeInterval(offset), now: Self.now)
            }
        }
    }

    @Test("a signer whose keyUsage allows digitalSignature passes (refusals: test_corpus_layers.py)")
    func keyUsage() throws {
        let signer = try Self.signer(from: -60, to: 3600)
        #expect(signer.keyUsage != nil && signer.permits(.digitalSignature))
        try Self.policy.checkSigner(signer, signingTime: nil, now: Self.now)
    }
}
