import DurableFiles
@testable import FileStore
import Foundation
import SCEPCrypto
import SCEPStore
import StoreConformance
import Testing

/// The file store's one durable write per issuance: the journal, its checkpoint, and what it
/// puts back after a power loss (simulated: the unsynced writes removed, the header's boot changed).
@Suite("File store: the issuance journal")
struct IssuanceJournalTests {
    let root: String
    let authority: TestAuthority

    init() throws {
        self.root = FileManager.default.temporaryDirectory.appendingPathComponent("journal-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: self.root, withIntermediateDirectories: true)
        self.authority = try TestAuthority()
    }

    func issue(_ store: FileCertificateStore, audited: Bool) throws -> Certificate {
        let certificate = try self.authority.issue()
        let k = TransactionKey(transactionID: UUID().uuidString, keyHash: String(repeating: "a", count: 64))
        try store.commit(certificate, issuer: self.authority.id, transaction: k)
        if audited { try store.audited(serial: certificate.serialNumberHex, line: nil) }
        return certificate
    }

    func journalText() -> String { (try? String(contentsOfFile: self.root + "/journal", encoding: .utf8)) ?? "" }

    /// What a power loss takes: the unsynced certificate files, index lines and markers.
    func losePowerAfter(_ lost: [Certificate]) throws {
        let serials = Set(lost.map(\.serialNumberHex))
        for serial in serials {
            try? FileManager.default.removeItem(atPath: "\(self.root)/issued/\(serial).pem")
            for name in (try? FileManager.default.contentsOfDirectory(atPath: self.root + "/unaudited")) ?? [] where name.hasPrefix(serial + ".") {
                try FileManager.default.removeItem(atPath: "\(self.root)/unaudited/\(name)")
            }
        }
        let index = try String(contentsOfFile: self.root + "/index.txt", encoding: .utf8)
        let kept = index.split(separator: "\n").filter { line in !serials.contains(where: { line.contains("\t\($0)\t") }) }
        try (kept.map { $0 + "\n" }.joined()).write(toFile: self.root + "/index.txt", atomically: true, encoding: .utf8)
        let journal = self.journalText()
        let body = journal.drop { $0 != "\n" }
        try ("scep-fcgi journal 1 boot=a-previous-boot" + body).write(toFile: self.root + "/journal", atomically: true, encoding: .utf8)
    }

    @Test("after a power loss, what the journal recorded is put back, and the unaudited is audited as withheld")
    func restoresAfterPowerLoss() throws {
        defer { try? FileManager.default.removeItem(atPath: self.root) }
        let before = try FileCertificateStore(root: self.root)
        let delivered = try self.issue(before, audited: true)
        let unaudited = try self.issue(before, audited: false)
        let untouched = try self.issue(before, audited: true)
        try self.losePowerAfter([delivered, unaudited])
        // A torn record (a power loss mid-write) between good ones is skipped.
        try ("\nI\tgarbage\tunknown\tMIIB" + "\nA\t" + untouched.serialNumberHex).appendTo(self.root + "/journal")

        let after = try FileCertificateStore(root: self.root)  // the next boot's process
        let back = try after.unaudited()
        #expect(back.map(\.serial) == [unaudited.serialNumberHex])
        #expect(back.first?.cause == .crashed)
        for certificate in [delivered, unaudited, untouched] {
            let stored = try after.certificate(serial: certificate.serialNumberHex)
            #expect(stored?.certificate.derEncoded == certificate.derEncoded, "\(certificate.serialNumberHex) is back")
            #expect(try after.certificates(subject: certificate.subjectOneLine).contains { $0.serial == certificate.serialNumberHex })
        }
        // The reconciled one is withheld; the delivered one is not.
        #expect(try after.certificate(serial: unaudited.serialNumberHex)?.status == .withheld)
        #expect(try after.certificate(serial: delivered.serialNumberHex)?.status == .valid)
        // The journal starts afresh for this boot, and the index holds each serial once.
        #expect(self.journalText() == String(decoding: IssuanceJournal.header, as: UTF8.self))
        let index = try String(contentsOfFile: self.root + "/index.txt", encoding: .utf8)
        #expect(index.split(separator: "\n").count == 3)
    }

    @Test("on the same boot, nothing is read back and nothing is audited twice")
    func sameBootRestoresNothing() throws {
        defer { try? FileManager.default.removeItem(atPath: self.root) }
        let store = try FileCertificateStore(root: self.root)
        _ = try self.issue(store, audited: true)
        let journal = self.journalText()
        #expect(journal.contains("\nI\t") && journal.contains("\nA\t"))
        #expect(try FileCertificateStore(root: self.root).unaudited().isEmpty)
        #expect(self.journalText() == journal)
    }

    @Test("a checkpoint keeps only the records written after the size it noted")
    func checkpointDropsRecords() throws {
        defer { try? FileManager.default.removeItem(atPath: self.root) }
        let store = try FileCertificateStore(root: self.root)
        for _ in 0..<3 { _ = try self.issue(store, audited: true) }
        let noted = store.journal.size()
        #expect(noted.hasRecords)
        let late = try self.issue(store, audited: true)
        #expect(try store.journal.checkpoint(size: noted.bytes))
        let records = IssuanceJournal.records(in: Array(self.journalText().utf8))
        #expect(records.count == 2)
        if case let .issued(certificate, _, _) = records.first { #expect(certificate.serialNumberHex == late.serialNumberHex) } else { Issue.record("first record: \(records)") }
        // Housekeeping's checkpoint empties it, and appends go on in the new file.
        _ = store.maintain(now: Date())
        #expect(!store.journal.size().hasRecords)
        _ = try self.issue(store, audited: true)
        #expect(store.journal.size().hasRecords)
    }

    @Test("a journal that cannot be written: the commit fails, and housekeeping audits the certificate as withheld")
    func journalFailureWithholds() throws {
        defer { try? FileManager.default.removeItem(atPath: self.root) }
        let store = try FileCertificateStore(root: self.root)
        try FileManager.default.createDirectory(atPath: self.root + "/journal", withIntermediateDirectories: false)
        let certificate = try self.authority.issue()
        let k = TransactionKey(transactionID: UUID().uuidString, keyHash: String(repeating: "b", count: 64))
        #expect(throws: StoreError.self) { try store.commit(certificate, issuer: self.authority.id, transaction: k) }
        let back = try store.unaudited()
        #expect(back.map(\.serial) == [certificate.serialNumberHex])
        #expect(back.first?.cause == .storeFailed)
        #expect(try store.certificate(serial: certificate.serialNumberHex)?.status == .withheld)
    }
}

/// Group commit: threads that wrote before a flush began are covered by it, and share it.
@Suite("Durable files: group sync")
struct GroupSyncTests {
    final class File: @unchecked Sendable {
        let lock = NSLock()
        var written = Set<Int>()
        var durable = Set<Int>()
    }

    @Test("every caller's write is durable when sync returns, with fewer flushes than callers")
    func coversAndShares() throws {
        let file = File()
        let group = GroupSync {
            file.lock.lock()
            let snapshot = file.written
            file.lock.unlock()
            usleep(50_000)  // a slow disk's flush: every caller released below takes its ticket meanwhile
            file.lock.lock()
            file.durable.formUnion(snapshot)
            file.lock.unlock()
            return 0
        }
        // Threads of their own (not a pool sized to the cores), all released at once.
        let callers = 32
        let ready = DispatchSemaphore(value: 0)
        let go = DispatchSemaphore(value: 0)
        let done = DispatchGroup()
        let uncovered = File()
        for i in 0..<callers {
            done.enter()
            Thread {
                ready.signal()
                go.wait()
                file.lock.lock()
                file.written.insert(i)
                file.lock.unlock()
                try? group.sync()
                file.lock.lock()
                let covered = file.durable.contains(i)
                file.lock.unlock()
                if !covered {
                    uncovered.lock.lock()
                    uncovered.written.insert(i)
                    uncovered.lock.unlock()
                }
                done.leave()
            }.start()
        }
        for _ in 0..<callers { ready.wait() }
        for _ in 0..<callers { go.signal() }
        done.wait()
        #expect(uncovered.written.isEmpty, "callers returned before their write was flushed: \(uncovered.written.sorted())")
        #expect(group.flushes >= 1 && group.flushes < UInt64(callers), "\(group.flushes) flushes for \(callers) callers")
    }

    @Test("a failed flush is each waiter's error, and covers no one")
    func failureCoversNoOne() {
        let group = GroupSync {
            errno = EIO
            return -1
        }
        #expect(throws: FileError.self) { try group.sync() }
        #expect(group.flushes == 0)
    }
}

extension String {
    func appendTo(_ path: String) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(self.utf8))
    }
}
