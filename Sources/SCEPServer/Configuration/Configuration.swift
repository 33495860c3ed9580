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
/// | `challenge.mode` | `static` | `static`: one shared challenge password |
/// | `challenge.static_password_file` | required for static | file holding the challenge password |
/// | `issue.validity_days` | 365 | validity of issued certificates |
/// | `issue.backdate_minutes` | 5 | notBefore this far in the past, for clients with slow clocks |
/// | `issue.extended_key_usage` | `clientAuth` | comma-separated EKUs (short names or OIDs); empty for none |
/// | `issue.min_rsa_bits` | 2048 | smallest RSA key accepted in a CSR |
/// | `audit.path` | required | JSON-lines audit log, opened append-only |
/// | `audit.sync` | `true` | fdatasync after every audit line |
/// | `server.socket` | `/run/scep-fcgi/scep-fcgi.sock` | Unix socket path, or `HOST:PORT` / `:PORT` for TCP |
/// | `server.socket_mode` | `0660` | permissions of a Unix socket (the web server's user must connect) |
/// | `server.workers` | 4 × cores (min 8) | worker threads, each accepting FastCGI requests |
/// | `server.max_body_bytes` | 1048576 | larger POST bodies get HTTP 413 |
public struct Configuration: Sendable, Equatable {
    public struct CA: Sendable, Equatable {
        public var dir: String = ""
        public var keyPassphraseFile: String? = nil
    }

    public enum ChallengeMode: String, Sendable, Equatable, CaseIterable {
        case `static`
    }

    public struct Challenge: Sendable, Equatable {
        public var mode: ChallengeMode = .static
        public var staticPasswordFile: String? = nil
    }

    public struct Issue: Sendable, Equatable {
        public var validityDays: Int = 365
        public var backdateMinutes: Int = 5
        public var extendedKeyUsage: [String] = ["clientAuth"]
        public var minRSABits: Int = 2048
    }

    public struct Audit: Sendable, Equatable {
        public var path: String = ""
        public var sync: Bool = true
    }

    public struct Server: Sendable, Equatable {
        public var socket: String = "/run/scep-fcgi/scep-fcgi.sock"
        public var socketMode: Int = 0o660
        public var workers: Int = 0  // 0: derived from the core count
        public var maxBodyBytes: Int = 1 << 20
    }

    public var ca = CA()
    public var challenge = Challenge()
    public var issue = Issue()
    public var audit = Audit()
    public var server = Server()

    public init() {}
}
