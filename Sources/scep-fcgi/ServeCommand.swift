import ArgumentParser
import CurlHTTP
import FastCGI
import FoundationEssentials
import Glibc
import SCEPCrypto
import SCEPServer

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Run the FastCGI server on a Unix or TCP socket.")

    @OptionGroup var options: ConfigOption

    @Option(name: .long, help: "Unix socket path, or HOST:PORT for TCP (overrides server.socket).")
    var socket: String?

    @Option(name: .long, help: "Worker threads (overrides server.workers).")
    var workers: Int?

    @Flag(name: .long, help: "Log every request's outcome to standard error, not only problems.")
    var verbose = false

    func run() throws {
        var config = try Self.loadConfiguration(self.options.config)
        if let socket { config.server.socket = socket }
        if let workers { config.server.workers = workers }
        let diagnostics = Diagnostics(minimum: self.verbose ? min(config.logLevel, .info) : config.logLevel)
        let responder: SCEPResponder
        do { responder = try Self.start(config, diagnostics) } catch let error as ValidationError {
            // A CA key that is unreadable or corrupt, a missing file: the problems, at error
            // priority, and exit 1; not the usage text (nothing was wrong with the command line).
            diagnostics.log(.error, error.message)
            throw ExitCode(1)
        }
        // Socket activation (scep-fcgi.socket, systemd-socket-activate) wins over server.socket.
        let server = try FastCGIServer.systemdSocket.map { FastCGIServer(systemdSocket: $0) }
            ?? FastCGIServer(address: config.server.socket, mode: config.server.socketMode, group: config.server.socketGroup)
        Self.serve(server, config, responder, diagnostics)
    }

    /// spawn-fcgi / mod_fcgid (listening socket on fd 0) or systemd socket activation (fd 3),
    /// started with no arguments.
    static func runInherited() -> Never {
        do {
            let config = try loadConfiguration(nil)
            let diagnostics = Diagnostics(minimum: config.logLevel)
            let responder = try start(config, diagnostics)
            let server = FastCGIServer.systemdSocket.map { FastCGIServer(systemdSocket: $0) } ?? FastCGIServer(inherited: ())
            serve(server, config, responder, diagnostics)
        } catch {
            Diagnostics().log(.error, "\(error)")
            Glibc.exit(1)
        }
    }

    /// Plain CGI: answer one request; a broken setup is an HTTP 500 with a fixed text.
    static func runCGI() -> Never {
        let diagnostics = Diagnostics()
        do {
            let config = try loadConfiguration(nil)
            let responder = try start(config, diagnostics)
            CGI.serveOne(maxBodyBytes: config.server.maxBodyBytes, handler: Wiring.handler(responder))
        } catch {
            diagnostics.log(.error, "\(error)")
            CGI.serveOne(maxBodyBytes: 0) { _ in
                GatewayResponse(status: 500, reason: "Internal Server Error", contentType: "text/plain",
                    body: Array("scep-fcgi is not configured correctly, see the server log\n".utf8))
            }
        }
        Glibc.exit(0)
    }

    static func loadConfiguration(_ file: String?) throws -> Configuration {
        do { return try Configuration.load(file: file, environment: ProcessInfo.processInfo.environment) } catch let error as ServerError {
            throw ValidationError(error.message)
        }
    }

    static func start(_ config: Configuration, _ diagnostics: Diagnostics) throws -> SCEPResponder {
        try OpenSSL.bootstrap()
        try FastCGIServer.bootstrap()
        try CurlHTTPTransport.bootstrap()
        switch Wiring.makeResponder(config, diagnostics: diagnostics) {
        case .success(let responder): return responder
        case .failure(let problems):
            throw ValidationError("configuration problems:\n  " + problems.lines.joined(separator: "\n  "))
        }
    }

    /// Each open FastCGI connection is a descriptor: the soft limit (often 1024) is raised toward
    /// the hard one so that server.max_connections, plus the files and sockets a request uses, fit.
    static func raiseDescriptorLimit(for connections: Int, _ diagnostics: Diagnostics) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        let wanted = rlim_t(connections + 256)
        guard limit.rlim_cur < wanted else { return }
        limit.rlim_cur = min(wanted, limit.rlim_max)
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 || limit.rlim_cur < wanted {
            diagnostics.log(.warning, "open files limited to \(limit.rlim_cur): server.max_connections = \(connections) may not fit (raise LimitNOFILE)")
        }
    }

    static func serve(_ server: FastCGIServer, _ config: Configuration, _ responder: SCEPResponder, _ diagnostics: Diagnostics) -> Never {
        signal(SIGPIPE, SIG_IGN)  // a client that went away must not kill the process
        Self.raiseDescriptorLimit(for: config.server.maxConnections, diagnostics)
        let workers = config.effectiveWorkers
        diagnostics.log(.notice, "scep-fcgi \(SCEPFCGI.version) serving on \(server.description) with \(workers) workers (\(OpenSSL.version))")
        let connections = ConnectionGuard(
            deadlineSeconds: config.server.readTimeoutSeconds, allowed: config.allowedPeers(environment: ProcessInfo.processInfo.environment),
            report: { diagnostics.log(.warning, $0) })
        server.run(
            workers: workers, maxBodyBytes: config.server.maxBodyBytes, maxConnections: config.server.maxConnections,
            idleSeconds: config.server.keepaliveTimeoutSeconds, connections: connections,
            onShutdown: { diagnostics.log(.notice, $0) }, onReopen: { responder.reopenLogs() },
            periodic: (60, { responder.housekeeping() }),
            handler: Wiring.handler(responder))
    }
}
