import FoundationEssentials
import Glibc
import SCEPCrypto

/// A transaction as RFC 8894 §3.3.3 keys it: the client's transactionID plus the requested key.
public struct TransactionKey: Sendable, Hashable {
    public let transactionID: String
    /// SHA-256 of the CSR's SubjectPublicKeyInfo, lower-case hex.
    public let keyHash: String

    public init(transactionID: String, keyHash: String) {
        self.transactionID = transactionID
        self.keyHash = keyHash
    }

    public init(transactionID: String, csr: CertificateSigningRequest) throws {
        self.init(transactionID: transactionID, keyHash: HexEncoding.string(try DigestAlgorithm.sha256.hash(csr.subjectPublicKeyInfoDER)))
    }
}

/// Where a transaction stands.
public enum TransactionState: String, Sendable {
    /// A process is working on it right now (its claim).
    case inFlight = "in-flight"
    /// Waiting for an operator (`issue.approval = manual`).
    case pending
    /// A certificate was issued and delivered (or approved, to be delivered by CertPoll).
    case issued
    /// An operator refused it.
    case rejected
}

/// What the store remembers of a transaction, for `store.transaction_retention_days`.
public struct TransactionRecord: Sendable, Equatable {
    public var transactionID: String
    public var keyHash: String
    public var state: TransactionState
    public var serial: String?
    public var updated: Date
    /// The process holding an in-flight claim (stale claims of dead processes are taken over).
    public var pid: Int32

    public init(transactionID: String, keyHash: String, state: TransactionState, serial: String? = nil, updated: Date = Date(), pid: Int32 = getpid()) {
        self.transactionID = transactionID
        self.keyHash = keyHash
        self.state = state
        self.serial = serial
        self.updated = updated
        self.pid = pid
    }
}

extension TransactionRecord {
    /// One text line: `scep-fcgi-tx 1 STATE KEYHASH SERIAL|- UNIXTIME PID TRANSACTIONID`. The
    /// transactionID (printable ASCII, spaces allowed) comes last and takes the rest of the line.
    var line: String {
        "scep-fcgi-tx 1 \(self.state.rawValue) \(self.keyHash) \(self.serial ?? "-") \(Int64(self.updated.timeIntervalSince1970)) \(self.pid) \(self.transactionID)\n"
    }

    init?(line: String) {
        guard line.hasSuffix("\n") else { return nil }  // a record caught mid-write
        let fields = line.dropLast().split(separator: " ", maxSplits: 7, omittingEmptySubsequences: false)
        guard fields.count == 8, fields[0] == "scep-fcgi-tx", fields[1] == "1", let state = TransactionState(rawValue: String(fields[2])),
            let seconds = Int64(fields[5]), let pid = Int32(fields[6]), !fields[7].isEmpty
        else { return nil }
        self.init(
            transactionID: String(fields[7]), keyHash: String(fields[3]), state: state, serial: fields[4] == "-" ? nil : String(fields[4]),
            updated: Date(timeIntervalSince1970: TimeInterval(seconds)), pid: pid)
    }
}

/// The answer to a claim: ours to process, or somebody's already.
public enum ClaimResult: Sendable, Equatable {
    case claimed
    case existing(TransactionRecord)
}

/// A request waiting for manual approval, with everything needed to issue it later.
public struct PendingRequest: Sendable, Equatable, Codable {
    public var transactionID: String
    public var keyHash: String
    public var subject: String
    public var subjectAltNames: [String]
    public var received: Date
    public var remoteAddr: String
    /// The PKCS#10 request, DER.
    public var csr: [UInt8]
    /// Set when the request renews a certificate (its serial).
    public var renews: String?

    public init(
        transactionID: String, keyHash: String, subject: String, subjectAltNames: [String], received: Date, remoteAddr: String,
        csr: [UInt8], renews: String?
    ) {
        self.transactionID = transactionID
        self.keyHash = keyHash
        self.subject = subject
        self.subjectAltNames = subjectAltNames
        self.received = received
        self.remoteAddr = remoteAddr
        self.csr = csr
        self.renews = renews
    }
}

/// A certificate's standing.
public enum CertificateStatus: Sendable, Equatable {
    case valid
    case revoked(at: Date, reason: RevocationReason?)
    case expired
    /// Issued and stored but never delivered (a notification, signature or audit write failed).
    case withheld

    public var name: String {
        switch self {
        case .valid: return "valid"
        case .revoked: return "revoked"
        case .expired: return "expired"
        case .withheld: return "withheld"
        }
    }
}

/// A stored certificate that has no audit record yet, and why.
public struct UnauditedCertificate: Sendable, Equatable {
    public enum Cause: String, Sendable {
        /// The process that stored it died before writing the record.
        case crashed = "crash-recovered"
        /// The record's write failed (a full audit disk).
        case auditFailed = "audit-failed"
    }

    public let serial: String
    public let cause: Cause
}

/// What the store did with a revocation.
public enum StoreRevocation: Sendable, Equatable {
    case revoked(IndexEntry)
    /// Revoked before; the entry keeps its first revocation time and reason.
    case alreadyRevoked(IndexEntry)
    case unknown
}

/// A certificate with its status.
public struct StoredCertificate: Sendable {
    public let certificate: Certificate
    public let status: CertificateStatus
}

/// Where certificates and transactions are kept. The file store (one CA directory, many
/// processes) is the first conformer; a PostgreSQL store for many hosts is the next.
///
/// Every method is safe to call from any thread of any process sharing the store.
public protocol CertificateStore: Sendable {
    // Transactions (RFC 8894 §3.3.3): one issuance per transactionID + key.

    /// Claims a transactionID for processing, across processes: only one caller gets `.claimed`;
    /// the others see the record (in flight, pending, issued or rejected). Records older than the
    /// retention, and in-flight claims of processes that died, are taken over.
    func claim(_ key: TransactionKey) throws -> ClaimResult
    /// Moves a claimed transaction to a new state.
    func update(_ key: TransactionKey, _ state: TransactionState, serial: String?) throws
    /// Gives up a claim (the request was refused, or failed before anything was stored).
    func release(_ key: TransactionKey)
    /// The record of a transactionID, if retained.
    func transaction(_ transactionID: String) throws -> TransactionRecord?

    // Certificates.

    /// Records a newly issued certificate durably. Throws if it cannot; the certificate must then
    /// not be delivered.
    func record(_ certificate: Certificate, transactionID: String?) throws
    /// Marks a stored certificate as never delivered.
    func markWithheld(serial: String) throws
    // Certificates stored but not yet in the audit log. ``record(_:transactionID:)`` notes each
    // one before it becomes visible; ``audited(serial:)`` clears the note once its audit line is
    // written. Housekeeping turns the notes of dead processes, and of failed audit writes, into
    // withheld certificates with their audit records (crash recovery, a full audit disk).

    /// The certificate's audit record is written.
    func audited(serial: String)
    /// Its audit record could not be written now: eligible for housekeeping at once.
    func markUnaudited(serial: String) throws
    /// Notes housekeeping should act on (not those of requests still in progress).
    func unauditedSerials() -> [UnauditedCertificate]
    /// Completes what a crash left half done (issued file, index line) and marks it withheld.
    func reconcile(serial: String) throws -> Certificate?
    func clearUnaudited(serial: String)
    /// Temporary files of writers that died; returns how many were removed.
    func removeOrphans() -> Int
    func certificate(serial: String) throws -> StoredCertificate?
    /// Every certificate entry (status from the index, withheld markers applied).
    func entries() throws -> [(IndexEntry, CertificateStatus)]
    /// Revokes a certificate (RFC 5280 §5.3.1 reason). Revoking twice changes nothing (the first
    /// time and reason stand); an unknown serial is an answer, not an error. Throws only when the
    /// store cannot answer or write.
    func revoke(serial: String, reason: RevocationReason?, at: Date) throws -> StoreRevocation
    /// The serials of certificates issued to a subject (OpenSSL one-line form), oldest first.
    func serials(subject: String) throws -> [String]

    // Manual approval.

    func savePending(_ request: PendingRequest) throws
    func pendingRequests() throws -> [PendingRequest]
    func pendingRequest(_ transactionID: String) throws -> PendingRequest?
    func removePending(_ transactionID: String) throws

    /// Drops transaction records older than `date`; returns how many.
    func pruneTransactions(olderThan date: Date) -> Int

    // Health (`health.path`): checked without writing anything.

    /// Nil when the store can take the next certificate; else a fixed code (`store-not-writable`, `store-disk-full`).
    func healthProblem() -> String?
}
