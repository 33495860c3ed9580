import ArgumentParser
import FoundationEssentials
import Glibc
import SCEP
import SCEPCrypto
import DurableFiles
import FileStore
import SCEPStore
import SCEPServer

struct CACommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ca", abstract: "Manage the on-disk CA (safe while servers serve from the same directory).",
        subcommands: [
            InitCommand.self, ListCommand.self, PendingCommand.self, ApproveCommand.self, RejectCommand.self, RevokeCommand.self,
            CRLCommand.self, RolloverCommand.self, RACommand.self, OCSPSignerCommand.self,
        ])

    struct InitCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init", abstract: "Create ca.pem and ca.key (mode 0600) in a new CA directory.")

        @Option(name: .long, help: "CA directory to create.")
        var dir: String

        @Option(name: .long, help: "CA subject, RFC 4514 order, e.g. \"CN=Example SCEP CA,O=Example\".")
        var subject: String

        @OptionGroup var key: CAKeyOptions

        @Option(name: .long, help: "Validity in days.")
        var days: Int = 3650

        @Option(name: .long, help: "Encrypt ca.key with the passphrase in this file (AES-256).")
        var passphraseFile: String?

        @Option(name: .long, help: "With --key-uri: the token's PIN, in a file (put the same path in ca.key_pin_file).")
        var pinFile: String?

        @Option(name: .long, help: "With --key-uri: the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so (ca.pkcs11_module).")
        var pkcs11Module: String?

        func validate() throws {
            try KeyOptions.check(keyBits: self.key.keyBits, days: self.days)
            if self.key.keyURI != nil && self.pinFile == nil { throw ValidationError("--key-uri needs --pin-file") }
        }

        func run() throws {
            try OpenSSL.bootstrap()
            var passphrase = try self.passphraseFile.map { try SecretFile.read($0, key: "--passphrase-file", allowEmpty: true) }
            defer { if passphrase != nil { OpenSSL.cleanse(&passphrase!) } }
            do {
                let directory = CADirectory(self.dir, token: TokenAccess(pinFile: self.pinFile, module: self.pkcs11Module))
                let certificate = try directory.initialize(subject: self.subject, key: try self.key.spec(), days: self.days, passphrase: passphrase)
                // The default store's files (issued/, index.txt), so that `openssl ca` and `check` find them.
                _ = try FileCertificateStore(root: self.dir)
                if let uri = self.key.keyURI {
                    print("created \(self.dir)/ca.pem for the key at \(uri) (recorded in \(CADirectory.uriPath(ofKey: directory.keyPath)))")
                    print("set ca.key_pin_file = \(self.pinFile ?? "…")\(self.pkcs11Module.map { " and ca.pkcs11_module = \($0)" } ?? "") in the configuration")
                } else {
                    print("created \(self.dir)/ca.pem and \(self.dir)/ca.key")
                }
                if certificate.publicKey?.algorithm == .ec {
                    print("an EC CA cannot receive SCEP requests itself: create its RSA RA next (scep-fcgi ca ra --dir \(self.dir) --subject …, see README: An EC issuing CA)")
                }
                print("subject: \(certificate.subject)")
                print("sha256 fingerprint: \(HexEncoding.string(certificate.fingerprint(.sha256), uppercase: true, separator: ":"))")
            } catch let error as ServerError {
                throw ValidationError(error.message)
            } catch let error as StoreError {
                throw ValidationError(error.message)
            } catch let error as FileError {
                throw ValidationError(error.message)
            }
        }
    }
}

/// The key of a new CA (`ca init`, `ca rollover`): RSA by default, or EC P-256/P-384.
struct CAKeyOptions: ParsableArguments {
    @Option(name: .long, help: "rsa (default) or ec. An EC CA signs certificates and CRLs; an RSA RA (ca ra) receives the requests.")
    var keyType: String = "rsa"

    @Option(name: .long, help: "RSA key size: 2048, 3072 or 4096.")
    var keyBits: Int = 3072

    @Option(name: .long, help: "EC curve with --key-type ec: P-256 or P-384.")
    var curve: String?

    @Option(name: .long, help: "A key already on a PKCS#11 token, e.g. \"pkcs11:token=scep-ca;object=ca-key;type=private\" (no PIN in it).")
    var keyURI: String?

    func validate() throws { _ = try self.spec() }

    func spec() throws -> CAKeySpec {
        if let uri = self.keyURI {
            guard uri.hasPrefix("pkcs11:") else { throw ValidationError("--key-uri must be a pkcs11: URI (RFC 7512)") }
            return .token(uri: uri)
        }
        switch self.keyType.lowercased() {
        case "rsa":
            guard self.curve == nil else { throw ValidationError("--curve goes with --key-type ec") }
            return .rsa(bits: self.keyBits)
        case "ec":
            guard let curve = ECCurve.allCases.first(where: { $0.rawValue.lowercased() == (self.curve ?? "P-256").lowercased() }) else {
                throw ValidationError("--curve must be P-256 or P-384")
            }
            return .ec(curve)
        default:
            throw ValidationError("--key-type must be rsa or ec")
        }
    }
}

enum KeyOptions {
    static func check(keyBits: Int, days: Int) throws {
        guard [2048, 3072, 4096].contains(keyBits) else { throw ValidationError("--key-bits must be 2048, 3072 or 4096") }
        guard (1...36500).contains(days) else { throw ValidationError("--days must be 1...36500") }
    }
}

/// `--dir DIR` or `--config FILE` (reading `ca.dir`, the passphrase file, `[issue]` and
/// `audit.path` from it). Without a configuration the audit lines of these commands go to
/// `--audit-log FILE`, else to `DIR/ca-operations.jsonl`.
struct CALocation: ParsableArguments {
    @Option(name: .long, help: "CA directory.")
    var dir: String?

    @Option(name: .long, help: "Configuration file (ca.dir, ca.key_passphrase_file, [issue], audit.path).")
    var config: String?

    @Option(name: .long, help: "Audit log for this command (default: audit.path of --config, else DIR/ca-operations.jsonl).")
    var auditLog: String?

    @Option(name: .long, help: "PIN file of a CA key on a PKCS#11 token (default: ca.key_pin_file of --config).")
    var pinFile: String?

    func validate() throws {
        guard (self.dir == nil) != (self.config == nil) else { throw ValidationError("give exactly one of --dir DIR or --config FILE") }
    }

    func configuration() throws -> Configuration {
        var config = Configuration()
        if let file = self.config {
            do { config = try Configuration.load(file: file, environment: ProcessInfo.processInfo.environment) } catch let error as ServerError {
                throw ValidationError(error.message)
            }
        }
        if let dir = self.dir { config.ca.dir = dir }
        if let pinFile = self.pinFile { config.ca.keyPINFile = pinFile }
        guard !config.ca.dir.isEmpty else { throw ValidationError("ca.dir is not set in \(self.config ?? "the configuration")") }
        return config
    }

    func operations() throws -> CAOperations {
        try OpenSSL.bootstrap()
        let config = try self.configuration()
        do {
            return try Self.operations(config, auditLog: self.auditLog, fromFile: self.config != nil)
        } catch let error as ServerError {
            throw ValidationError(error.message)
        }
    }

    /// The CA operations of `config`, auditing to `auditLog`, else to `audit.path` of a
    /// configuration file, else to `ca.dir/ca-operations.jsonl` (also for `intune sync-revocations`).
    static func operations(_ config: Configuration, auditLog: String? = nil, fromFile: Bool) throws -> CAOperations {
        let auditPath = auditLog ?? (fromFile && !config.audit.path.isEmpty ? config.audit.path : config.ca.dir + "/ca-operations.jsonl")
        return CAOperations(
            directory: CADirectory(config.ca), store: try Wiring.store(config), passphraseFile: config.ca.keyPassphraseFile,
            audit: try Wiring.commandAuditSink(config, path: auditPath),
            policy: IssuancePolicy(config.issue, challengeMode: config.challenge.mode, store: config.store),
            crlValidityHours: config.ca.crlValidityHours)
    }
}

/// Runs a CA operation; a ServerError is one line on stderr and exit status 1.
func operatorCommand(_ body: () throws -> Void) throws {
    do { try body() } catch let error as ServerError {
        FileHandleWriter.standardError("scep-fcgi: \(error.message)\n")
        throw ExitCode(1)
    } catch let error as SCEPError {
        FileHandleWriter.standardError("scep-fcgi: \(error)\n")
        throw ExitCode(1)
    } catch let error as OpenSSLError {
        FileHandleWriter.standardError("scep-fcgi: \(error)\n")
        throw ExitCode(1)
    } catch let error as StoreError {
        FileHandleWriter.standardError("scep-fcgi: \(error.message)\n")
        throw ExitCode(1)
    } catch let error as FileError {
        FileHandleWriter.standardError("scep-fcgi: \(error.message)\n")
        throw ExitCode(1)
    }
}

/// Standard output in 64 KiB writes (`ca list` of a large CA prints hundreds of thousands of lines).
struct BufferedOutput {
    private var buffer: [UInt8] = []

    mutating func line(_ text: String) {
        self.buffer += text.utf8
        self.buffer.append(UInt8(ascii: "\n"))
        if self.buffer.count >= 65536 { self.flush() }
    }

    mutating func flush() {
        var offset = 0
        while offset < self.buffer.count {
            let n = self.buffer[offset...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }  // a closed pipe (| head): nothing more to say
            offset += n
        }
        self.buffer.removeAll(keepingCapacity: true)
    }
}

enum FileHandleWriter {
    static func standardError(_ text: String) { _ = Array(text.utf8).withUnsafeBytes { write(2, $0.baseAddress, $0.count) } }
}

/// One JSON object per line for `--json` listings, fields in order, absent ones omitted.
func jsonLine(_ fields: [(String, String?)], lists: [(String, [String])] = []) -> String {
    var json = JSONObjectWriter()
    for (key, value) in fields { json.add(key, value) }
    for (key, values) in lists { json.add(key, values) }
    return json.finish()
}
