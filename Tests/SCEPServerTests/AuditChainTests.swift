import Foundation
import Testing

@testable import SCEPServer

@Suite("Tamper-evident audit chain")
struct AuditChainTests {
    static func temporaryLog() -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("chain-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent("audit.jsonl").path
    }

    static func event(_ i: Int) -> AuditEvent {
        var event = AuditEvent()
        event.requestID = "r\(i)"
        event.operation = "GetCACert"
        return event
    }

    static func contents(_ path: String) -> [UInt8] { Array(FileManager.default.contents(atPath: path) ?? Data()) }

    @Test("two writers (two open files, as two processes) and many threads: one unbroken chain from genesis")
    func concurrent() throws {
        let path = Self.temporaryLog()
        let sinks = [try JSONLinesAuditSink(path: path, sync: false), try JSONLinesAuditSink(path: path, sync: false)]
        DispatchQueue.concurrentPerform(iterations: 600) { i in try! sinks[i % 2].record(Self.event(i)) }
        let report = AuditVerification(key: nil).verify([(path, Self.contents(path))])
        #expect(report.problem == nil && report.lines == 600 && report.startsAt == AuditVerification.genesis)
        #expect(report.lastLink == sinks[0].head.read())
    }

    @Test("a changed, removed, inserted or reordered line is found, and where")
    func tampering() throws {
        let path = Self.temporaryLog()
        let sink = try JSONLinesAuditSink(path: path, sync: false)
        for i in 0..<5 { try sink.record(Self.event(i)) }
        let lines = String(decoding: Self.contents(path), as: UTF8.self).split(separator: "\n").map { String($0) + "\n" }
        let verifier = AuditVerification(key: nil)
        func verify(_ lines: [String]) -> String? { verifier.verify([("log", Array(lines.joined().utf8))]).problem }
        #expect(verify(lines) == nil)
        var changed = lines
        changed[2] = changed[2].replacingOccurrences(of: "GetCACert", with: "GetCACaps")
        #expect(verify(changed)?.hasPrefix("log:4: prev does not name log:3") == true)
        #expect(verify(Array(lines[0..<2] + lines[3...]))?.hasPrefix("log:3: prev does not name log:2") == true)
        #expect(verify([lines[0], lines[2], lines[1], lines[3]])?.hasPrefix("log:2:") == true)
        #expect(verify(Array(lines[0..<2]) + ["{\"v\":1}\n"] + Array(lines[2...]))?.hasPrefix("log:3: no prev") == true)
        #expect(verify(lines + ["{\"v\":1,\"torn"]) != nil)
    }

    @Test("rotation (rename + new file, and copytruncate) keeps one chain across files")
    func rotation() throws {
        let path = Self.temporaryLog()
        let sink = try JSONLinesAuditSink(path: path, sync: false)
        for i in 0..<3 { try sink.record(Self.event(i)) }
        try FileManager.default.moveItem(atPath: path, toPath: path + ".1")  // logrotate create
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        for i in 3..<6 { try sink.record(Self.event(i)) }
        // copytruncate: the copy keeps the lines, the live file starts empty under the same inode.
        try FileManager.default.copyItem(atPath: path, toPath: path + ".0")
        truncate(path, 0)
        for i in 6..<8 { try sink.record(Self.event(i)) }
        let files = [path + ".1", path + ".0", path].map { ($0, Self.contents($0)) }
        let verifier = AuditVerification(key: nil)
        let report = verifier.verify(files)
        #expect(report.problem == nil && report.lines == 8 && report.files == 3, "\(report)")
        // The newest file alone starts at a link into the one before it.
        #expect(verifier.verify([files[2]]).startsAt == verifier.verify(Array(files[0..<2])).lastLink)
        #expect(verifier.verify([files[0], files[2]]).problem != nil, "a missing file breaks the chain")
    }

    @Test("a line torn by a writer killed mid-write is cut off by the next writer; the chain holds")
    func tornTail() throws {
        let path = Self.temporaryLog()
        let sink = try JSONLinesAuditSink(path: path, sync: false)
        for i in 0..<3 { try sink.record(Self.event(i)) }
        let other = try JSONLinesAuditSink(path: path, sync: false)  // another process, which died mid-line
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data(#"{"v":1,"ts":"2026-12-01T00:00:00.000Z","requestID":"torn"#.utf8))
        try handle.close()
        try other.record(Self.event(3))
        let contents = Self.contents(path)
        let report = AuditVerification(key: nil).verify([(path, contents)])
        #expect(report.problem == nil && report.lines == 4, "\(report)")
        #expect(!String(decoding: contents, as: UTF8.self).contains("torn"))
    }

    @Test("with a key the links are HMACs: recomputing them needs the key")
    func keyed() throws {
        let path = Self.temporaryLog()
        let key = Array("chain key".utf8)
        let sink = try JSONLinesAuditSink(path: path, sync: false, chainKey: key)
        for i in 0..<3 { try sink.record(Self.event(i)) }
        let contents = Self.contents(path)
        #expect(AuditVerification(key: key).verify([("log", contents)]).problem == nil)
        #expect(AuditVerification(key: nil).verify([("log", contents)]).problem != nil)
        #expect(AuditVerification(key: Array("other".utf8)).verify([("log", contents)]).problem != nil)
    }
}
