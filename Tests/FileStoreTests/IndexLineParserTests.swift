import Foundation
import SCEPCrypto
import SCEPStore
import Testing

@testable import FileStore

@Suite("index.txt parsing")
struct IndexLineParserTests {
    func parse(_ text: String) -> [IndexEntry] {
        var out: [IndexEntry] = []
        Array(text.utf8).withUnsafeBytes { IndexLineParser.entries($0) { out.append($0) } }
        return out
    }

    @Test("the lines this store and openssl ca write, torn and malformed lines skipped")
    func lines() throws {
        let issuer = String(repeating: "ab", count: 32)
        let text = """
            V\t271207101112Z\t\t0A1B\t\(issuer)\t/O=Example/CN=device-1
            R\t20510101000000Z\t261207101112Z,keyCompromise\t00C0FFEE\tunknown\t/CN=tab\there
            E\t990101000000Z\t\tbeef\tunknown\t/CN=old
            X\tgarbage
            V\t271207101112Z\t\tNOTHEX\tunknown\t/CN=bad
            V\t271207101112Z\t\t0C\tunknown\t/CN=torn
            """
        let entries = self.parse(text)
        try #require(entries.count == 3)
        #expect(entries[0].status == .valid && entries[0].serial == "0A1B" && entries[0].issuer?.hex == issuer)
        #expect(entries[0].subject == "/O=Example/CN=device-1")
        #expect(entries[0].expiry == Date(timeIntervalSince1970: 1_828_174_272))
        #expect(entries[1].status == .revoked && entries[1].serial == "C0FFEE" && entries[1].issuer == nil)
        #expect(entries[1].reason == .keyCompromise && entries[1].revokedAt == Date(timeIntervalSince1970: 1_796_638_272))
        #expect(entries[1].expiry == Date(timeIntervalSince1970: 2_556_144_000) && entries[1].subject == "/CN=tab\there")
        #expect(entries[2].status == .expired && entries[2].serial == "BEEF" && entries[2].expiry == Date(timeIntervalSince1970: 915_148_800))
    }

    // Expected times from `date -u -d … +%s`; the round trip below checks against gmtime_r's text.
    @Test("times read back what gmtime_r wrote over 1950–2100, and lines round-trip")
    func times() throws {
        for _ in 0..<2000 {
            let date = Date(timeIntervalSince1970: TimeInterval(Int64.random(in: -631_152_000...4_102_444_799)))
            let text = IndexTime.string(date)
            let parsed = Array(text.utf8).withUnsafeBufferPointer { IndexLineParser.time($0, 0..<$0.count) }
            #expect(parsed == Int64(date.timeIntervalSince1970), "\(text)")
        }
        let entry = IndexEntry(
            status: .revoked, expiry: Date(timeIntervalSince1970: 1_900_000_000), revokedAt: Date(timeIntervalSince1970: 1_800_000_000),
            reason: .superseded, serial: "40AB", issuer: IssuerID(hex: String(repeating: "0f", count: 32)), subject: "/CN=x")
        #expect(self.parse(entry.line) == [entry])
    }
}

@Suite("index.txt cache")
struct IndexCacheTests {
    @Test("lookups by serial in any written form, appends picked up, a replaced file read afresh")
    func lookups() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("index-\(UUID().uuidString).txt").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let issuer = String(repeating: "cd", count: 32)
        try "V\t271207101112Z\t\t0a1b\tunknown\t/CN=lower\nV\t271207101112Z\t\t40AB\t\(issuer)\t/CN=upper\n".write(toFile: path, atomically: true, encoding: .utf8)
        let index = IndexFile(path: path)
        #expect(try index.entry(serial: "0A1B")?.subject == "/CN=lower")
        #expect(try index.entry(serial: "40AB")?.issuer?.hex == issuer)
        #expect(try index.entry(serial: "FFFF") == nil)
        // Appended by another process: only the tail is read.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("R\t271207101112Z\t261201000000Z,superseded\t0C0D\tunknown\t/CN=new\n".utf8))
        try handle.close()
        #expect(try index.entry(serial: "0C0D")?.status == .revoked)
        #expect(try index.revokedEntries().map(\.serial) == ["0C0D"])
        #expect(try index.entries().map(\.serial) == ["0A1B", "40AB", "0C0D"])
        // Replaced (as a revocation does): read afresh.
        try "R\t271207101112Z\t261201000000Z\t40AB\t\(issuer)\t/CN=upper\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try index.entries().map(\.serial) == ["40AB"] && index.revokedEntries().map(\.serial) == ["40AB"])
    }
}

/// A lookup before the cache is built scans the file for its line (a start's first GetCert does
/// not wait for housekeeping to parse 200,000 lines); it must answer what the cache would.
@Suite("index.txt lookups before the cache is built")
struct ColdIndexLookupTests {
    @Test("the last line of a serial wins, another form of it falls back to the cache, unknown is nil")
    func coldLookups() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("index-\(UUID().uuidString).txt").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let a = String(repeating: "A1", count: 16)
        let b = String(repeating: "B2", count: 16)
        let text = """
            V\t300101000000Z\t\t\(a)\tunknown\t/CN=first
            V\t300101000000Z\t\t\(b)\tunknown\t/CN=second \(a)
            R\t300101000000Z\t260101000000Z,keyCompromise\t\(a)\tunknown\t/CN=first
            V\t300101000000Z\t\t0c0d\tunknown\t/CN=short form

            """
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let cold = { IndexFile(path: path) }
        let first = try cold().entry(serial: a)
        #expect(first?.status == .revoked && first?.reason == .keyCompromise && first?.subject == "/CN=first")
        #expect(try cold().entry(serial: b)?.subject == "/CN=second \(a)")
        // Written as "0c0d": not found by the scan, found by the cache (which normalizes).
        #expect(try cold().entry(serial: "0C0D")?.subject == "/CN=short form")
        #expect(try cold().entry(serial: String(repeating: "C3", count: 16)) == nil)
    }
}
