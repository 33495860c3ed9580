import PostgreSQL

/// Every statement of the PostgreSQL store, prepared once per connection. Times travel as Unix
/// seconds (`to_timestamp`, `extract(epoch …)`), bytea in hex, arrays as text literals.
enum SQL {
    static let entryColumns = "serial, subject, extract(epoch FROM not_after), extract(epoch FROM revoked_at), reason, withheld, issuer"

    /// A claim: new, or taking over one whose holder is gone or whose lease ran out, or a record
    /// past its retention. Returns a row only when this caller now holds it.
    static let claim = Statement(
        "scep_claim",
        """
        INSERT INTO scep_transactions AS t (transaction_id, key_hash, state, serial, updated, lease_until, holder)
        VALUES ($1, $2, 'in-flight', NULL, now(), now() + make_interval(secs => $3::float8), $4::bigint)
        ON CONFLICT (transaction_id) DO UPDATE
        SET key_hash = EXCLUDED.key_hash, state = 'in-flight', serial = NULL, updated = now(),
            lease_until = EXCLUDED.lease_until, holder = EXCLUDED.holder
        WHERE (t.state = 'in-flight' AND (t.lease_until < now() OR pg_try_advisory_xact_lock(t.holder)))
           OR (t.state IN ('issued', 'rejected') AND t.updated < now() - make_interval(secs => $5::float8))
        RETURNING 1
        """)
    static let supersede = Statement(
        "scep_supersede",
        """
        UPDATE scep_transactions
        SET state = 'in-flight', serial = NULL, updated = now(), lease_until = now() + make_interval(secs => $3::float8), holder = $4::bigint
        WHERE transaction_id = $1 AND state = 'issued' AND serial = $2
        """)
    static let release = Statement("scep_release", "DELETE FROM scep_transactions WHERE transaction_id = $1 AND state = 'in-flight' AND holder = $2::bigint")
    static let transaction = Statement(
        "scep_transaction", "SELECT key_hash, state, serial, extract(epoch FROM updated) FROM scep_transactions WHERE transaction_id = $1")
    static let setState = Statement(
        "scep_set_state",
        """
        INSERT INTO scep_transactions (transaction_id, key_hash, state, serial, updated, lease_until, holder)
        VALUES ($1, $2, $3, $4, now(), NULL, 0)
        ON CONFLICT (transaction_id) DO UPDATE
        SET key_hash = EXCLUDED.key_hash, state = EXCLUDED.state, serial = EXCLUDED.serial, updated = now(), lease_until = NULL, holder = 0
        """)

    static let hold = Statement(
        "scep_hold",
        """
        INSERT INTO scep_pending_requests (transaction_id, key_hash, subject, subject_alt_names, received, remote_addr, csr, renews)
        VALUES ($1, $2, $3, $4::text[], to_timestamp($5::float8), $6, $7::bytea, $8)
        ON CONFLICT (transaction_id) DO UPDATE
        SET key_hash = EXCLUDED.key_hash, subject = EXCLUDED.subject, subject_alt_names = EXCLUDED.subject_alt_names,
            received = EXCLUDED.received, remote_addr = EXCLUDED.remote_addr, csr = EXCLUDED.csr, renews = EXCLUDED.renews
        """)
    static let pendingColumns = "transaction_id, key_hash, subject, subject_alt_names, extract(epoch FROM received), remote_addr, csr, renews"
    static let pendingAll = Statement("scep_pending_all", "SELECT \(pendingColumns) FROM scep_pending_requests ORDER BY received, transaction_id")
    static let pendingOne = Statement("scep_pending_one", "SELECT \(pendingColumns) FROM scep_pending_requests WHERE transaction_id = $1")
    static let removePending = Statement("scep_remove_pending", "DELETE FROM scep_pending_requests WHERE transaction_id = $1")

    /// The durable write of an enrollment. Its audit deadline is the claim's lease.
    static let commit = Statement(
        "scep_commit",
        """
        INSERT INTO scep_certificates (serial, issuer, subject, not_after, der, writer, audit_deadline)
        VALUES ($1, $2, $3, to_timestamp($4::float8), $5::bytea, $6::bigint,
                coalesce((SELECT lease_until FROM scep_transactions WHERE transaction_id = $7), now() + interval '10 minutes'))
        """)
    static let withhold = Statement(
        "scep_withhold", "UPDATE scep_certificates SET withheld = true, audit_failed = audit_failed OR $2::boolean WHERE serial = $1")
    static let audited = Statement(
        "scep_audited", "UPDATE scep_certificates SET audit_pending = false, audit_failed = false WHERE serial = $1 AND audit_pending")
    /// Unaudited certificates whose request is over (audit write failed, writer gone, or past
    /// the claim's lease), marked withheld in the same statement.
    static let takeUnaudited = Statement(
        "scep_take_unaudited",
        """
        UPDATE scep_certificates SET withheld = true
        WHERE audit_pending AND (audit_failed OR audit_deadline < now() OR pg_try_advisory_xact_lock(writer))
        RETURNING serial, der, audit_failed
        """)
    static let asynchronous = "SET LOCAL synchronous_commit = off"

    static let certificate = Statement(
        "scep_certificate",
        "SELECT der, extract(epoch FROM not_after), extract(epoch FROM revoked_at), reason, withheld FROM scep_certificates WHERE serial = $1")
    static let entry = Statement("scep_entry", "SELECT \(entryColumns) FROM scep_certificates WHERE serial = $1")
    static let bySubject = Statement("scep_by_subject", "SELECT \(entryColumns) FROM scep_certificates WHERE subject = $1 ORDER BY committed_at, serial")
    static let all = Statement("scep_all", "SELECT \(entryColumns) FROM scep_certificates ORDER BY committed_at, serial")
    static let revoke = Statement(
        "scep_revoke",
        """
        UPDATE scep_certificates SET revoked_at = to_timestamp($2::float8), reason = $3::smallint
        WHERE serial = $1 AND revoked_at IS NULL
        RETURNING \(entryColumns)
        """)
    static let revoked = Statement(
        "scep_revoked",
        "SELECT serial, extract(epoch FROM revoked_at), reason, issuer FROM scep_certificates WHERE revoked_at IS NOT NULL ORDER BY revoked_at, serial")
    static let latestRevocation = Statement(
        "scep_latest_revocation", "SELECT extract(epoch FROM max(revoked_at)) FROM scep_certificates WHERE revoked_at IS NOT NULL")
    static let keepCRL = Statement(
        "scep_keep_crl", """
        INSERT INTO scep_crls AS k (issuer, number, der) VALUES ($1, $2::bigint, $3::bytea)
        ON CONFLICT (issuer) DO UPDATE SET number = EXCLUDED.number, der = EXCLUDED.der, kept = now()
        WHERE k.number < EXCLUDED.number
        """)
    static let newestCRL = Statement("scep_newest_crl", "SELECT der FROM scep_crls WHERE issuer = $1")
    static let crlNumber = Statement(
        "scep_crl_number",
        """
        INSERT INTO scep_crl_numbers AS n (issuer, next) VALUES ($1, $2::bigint + 1)
        ON CONFLICT (issuer) DO UPDATE SET next = greatest(n.next, $2::bigint) + 1
        RETURNING next - 1
        """)

    /// An imported certificate: audited already (its source store's audit log has it). Returns
    /// whether the row is new (xmax = 0 on insert).
    static let importCertificate = Statement(
        "scep_import_certificate",
        """
        INSERT INTO scep_certificates AS c (serial, issuer, subject, not_after, der, revoked_at, reason, withheld, audit_pending, committed_at)
        VALUES ($1, $2, $3, to_timestamp($4::float8), $5::bytea, to_timestamp($6::float8), $7::smallint, $8::boolean, false, now())
        ON CONFLICT (serial) DO UPDATE
        SET revoked_at = coalesce(c.revoked_at, EXCLUDED.revoked_at), reason = CASE WHEN c.revoked_at IS NULL THEN EXCLUDED.reason ELSE c.reason END,
            issuer = coalesce(c.issuer, EXCLUDED.issuer)
        RETURNING (xmax = 0)
        """)

    static let maintenanceLock = Statement("scep_maintenance_lock", "SELECT pg_try_advisory_xact_lock(7291002)")
    static let prune = Statement(
        "scep_prune", "DELETE FROM scep_transactions WHERE state IN ('issued', 'rejected') AND updated < to_timestamp($1::float8)")
    static let jobLock = Statement("scep_job_lock", "SELECT pg_try_advisory_lock(7291100, hashtext($1))")
    static let jobUnlock = Statement("scep_job_unlock", "SELECT pg_advisory_unlock(7291100, hashtext($1))")
    static let ping = Statement("scep_ping", "SELECT 1")
    static let presenceLock = Statement("scep_presence", "SELECT pg_advisory_lock($1::bigint)")

    /// A text[] literal: every element quoted, `"` and `\` escaped.
    static func array(_ values: [String]) -> String {
        var out = "{"
        for (i, value) in values.enumerated() {
            if i > 0 { out += "," }
            out += "\""
            for c in value {
                if c == "\\" || c == "\"" { out += "\\" }
                out.append(c)
            }
            out += "\""
        }
        return out + "}"
    }

    /// PostgreSQL's text[] output: `{a,b}` or `{"a b","c\"d"}`.
    static func parseArray(_ text: String) -> [String] {
        var out: [String] = []
        var current = ""
        var quoted = false
        var escaped = false
        var any = false
        for c in text.dropFirst().dropLast() {
            if escaped {
                current.append(c)
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else if c == "\"" {
                quoted.toggle()
                any = true
            } else if c == "," && !quoted {
                out.append(current)
                current = ""
                any = false
            } else {
                current.append(c)
                any = true
            }
        }
        if any || !current.isEmpty { out.append(current) }
        return out
    }
}
