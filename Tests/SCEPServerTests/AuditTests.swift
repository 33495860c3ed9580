import Foundation
import Testing

@testable import SCEPServer

@Suite("Audit log")
struct AuditTests {
    @Test("a line is one JSON object, ts first, absent fields omitted, control characters escaped")
    func line() throws {
        var event = AuditEvent()
        event.ts = Date(timeIntervalSince1970: 1_795_000_000.25)
        event.requestID = "r1"
        event.outcome = .rejected
        event.reason = "challenge-mismatch"
        event.subject = "CN=evil\n\"quoted\"\u{1}"
        let line = event.jsonLine()
        #expect(line.hasSuffix("}\n") && line.filter { $0 == "\n" }.count == 1)
        #expect(line.hasPrefix(#"{"v":1,"ts":"2026-11-18T"#))
        #expect(line.contains(#".250Z""#))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["subject"] as? String == "CN=evil\n\"quoted\"\u{1}")
        #expect(object["serial"] == nil)
        #expect(object["outcome"] as? String == "rejected")
    }

    @Test("many threads appending: every line whole, none lost")
    func concurrentAppends() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("audit-\(UUID().uuidString).jsonl").path
        let sink = try JSONLinesAuditSink(path: path, sync: false)
        DispatchQueue.concurrentPerform(iterations: 400) { i in
            var event = AuditEvent()
            event.requestID = String(i)
            event.subject = String(repeating: "x", count: i * 10)
            try? sink.record(event)
        }
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 400)
        let ids = try lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }.compactMap { $0?["requestID"] as? String }
        #expect(Set(ids).count == 400)
    }

    @Test("an unwritable audit path is a clear startup error")
    func unwritable() {
        #expect(throws: ServerError(.audit, "")) { try JSONLinesAuditSink(path: "/nonexistent-dir/audit.jsonl", sync: true) }
    }
}

@Suite("Audit log rotation")
struct AuditRotationTests {
    func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    func event(_ id: String) -> AuditEvent {
        var event = AuditEvent()
        event.requestID = id
        event.operation = "PKIOperation"
        return event
    }

    @Test("renamed away: lines stay in the renamed file; a new file at the path is used at once; deleted: recreated")
    func rotation() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("audit-rot-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/audit.jsonl"
        let sink = try JSONLinesAuditSink(path: path, sync: false)
        try sink.record(self.event("a"))
        #expect(rename(path, path + ".1") == 0)
        try sink.record(self.event("b"))  // logrotate has renamed but not yet created: not lost
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        try sink.record(self.event("c"))  // the new file is noticed without a signal
        #expect(self.lines(path + ".1").count == 2 && self.lines(path).count == 1)
        #expect(unlink(path) == 0)
        try sink.record(self.event("d"))  // deleted outright: a new file, not a write into the void
        #expect(self.lines(path).map { $0.contains("\"requestID\":\"d\"") } == [true])
        try sink.reopen()
        try sink.record(self.event("e"))
        #expect(self.lines(path).count == 2)
    }
}
