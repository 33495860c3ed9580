import Foundation
import SCEPCrypto
import SCEPStore
import SCEP
import Testing

@testable import FileStore
@testable import SCEPServer

/// One durable write per enrollment: the file store's journal keeps each issuance's audit line,
/// the log writes it without a sync, and a power loss that takes the log's tail gets it back.
@Suite("Audit lines after a power loss")
struct PowerLossAuditTests {
    static func lines(_ path: String) -> [String] {
        (try? String(contentsOfFile: path, encoding: .utf8))?.split(separator: "\n").map(String.init) ?? []
    }

    /// What a power loss does here: the log keeps its first `kept` lines, the journal is a past boot's.
    static func losePower(_ h: Harness, log: String, keptLines kept: Int) throws {
        let all = Self.lines(log)
        try (all.prefix(kept).map { $0 + "\n" }.joined()).write(toFile: log, atomically: false, encoding: .utf8)
        let journal = h.directory.path + "/journal"
        let text = try String(contentsOfFile: journal, encoding: .utf8)
        try ("scep-fcgi journal 1 boot=a-previous-boot" + text.drop { $0 != "\n" }).write(toFile: journal, atomically: true, encoding: .utf8)
    }

    @Test("the journal carries the line: a line the log lost is written again once, marked, linked; a kept one is not")
    func lostLineWrittenAgain() throws {
        let log = AuditChainTests.temporaryLog()
        let h = try Harness(auditLog: log)
        let (_, _, kept) = try enrollOnce(h, subject: "CN=kept,O=Example", sans: [])
        let (_, _, lost) = try enrollOnce(h, subject: "CN=lost,O=Example", sans: [])
        let before = Self.lines(log)
        #expect(before.count == 2 && before[1].contains(lost.serialNumberHex))
        let journal = try String(contentsOfFile: h.directory.path + "/journal", encoding: .utf8)
        #expect(journal.split(separator: "\n").filter { $0.hasPrefix("A\t") && $0.split(separator: "\t").count == 6 }.count == 2, "each A record carries its line")

        try Self.losePower(h, log: log, keptLines: 1)
        let next = try Harness(auditLog: log, reopening: h.root)  // the next boot's server
        next.responder.recordUnaudited()
        let after = Self.lines(log)
        #expect(after.count == 2, "\(after)")
        #expect(after[0] == before[0])
        #expect(after[1].contains("\"serial\":\"\(lost.serialNumberHex)\"") && after[1].contains("\"restored\":\"power-loss\"") && after[1].contains("\"outcome\":\"issued\""))
        let report = AuditVerification(key: nil).verify([(log, Array(after.map { $0 + "\n" }.joined().utf8))])
        #expect(report.problem == nil)
        // Not withheld (it may have been delivered), and settled: a second look adds nothing.
        #expect(try next.store.certificate(serial: lost.serialNumberHex)?.status == .valid)
        #expect(try next.store.certificate(serial: kept.serialNumberHex)?.status == .valid)
        #expect(try next.store.unaudited().isEmpty)
        next.responder.recordUnaudited()
        #expect(Self.lines(log).count == 2)
    }

    @Test("a line in a file rotated since is found there, not written again")
    func rotatedLineFound() throws {
        let log = AuditChainTests.temporaryLog()
        let h = try Harness(auditLog: log)
        _ = try enrollOnce(h, subject: "CN=rotated,O=Example", sans: [])
        try FileManager.default.moveItem(atPath: log, toPath: log + ".1")
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        try Self.losePower(h, log: log, keptLines: 0)
        let next = try Harness(auditLog: log, reopening: h.root)
        next.responder.recordUnaudited()
        #expect(Self.lines(log).isEmpty && Self.lines(log + ".1").count == 1)
        #expect(try next.store.unaudited().isEmpty)
    }
}

@Suite("The issuance's one durable write")
struct SealTests {
    @Test("a journal that fails after the line is written: FAILURE store-failed, withheld, and audited as such")
    func sealFails() throws {
        let log = AuditChainTests.temporaryLog()
        let h = try Harness(auditLog: log)
        let csr = try CertificateSigningRequest.make(subject: "CN=seal,O=Example", key: TestClient.csrKey, challengePassword: nil)
        let key = try TransactionKey(transactionID: "seal-\(UUID().uuidString)", csr: csr)
        let record = RequestRecord(sink: try JSONLinesAuditSink(path: log, sync: true), diagnostics: Diagnostics(), event: AuditEvent())
        let journal = h.directory.path + "/journal"
        var serial: String?
        do {
            _ = try h.responder.issuance.issue(
                IssuanceRequest(csr: csr), by: h.ca, transaction: key, record: record, outcome: .issued,
                notify: { certificate in
                    // Between the commit and the seal, the journal stops taking records.
                    serial = certificate.serialNumberHex
                    try FileManager.default.removeItem(atPath: journal)
                    try FileManager.default.createDirectory(atPath: journal, withIntermediateDirectories: false)
                },
                deliver: { _ in () })
            Issue.record("issued although the journal failed")
        } catch let error as SCEPError {
            #expect(error.code == .storeFailed, "\(error)")
        }
        let issued = try #require(serial)
        let written = PowerLossAuditTests.lines(log)
        #expect(written.count == 1 && written[0].contains("\"outcome\":\"issued\"") && written[0].contains(issued))
        #expect(try h.store.certificate(serial: issued)?.status == .withheld)
        #expect(try h.store.unaudited().map(\.cause) == [.storeFailed])
        h.responder.recordUnaudited()
        let after = PowerLossAuditTests.lines(log)
        #expect(after.count == 2 && after[1].contains("\"outcome\":\"withheld\"") && after[1].contains("\"reason\":\"store-failed\"") && after[1].contains(issued))
        // Settled although the journal still fails: housekeeping's own record needs no sync.
        #expect(try h.store.unaudited().isEmpty)
    }
}
