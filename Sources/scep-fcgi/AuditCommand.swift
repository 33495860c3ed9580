import ArgumentParser
import FoundationEssentials
import Glibc
import SCEPServer

/// `scep-fcgi audit …`: tools for the audit log.
struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Audit log tools.", subcommands: [VerifyCommand.self])

    /// `scep-fcgi audit verify FILE...`: the hash chain (docs/audit-log.md "Tamper evidence").
    struct VerifyCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify",
            abstract: "Check the prev chain of audit files, oldest first; exit 1 at the first broken, missing or torn line.",
            discussion: """
                Give rotated files oldest first and the live file last, e.g. \
                scep-fcgi audit verify audit.jsonl-20261130 audit.jsonl. A compressed file: \
                zcat audit.jsonl-20261129.gz | scep-fcgi audit verify - audit.jsonl-20261130 audit.jsonl. \
                With audit.chain_key_file set, pass --config (or --key-file) so the HMAC links can be checked.
                """)

        @Option(name: .long, help: "Configuration file naming audit.chain_key_file (default: $SCEP_CONFIG).")
        var config: String?
        @Option(name: .long, help: "The chain key file (instead of audit.chain_key_file from --config).")
        var keyFile: String?
        @Argument(help: "Audit files, oldest first; - for standard input.")
        var files: [String]

        func run() throws {
            var key: [UInt8]? = nil
            do {
                if let keyFile = self.keyFile {
                    key = try SecretFile.read(keyFile, key: "--key-file")
                } else if let file = self.config ?? ProcessInfo.processInfo.environment["SCEP_CONFIG"] {
                    let config = try Configuration.load(file: file, environment: ProcessInfo.processInfo.environment)
                    key = try config.audit.chainKeyFile.map { try SecretFile.read($0, key: "audit.chain_key_file") }
                }
            } catch let error as ServerError {
                throw ValidationError(error.message)
            }
            var inputs: [(name: String, contents: [UInt8])] = []
            for file in self.files {
                if file.hasSuffix(".gz") { throw ValidationError("\(file): decompress it first (zcat \(file) | scep-fcgi audit verify - …)") }
                let contents = file == "-" ? Self.standardInput() : FileManager.default.contents(atPath: file).map { Array($0) }
                guard let contents else { throw ValidationError("\(file) cannot be read") }
                inputs.append((file == "-" ? "(stdin)" : file, contents))
            }
            let report = AuditVerification(key: key).verify(inputs)
            if let problem = report.problem {
                print("broken: \(problem)")
                throw ExitCode(1)
            }
            let start = report.startsAt.map { $0 == AuditVerification.genesis ? "the log's first line" : "prev \($0) (an earlier file)" } ?? "-"
            print("ok: \(report.lines) lines in \(report.files) files, chained from \(start)"
                + (report.unchainedPrefix > 0 ? "; \(report.unchainedPrefix) older lines before the chain began" : ""))
            if let last = report.lastLink { print("last link: \(last)") }
        }

        static func standardInput() -> [UInt8] {
            var out: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                out += buffer[..<n]
            }
            return out
        }
    }
}
