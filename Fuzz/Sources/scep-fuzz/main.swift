import CFuzzer
import FoundationEssentials
import Glibc
import SCEPFuzzHarness

// libFuzzer driver (built only with SCEP_FUZZ=1 and -sanitize=fuzzer,address; see
// scripts/fuzz.sh). One binary for every target: SCEP_FUZZ_TARGET picks it.
guard let name = ProcessInfo.processInfo.environment["SCEP_FUZZ_TARGET"], let chosen = FuzzHarness.Target(rawValue: name) else {
    fatalError("set SCEP_FUZZ_TARGET to one of \(FuzzHarness.Target.allCases.map(\.rawValue))")
}
nonisolated(unsafe) var selected = chosen

// The committed seeds of this target, when the corpus directory is named (scripts/fuzz.sh does).
let seed = ProcessInfo.processInfo.environment["SCEP_FUZZ_SEED"].flatMap { FileManager.default.contents(atPath: $0) }.map { Array($0) } ?? []
FuzzHarness.warmUp(chosen, seed: seed)

var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzOne(data, size) })

/// The entry libFuzzer's own objects refer to; the driver above is given the same function.
@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzHarness.run(selected, data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}
