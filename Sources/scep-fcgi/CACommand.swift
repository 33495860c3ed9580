import ArgumentParser
import FoundationEssentials
import Glibc
import SCEPCrypto
import SCEPServer

struct CACommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ca", abstract: "Manage the on-disk CA.", subcommands: [InitCommand.self])

    struct InitCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init", abstract: "Create ca.pem and ca.key (mode 0600) in a new CA directory.")

        @Option(name: .long, help: "CA directory to create.")
        var dir: String

        @Option(name: .long, help: "CA subject, RFC 4514 order, e.g. \"CN=Example SCEP CA,O=Example\".")
        var subject: String

        @Option(name: .long, help: "RSA key size: 2048, 3072 or 4096.")
        var keyBits: Int = 3072

        @Option(name: .long, help: "Validity in days.")
        var days: Int = 3650

        @Option(name: .long, help: "Encrypt ca.key with the passphrase in this file (AES-256).")
        var passphraseFile: String?

        func validate() throws {
            guard [2048, 3072, 4096].contains(self.keyBits) else { throw ValidationError("--key-bits must be 2048, 3072 or 4096") }
            guard (1...36500).contains(self.days) else { throw ValidationError("--days must be 1...36500") }
        }

        func run() throws {
            try OpenSSL.bootstrap()
            var passphrase = try self.passphraseFile.map { try SecretFile.read($0, key: "--passphrase-file", allowEmpty: true) }
            defer { if passphrase != nil { OpenSSL.cleanse(&passphrase!) } }
            do {
                let certificate = try CADirectory(self.dir).initialize(
                    subject: self.subject, keyBits: self.keyBits, days: self.days, passphrase: passphrase)
                print("created \(self.dir)/ca.pem and \(self.dir)/ca.key")
                print("subject: \(certificate.subject)")
                print("sha256 fingerprint: \(HexEncoding.string(certificate.fingerprint(.sha256), uppercase: true, separator: ":"))")
            } catch let error as ServerError {
                throw ValidationError(error.message)
            }
        }
    }
}
