import FoundationEssentials
import SCEPCrypto
import Glibc

extension Configuration {
    /// One settable key: its name and how a text value is applied.
    struct Key: Sendable {
        let name: String
        /// Repeatable keys add a value per line; their environment variable holds a comma-separated list.
        let repeatable: Bool
        let apply: @Sendable (inout Configuration, String) throws -> Void
        let reset: @Sendable (inout Configuration) -> Void

        init(name: String, apply: @escaping @Sendable (inout Configuration, String) throws -> Void) {
            self.name = name
            self.repeatable = false
            self.apply = apply
            self.reset = { _ in }
        }

        init(list name: String, _ path: WritableKeyPath<Configuration, [String]> & Sendable, validate: @escaping @Sendable (String) throws -> Void) {
            self.name = name
            self.repeatable = true
            self.apply = { config, value in
                for item in value.split(separator: ",").map({ $0.trimmedWhitespace }) where !item.isEmpty {
                    try validate(item)
                    config[keyPath: path].append(item)
                }
            }
            self.reset = { $0[keyPath: path] = [] }
        }

        /// `ca.key_passphrase_file` → `SCEP_CA_KEY_PASSPHRASE_FILE`.
        var environmentName: String { "SCEP_" + self.name.replacing(".", with: "_").uppercased() }
    }

    static let keys: [Key] = [
        Key(name: "ca.dir") { $0.ca.dir = $1 },
        Key(name: "ca.key_passphrase_file") { $0.ca.keyPassphraseFile = $1.isEmpty ? nil : $1 },
        Key(name: "challenge.mode") { config, value in
            guard let mode = ChallengeMode(rawValue: value.lowercased()) else {
                throw ServerError(.configuration, "challenge.mode: \"\(value)\" is not one of \(ChallengeMode.allCases.map(\.rawValue))")
            }
            config.challenge.mode = mode
        },
        Key(name: "challenge.static_password_file") { $0.challenge.staticPasswordFile = $1.isEmpty ? nil : $1 },
        Key(name: "intune.tenant") { $0.intune.tenant = $1 },
        Key(name: "intune.client_id") { $0.intune.clientID = $1 },
        Key(name: "intune.client_secret_file") { $0.intune.clientSecretFile = $1.isEmpty ? nil : $1 },
        Key(name: "intune.authority") { $0.intune.authority = $1 },
        Key(name: "intune.graph") { $0.intune.graph = $1 },
        Key(name: "intune.resource") { $0.intune.resource = $1 },
        Key(name: "intune.app_id") { $0.intune.appID = $1 },
        Key(name: "intune.provider_name") { $0.intune.providerName = $1 },
        Key(name: "intune.ca_bundle") { $0.intune.caBundle = $1.isEmpty ? nil : $1 },
        Key(name: "intune.proxy") { $0.intune.proxy = $1.isEmpty ? nil : $1 },
        Key(name: "intune.client_certificate_file") { $0.intune.clientCertificateFile = $1.isEmpty ? nil : $1 },
        Key(name: "intune.client_key_file") { $0.intune.clientKeyFile = $1.isEmpty ? nil : $1 },
        Key(name: "intune.ca_configuration") { $0.intune.caConfiguration = $1.isEmpty ? nil : $1 },
        Key(name: "intune.timeout_seconds") { config, value in
            // An enrollment makes two Intune operations (validate, notify), each with this budget;
            // both must fit in the web server's FastCGI read timeout (60 s in our configs).
            guard let seconds = Double(value), seconds >= 1, seconds <= 25 else {
                throw ServerError(.configuration, "intune.timeout_seconds: \"\(value)\" is not a number of seconds in 1...25")
            }
            config.intune.timeoutSeconds = seconds
        },
        Key(name: "issue.validity_days") { $0.issue.validityDays = try integer($1, "issue.validity_days", 1...36500) },
        Key(name: "issue.backdate_minutes") { $0.issue.backdateMinutes = try integer($1, "issue.backdate_minutes", 0...1440) },
        Key(name: "issue.extended_key_usage") { config, value in
            let usages = value.split(separator: ",").map { $0.trimmedWhitespace }.filter { !$0.isEmpty }
            let invalid = IssuanceProfile.invalidExtendedKeyUsages(usages)
            guard invalid.isEmpty else {
                throw ServerError(
                    .configuration,
                    "issue.extended_key_usage: \(invalid.map { "\"\($0)\"" }.joined(separator: ", ")) is not an EKU name "
                        + "(clientAuth, serverAuth, emailProtection, codeSigning, OCSPSigning, …) or a dotted OID")
            }
            config.issue.extendedKeyUsage = usages
        },
        Key(name: "issue.min_rsa_bits") { $0.issue.minRSABits = try integer($1, "issue.min_rsa_bits", 1024...16384) },
        Key(name: "issue.renewal") { $0.issue.renewal = try boolean($1, "issue.renewal") },
        Key(name: "issue.renewal_requires_challenge") { $0.issue.renewalRequiresChallenge = try boolean($1, "issue.renewal_requires_challenge") },
        Key(name: "issue.renewal_window_days") { $0.issue.renewalWindowDays = try integer($1, "issue.renewal_window_days", 0...36500) },
        Key(name: "issue.renewal_allow_subject_change") {
            $0.issue.renewalAllowSubjectChange = try boolean($1, "issue.renewal_allow_subject_change")
        },
        Key(name: "issue.approval") { config, value in
            guard let approval = Approval(rawValue: value.lowercased()) else {
                throw ServerError(.configuration, "issue.approval: \"\(value)\" is not one of \(Approval.allCases.map(\.rawValue))")
            }
            config.issue.approval = approval
        },
        Key(name: "issue.allow_des_requests") { $0.issue.allowDESRequests = try boolean($1, "issue.allow_des_requests") },
        Key(list: "issue.crl_url", \.issue.crlURLs, validate: { try url($0, "issue.crl_url") }),
        Key(list: "issue.aia_url", \.issue.aiaURLs, validate: { try url($0, "issue.aia_url") }),
        Key(name: "issue.max_subject_alt_names") { $0.issue.maxSubjectAltNames = try integer($1, "issue.max_subject_alt_names", 0...10000) },
        Key(name: "issue.max_subject_bytes") { $0.issue.maxSubjectBytes = try integer($1, "issue.max_subject_bytes", 64...65536) },
        Key(name: "issue.signer_clock_skew_minutes") {
            $0.issue.signerClockSkewMinutes = try integer($1, "issue.signer_clock_skew_minutes", 0...525600)
        },
        Key(name: "issue.sid_extension") { config, value in
            guard let mode = SIDExtension(rawValue: value.lowercased()) else {
                throw ServerError(.configuration, "issue.sid_extension: \"\(value)\" is not one of \(SIDExtension.allCases.map(\.rawValue))")
            }
            config.issue.sidExtension = mode
        },
        Key(name: "issue.allow_requested_sid") { $0.issue.allowRequestedSID = try boolean($1, "issue.allow_requested_sid") },
        Key(name: "issue.honor_requested_validity") { $0.issue.honorRequestedValidity = try boolean($1, "issue.honor_requested_validity") },
        Key(name: "ca.key_pin_file") { $0.ca.keyPINFile = $1.isEmpty ? nil : $1 },
        Key(name: "ca.pkcs11_module") { $0.ca.pkcs11Module = $1.isEmpty ? nil : $1 },
        Key(name: "ca.crl_validity_hours") { $0.ca.crlValidityHours = try integer($1, "ca.crl_validity_hours", 1...8760) },
        Key(name: "store.transaction_retention_days") {
            $0.store.transactionRetentionDays = try integer($1, "store.transaction_retention_days", 1...3650)
        },
        Key(name: "store.backend") { config, value in
            guard let backend = Store.Backend(rawValue: value.lowercased()) else {
                throw ServerError(.configuration, "store.backend: \"\(value)\" is not one of \(Store.Backend.allCases.map(\.rawValue))")
            }
            config.store.backend = backend
        },
        Key(name: "store.postgresql_dsn_file") { $0.store.postgresqlDSNFile = $1.isEmpty ? nil : $1 },
        Key(name: "store.postgresql_pool_size") { $0.store.postgresqlPoolSize = try integer($1, "store.postgresql_pool_size", 1...64) },
        Key(name: "audit.path") { $0.audit.path = $1 },
        Key(name: "audit.sync") { $0.audit.sync = try boolean($1, "audit.sync") },
        Key(name: "audit.chain_key_file") { $0.audit.chainKeyFile = $1.isEmpty ? nil : $1 },
        Key(name: "server.socket") { $0.server.socket = $1 },
        Key(name: "server.socket_mode") { config, value in
            guard let mode = Int(value, radix: 8), (0...0o777).contains(mode) else {
                throw ServerError(.configuration, "server.socket_mode: \"\(value)\" is not an octal mode like 0660")
            }
            config.server.socketMode = mode
        },
        Key(name: "log.level") { config, value in
            guard let level = Diagnostics.Level(configured: value) else {
                throw ServerError(.configuration, "log.level: \"\(value)\" is not one of error, warn, notice, info, debug")
            }
            config.logLevel = level
        },
        Key(name: "server.socket_group") { config, value in
            guard !value.isEmpty else { config.server.socketGroup = nil; return }
            guard getgrnam(value) != nil else {
                throw ServerError(.configuration, "server.socket_group: no group \"\(value)\" on this system")
            }
            config.server.socketGroup = value
        },
        Key(name: "server.workers") { $0.server.workers = try integer($1, "server.workers", 1...1024) },
        Key(name: "server.max_body_bytes") { $0.server.maxBodyBytes = try integer($1, "server.max_body_bytes", 1024...(64 << 20)) },
        Key(name: "server.read_timeout_seconds") { config, value in
            guard let seconds = Double(value), seconds >= 1, seconds <= 600 else {
                throw ServerError(.configuration, "server.read_timeout_seconds: \"\(value)\" is not a number of seconds in 1...600")
            }
            config.server.readTimeoutSeconds = seconds
        },
        Key(name: "server.max_connections") { $0.server.maxConnections = try integer($1, "server.max_connections", 16...65536) },
        Key(name: "server.keepalive_timeout_seconds") {
            $0.server.keepaliveTimeoutSeconds = Double(try integer($1, "server.keepalive_timeout_seconds", 1...3600))
        },
        Key(list: "server.allow_from", \.server.allowFrom, validate: { address in
            var v4 = in_addr()
            var v6 = in6_addr()
            guard inet_pton(AF_INET, address, &v4) == 1 || inet_pton(AF_INET6, address, &v6) == 1 else {
                throw ServerError(.configuration, "server.allow_from: \"\(address)\" is not an IPv4 or IPv6 address")
            }
        }),
        Key(name: "metrics.path") { $0.monitoring.metricsPath = try endpointPath($1, "metrics.path") },
        Key(name: "metrics.counters_file") { $0.monitoring.countersFile = $1.isEmpty ? nil : $1 },
        Key(name: "health.path") { $0.monitoring.healthPath = try endpointPath($1, "health.path") },
        Key(name: "ocsp.path") { config, value in
            guard value.isEmpty || (value.hasPrefix("/") && !value.contains("?") && !value.contains(" ") && !value.hasSuffix("/")) else {
                throw ServerError(.configuration, "ocsp.path: \"\(value)\" is not an absolute path like /ocsp (empty turns the responder off)")
            }
            config.ocsp.path = value.isEmpty ? nil : value
        },
        Key(name: "ocsp.validity_minutes") { $0.ocsp.validityMinutes = try integer($1, "ocsp.validity_minutes", 1...10080) },
        Key(list: "issue.ocsp_url", \.issue.ocspURLs, validate: { try url($0, "issue.ocsp_url") }),
    ]

    /// A monitoring path: absolute, no query, and outside the SCEP locations of the shipped web
    /// server snippets (`/scep`, `/scep/…`, `/cgi-bin/pkiclient.exe`), which anyone may reach:
    /// there the snippets' allow list for the metrics would not apply.
    private static func endpointPath(_ text: String, _ name: String) throws -> String? {
        guard !text.isEmpty else { return nil }
        guard text.hasPrefix("/"), !text.contains("?"), !text.contains(" ") else {
            throw ServerError(.configuration, "\(name): \"\(text)\" is not an absolute path like /scep-metrics")
        }
        let lowered = text.lowercased()
        if lowered == "/scep" || lowered.hasPrefix("/scep/") || lowered == "/cgi-bin/pkiclient.exe" {
            throw ServerError(.configuration, "\(name): \(text) is inside the public SCEP location; use a path of its own like /scep-metrics")
        }
        return text
    }

    /// Loads the file (if any), then applies `SCEP_*` environment variables over it.
    ///
    /// - Parameters:
    ///   - file: the configuration file; nil means `SCEP_CONFIG`, and no file at all if that is unset.
    /// - Throws: ``ServerError/Code/configuration`` listing every problem found, one per line, each
    ///   naming the file and line (or the variable) and the key at fault.
    public static func load(file: String?, environment: [String: String]) throws -> Configuration {
        var config = Configuration()
        var problems: [String] = []
        if let path = file ?? environment["SCEP_CONFIG"] {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ServerError(.configuration, "configuration file \(path) cannot be read")
            }
            problems += config.apply(ini: String(decoding: data, as: UTF8.self), source: path)
        }
        for key in keys {
            if let value = environment[key.environmentName] {
                key.reset(&config)
                do { try key.apply(&config, value.trimmedWhitespace) } catch let error as ServerError {
                    problems.append("\(key.environmentName): \(error.message)")
                }
            }
        }
        guard problems.isEmpty else { throw ServerError(.configuration, problems.joined(separator: "\n")) }
        return config
    }

    /// Parses a configuration text on its own (no file, no environment): the configuration and
    /// every problem found. For tests and the fuzzer.
    public static func parse(ini text: String, source: String = "input") -> (Configuration, [String]) {
        var config = Configuration()
        let problems = config.apply(ini: text, source: source)
        return (config, problems + (problems.isEmpty ? config.problems() : []))
    }

    /// Applies an INI-style text: `[section]` headers, `key = value` lines, `#` or `;` comments on
    /// their own line or after a value (preceded by whitespace; a double-quoted value keeps them).
    /// Returns every problem, `FILE:LINE: message` each; the other lines still apply.
    mutating func apply(ini text: String, source: String) -> [String] {
        var problems: [String] = []
        var section = ""
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmedWhitespace
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            let where_ = "\(source):\(number + 1)"
            if line.hasPrefix("[") {
                guard line.hasSuffix("]") else {
                    problems.append("\(where_): a section header must end with ]")
                    continue
                }
                section = line.dropFirst().dropLast().trimmedWhitespace.lowercased()
                continue
            }
            guard let equals = line.firstIndex(of: "=") else {
                problems.append("\(where_): expected key = value")
                continue
            }
            let name = line[..<equals].trimmedWhitespace.lowercased()
            let value = Self.value(String(line[line.index(after: equals)...]))
            let fullName = name.contains(".") ? name : "\(section).\(name)"
            guard let key = Configuration.keys.first(where: { $0.name == fullName }) else {
                // Suggestions for the first few only: a file of thousands of bad lines stays quick.
                let suggestion = problems.count < 20 ? Self.nearestKey(to: fullName).map { " (did you mean \($0)?)" } ?? "" : ""
                problems.append("\(where_): unknown key \(fullName)\(suggestion)")
                continue
            }
            do { try key.apply(&self, value) } catch let error as ServerError {
                problems.append("\(where_): \(error.message)")
            } catch {
                problems.append("\(where_): \(error)")
            }
        }
        return problems
    }

    /// The value of a `key = value` line: a double-quoted value is taken as it is; otherwise an
    /// inline comment (whitespace, then `;` or `#`) is cut off.
    static func value(_ text: String) -> String {
        let trimmed = text.trimmedWhitespace
        if trimmed.hasPrefix("\""), let close = trimmed.dropFirst().firstIndex(of: "\"") {
            return String(trimmed[trimmed.index(after: trimmed.startIndex)..<close])
        }
        var previousIsSpace = false
        for index in trimmed.indices {
            let character = trimmed[index]
            if (character == ";" || character == "#") && previousIsSpace { return trimmed[..<index].trimmedWhitespace }
            previousIsSpace = character == " " || character == "\t"
        }
        return trimmed
    }

    /// The known key closest to a mistyped one (edit distance at most 3), for the error message.
    static func nearestKey(to name: String) -> String? {
        guard name.count <= 64 else { return nil }  // no key is that long; the distance is quadratic
        func distance(_ a: [UInt8], _ b: [UInt8]) -> Int {
            var row = Array(0...b.count)
            for (i, x) in a.enumerated() {
                var previous = row[0]
                row[0] = i + 1
                for (j, y) in b.enumerated() {
                    let current = row[j + 1]
                    row[j + 1] = min(row[j + 1] + 1, row[j] + 1, previous + (x == y ? 0 : 1))
                    previous = current
                }
            }
            return row[b.count]
        }
        let typed = Array(name.utf8)
        let scored = Configuration.keys.map { ($0.name, distance(typed, Array($0.name.utf8))) }.filter { $0.1 <= 3 }
        return scored.min { $0.1 < $1.1 }?.0
    }

    private static func integer(_ text: String, _ name: String, _ range: ClosedRange<Int>) throws -> Int {
        guard let value = Int(text), range.contains(value) else {
            throw ServerError(.configuration, "\(name): \"\(text)\" is not an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    /// An Entra tenant: a GUID (8-4-4-4-12 hex digits) or a DNS domain (`contoso.onmicrosoft.com`).
    static func isTenant(_ text: String) -> Bool {
        let groups = text.split(separator: "-", omittingEmptySubsequences: false)
        if groups.map(\.count) == [8, 4, 4, 4, 12], groups.allSatisfy({ $0.allSatisfy(\.isHexDigit) }) { return true }
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        return labels.count >= 2 && labels.allSatisfy { label in
            !label.isEmpty && label.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
        }
    }

    /// `server.socket`: an absolute Unix socket path that fits `sun_path` (108 bytes), or
    /// `HOST:PORT` / `:PORT` with a port in 1...65535.
    static func socketProblem(_ socket: String) -> String? {
        if socket.hasPrefix("/") {
            return socket.utf8.count < 108 ? nil : "server.socket: \(socket) is longer than a Unix socket path may be (107 bytes)"
        }
        guard let colon = socket.lastIndex(of: ":"), let port = Int(socket[socket.index(after: colon)...]), (1...65535).contains(port) else {
            return "server.socket: \"\(socket)\" is neither an absolute Unix socket path nor HOST:PORT"
        }
        return nil
    }

    /// An http(s) URL without the characters OpenSSL's extension syntax would split on.
    private static func url(_ text: String, _ name: String) throws {
        guard text.hasPrefix("http://") || text.hasPrefix("https://") || text.hasPrefix("ldap://"),
            !text.contains(","), !text.contains(" ")
        else { throw ServerError(.configuration, "\(name): \"\(text)\" is not an http(s) or ldap URL without commas") }
    }

    private static func boolean(_ text: String, _ name: String) throws -> Bool {
        switch text.lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw ServerError(.configuration, "\(name): \"\(text)\" is not true or false")
        }
    }

    /// Worker threads to run: the configured count, or enough to keep both RSA-bound work and
    /// requests waiting on the challenge validator moving.
    ///
    /// With Intune, most of a request's time is spent waiting on the network, so many more threads
    /// are needed for concurrent enrollments to overlap their Intune calls.
    public var effectiveWorkers: Int {
        if self.server.workers > 0 { return self.server.workers }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        switch self.challenge.mode {
        case .static: return max(8, 4 * cores)
        case .intune: return max(64, 16 * cores)
        }
    }

    /// Checks what can be checked without touching CA material: required keys and files.
    /// Returns one line per problem; empty when fine.
    public func problems() -> [String] {
        var out: [String] = []
        if self.ca.dir.isEmpty { out.append("ca.dir is not set") }
        if self.audit.path.isEmpty { out.append("audit.path is not set") }
        switch self.challenge.mode {
        case .static:
            if let file = self.challenge.staticPasswordFile {
                if let problem = SecretFile.problem(file, key: "challenge.static_password_file") { out.append(problem) }
            } else {
                out.append("challenge.static_password_file is not set (challenge.mode = static)")
            }
        case .intune:
            if self.intune.tenant.isEmpty {
                out.append("intune.tenant is not set (challenge.mode = intune)")
            } else if !Self.isTenant(self.intune.tenant) {
                out.append("intune.tenant: \"\(self.intune.tenant)\" is neither a tenant GUID nor a domain like contoso.onmicrosoft.com")
            }
            if self.intune.clientID.isEmpty { out.append("intune.client_id is not set (challenge.mode = intune)") }
            out += self.intune.credentialProblems()
            for (key, value) in [("intune.authority", self.intune.authority), ("intune.graph", self.intune.graph),
                ("intune.resource", self.intune.resource)]
            where !(value.hasPrefix("https://") || value.hasPrefix("http://")) {
                out.append("\(key): \"\(value)\" is not an http(s) URL")
            }
            if let bundle = self.intune.caBundle, !FileManager.default.isReadableFile(atPath: bundle) {
                out.append("intune.ca_bundle: \(bundle) cannot be read")
            }
        }
        if self.store.backend == .postgresql {
            if let file = self.store.postgresqlDSNFile {
                if let problem = SecretFile.problem(file, key: "store.postgresql_dsn_file") { out.append(problem) }
            } else {
                out.append("store.postgresql_dsn_file is not set (store.backend = postgresql)")
            }
        }
        if let problem = Self.socketProblem(self.server.socket) { out.append(problem) }
        if self.issue.approval == .manual && self.challenge.mode == .intune {
            out.append("issue.approval = manual cannot be combined with challenge.mode = intune (Intune authorises each request itself)")
        }
        if let file = self.ca.keyPassphraseFile, let problem = SecretFile.problem(file, key: "ca.key_passphrase_file") {
            out.append(problem)
        }
        if let file = self.audit.chainKeyFile, let problem = SecretFile.problem(file, key: "audit.chain_key_file") { out.append(problem) }
        if let metrics = self.monitoring.metricsPath, metrics == self.monitoring.healthPath {
            out.append("metrics.path and health.path are both \(metrics): give each its own path")
        }
        return out
    }
}
