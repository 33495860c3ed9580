import PostgreSQL

/// The tables of the PostgreSQL store, and their migrations (`scep-fcgi store migrate`). Each
/// migration runs once, in its own transaction, under an advisory lock (two hosts migrating at
/// once wait for each other); `scep_schema` records how far the database is.
public enum Schema {
    /// The version this build reads and writes.
    public static let version = 2

    static let migrations: [Int: [String]] = [
        1: [
            """
            CREATE TABLE scep_certificates (
                serial text PRIMARY KEY,
                issuer text,
                subject text NOT NULL,
                not_after timestamptz NOT NULL,
                der bytea NOT NULL,
                committed_at timestamptz NOT NULL DEFAULT now(),
                revoked_at timestamptz,
                reason smallint,
                withheld boolean NOT NULL DEFAULT false,
                audit_pending boolean NOT NULL DEFAULT true,
                audit_failed boolean NOT NULL DEFAULT false,
                writer bigint NOT NULL DEFAULT 0,
                audit_deadline timestamptz
            )
            """,
            "CREATE INDEX scep_certificates_subject ON scep_certificates (subject)",
            "CREATE INDEX scep_certificates_revoked ON scep_certificates (revoked_at) WHERE revoked_at IS NOT NULL",
            "CREATE INDEX scep_certificates_unaudited ON scep_certificates (serial) WHERE audit_pending",
            "CREATE INDEX scep_certificates_committed ON scep_certificates (committed_at, serial)",
            """
            CREATE TABLE scep_transactions (
                transaction_id text PRIMARY KEY,
                key_hash text NOT NULL,
                state text NOT NULL CHECK (state IN ('in-flight', 'pending', 'issued', 'rejected')),
                serial text,
                updated timestamptz NOT NULL,
                lease_until timestamptz,
                holder bigint NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX scep_transactions_updated ON scep_transactions (updated) WHERE state IN ('issued', 'rejected')",
            """
            CREATE TABLE scep_pending_requests (
                transaction_id text PRIMARY KEY,
                key_hash text NOT NULL,
                subject text NOT NULL,
                subject_alt_names text[] NOT NULL,
                received timestamptz NOT NULL,
                remote_addr text NOT NULL,
                csr bytea NOT NULL,
                renews text
            )
            """,
            "CREATE TABLE scep_crl_numbers (issuer text PRIMARY KEY, next bigint NOT NULL)",
        ],
        // The newest CRL of each issuer: one host signs, every host serves it.
        2: [
            "CREATE TABLE scep_crls (issuer text PRIMARY KEY, number bigint NOT NULL, der bytea NOT NULL, kept timestamptz NOT NULL DEFAULT now())"
        ],
    ]

    /// The version the database is at (0: no tables yet).
    public static func current(_ connection: Connection) throws -> Int {
        let exists = try connection.execute("SELECT to_regclass('scep_schema') IS NOT NULL")
        guard exists.first?[0] == "t" else { return 0 }
        return Int(try connection.execute("SELECT max(version) FROM scep_schema").first?[0] ?? "0") ?? 0
    }

    /// Brings the database to ``version``; returns the versions applied.
    public static func migrate(_ pool: ConnectionPool) throws -> [Int] {
        try pool.transaction { connection in
            // One migrator at a time, whichever host runs it.
            try connection.execute("SELECT pg_advisory_xact_lock(7291001)")
            try connection.execute("CREATE TABLE IF NOT EXISTS scep_schema (version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())")
            let at = try Self.current(connection)
            var applied: [Int] = []
            for version in (at + 1)...max(at + 1, Self.version) where version <= Self.version {
                for statement in Self.migrations[version] ?? [] { try connection.execute(statement) }
                try connection.execute("INSERT INTO scep_schema (version) VALUES (\(version))")
                applied.append(version)
            }
            return applied
        }
    }
}
