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
