import CurlHTTP
import FastCGI
import FoundationEssentials
import Glibc
import IntuneChallenge
import SCEPCrypto
import SCEPServer
import SCEPStore
import FileStore
import PostgreSQLStore

/// The composition root: the only place that knows every concrete type.
enum Wiring {
    /// Loads and validates everything, or returns every problem found (one line each).
    static func makeResponder(_ config: Configuration, diagnostics: Diagnostics) -> Result<SCEPResponder, Problems> {
        let problems = config.problems()
        guard problems.isEmpty else { return .failure(Problems(lines: problems)) }
        do {
            let directory = CADirectory(config.ca)
            let material: CAMaterialSource
            do { material = try CAMaterialSource(directory: directory, passphraseFile: config.ca.keyPassphraseFile, diagnostics: diagnostics) } catch {
                return .failure(Problems(lines: error.lines))
            }
            let store = try Self.store(config)
            let storeProblems = Self.storeProblems(store)
            guard storeProblems.isEmpty else { return .failure(Problems(lines: storeProblems)) }
            let validator: any ChallengeValidator
            switch config.challenge.mode {
            case .static:
                var password = try SecretFile.read(config.challenge.staticPasswordFile ?? "", key: "challenge.static_password_file")
                validator = StaticChallengeValidator(password: password)
                OpenSSL.cleanse(&password)
            case .intune:
                validator = try self.intuneValidator(config.intune)
            }
            var audit: any AuditSink = try JSONLinesAuditSink(
                path: config.audit.path, sync: config.audit.sync, chainKey: try self.chainKey(config), diagnostics: diagnostics)
            var metrics: Metrics? = nil
            if config.monitoring.enabled {
                let counters = try Metrics(path: self.countersPath(config), create: true)
                audit = CountingAuditSink(audit, metrics: counters)
                metrics = counters
            }
            let responder = try SCEPResponder(
                material: material, store: store, validator: validator, audit: audit,
                policy: IssuancePolicy(config.issue, challengeMode: config.challenge.mode, store: config.store),
                crls: CRLPublisher(directory: directory, validityHours: config.ca.crlValidityHours), diagnostics: diagnostics,
                metrics: metrics, monitoring: config.monitoring, ocsp: config.ocsp)
            return .success(responder)
        } catch let error as ServerError {
            return .failure(Problems(lines: [error.message]))
        } catch {
            return .failure(Problems(lines: ["\(error)"]))
        }
    }

    /// The store of `config`: the CA directory's files, or PostgreSQL (`store.backend`).
    static func store(_ config: Configuration) throws -> any CertificateStore {
        switch config.store.backend {
        case .file:
            return try FileCertificateStore(root: config.ca.dir, retentionDays: config.store.transactionRetentionDays)
        case .postgresql:
            guard let file = config.store.postgresqlDSNFile else { throw ServerError(.configuration, "store.postgresql_dsn_file is not set") }
            var dsn = try SecretFile.read(file, key: "store.postgresql_dsn_file")
            defer { OpenSSL.cleanse(&dsn) }
            return try PostgreSQLCertificateStore(
                dsn: String(decoding: dsn, as: UTF8.self).trimmedWhitespace, retentionDays: config.store.transactionRetentionDays,
                poolSize: config.store.postgresqlPoolSize)
        }
    }

    /// What would stop `store` from taking certificates, one line each (with `checking`,
    /// `scep-fcgi check`'s further findings).
    static func storeProblems(_ store: any CertificateStore, checking: Bool = false) -> [String] {
        if let file = store as? FileCertificateStore { return file.problems(checking: checking) }
        if let database = store as? PostgreSQLCertificateStore { return database.schemaProblem().map { [$0] } ?? [] }
        return []
    }

    static func storeProblems(_ config: Configuration, checking: Bool = false) -> [String] {
        do { return Self.storeProblems(try Self.store(config), checking: checking) } catch { return ["\(error)"] }
    }

    /// The `audit.chain_key_file` secret, read once.
    static func chainKey(_ config: Configuration) throws -> [UInt8]? {
        try config.audit.chainKeyFile.map { try SecretFile.read($0, key: "audit.chain_key_file") }
    }

    static func countersPath(_ config: Configuration) -> String {
        config.monitoring.countersFile ?? Metrics.defaultPath(caDirectory: config.ca.dir)
    }

    /// The audit sink of the `ca` commands: counted too when the server's counters file exists,
    /// so `scep_ca_operations_total` matches the audit log (the commands never create the file:
    /// run as another user, they would leave it unwritable for the server).
    static func commandAuditSink(_ config: Configuration, path: String) throws -> any AuditSink {
        let audit = try JSONLinesAuditSink(path: path, sync: true, chainKey: path == config.audit.path ? try self.chainKey(config) : nil)
        guard config.monitoring.enabled, path == config.audit.path, let metrics = try? Metrics(path: self.countersPath(config), create: false) else { return audit }
        return CountingAuditSink(audit, metrics: metrics)
    }

    /// The Intune validator with its libcurl transport; the credential files are read at each
    /// token request (rotation without a restart).
    static func intuneValidator(_ intune: Configuration.Intune) throws -> IntuneChallengeValidator {
        IntuneChallengeValidator(settings: IntuneSettings(intune), credential: EntraCredential(intune), transport: self.intuneTransport(intune))
    }

    /// The Intune revocation sync for the CA of `material`: it answers requests whose
    /// caConfiguration is ours, or that name one of our CAs as issuer.
    static func intuneRevocationSync(_ config: Configuration, material: CAMaterial) throws -> IntuneRevocationSync {
        let settings = IntuneSettings(config.intune)
        let subjects = (material.authorities + [material.next].compactMap { $0 }).map(\.certificate.subject)
        let identity = IntuneRevocationSync.Identity(
            caConfigurations: [config.intune.caConfiguration].compactMap { $0 } + subjects, issuerNames: subjects)
        return IntuneRevocationSync(
            settings: settings, credential: EntraCredential(config.intune), transport: self.intuneTransport(config.intune), identity: identity)
    }

    static func intuneTransport(_ intune: Configuration.Intune) -> CurlHTTPTransport {
        CurlHTTPTransport(
            connectTimeout: min(5, intune.timeoutSeconds), totalTimeout: intune.timeoutSeconds, caBundle: intune.caBundle,
            proxy: intune.proxy, userAgent: intune.providerName)
    }

    /// Adapts the transport-neutral core to CGI/FastCGI parameters.
    static func handler(_ responder: SCEPResponder) -> @Sendable (GatewayRequest) -> GatewayResponse {
        { request in
            let response = responder.respond(
                to: SCEPHTTPRequest(
                    method: request.params["REQUEST_METHOD"] ?? "GET",
                    query: request.params["QUERY_STRING"] ?? "",
                    body: request.body, bodyTooLarge: request.bodyTooLarge,
                    remoteAddr: request.params["REMOTE_ADDR"] ?? "", path: self.path(request.params), clientGone: request.peerClosed,
                    requestURI: request.params["REQUEST_URI"]))
            return GatewayResponse(
                status: response.status, reason: SCEPHTTPResponse.reasonPhrases[response.status] ?? "Error",
                contentType: response.contentType, body: response.body, headers: response.headers.map { ($0.name, $0.value) })
        }
    }
}

extension Wiring {
    /// The request path from CGI parameters (RFC 3875 §4.1.13, §4.1.5): SCRIPT_NAME plus PATH_INFO
    /// (nginx's snippet passes `$uri` as SCRIPT_NAME; mod_fcgid's ScriptAlias splits the two), else
    /// REQUEST_URI up to its query (mod_proxy_fcgi always sends it).
    static func path(_ params: [String: String]) -> String? {
        if let script = params["SCRIPT_NAME"], !script.isEmpty { return script + (params["PATH_INFO"] ?? "") }
        guard let uri = params["REQUEST_URI"], !uri.isEmpty else { return nil }
        return String(uri.prefix { $0 != "?" })
    }
}

struct Problems: Error {
    let lines: [String]
}
