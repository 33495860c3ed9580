import FoundationEssentials
import SCEPCrypto
import SCEPStore

/// RFC 8894 §3.3.3: one issuance per transactionID + key; replay, polling, manual approval.
enum TransactionCases {
    static let all: [StoreConformance.Case] = [
        .init(name: "a claim is exclusive until released", run: claimIsExclusive),
        .init(name: "an issued transaction replays its serial and key, from any handle", run: issuedReplays),
        .init(name: "a superseding request takes over an issued transaction once", run: supersedeOnce),
        .init(name: "a held request is pending, listed, and rejected by an operator", run: holdAndReject),
        .init(name: "an approved request is issued and no longer pending", run: approve),
        .init(name: "transactions past their retention are forgotten by maintenance", run: retention),
        .init(name: "an unknown transactionID has no record", run: unknownTransaction),
    ]

    static func claimIsExclusive(_ fixture: any StoreFixture) throws {
        let (a, b) = (try fixture.open(), try fixture.open())
        let k = TransactionKey(transactionID: freshID("claim"), keyHash: String(repeating: "ab", count: 32))
        try expect(try a.claim(k, lease: 600) == .claimed, "first claim")
        guard case .existing(let seen) = try b.claim(k, lease: 600) else { throw ConformanceFailure(message: "second claim succeeded", line: #line) }
        try expect(seen.state == .inFlight && seen.transactionID == k.transactionID, "second claim sees in-flight, got \(seen)")
        try expect(try b.transaction(k.transactionID)?.state == .inFlight, "the record reads in-flight")
        a.release(k)
        try expect(try b.claim(k, lease: 600) == .claimed, "claimable again after release")
        b.release(k)
    }

    static func issuedReplays(_ fixture: any StoreFixture) throws {
        let store = try fixture.open()
        let authority = try TestAuthority()
        let (k, certificate) = try enroll(store, authority)
        let other = try fixture.open()
        guard case .existing(let record) = try other.claim(k, lease: 600) else { throw ConformanceFailure(message: "an issued transaction was claimed again", line: #line) }
        try expect(record.state == .issued && record.serial == certificate.serialNumberHex, "replay record \(record)")
        try expect(record.keyHash == k.keyHash, "the record keeps the key hash (another key is refused by comparing it)")
        try expect(abs(record.updated.timeIntervalSinceNow) < 600, "updated is recent: \(record.updated)")
        try expect(try other.transaction(k.transactionID) == record, "transaction() and claim() agree")
    }

    static func supersedeOnce(_ fixture: any StoreFixture) throws {
        let store = try fixture.open()
        let authority = try TestAuthority()
        let (k, old) = try enroll(store, authority)
        try expect(try store.supersede(k, issued: old.serialNumberHex, lease: 600), "the first superseder wins")
        try expect(try store.transaction(k.transactionID)?.state == .inFlight, "superseded: in flight")
        try expect(!(try fixture.open().supersede(k, issued: old.serialNumberHex, lease: 600)), "a second superseder loses")
        let new = try authority.issue()
        try deliver(new, by: authority, for: k, to: store)
        try expect(try store.transaction(k.transactionID)?.serial == new.serialNumberHex, "now names the new certificate")
        try expect(!(try store.supersede(k, issued: old.serialNumberHex, lease: 600)), "superseding the old serial again fails")
    }

    static func pending(_ k: TransactionKey, subject: String = "/O=Example/CN=waiting") -> PendingRequest {
        PendingRequest(
            transactionID: k.transactionID, keyHash: k.keyHash, subject: subject, subjectAltNames: ["DNS:waiting.example"],
            received: Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down)), remoteAddr: "192.0.2.7", csr: [0x30, 0x03, 0x02, 0x01, 0x00],
            renews: nil)
    }

    static func holdAndReject(_ fixture: any StoreFixture) throws {
        let store = try fixture.open()
        let k = TransactionKey(transactionID: freshID("hold"), keyHash: String(repeating: "cd", count: 32))
        try expect(try store.claim(k, lease: 600) == .claimed, "claim")
        let request = pending(k)
        try store.hold(request)
        let other = try fixture.open()
        try expect(try other.transaction(k.transactionID)?.state == .pending, "held: pending")
        try expect(try other.pendingRequest(k.transactionID) == request, "the held request comes back whole")
        try expect(try other.pendingRequests().contains(request), "listed")
        guard case .existing(let record) = try other.claim(k, lease: 600), record.state == .pending else {
            throw ConformanceFailure(message: "a retransmission of a held request must see it pending", line: #line)
        }
        try other.reject(k)
        try expect(try store.transaction(k.transactionID)?.state == .rejected, "rejected")
        try expect(try store.pendingRequest(k.transactionID) == nil, "no longer pending")
        try expect(!(try store.pendingRequests().contains(request)), "no longer listed")
    }

    static func approve(_ fixture: any StoreFixture) throws {
        let store = try fixture.open()
        let authority = try TestAuthority()
        let certificate = try authority.issue("CN=approved,O=Example")
        let k = try key(freshID("approve"), for: certificate)
        try expect(try store.claim(k, lease: 600) == .claimed, "claim")
        try store.hold(pending(k))
        // The operator's `ca approve`, in another process.
        let operatorStore = try fixture.open()
        try deliver(certificate, by: authority, for: k, to: operatorStore)
        let record = try unwrap(try store.transaction(k.transactionID), "record")
        try expect(record.state == .issued && record.serial == certificate.serialNumberHex, "CertPoll finds it issued: \(record)")
        try expect(try store.pendingRequest(k.transactionID) == nil, "no longer pending")
    }

    static func retention(_ fixture: any StoreFixture) throws {
        let store = try fixture.open()
        let authority = try TestAuthority()
        let (k, _) = try enroll(store, authority)
        // Well past any retention (the stores' default is 30 days, at most 3650).
        let done = store.maintain(now: Date().addingTimeInterval(3651 * 86400))
        try expect(done.transactionsPruned >= 1, "maintenance pruned \(done.transactionsPruned)")
        try expect(try store.transaction(k.transactionID) == nil, "pruned record is gone")
        try expect(try store.claim(k, lease: 600) == .claimed, "and the transactionID is new again")
        store.release(k)
    }

    static func unknownTransaction(_ fixture: any StoreFixture) throws {
        let store = try fixture.open()
        try expect(try store.transaction(freshID("never")) == nil, "no record")
        try expect(try store.pendingRequest(freshID("never")) == nil, "no pending request")
    }
}
