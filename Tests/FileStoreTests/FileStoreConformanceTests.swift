import FileStore
import Foundation
import SCEPCrypto
import SCEPStore
import StoreConformance
import Testing

/// The store conformance suite against the file store: each case on a fresh CA directory, the
/// multi-process cases with `store-conformance worker` processes (built beside this test bundle).
@Suite("File store: the store conformance suite")
struct FileStoreConformanceTests {
    static var workerPath: String {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        // The test runner is …/debug/scep-fcgiPackageTests.xctest (a file on Linux); workers sit beside it.
        for directory in [bundle, bundle.deletingLastPathComponent()] {
            let candidate = directory.appendingPathComponent("store-conformance").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return bundle.appendingPathComponent("store-conformance").path
    }

    @Test("conforms", arguments: StoreConformance.cases)
    func conforms(_ c: StoreConformance.Case) throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("file-store-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let fixture = ProcessFixture(open: { try FileCertificateStore(root: root) }, worker: [Self.workerPath, "worker", "--file", root])
        try c.run(fixture)
    }
}
