import ArgumentParser
import SCEPServer

struct SCEPFCGI: ParsableCommand {
    static let version = SCEPFCGIVersion.current

    static let configuration = CommandConfiguration(
        commandName: "scep-fcgi",
        abstract: "A SCEP (RFC 8894) server that runs as a FastCGI application behind nginx or Apache.",
        discussion: """
            Configuration comes from --config FILE (or SCEP_CONFIG), and every key section.key can be \
            overridden by the environment variable SCEP_SECTION_KEY. Started with no arguments by \
            spawn-fcgi or Apache mod_fcgid it serves the inherited socket; run as CGI it answers one request.
            """,
        version: version,
        subcommands: [ServeCommand.self, CheckCommand.self, CACommand.self]
    )
}

struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: "Configuration file (default: $SCEP_CONFIG).")
    var config: String?
}
