import ArgumentParser
import FileStore
import FoundationEssentials
import Glibc
import PostgreSQLStore
import SCEPCrypto
import SCEPServer
import SCEPStore

/// `scep-fcgi store …`: the database store's schema, and moving a file store into it.
struct StoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store", abstract: "The certificate store: migrate the PostgreSQL schema, import a file store.",
        subcommands: [MigrateCommand.self, ImportCommand.self])

    /// The configured PostgreSQL store (store.backend = postgresql), or a usage error.
    static func database(_ options: ConfigOption) throws -> (Configuration, PostgreSQLCertificateStore) {
        let config = try options.load()
        guard config.store.backend == .postgresql else { throw ValidationError("store.backend is not postgresql in \(options.config ?? "the configuration")") }
        do {
            guard let store = try Wiring.store(config) as? PostgreSQLCertificateStore else { throw ValidationError("not a PostgreSQL store") }
            return (config, store)
        } catch let error as ServerError {
            throw ValidationError(error.message)
        }
    }

    struct MigrateCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "migrate", abstract: "Create or upgrade the PostgreSQL schema (safe to run again, and from several hosts at once).")
        @OptionGroup var options: ConfigOption

        func run() throws {
            let (_, store) = try StoreCommand.database(self.options)
            try operatorCommand {
                let applied = try store.migrate()
                print(applied.isEmpty ? "schema already at version \(Schema.version)" : "applied schema version(s) \(applied.map(String.init).joined(separator: ", "))")
            }
        }
    }

    struct ImportCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import", abstract: "Copy a CA directory's file store into the PostgreSQL store (safe to run again).",
            discussion: """
                Certificates (with their revocations and withheld marks), requests waiting for approval, and \
                the CRL numbers published so far. Certificates recorded before the store kept issuers are \
                matched to the directory's current or previous CA by signature. Transaction records are not \
                copied: a client retrying an old transaction after the move is issued a new certificate.
                """)
        @OptionGroup var options: ConfigOption
        @Option(name: .customLong("from-dir"), help: "The CA directory whose file store is imported.") var fromDir: String

        func run() throws {
            let (config, store) = try StoreCommand.database(self.options)
            try OpenSSL.bootstrap()
            try operatorCommand {
                guard store.schemaProblem() == nil else { throw StoreError(store.schemaProblem() ?? "") }
                let source = try FileCertificateStore(root: self.fromDir)
                let directory = CADirectory(self.fromDir, token: TokenAccess(pinFile: config.ca.keyPINFile, module: config.ca.pkcs11Module))
                let material = try? directory.loadMaterial(passphraseFile: config.ca.keyPassphraseFile, servable: false).get()
                var batch: [ImportedCertificate] = []
                var (seen, added, missing) = (0, 0, 0)
                for entry in try source.certificates() {
                    guard let stored = try source.certificate(serial: entry.serial) else {
                        missing += 1
                        continue
                    }
                    let issuer = entry.issuer ?? material?.authority(of: stored.certificate).map { IssuerID(authority: $0.certificate) }
                    batch.append(ImportedCertificate(certificate: stored.certificate, issuer: issuer, status: entry.status))
                    seen += 1
                    if batch.count == 1000 {
                        added += try store.importCertificates(batch)
                        batch.removeAll(keepingCapacity: true)
                    }
                }
                added += try store.importCertificates(batch)
                let pending = try source.pendingRequests()
                for request in pending { try store.importPending(request) }
                // CRL numbers continue after what this directory published (a gap is allowed, RFC 5280 §5.2.3).
                var numbers: [String] = []
                if let material {
                    let crls = CRLPublisher(directory: directory, validityHours: config.ca.crlValidityHours)
                    for slot in CRLPublisher.Slot.all(in: material) {
                        guard let authority = slot == .current ? material.current : material.previous,
                            let published = crls.published(slot)?.number.flatMap({ UInt64($0, radix: 16) })
                        else { continue }
                        let next = try store.nextCRLNumber(issuer: IssuerID(authority: authority.certificate), atLeast: published + 1)
                        numbers.append("\(slot.rawValue) CRL continues at \(next + 1)")
                    }
                }
                print("imported \(added) new of \(seen) certificates, \(pending.count) pending requests\(missing > 0 ? "; \(missing) index entries without a certificate file skipped" : "")")
                for line in numbers { print(line) }
            }
        }
    }
}
