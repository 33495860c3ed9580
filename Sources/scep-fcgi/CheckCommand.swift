import ArgumentParser
import CurlHTTP
import FoundationEssentials
import Glibc
import IntuneChallenge
import SCEPCrypto
import SCEPServer
import DurableFiles

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate the configuration and CA material; one line per problem, non-zero exit if any.")

    @OptionGroup var options: ConfigOption

    @Flag(name: .long, help: "Also get both Entra tokens and discover Intune's validation and revocation services.")
    var intune = false

    @Flag(name: .long, help: "With --intune: also send validateRequest for a throwaway CSR with a junk challenge and expect Intune's refusal.")
    var probe = false

    func validate() throws {
        if self.probe && !self.intune { throw ValidationError("--probe goes with --intune") }
    }

    func run() throws {
        let config: Configuration
        do { config = try Configuration.load(file: self.options.config, environment: ProcessInfo.processInfo.environment) } catch {
            // Every parse problem at once, one per line.
            for line in "\(error)".split(separator: "\n") { print("problem: \(line)") }
            throw ExitCode(1)
        }
        try OpenSSL.bootstrap()
        var problems = config.problems()
        if problems.isEmpty {
            let directory = CADirectory(config.ca)
            switch directory.loadMaterial(passphraseFile: config.ca.keyPassphraseFile) {
            case .failure(let caProblems):
                problems += caProblems.lines
            case .success(let material):
                // A key on a token: prove it signs now (logged in, token present), not only that it loaded.
                for pair in material.authorities + [material.next, material.ocspSigner].compactMap({ $0 }) where pair.key.tokenURI != nil {
                    if pair.key.signsVerifiably(for: pair.certificate) {
                        print("ok: \(pair.key.tokenURI!) signs a test message that \(pair.certificate.subject) verifies")
                    } else {
                        problems.append("\(pair.key.tokenURI!): the token key did not sign a test message that \(pair.certificate.subject) verifies")
                    }
                }
            }
            problems += Wiring.storeProblems(config, checking: true)
        }
        if !config.audit.path.isEmpty, let problem = Self.auditPathProblem(config.audit.path) { problems.append(problem) }
        if self.intune && problems.isEmpty {
            problems += Self.probeIntune(config, selfTest: self.probe)
        }
        if problems.isEmpty {
            for warning in Self.warnings(config) { print("warning: \(warning)") }
            print("ok: CA \(config.ca.dir), challenge mode \(config.challenge.mode.rawValue), audit \(config.audit.path)")
            return
        }
        for problem in problems { print("problem: \(problem)") }
        throw ExitCode(1)
    }

    /// Gets both tokens and discovers the Intune services; prints what it found. With `selfTest`,
    /// a validateRequest Intune must refuse (``IntuneChallengeValidator/selfTest()``).
    static func probeIntune(_ config: Configuration, selfTest: Bool) -> [String] {
        guard config.challenge.mode == .intune else { return ["--intune: challenge.mode is not intune"] }
        do {
            try CurlHTTPTransport.bootstrap()
            let validator = try Wiring.intuneValidator(config.intune)
            for line in try validator.probe() { print("intune: \(line)") }
            if selfTest { print("intune: \(try validator.selfTest())") }
            return []
        } catch let error as IntuneError {
            return ["intune: \(error.message) [\(error.auditCode)]"]
        } catch {
            return ["intune: \(error)"]
        }
    }

    /// What works but will not for long: a CA that expires before a certificate issued today would.
    static func warnings(_ config: Configuration) -> [String] {
        guard case .success(let material) = CADirectory(config.ca).loadMaterial(passphraseFile: config.ca.keyPassphraseFile) else { return [] }
        let expiry = material.current.certificate.notAfter
        guard expiry < Date().addingTimeInterval(Double(config.issue.validityDays) * 86400) else { return [] }
        return [
            "the CA certificate expires on \(RFC3339.string(expiry)), within issue.validity_days (\(config.issue.validityDays)): "
                + "certificates issued now end with it; prepare the next CA with `scep-fcgi ca rollover`"
        ]
    }

    /// The audit log must be appendable: an existing writable file, or a writable directory.
    static func auditPathProblem(_ path: String) -> String? {
        if FileManager.default.fileExists(atPath: path) {
            return access(path, W_OK) == 0 ? nil : "audit.path \(path) is not writable by this user"
        }
        let directory = AtomicFile.directory(of: path)
        return access(directory, W_OK) == 0
            ? nil : "audit.path \(path): directory \(directory) is missing or not writable"
    }
}
