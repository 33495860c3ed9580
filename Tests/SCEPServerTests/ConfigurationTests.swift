import Foundation
import SCEPCrypto
import Testing

@testable import FileStore
@testable import SCEPServer
import DurableFiles

@Suite("Configuration: file, environment, validation")
struct ConfigurationTests {
    static func temp(_ text: String, mode: mode_t = 0o600) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("scep-conf-\(UUID().uuidString)").path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, mode)
        return path
    }

    @Test("file keys, environment overrides and defaults")
    func load() throws {
        let file = try Self.temp(
            """
            # comment
            [ca]
            dir = /srv/ca
            key_passphrase_file = "/etc/scep/pass"
            [issue]
            validity_days = 30
            extended_key_usage = clientAuth, serverAuth
            ; another comment
            [server]
            socket = 127.0.0.1:9000
            socket_mode = 0666
            """)
        let config = try Configuration.load(
            file: file, environment: ["SCEP_ISSUE_VALIDITY_DAYS": "90", "SCEP_AUDIT_PATH": "/var/log/scep.jsonl", "UNRELATED": "x"])
        #expect(config.ca.dir == "/srv/ca")
        #expect(config.ca.keyPassphraseFile == "/etc/scep/pass")
        #expect(config.issue.validityDays == 90)
        #expect(config.issue.extendedKeyUsage == ["clientAuth", "serverAuth"])
        #expect(config.audit.path == "/var/log/scep.jsonl")
        #expect(config.server.socket == "127.0.0.1:9000")
        #expect(config.server.socketMode == 0o666)
        #expect(config.server.maxBodyBytes == 1 << 20)
        #expect(config.challenge.mode == .static)
        #expect(config.audit.sync)
    }

    @Test("strong mapping and validity keys: defaults, values, mistakes")
    func partnerKeys() throws {
        let defaults = try Configuration.load(file: try Self.temp("[ca]\ndir = /srv/ca\n"), environment: [:]).issue
        #expect(defaults.sidExtension == .auto && !defaults.allowRequestedSID && defaults.honorRequestedValidity)
        let set = try Configuration.load(
            file: try Self.temp("[issue]\nsid_extension = never\nallow_requested_sid = true\nhonor_requested_validity = false\n"),
            environment: [:]
        ).issue
        #expect(set.sidExtension == .never && set.allowRequestedSID && !set.honorRequestedValidity)
        for bad in ["[issue]\nsid_extension = always\n", "[issue]\nallow_requested_sid = perhaps\n"] {
            #expect(throws: ServerError(.configuration, "")) { try Configuration.load(file: try Self.temp(bad), environment: [:]) }
        }
    }

    @Test("SCEP_CONFIG names the file; environment alone is enough")
    func environmentOnly() throws {
        let file = try Self.temp("[ca]\ndir = /from/file\n")
        #expect(try Configuration.load(file: nil, environment: ["SCEP_CONFIG": file]).ca.dir == "/from/file")
        let env = try Configuration.load(file: nil, environment: ["SCEP_CA_DIR": "/from/env", "SCEP_SERVER_WORKERS": "3"])
        #expect(env.ca.dir == "/from/env" && env.effectiveWorkers == 3)
    }

    @Test("mistakes are named with file and line")
    func errors() throws {
        let unknown = try Self.temp("[ca]\ndri = /typo\n")
        #expect(throws: ServerError(.configuration, "")) { try Configuration.load(file: unknown, environment: [:]) }
        do { _ = try Configuration.load(file: unknown, environment: [:]) } catch let error as ServerError {
            #expect(error.message.contains(":2: unknown key ca.dri"))
        }
        for (key, value) in [("SCEP_ISSUE_VALIDITY_DAYS", "0"), ("SCEP_SERVER_SOCKET_MODE", "999"), ("SCEP_AUDIT_SYNC", "maybe"),
            ("SCEP_CHALLENGE_MODE", "magic")]
        {
            #expect(throws: ServerError(.configuration, "")) { try Configuration.load(file: nil, environment: [key: value]) }
        }
        #expect(throws: ServerError(.configuration, "")) { try Configuration.load(file: "/nonexistent/scep.conf", environment: [:]) }
    }

    @Test("tenant syntax and the socket address are checked by problems()")
    func tenantAndSocket() {
        #expect(Configuration.isTenant("00000000-0000-0000-0000-000000000000"))
        #expect(Configuration.isTenant("contoso.onmicrosoft.com"))
        #expect(!Configuration.isTenant("contoso") && !Configuration.isTenant("not a tenant!") && !Configuration.isTenant("a..b"))
        #expect(Configuration.socketProblem("/run/scep-fcgi/scep-fcgi.sock") == nil)
        #expect(Configuration.socketProblem("127.0.0.1:9000") == nil && Configuration.socketProblem(":9000") == nil)
        #expect(Configuration.socketProblem("relative.sock") != nil && Configuration.socketProblem("host:99999") != nil)
        #expect(Configuration.socketProblem("/" + String(repeating: "x", count: 120)) != nil)
        var config = Configuration()
        config.challenge.mode = .intune
        config.intune.tenant = "contoso"
        #expect(config.problems().contains { $0.hasPrefix("intune.tenant: \"contoso\"") })
    }

    @Test("every problem is reported at once with its line; inline comments are cut; typos get a suggestion")
    func allProblems() throws {
        let file = try Self.temp("""
            [issue]
            validity_days = 30   ; a month
            [intune]
            provider_name = "scep ; fcgi"
            [ca]
            dri = /typo
            [audit]
            sync = maybe
            [server
            """)
        do {
            _ = try Configuration.load(file: file, environment: ["SCEP_ISSUE_MIN_RSA_BITS": "12"])
            Issue.record("accepted")
        } catch let error as ServerError {
            let lines = error.message.split(separator: "\n").map(String.init)
            #expect(lines.count == 4, "\(lines)")
            #expect(lines.contains { $0.hasSuffix(":6: unknown key ca.dri (did you mean ca.dir?)") })
            #expect(lines.contains { $0.contains(":8: audit.sync: \"maybe\"") })
            #expect(lines.contains { $0.hasSuffix(":9: a section header must end with ]") })
            #expect(lines.contains { $0.hasPrefix("SCEP_ISSUE_MIN_RSA_BITS: ") })
        }
        #expect(Configuration.value("30   ; a month") == "30")
        #expect(Configuration.value("a#b") == "a#b")
        #expect(Configuration.value("\"x ; y\" ; z") == "x ; y")
        let ok = try Self.temp("[issue]\nvalidity_days = 30 # a month\n")
        #expect(try Configuration.load(file: ok, environment: [:]).issue.validityDays == 30)
    }

    @Test("extended key usages are checked when loaded, by name or OID; lifecycle keys parse")
    func lifecycleKeys() throws {
        let bad = try Self.temp("[issue]\nextended_key_usage = clientAuth, bogusEKU\n")
        do {
            _ = try Configuration.load(file: bad, environment: [:])
            Issue.record("bogusEKU accepted")
        } catch let error as ServerError {
            #expect(error.message.contains(":2: issue.extended_key_usage: \"bogusEKU\""))
        }
        let good = try Configuration.load(file: nil, environment: ["SCEP_ISSUE_EXTENDED_KEY_USAGE": "serverAuth, 1.3.6.1.5.5.7.3.2"])
        #expect(good.issue.extendedKeyUsage == ["serverAuth", "1.3.6.1.5.5.7.3.2"])
        let file = try Self.temp("""
            [issue]
            renewal = false
            renewal_window_days = 14
            approval = manual
            allow_des_requests = no
            crl_url = http://pki.example/a.crl
            crl_url = http://pki.example/b.crl
            [ca]
            crl_validity_hours = 24
            [store]
            transaction_retention_days = 7
            """)
        let config = try Configuration.load(file: file, environment: [:])
        #expect(!config.issue.renewal && config.issue.renewalWindowDays == 14 && config.issue.approval == .manual)
        #expect(!config.issue.allowDESRequests && config.issue.crlURLs == ["http://pki.example/a.crl", "http://pki.example/b.crl"])
        #expect(config.ca.crlValidityHours == 24 && config.store.transactionRetentionDays == 7)
        // The environment replaces a repeatable key's list.
        let overridden = try Configuration.load(file: file, environment: ["SCEP_ISSUE_CRL_URL": "http://other/c.crl"])
        #expect(overridden.issue.crlURLs == ["http://other/c.crl"])
        #expect(throws: ServerError(.configuration, "")) { try Configuration.load(file: nil, environment: ["SCEP_ISSUE_CRL_URL": "http://a,b"]) }
        #expect(throws: ServerError(.configuration, "")) { try Configuration.load(file: nil, environment: ["SCEP_ISSUE_APPROVAL": "sometimes"]) }
    }

    @Test("intune keys from file and SCEP_INTUNE_* variables; problems() lists what intune mode lacks")
    func intune() throws {
        let file = try Self.temp("[challenge]\nmode = intune\n[intune]\ntenant = contoso.onmicrosoft.com\ntimeout_seconds = 7.5\n")
        var config = try Configuration.load(
            file: file, environment: ["SCEP_INTUNE_CLIENT_ID": "abc", "SCEP_INTUNE_GRAPH": "https://graph.microsoft.us"])
        #expect(config.challenge.mode == .intune)
        #expect(config.intune.tenant == "contoso.onmicrosoft.com" && config.intune.clientID == "abc")
        #expect(config.intune.graph == "https://graph.microsoft.us" && config.intune.timeoutSeconds == 7.5)
        #expect(config.intune.authority == "https://login.microsoftonline.com/")
        #expect(config.intune.providerName.hasPrefix("scep-fcgi/"))
        #expect(config.effectiveWorkers >= 64)
        config.ca.dir = "/x"
        config.audit.path = "/y"
        #expect(config.problems() == ["intune.client_secret_file (or intune.client_certificate_file and intune.client_key_file) is not set (challenge.mode = intune)"])
        config.intune.authority = "login.microsoftonline.com"
        config.intune.clientSecretFile = try Self.temp("secret")
        #expect(config.problems() == ["intune.authority: \"login.microsoftonline.com\" is not an http(s) URL"])
        // The certificate credential instead of the secret: both files, and never both credentials.
        config.intune.authority = "https://login.microsoftonline.com/"
        config.intune.clientCertificateFile = try Self.temp("cert")
        #expect(config.problems().first?.contains("not both") == true)
        config.intune.clientSecretFile = nil
        #expect(config.problems() == ["intune.client_certificate_file and intune.client_key_file go together"])
        config.intune.clientKeyFile = try Self.temp("key")
        #expect(config.problems().isEmpty)
        #expect(throws: ServerError(.configuration, "")) {
            try Configuration.load(file: nil, environment: ["SCEP_INTUNE_TIMEOUT_SECONDS": "90"])
        }
    }

    @Test("problems(): required keys and secret files")
    func problems() throws {
        #expect(Configuration().problems().count == 3)
        let loose = try Self.temp("secret\n", mode: 0o644)
        var config = Configuration()
        config.ca.dir = "/x"
        config.audit.path = "/y"
        config.challenge.staticPasswordFile = loose
        #expect(config.problems().first?.contains("readable by others") == true)
        config.challenge.staticPasswordFile = try Self.temp("secret\n")
        #expect(config.problems().isEmpty)
        #expect(try SecretFile.read(config.challenge.staticPasswordFile!, key: "k") == Array("secret".utf8))
        let empty = try Self.temp("\n")
        #expect(throws: ServerError(.configuration, "")) { try SecretFile.read(empty, key: "k") }
        #expect(try SecretFile.read(empty, key: "k", allowEmpty: true) == [])
        #expect(AtomicFile.directory(of: "/var/log/audit.jsonl") == "/var/log")
        #expect(AtomicFile.directory(of: "/audit.jsonl") == "/")
        #expect(AtomicFile.directory(of: "audit.jsonl") == ".")
    }
}

@Suite("CA directory")
struct CADirectoryTests {
    static func fresh() -> CADirectory {
        CADirectory(FileManager.default.temporaryDirectory.appendingPathComponent("scep-cadir-\(UUID().uuidString)").path)
    }

    @Test("init writes the layout, key 0600, and refuses to overwrite")
    func initialize() throws {
        let dir = Self.fresh()
        let cert = try dir.initialize(subject: "CN=Unit CA,O=Example", keyBits: 2048, days: 10, passphrase: Array("pw".utf8))
        #expect(cert.subject == "CN=Unit CA,O=Example")
        var info = stat()
        stat(dir.keyPath, &info)
        #expect(info.st_mode & 0o777 == 0o600)
        // The file store, made beside it (as `ca init` does), lays out its own files.
        _ = try FileCertificateStore(root: dir.path)
        #expect(FileManager.default.fileExists(atPath: FileStoreLayout(root: dir.path).issuedPath))
        #expect(throws: ServerError(.caMaterial, "")) {
            try dir.initialize(subject: "CN=Again", keyBits: 2048, days: 10, passphrase: nil)
        }
        guard case .success = dir.load(passphrase: Array("pw".utf8)) else {
            Issue.record("a fresh CA must load")
            return
        }
        guard case .failure(let wrong) = dir.load(passphrase: Array("nope".utf8)) else {
            Issue.record("a wrong passphrase must fail")
            return
        }
        #expect(wrong.lines.contains { $0.contains("wrong passphrase") })
        guard case .failure(let none) = dir.load(passphrase: nil) else {
            Issue.record("an encrypted key without passphrase must fail")
            return
        }
        #expect(none.lines.contains { $0.contains("ca.key_passphrase_file") })
    }

    @Test("load reports a key readable by others and a key that does not match the certificate")
    func problems() throws {
        let dir = Self.fresh()
        _ = try dir.initialize(subject: "CN=Unit CA", keyBits: 2048, days: 10, passphrase: nil)
        chmod(dir.keyPath, 0o644)
        guard case .failure(let loose) = dir.load(passphrase: nil) else {
            Issue.record("mode 0644 must be refused")
            return
        }
        #expect(loose.lines.contains { $0.contains("readable by group or others") })
        chmod(dir.keyPath, 0o600)
        let other = Self.fresh()
        _ = try other.initialize(subject: "CN=Other CA", keyBits: 2048, days: 10, passphrase: nil)
        try FileManager.default.removeItem(atPath: dir.keyPath)
        try FileManager.default.copyItem(atPath: other.keyPath, toPath: dir.keyPath)
        guard case .failure(let mismatch) = dir.load(passphrase: nil) else {
            Issue.record("a foreign key must be refused")
            return
        }
        #expect(mismatch.lines.contains { $0.contains("does not match") })
    }
}
