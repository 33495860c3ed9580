import ArgumentParser
import CurlHTTP
import FoundationEssentials
import Glibc
import IntuneChallenge
import SCEPCrypto
import SCEPServer
import SCEPStore

struct IntuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "intune", abstract: "Microsoft Intune jobs beside enrollment.", subcommands: [SyncRevocationsCommand.self])

    struct SyncRevocationsCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sync-revocations",
            abstract: "Revoke what Intune asks this CA to revoke (retired and wiped devices), publish the CRL, report back.",
            discussion: """
                Run by scep-fcgi-revocations.timer (every 15 minutes). Uses the [intune] app of the \
                configuration; it needs the same Intune permission as validation (scep_challenge_provider). \
                One run at a time per CA directory; a second one started meanwhile does nothing.
                """)

        @OptionGroup var options: ConfigOption

        func run() throws {
            let config = try self.options.load()
            guard !config.intune.tenant.isEmpty, !config.intune.clientID.isEmpty else {
                throw ValidationError("intune.tenant and intune.client_id must be set")
            }
            if let problem = config.intune.credentialProblems().first { throw ValidationError(problem) }
            try OpenSSL.bootstrap()
            try CurlHTTPTransport.bootstrap()
            try operatorCommand {
                let operations = try CALocation.operations(config, fromFile: true)
                // One run at a time for the whole CA: every host sharing its store, not only this one.
                let ran = try operations.store.exclusively("intune-revocations") { () throws -> Bool in
                    try Self.sync(config, operations)
                    return true
                }
                if ran == nil { print("another sync-revocations is running for this CA; nothing done") }
            }
        }

        /// One run: download, revoke through the one revocation path, publish, report back.
        static func sync(_ config: Configuration, _ operations: CAOperations) throws {
            let revocation = try operations.revocation(operation: "IntuneRevocation")
            let sync = try Wiring.intuneRevocationSync(config, material: try operations.material())
            let metrics = config.monitoring.enabled ? try? Metrics(path: Wiring.countersPath(config), create: false) : nil
            let report: IntuneRevocationSync.Report
            do { report = try sync.run(revoke: { revocation.revoke($0) }) } catch let error as IntuneError {
                throw ServerError(.configuration, "Intune revocation sync failed: \(error.message) [\(error.auditCode)]")
            }
            metrics?.countRevocationSync(
                downloaded: report.downloaded, revoked: report.revoked, alreadyRevoked: report.alreadyRevoked, notFound: report.unknown,
                failed: report.failed, succeededAt: report.failed == 0 ? Date() : nil)
            print(
                "downloaded \(report.downloaded) in \(report.pages) page(s): revoked \(report.revoked), already revoked \(report.alreadyRevoked), "
                    + "unknown \(report.unknown), failed \(report.failed), uploaded \(report.uploaded); left for other CAs \(report.othersLeft)")
            if let crlError = report.crlError {
                FileHandleWriter.standardError("scep-fcgi: the CRL was not published now (the server publishes it at its next housekeeping): \(crlError)\n")
            }
            if report.failed > 0 { throw ExitCode(1) }
        }
    }
}
