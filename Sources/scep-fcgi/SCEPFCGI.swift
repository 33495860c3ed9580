import ArgumentParser
import CurlHTTP
import FastCGI
import FoundationEssentials
import SCEPCrypto
import SCEPServer

struct SCEPFCGI: ParsableCommand {
    static let version = SCEPFCGIVersion.current

    /// `--version`: ours, then the C libraries as loaded at run time (what a bug report needs).
    static var versionText: String {
        ["scep-fcgi \(version)", OpenSSL.version, CurlHTTPTransport.version, FastCGIServer.libraryDescription].joined(separator: "\n")
    }

    static let configuration = CommandConfiguration(
        commandName: "scep-fcgi",
        abstract: "A SCEP (RFC 8894) server that runs as a FastCGI application behind nginx or Apache.",
        discussion: """
            Configuration comes from --config FILE (or SCEP_CONFIG), and every key section.key can be \
            overridden by the environment variable SCEP_SECTION_KEY. Started with no arguments by \
            spawn-fcgi or Apache mod_fcgid it serves the inherited socket; run as CGI it answers one request.
            """,
        version: versionText,
        subcommands: [ServeCommand.self, CheckCommand.self, CACommand.self, StoreCommand.self, AuditCommand.self, IntuneCommand.self]
    )
}

struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: "Configuration file (default: $SCEP_CONFIG).")
    var config: String?

    /// The configuration, with the environment applied; a bad one is a usage error.
    func load() throws -> Configuration {
        do { return try Configuration.load(file: self.config, environment: ProcessInfo.processInfo.environment) } catch let error as ServerError {
            throw ValidationError(error.message)
        }
    }
}
