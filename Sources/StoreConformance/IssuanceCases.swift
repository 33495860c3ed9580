import FoundationEssentials
import Glibc
import SCEPCrypto
import SCEPStore

/// The one issuance path's use of the store: commit durably, then delivered or withheld, and
/// always audited (a crash or a failed audit write hands the certificate back).
enum IssuanceCases {
    static let all: [StoreConformance.Case] = [
        .init(name: "a committed certificate is found by serial, from any handle, before it is delivered", run: committedIsFound),
        .init(name: "a withheld certificate reads withheld and is never handed back once audited", run: withheldAudited),
        .init(name: "a certificate whose audit line failed comes back from unaudited() until audited", run: auditFailed),
        .init(name: "a certificate committed by a process that died comes back as crash-recovered", run: crashedWriter),
        .init(name: "a delivered certificate is not handed back", run: deliveredIsSettled),
    ]

    static func committedIsFound(_ fixture: any StoreFixture) throws {
        let store = try fixture.open()
        let authority = try TestAuthority()
        let certificate = try authority.issue()
        let k = try key(freshID("commit"), for: certificate)
        try expect(try store.claim(k, lease: 600) == .claimed, "claim")
        try store.commit(certificate, issuer: authority.id, transaction: k)
        let found = try unwrap(try fixture.open().certificate(serial: certificate.serialNumberHex), "committed certificate not found")
        try expect(found.certificate.derEncoded == certificate.derEncoded, "the same certificate")
        try expect(found.status == .valid, "valid, got \(found.status)")
        // Not handed back while its request is still working on it (a live writer).
        try expect(!(try fixture.open().unaudited().contains { $0.serial == certificate.serialNumberHex }), "in progress is not unaudited")
        try store.audited(serial: certificate.serialNumberHex, line: nil)
        try store.issued(k, serial: certificate.serialNumberHex)
    }

    static func withheldAudited(_ fixture: any StoreFixture) throws {
        let store = try fixture.open()
        let authority = try TestAuthority()
        let certificate = try authority.issue()
        let k = try key(freshID("withheld"), for: certificate)
        _ = try store.claim(k, lease: 600)
        try store.commit(certificate, issuer: authority.id, transaction: k)
        try store.withhold(serial: certificate.serialNumberHex, auditLineWritten: true)
        try store.audited(serial: certificate.serialNumberHex, line: nil)
        store.release(k)
        try expect(try store.certificate(serial: certificate.serialNumberHex)?.status == .withheld, "withheld")
        try expect(try store.certificates().first { $0.serial == certificate.serialNumberHex }?.status == .withheld, "listed withheld")
        try expect(!(try store.unaudited().contains { $0.serial == certificate.serialNumberHex }), "audited: not handed back")
        try expect(try store.claim(k, lease: 600) == .claimed, "the client's retry is issued anew")
        store.release(k)
    }

    static func auditFailed(_ fixture: any StoreFixture) throws {
        let store = try fixture.open()
        let authority = try TestAuthority()
        let certificate = try authority.issue("CN=audit failed,O=Example")
        let k = try key(freshID("auditfail"), for: certificate)
        _ = try store.claim(k, lease: 600)
        try store.commit(certificate, issuer: authority.id, transaction: k)
        try store.withhold(serial: certificate.serialNumberHex, auditLineWritten: false)
        store.release(k)
        let housekeeper = try fixture.open()
        for attempt in 1...2 {  // the log still fails the first time: handed back again
            let back = try housekeeper.unaudited().filter { $0.serial == certificate.serialNumberHex }
            try expect(back.count == 1 && back[0].cause == .auditFailed, "attempt \(attempt): handed back as audit-failed: \(back)")
            try expect(back[0].certificate?.derEncoded == certificate.derEncoded && back[0].problem == nil, "with the certificate")
        }
        try expect(try housekeeper.certificate(serial: certificate.serialNumberHex)?.status == .withheld, "withheld")
        try housekeeper.audited(serial: certificate.serialNumberHex, line: nil)
        try expect(!(try store.unaudited().contains { $0.serial == certificate.serialNumberHex }), "settled once audited")
    }

    static func crashedWriter(_ fixture: any StoreFixture) throws {
        let authority = try TestAuthority()
        // A worker commits and exits without writing the audit line (killed mid-request).
        let lines = try fixture.spawn(1, ["commit-and-die", "1"])
        let serial = try unwrap(lines.first?.split(separator: " ").last.map(String.init), "the worker reported no serial: \(lines)")
        _ = authority
        let store = try fixture.open()
        // Eventually: a database notices a closed session a moment after the process is gone.
        var back: [UnauditedCertificate] = []
        for _ in 0..<50 {
            back = try store.unaudited().filter { $0.serial == serial }
            if !back.isEmpty { break }
            usleep(100_000)
        }
        try expect(back.count == 1 && back[0].cause == .crashed, "handed back as crash-recovered: \(back)")
        try expect(back[0].certificate?.serialNumberHex == serial, "with the certificate")
        try expect(try store.certificate(serial: serial)?.status == .withheld, "and withheld, never delivered later")
        try store.audited(serial: serial, line: nil)
        try expect(!(try store.unaudited().contains { $0.serial == serial }), "settled")
    }

    static func deliveredIsSettled(_ fixture: any StoreFixture) throws {
        let store = try fixture.open()
        let (_, certificate) = try enroll(store, try TestAuthority())
        try expect(!(try fixture.open().unaudited().contains { $0.serial == certificate.serialNumberHex }), "not handed back")
        try expect(try store.certificate(serial: certificate.serialNumberHex)?.status == .valid, "valid")
    }
}
