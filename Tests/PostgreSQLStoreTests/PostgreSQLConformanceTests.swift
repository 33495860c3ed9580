import Foundation
import PostgreSQL
import PostgreSQLStore
import SCEPStore
import StoreConformance
import Testing

/// A PostgreSQL server from Debian's packages for this test process (scripts/postgresql-scratch.sh),
/// stopped when the process exits; each case gets a database of its own, migrated.
enum ScratchServer {
    static let directory = FileManager.default.temporaryDirectory.appendingPathComponent("scep-pg-\(getpid())").path
    nonisolated(unsafe) static var stopScript = ""

    /// The connection string of the server's "scep" database.
    static let dsn: Result<String, Error> = Result {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let script = repository.appendingPathComponent("scripts/postgresql-scratch.sh").path
        let output = directory + ".dsn"
        // posix_spawn and waitpid, output to a file: nothing here depends on a run loop, and the
        // server (a grandchild) holds no pipe of ours open.
        guard shell("'\(script)' start '\(directory)' > '\(output)' 2>&1") == 0,
            let text = try? String(contentsOfFile: output, encoding: .utf8), text.hasPrefix("host=")
        else {
            throw PostgreSQLError(.connection, "scripts/postgresql-scratch.sh start failed: \((try? String(contentsOfFile: output, encoding: .utf8)) ?? "")")
        }
        stopScript = script
        atexit {
            _ = shell("'\(ScratchServer.stopScript)' stop '\(ScratchServer.directory)' >/dev/null 2>&1; rm -rf '\(ScratchServer.directory)' '\(ScratchServer.directory).dsn'")
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `/bin/sh -c command`, waited for; its exit status.
    static func shell(_ command: String) -> Int32 {
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = ["/bin/sh", "-c", command].map { (s: String) in strdup(s) } + [nil]
        defer { for p in argv { free(p) } }
        guard posix_spawn(&pid, "/bin/sh", nil, nil, argv, environ) == 0 else { return -1 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// A fresh, migrated database; its connection string.
    static func database() throws -> String {
        let base = try dsn.get()
        let name = "case_\(UInt64.random(in: 0...UInt64.max))"
        let admin = try Connection(base)
        try admin.execute("CREATE DATABASE \(name)")
        let dsn = base.replacingOccurrences(of: "dbname=scep", with: "dbname=\(name)")
        _ = try PostgreSQLCertificateStore(dsn: dsn).migrate()
        return dsn
    }
}

@Suite("PostgreSQL store: the store conformance suite")
struct PostgreSQLConformanceTests {
    static var workerPath: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("store-conformance").path
    }

    @Test("conforms", arguments: StoreConformance.cases)
    func conforms(_ c: StoreConformance.Case) throws {
        let dsn = try ScratchServer.database()
        let dsnFile = FileManager.default.temporaryDirectory.appendingPathComponent("dsn-\(UUID().uuidString)").path
        try dsn.write(toFile: dsnFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: dsnFile) }
        let fixture = ProcessFixture(open: { try PostgreSQLCertificateStore(dsn: dsn) }, worker: [Self.workerPath, "worker", "--postgresql", dsnFile])
        try c.run(fixture)
    }

    @Test("migrate is idempotent and records the version")
    func migrate() throws {
        let dsn = try ScratchServer.database()
        let store = try PostgreSQLCertificateStore(dsn: dsn)
        #expect(try store.migrate().isEmpty)
        #expect(store.schemaProblem() == nil)
    }

    @Test("a server that is down is unavailable, not a crash; a fresh pool connects when it is back")
    func unavailable() throws {
        let store = try PostgreSQLCertificateStore(dsn: "host=127.0.0.1 port=1 user=nobody dbname=none connect_timeout=2")
        #expect(store.healthProblem() == "store-unavailable")
        do {
            _ = try store.certificate(serial: "0A")
            Issue.record("no error")
        } catch let error as StoreError {
            #expect(error.code == .unavailable)
        }
    }
}
