import Foundation
import SCEPFuzzHarness
import Testing

@Suite("Fuzz seeds and crash regressions")
struct FuzzRegressionTests {
    @Test("every corpus file runs through its fuzz target without trapping", arguments: FuzzHarness.Target.allCases)
    func corpus(_ target: FuzzHarness.Target) throws {
        let directory = try #require(Bundle.module.url(forResource: "corpus", withExtension: nil)).appendingPathComponent(target.rawValue)
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(!files.isEmpty, "seeds for \(target.rawValue)")
        for file in files {
            FuzzHarness.run(target, Array(try Data(contentsOf: directory.appendingPathComponent(file))))
        }
    }

    @Test("the envelope target really opens its seed (with the smallstep test CA key)")
    func envelopeSeedOpens() throws {
        #expect(FuzzHarness.opensEnvelopeSeed())
    }

    @Test("truncations and bit flips of every seed", arguments: FuzzHarness.Target.allCases)
    func mutations(_ target: FuzzHarness.Target) throws {
        let directory = try #require(Bundle.module.url(forResource: "corpus", withExtension: nil)).appendingPathComponent(target.rawValue)
        var generator = SystemRandomNumberGenerator()
        for file in try FileManager.default.contentsOfDirectory(atPath: directory.path) {
            let seed = Array(try Data(contentsOf: directory.appendingPathComponent(file)))
            for length in stride(from: 0, to: seed.count, by: max(1, seed.count / 64)) { FuzzHarness.run(target, Array(seed.prefix(length))) }
            for _ in 0..<64 where !seed.isEmpty {
                var mutated = seed
                mutated[Int.random(in: 0..<seed.count, using: &generator)] ^= UInt8.random(in: 1...255, using: &generator)
                FuzzHarness.run(target, mutated)
            }
        }
    }
}
