import FoundationEssentials
import SCEPCrypto

/// The whole configuration of scep-fcgi, validated once at startup.
///
/// ## Configuration keys
/// Every key is `section.key` in the file and `SCEP_SECTION_KEY` in the environment (which wins).
/// `SCEP_CONFIG` names the file. Secrets are read only from files named here.
///
/// | key | default | meaning |
/// | --- | --- | --- |
/// | `ca.dir` | required | directory with `ca.pem`, `ca.key`, optional `chain.pem`, `issued/`, `index.txt` |
/// | `ca.key_passphrase_file` | none | file holding the passphrase of an encrypted `ca.key` |
/// | `challenge.mode` | `static` | `static`: one shared challenge password; `intune`: Microsoft Intune validates |
/// | `challenge.static_password_file` | required for static | file holding the challenge password |
/// | `intune.tenant` | required for intune | Entra tenant (GUID or `name.onmicrosoft.com`) |
/// | `intune.client_id` | required for intune | application (client) ID of the Entra app |
/// | `intune.client_secret_file` | required for intune | file holding the app's client secret |
/// | `intune.authority` | `https://login.microsoftonline.com/` | Entra login endpoint (sovereign clouds override) |
/// | `intune.graph` | `https://graph.microsoft.com/` | Microsoft Graph, for service discovery |
/// | `intune.resource` | `https://api.manage.microsoft.com/` | Intune resource (token scope `{resource}/.default`) |
/// | `intune.app_id` | `0000000a-0000-0000-c000-000000000000` | Intune's first-party app id looked up in discovery |
/// | `intune.provider_name` | `scep-fcgi/<version>` | callerInfo and UserAgent sent to Intune |
/// | `intune.ca_bundle` | system store | PEM trust roots for TLS to Entra, Graph and Intune |
/// | `intune.proxy` | none | HTTPS proxy URL for the Intune calls |
/// | `intune.timeout_seconds` | 20 | budget for one Intune operation, retries included |
/// | `issue.validity_days` | 365 | validity of issued certificates |
/// | `issue.backdate_minutes` | 5 | notBefore this far in the past, for clients with slow clocks |
/// | `issue.extended_key_usage` | `clientAuth` | comma-separated EKUs (short names or OIDs); empty for none |
/// | `issue.min_rsa_bits` | 2048 | smallest RSA key accepted in a CSR |
/// | `issue.renewal` | `true` | accept renewals (RenewalReq, PKCSReq signed by a certificate we issued) |
/// | `issue.renewal_requires_challenge` | static: `false`, intune: `true` | check the challenge of renewals too |
/// | `issue.renewal_window_days` | 0 | renewals only in the last N days of validity (0: any time) |
/// | `issue.renewal_allow_subject_change` | `false` | let a renewal change subject or add SANs |
/// | `issue.approval` | `auto` | `manual`: valid requests wait as PENDING for `scep-fcgi ca approve` |
/// | `issue.allow_des_requests` | `true` | accept single-DES requests (replies are never DES) |
/// | `issue.crl_url` | none | CRL distribution point URL put in issued certificates (repeatable) |
/// | `issue.aia_url` | none | AIA caIssuers URL put in issued certificates (repeatable) |
/// | `issue.max_subject_alt_names` | 64 | more subjectAltNames in a CSR get FAILURE `too-many-names` |
/// | `issue.max_subject_bytes` | 1024 | a larger subject (DER) gets FAILURE `subject-too-large` |
/// | `issue.signer_clock_skew_minutes` | 1440 | slack for the signer certificate's validity and signingTime (FAILURE badTime past it) |
/// | `ca.crl_validity_hours` | 168 | CRL validity; reissued at half of it or after a revocation |
/// | `store.transaction_retention_days` | 30 | how long a transactionID is remembered for replay |
/// | `store.backend` | `file` | `file` (the CA directory) or `postgresql` (many hosts, docs/scale-out.md) |
/// | `store.postgresql_dsn_file` | none | file holding the libpq connection string, password included (`store.backend = postgresql`) |
/// | `store.postgresql_pool_size` | 4 | connections per process to PostgreSQL |
/// | `log.level` | `notice` | error, warn, notice, info (one line per request), debug |
/// | `audit.path` | required | JSON-lines audit log, opened append-only |
/// | `audit.sync` | `true` | fdatasync after every audit line |
/// | `audit.chain_key_file` | none | file holding a key: each line's `prev` becomes an HMAC-SHA-256 of the line before |
/// | `server.socket` | `/run/scep-fcgi/scep-fcgi.sock` | Unix socket path, or `HOST:PORT` / `:PORT` for TCP |
/// | `server.socket_mode` | `0660` | permissions of a Unix socket (the web server's user must connect) |
/// | `server.socket_group` | none | group of the Unix socket, e.g. `www-data` (with mode 0660) |
/// | `server.workers` | 4 × cores (min 8) | worker threads, each accepting FastCGI requests |
/// | `server.max_body_bytes` | 1048576 | larger POST bodies get HTTP 413 |
/// | `server.read_timeout_seconds` | 30 | a FastCGI connection that has not sent its whole request by then is cut off |
/// | `server.max_connections` | 1024 | FastCGI connections open at once; past it the oldest idle kept-alive one is closed, else accepting waits |
/// | `server.keepalive_timeout_seconds` | 120 | a kept-alive FastCGI connection idle this long is closed |
/// | `server.allow_from` | `$FCGI_WEB_SERVER_ADDRS`, else 127.0.0.1, ::1 | TCP peers allowed to connect (repeatable) |
/// | `metrics.path` | none (off) | request path answered with Prometheus metrics, e.g. `/scep-metrics` |
/// | `metrics.counters_file` | `<ca.dir>/metrics.counters` | counters shared by every process of the CA directory |
/// | `health.path` | none (off) | request path answered 200/503 with the health checks, e.g. `/scep-health` |
public struct Configuration: Sendable, Equatable {
    public struct CA: Sendable, Equatable {
        public var dir: String = ""
        public var keyPassphraseFile: String? = nil
        /// The PIN of the PKCS#11 token holding the CA key (`ca init --key-uri`), and its module.
        public var keyPINFile: String? = nil
        public var pkcs11Module: String? = nil
        /// nextUpdate − thisUpdate of published CRLs; they are reissued at half of it.
        public var crlValidityHours: Int = 168
    }

    /// Manual approval (`issue.approval = manual`) or immediate issuance.
    public enum Approval: String, Sendable, Equatable, CaseIterable {
        case auto
        case manual
    }

    public struct Store: Sendable, Equatable {
        public enum Backend: String, Sendable, Equatable, CaseIterable {
            case file
            case postgresql
        }

        public var transactionRetentionDays: Int = 30
        public var backend: Backend = .file
        /// The libpq connection string lives in this file (it carries the password): never a flag, never logged.
        public var postgresqlDSNFile: String? = nil
        public var postgresqlPoolSize: Int = 4
        public init() {}
    }

    public enum ChallengeMode: String, Sendable, Equatable, CaseIterable {
        case `static`
        case intune
    }

    public struct Challenge: Sendable, Equatable {
        public var mode: ChallengeMode = .static
        public var staticPasswordFile: String? = nil
    }

    /// Microsoft Intune challenge validation (`challenge.mode = intune`).
    public struct Intune: Sendable, Equatable {
        public var tenant: String = ""
        public var clientID: String = ""
        public var clientSecretFile: String? = nil
        /// The certificate credential instead of the secret: a certificate uploaded to the app
        /// registration and its private key (a client assertion is signed with it).
        public var clientCertificateFile: String? = nil
        public var clientKeyFile: String? = nil
        public var authority: String = "https://login.microsoftonline.com/"
        public var graph: String = "https://graph.microsoft.com/"
        public var resource: String = "https://api.manage.microsoft.com/"
        public var appID: String = "0000000a-0000-0000-c000-000000000000"
        public var providerName: String = "scep-fcgi/\(SCEPFCGIVersion.current)"
        public var caBundle: String? = nil
        public var proxy: String? = nil
        public var timeoutSeconds: Double = 20
        /// What successNotification sends as `caConfiguration`, which Intune's revocation requests
        /// carry back; nil: the issuing CA's subject (RFC 2253).
        public var caConfiguration: String? = nil

        public init() {}

        /// Exactly one credential: the secret file, or the certificate and key files.
        public func credentialProblems() -> [String] {
            let certificate = self.clientCertificateFile != nil || self.clientKeyFile != nil
            switch (self.clientSecretFile, certificate) {
            case (nil, false):
                return ["intune.client_secret_file (or intune.client_certificate_file and intune.client_key_file) is not set (challenge.mode = intune)"]
            case (.some, true):
                return ["intune: give either intune.client_secret_file or intune.client_certificate_file with intune.client_key_file, not both"]
            case (.some(let file), false):
                return [SecretFile.problem(file, key: "intune.client_secret_file")].compactMap { $0 }
            case (nil, true):
                guard let certificateFile = self.clientCertificateFile, let keyFile = self.clientKeyFile else {
                    return ["intune.client_certificate_file and intune.client_key_file go together"]
                }
                var out = [SecretFile.problem(keyFile, key: "intune.client_key_file")].compactMap { $0 }
                if !FileManager.default.isReadableFile(atPath: certificateFile) { out.append("intune.client_certificate_file: \(certificateFile) cannot be read") }
                return out
            }
        }
    }

    public struct Issue: Sendable, Equatable {
        public var validityDays: Int = 365
        public var backdateMinutes: Int = 5
        public var extendedKeyUsage: [String] = ["clientAuth"]
        public var minRSABits: Int = 2048
        /// RFC 8894 §3.3.1.2 renewal (RenewalReq, or PKCSReq signed by a certificate we issued).
        public var renewal: Bool = true
        /// nil: `false` with a static challenge, `true` with Intune.
        public var renewalRequiresChallenge: Bool? = nil
        /// 0: a renewal is accepted any time before expiry; N: only in the last N days.
        public var renewalWindowDays: Int = 0
        public var renewalAllowSubjectChange: Bool = false
        public var approval: Approval = .auto
        /// Single-DES requests (micromdm scepclient); replies are never DES.
        public var allowDESRequests: Bool = true
        public var crlURLs: [String] = []
        public var aiaURLs: [String] = []
        /// AIA OCSP access method (RFC 5280 §4.2.2.1) put in issued certificates.
        public var ocspURLs: [String] = []
        /// Caps checked before the challenge (RFC 5280 §4.2.1.6 names are validated by type too).
        public var maxSubjectAltNames: Int = 64
        public var maxSubjectBytes: Int = 1024
        public var signerClockSkewMinutes: Int = 1440
        /// The SID security extension for strong certificate mapping (KB5014754).
        public var sidExtension: SIDExtension = .auto
        /// Issue a SID nobody validated (static challenge, manual approval): dangerous, see README.
        public var allowRequestedSID: Bool = false
        /// The validity an Intune profile puts in the CSR (enrollment name/value pairs), capped.
        public var honorRequestedValidity: Bool = true
        public init() {}
    }

    public enum SIDExtension: String, Sendable, Equatable, CaseIterable {
        /// Written when a validated request names a SID (Intune's URI subjectAltName), and kept on renewal.
        case auto
        case never
    }

    public struct Audit: Sendable, Equatable {
        public var path: String = ""
        public var sync: Bool = true
        /// A secret that makes the `prev` chain an HMAC chain (docs/audit-log.md).
        public var chainKeyFile: String? = nil
    }

    public struct Server: Sendable, Equatable {
        public var socket: String = "/run/scep-fcgi/scep-fcgi.sock"
        public var socketMode: Int = 0o660
        /// Group of a Unix socket `serve` creates (the web server's group, e.g. www-data); nil: ours.
        public var socketGroup: String? = nil
        public var workers: Int = 0  // 0: derived from the core count
        public var maxBodyBytes: Int = 1 << 20
        /// Time a FastCGI connection has to deliver its whole request (params and body).
        public var readTimeoutSeconds: Double = 30
        /// FastCGI connections open at once (idle, arriving, kept alive or being served).
        public var maxConnections: Int = 1024
        /// A kept-alive FastCGI connection idle this long is closed (nginx's upstream keepalive_timeout is 60 s).
        public var keepaliveTimeoutSeconds: Double = 120
        /// TCP peers allowed to connect (`FCGI_WEB_SERVER_ADDRS` when set, else loopback).
        public var allowFrom: [String] = []
    }

    /// `metrics.*` and `health.*`: endpoints answered on paths of their own, never audited.
    public struct Monitoring: Sendable, Equatable {
        public var metricsPath: String? = nil
        public var countersFile: String? = nil
        public var healthPath: String? = nil
        public init() {}

        /// Whether the shared counters are needed (the metrics, or the health check's Intune verdict).
        public var enabled: Bool { self.metricsPath != nil || self.healthPath != nil }
    }

    public var ca = CA()
    public var challenge = Challenge()
    public var intune = Intune()
    public var issue = Issue()
    public var store = Store()
    /// `log.level`: the least severe diagnostic written to standard error.
    public var logLevel: Diagnostics.Level = .notice
    public var audit = Audit()
    public var server = Server()
    public var monitoring = Monitoring()
    public var ocsp = OCSP()

    public init() {}

    /// `ocsp.*`: the OCSP responder (RFC 6960, RFC 5019 profile) the same program answers.
    public struct OCSP: Sendable, Equatable {
        /// The path answered (POST `path`, GET `path/{base64}`); nil turns the responder off.
        public var path: String? = "/ocsp"
        /// nextUpdate − thisUpdate of every answer, and the HTTP max-age of a GET's.
        public var validityMinutes: Int = 60
        public init() {}
    }

    /// `server.allow_from`, else libfcgi's `FCGI_WEB_SERVER_ADDRS` (comma-separated), else loopback.
    public func allowedPeers(environment: [String: String]) -> [String] {
        if !self.server.allowFrom.isEmpty { return self.server.allowFrom }
        if let addresses = environment["FCGI_WEB_SERVER_ADDRS"], !addresses.isEmpty {
            return addresses.split(separator: ",").map { $0.trimmedWhitespace }.filter { !$0.isEmpty }
        }
        return ["127.0.0.1", "::1"]
    }
}

/// The version reported by `--version` and in Intune's callerInfo.
public enum SCEPFCGIVersion {
    public static let current = "0.3.0"
}
