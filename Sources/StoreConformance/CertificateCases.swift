import FoundationEssentials
import SCEPCrypto
import SCEPStore

/// Finding certificates, revoking them, and what a CRL is built from (RFC 5280 §5).
enum CertificateCases {
    static let all: [StoreConformance.Case] = [
        .init(name: "serials are found in any case and with leading zeros; unknown ones are nil", run: serialForms),
        .init(name: "certificates are listed, and found by subject (OpenSSL one-line form)", run: listing),
        .init(name: "a certificate past notAfter reads expired", run: expired),
        .init(name: "revocation: typed result, first time and reason stand, visible everywhere", run: revocation),
        .init(name: "revoked entries carry their issuer; latestRevocation is the newest", run: revokedEntries),
        .init(name: "CRL numbers increase per issuer, independently, from a floor", run: crlNumbers),
        .init(name: "the newest CRL kept is served from any handle; an older number never replaces it", run: newestCRL),
    ]

    static func serialForms(_ fixture: any StoreFixture) throws {
        let store = try fixture.open()
        let (_, certificate) = try enroll(store, try TestAuthority())
        let serial = certificate.serialNumberHex
        for form in [serial, serial.lowercased(), "00" + serial] {
            try expect(try store.certificate(serial: form)?.certificate.serialNumberHex == serial, "found as \(form)")
        }
        try expect(try store.certificate(serial: "0123456789ABCDEF") == nil, "unknown serial")
        try expect(try store.certificate(serial: "not hex") == nil, "garbage serial")
    }

    static func listing(_ fixture: any StoreFixture) throws {
        let store = try fixture.open()
        let authority = try TestAuthority()
        let subject = "CN=listed-\(UInt32.random(in: 0...UInt32.max)),O=Example"
        let (_, first) = try enroll(store, authority, subject: subject)
        let (_, second) = try enroll(store, authority, subject: subject)
        let (_, other) = try enroll(store, authority)
        let byName = try fixture.open().certificates(subject: first.subjectOneLine)
        try expect(Set(byName.map(\.serial)) == [first.serialNumberHex, second.serialNumberHex], "by subject: \(byName.map(\.serial))")
        let all = try store.certificates()
        for certificate in [first, second, other] {
            let entry = try unwrap(all.first { $0.serial == certificate.serialNumberHex }, "\(certificate.serialNumberHex) listed")
            try expect(entry.subject == certificate.subjectOneLine && entry.status == .valid && entry.issuer == authority.id, "entry \(entry)")
            try expect(abs(entry.notAfter.timeIntervalSince(certificate.notAfter)) < 1, "notAfter")
        }
    }

    static func expired(_ fixture: any StoreFixture) throws {
        let store = try fixture.open()
        let authority = try TestAuthority()
        let certificate = try authority.issue("CN=old,O=Example", notAfter: Date().addingTimeInterval(-5))
        let k = try key(freshID("expired"), for: certificate)
        _ = try store.claim(k, lease: 600)
        try deliver(certificate, by: authority, for: k, to: store)
        try expect(try store.certificate(serial: certificate.serialNumberHex)?.status == .expired, "expired")
    }

    static func revocation(_ fixture: any StoreFixture) throws {
        let store = try fixture.open()
        let authority = try TestAuthority()
        let (_, certificate) = try enroll(store, authority)
        let serial = certificate.serialNumberHex
        let first = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down) - 10)
        guard case .revoked(let entry) = try store.revoke(serial: serial.lowercased(), reason: .keyCompromise, at: first) else {
            throw ConformanceFailure(message: "not revoked", line: #line)
        }
        try expect(entry.serial == serial && entry.status == .revoked(at: first, reason: .keyCompromise), "entry \(entry)")
        let other = try fixture.open()
        guard case .alreadyRevoked(let again) = try other.revoke(serial: serial, reason: .superseded, at: Date()) else {
            throw ConformanceFailure(message: "a second revocation must answer alreadyRevoked", line: #line)
        }
        try expect(again.status == .revoked(at: first, reason: .keyCompromise), "the first time and reason stand: \(again.status)")
        try expect(try other.certificate(serial: serial)?.status == .revoked(at: first, reason: .keyCompromise), "status everywhere")
        try expect(try store.revoke(serial: "0123456789ABCDEF", reason: nil, at: Date()) == .unknown, "unknown serial")
        try expect(try store.revoke(serial: "zz", reason: nil, at: Date()) == .unknown, "garbage serial")
        // No reason: RFC 5280 §5.3.1 says leave the extension out rather than say unspecified.
        let (_, plain) = try enroll(store, authority)
        guard case .revoked(let noReason) = try store.revoke(serial: plain.serialNumberHex, reason: nil, at: first) else {
            throw ConformanceFailure(message: "not revoked", line: #line)
        }
        try expect(noReason.status == .revoked(at: first, reason: nil), "no reason kept as none: \(noReason.status)")
    }

    static func revokedEntries(_ fixture: any StoreFixture) throws {
        let store = try fixture.open()
        let (current, previous) = (try TestAuthority(name: "Current CA"), try TestAuthority(name: "Previous CA"))
        let (_, a) = try enroll(store, current)
        let (_, b) = try enroll(store, previous)
        let (_, kept) = try enroll(store, current)
        let early = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down) - 100)
        let late = early.addingTimeInterval(50)
        _ = try store.revoke(serial: a.serialNumberHex, reason: .cessationOfOperation, at: late)
        _ = try store.revoke(serial: b.serialNumberHex, reason: .affiliationChanged, at: early)
        let revoked = try fixture.open().revoked()
        try expect(revoked.contains(RevokedEntry(serial: a.serialNumberHex, revokedAt: late, reason: .cessationOfOperation, issuer: current.id)), "a by current")
        try expect(revoked.contains(RevokedEntry(serial: b.serialNumberHex, revokedAt: early, reason: .affiliationChanged, issuer: previous.id)), "b by previous")
        try expect(!revoked.contains { $0.serial == kept.serialNumberHex }, "the valid one is not listed")
        // The store may hold other revocations (a shared scratch store): one made now is the newest.
        let (_, newest) = try enroll(store, current)
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down) + 1)
        _ = try store.revoke(serial: newest.serialNumberHex, reason: nil, at: now)
        let latest = try fixture.open().latestRevocation()
        try expect(latest == now, "latest is \(String(describing: latest)), not \(now)")
    }

    static func newestCRL(_ fixture: any StoreFixture) throws {
        let (store, one, two) = (try fixture.open(), try TestAuthority(), try TestAuthority())
        try expect(try store.newestCRL(issuer: one.id) == nil, "none before one is kept")
        let five: [UInt8] = [0x30, 0x03, 0x02, 0x01, 0x05]
        try store.keepCRL(five, number: 5, issuer: one.id)
        try expect(try fixture.open().newestCRL(issuer: one.id) == five, "kept, seen from another handle")
        try fixture.open().keepCRL([0x30, 0x03, 0x02, 0x01, 0x03], number: 3, issuer: one.id)
        try expect(try store.newestCRL(issuer: one.id) == five, "an older number does not replace it")
        let seven = [UInt8](repeating: 0x37, count: 3000)
        try store.keepCRL(seven, number: 7, issuer: one.id)
        try expect(try fixture.open().newestCRL(issuer: one.id) == seven, "a newer one does, whatever its size")
        try expect(try store.newestCRL(issuer: two.id) == nil, "another issuer has its own")
    }

    static func crlNumbers(_ fixture: any StoreFixture) throws {
        let store = try fixture.open()
        let (one, two) = (try TestAuthority(), try TestAuthority())
        let n1 = try store.nextCRLNumber(issuer: one.id, atLeast: 1)
        let n2 = try fixture.open().nextCRLNumber(issuer: one.id, atLeast: 1)
        try expect(n1 >= 1 && n2 == n1 + 1, "one: \(n1), \(n2)")
        try expect(try store.nextCRLNumber(issuer: two.id, atLeast: 1) == 1, "another issuer counts on its own")
        try expect(try store.nextCRLNumber(issuer: one.id, atLeast: 100) == 100, "a floor above the count is taken")
        try expect(try store.nextCRLNumber(issuer: one.id, atLeast: 1) == 101, "and counted on from")
    }
}
