import FileStore
import PostgreSQLStore
import FoundationEssentials
import Glibc
import SCEPCrypto
import SCEPStore
import StoreConformance

// The store conformance suite as a program, for CI and for an operator's scratch store:
//
//   store-conformance run --file DIR                every case against a file store in DIR (created empty)
//   store-conformance run --postgresql DSN_FILE     every case against that database (migrated first)
//   store-conformance worker --file DIR CMD…        one worker process of a multi-process case
//
// Never point it at a production store: the cases write certificates and revocations of their own.

func fail(_ text: String) -> Never {
    _ = Array((text + "\n").utf8).withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(2)
}

/// `--file DIR`: how to open the store, and the worker command line that opens the same one.
func storeArguments(_ args: ArraySlice<String>) -> (open: @Sendable () throws -> any CertificateStore, worker: [String], rest: ArraySlice<String>) {
    guard args.count >= 2 else { fail("usage: store-conformance run|worker --file DIR [COMMAND …]") }
    let value = args[args.startIndex + 1]
    switch args.first {
    case "--file":
        return ({ try FileCertificateStore(root: value) }, [CommandLine.arguments[0], "worker", "--file", value], args.dropFirst(2))
    case "--postgresql":
        // The connection string (with its password) from a file, never from the command line.
        guard let dsn = (try? String(contentsOfFile: value, encoding: .utf8))?.trimmedWhitespace, !dsn.isEmpty else { fail("cannot read \(value)") }
        return ({ try PostgreSQLCertificateStore(dsn: dsn) }, [CommandLine.arguments[0], "worker", "--postgresql", value], args.dropFirst(2))
    default:
        fail("unknown store \(args.first ?? ""): --file DIR or --postgresql DSN_FILE")
    }
}

let arguments = CommandLine.arguments.dropFirst()
do {
    try OpenSSL.bootstrap()
    switch arguments.first {
    case "worker":
        let (open, _, rest) = storeArguments(arguments.dropFirst())
        // Results, then `ready`; then hold what was taken (claims are this process's) until the
        // suite has every report and closes our standard input.
        // The store lives until then too: a database store's claims are its session's.
        let store = try open()
        let report = try StoreConformance.worker(Array(rest), store: store).map { $0 + "\n" }.joined() + "ready\n"
        _ = Array(report.utf8).withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
        var byte: UInt8 = 0
        withExtendedLifetime(store) {
            while read(0, &byte, 1) > 0 {}
        }
    case "run":
        let (open, worker, _) = storeArguments(arguments.dropFirst())
        if let store = try open() as? PostgreSQLCertificateStore { _ = try store.migrate() }
        let fixture = ProcessFixture(open: open, worker: worker)
        var failed = 0
        for c in StoreConformance.cases {
            do {
                try c.run(fixture)
                print("ok   \(c.name)")
            } catch {
                failed += 1
                print("FAIL \(c.name): \(error)")
            }
        }
        print("\(StoreConformance.cases.count - failed) of \(StoreConformance.cases.count) cases passed")
        exit(failed == 0 ? 0 : 1)
    default:
        fail("usage: store-conformance run|worker --file DIR [COMMAND …]")
    }
} catch {
    fail("store-conformance: \(error)")
}
