import FoundationEssentials
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
    /// Somebody is working on it right now (a claim).
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
    /// Empty while in flight when the store cannot tell yet.
    public var keyHash: String
    public var state: TransactionState
    public var serial: String?
    public var updated: Date

    public init(transactionID: String, keyHash: String, state: TransactionState, serial: String? = nil, updated: Date = Date()) {
        self.transactionID = transactionID
        self.keyHash = keyHash
        self.state = state
        self.serial = serial
        self.updated = updated
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

    public var key: TransactionKey { TransactionKey(transactionID: self.transactionID, keyHash: self.keyHash) }
}

/// Which CA issued a certificate: SHA-256 of the issuing key's SubjectPublicKeyInfo, hex. A key,
/// not a name, so that a rollover keeping the CA's name still tells the two CAs apart.
public struct IssuerID: Sendable, Hashable, CustomStringConvertible {
    public let hex: String

    public init?(hex: String) {
        // Bytes, not Characters: a store reading 200,000 index lines checks this for each.
        guard hex.utf8.count == 64, hex.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else { return nil }
        self.hex = hex
    }

    /// The ID of the CA whose certificate this is.
    public init(authority: Certificate) {
        self.hex = HexEncoding.string((try? DigestAlgorithm.sha256.hash(authority.subjectPublicKeyInfoDER)) ?? [])
    }

    public var description: String { self.hex }
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

/// What the store knows of a certificate without reading the certificate itself.
public struct CertificateEntry: Sendable, Equatable {
    /// Upper-case hex, no leading zeros beyond what DER needs (``SerialHex``).
    public var serial: String
    /// OpenSSL one-line form (`/O=Example/CN=device`).
    public var subject: String
    public var notAfter: Date
    public var status: CertificateStatus
    /// Nil for entries recorded before the store kept issuers (or imported by hand).
    public var issuer: IssuerID?

    public init(serial: String, subject: String, notAfter: Date, status: CertificateStatus, issuer: IssuerID?) {
        self.serial = serial
        self.subject = subject
        self.notAfter = notAfter
        self.status = status
        self.issuer = issuer
    }
}

/// One revoked certificate, for a CRL (RFC 5280 §5.1.2.6).
public struct RevokedEntry: Sendable, Equatable {
    public let serial: String
    public let revokedAt: Date
    public let reason: RevocationReason?
    /// Nil when the store does not know (see ``CertificateEntry/issuer``).
    public let issuer: IssuerID?

    public init(serial: String, revokedAt: Date, reason: RevocationReason?, issuer: IssuerID?) {
        self.serial = serial
        self.revokedAt = revokedAt
        self.reason = reason
        self.issuer = issuer
    }
}

/// A committed certificate with no audit line, and why.
public struct UnauditedCertificate: Sendable, Equatable {
    public enum Cause: String, Sendable {
        /// The request that committed it died before writing the line (a crash, kill -9).
        case crashed = "crash-recovered"
        /// The line's write failed (a full audit disk).
        case auditFailed = "audit-failed"
        /// The store could not make it durable (a full disk), so it was never delivered.
        case storeFailed = "store-failed"
        /// Its audit line was written, then lost with the log's unsynced tail (a power loss); the
        /// store kept it (``UnauditedCertificate/lostLine``). Not withheld: it may have been delivered.
        case lineLost = "power-loss"
    }

    public let serial: String
    public let cause: Cause
    /// Nil when the store no longer has the certificate itself.
    public let certificate: Certificate?
    /// Why the store could not complete and withhold it yet: the caller logs this and writes no
    /// line; it comes back next time.
    public let problem: String?
    /// For ``Cause/lineLost``: the line as it was written, to be written again.
    public let lostLine: [UInt8]?

    public init(serial: String, cause: Cause, certificate: Certificate?, problem: String? = nil, lostLine: [UInt8]? = nil) {
        self.serial = serial
        self.cause = cause
        self.certificate = certificate
        self.problem = problem
        self.lostLine = lostLine
    }

    public static func == (a: Self, b: Self) -> Bool { a.serial == b.serial && a.cause == b.cause }
}

/// What the store did with a revocation.
public enum StoreRevocation: Sendable, Equatable {
    case revoked(CertificateEntry)
    /// Revoked before; the entry keeps its first revocation time and reason.
    case alreadyRevoked(CertificateEntry)
    case unknown
}

/// A certificate with its status.
public struct StoredCertificate: Sendable {
    public let certificate: Certificate
    public let status: CertificateStatus

    public init(certificate: Certificate, status: CertificateStatus) {
        self.certificate = certificate
        self.status = status
    }
}

/// An audit line as the log wrote it: its bytes (newline included), the file and where the line
/// ends in it. A store that seals issuances with their audit lines keeps this to tell, after a
/// power loss, whether the log still has the line.
public struct WrittenAuditLine: Sendable, Equatable {
    public let bytes: [UInt8]
    /// The log's path when the line was written, and the file's inode (a rotated file keeps it).
    public let path: String
    public let inode: UInt64
    /// The file's size just after the line.
    public let end: Int

    public init(bytes: [UInt8], path: String, inode: UInt64, end: Int) {
        self.bytes = bytes
        self.path = path
        self.inode = inode
        self.end = end
    }
}

extension CertificateStore {
    /// Commits with the store's own durability (``CertificateStore/sealsWithAuditLine``).
    public func commit(_ certificate: Certificate, issuer: IssuerID, transaction: TransactionKey) throws {
        try self.commit(certificate, issuer: issuer, transaction: transaction, durableNow: false)
    }
}

/// What ``CertificateStore/maintain(now:)`` did.
public struct StoreMaintenance: Sendable, Equatable {
    /// Transaction records dropped past their retention.
    public var transactionsPruned = 0
    /// Leftovers of writers that died (temporary files, stale claims).
    public var leftoversRemoved = 0

    public init(transactionsPruned: Int = 0, leftoversRemoved: Int = 0) {
        self.transactionsPruned = transactionsPruned
        self.leftoversRemoved = leftoversRemoved
    }
}

/// Where a CA keeps what it issued and what it was asked: the questions a CA asks of its
/// records, and nothing about how one implementation keeps them. The file store (one CA
/// directory, many processes on one host) is the embedded default; a database store serves
/// many hosts. Both pass the same conformance suite.
///
/// Every method is safe to call from any thread of any process (and, for a shared store, any
/// host) using the store at the same time.
public protocol CertificateStore: Sendable {
    // MARK: transactions (RFC 8894 §3.3.3: one issuance per transactionID + key)

    /// Claims a transaction for processing: of all callers, only one gets `.claimed`; the others
    /// see its record (in flight, pending, issued or rejected). The claim lasts until it is
    /// released or the transaction moves on, and at most `lease` seconds: a claim whose holder
    /// died or overran its lease is taken over. Records past the retention count as absent.
    func claim(_ key: TransactionKey, lease: TimeInterval) throws -> ClaimResult
    /// Takes over an issued transaction for a request that supersedes its certificate `serial`
    /// (a renewal or re-enrollment repeating the transactionID and key): true for exactly one
    /// caller, which then holds the claim as ``claim(_:lease:)`` gives it.
    func supersede(_ key: TransactionKey, issued serial: String, lease: TimeInterval) throws -> Bool
    /// Gives up a claim (the request was refused, or failed before a certificate was committed).
    func release(_ key: TransactionKey)
    /// The record of a transactionID, unless past the retention.
    func transaction(_ transactionID: String) throws -> TransactionRecord?

    // MARK: manual approval

    /// Keeps a claimed request for an operator: durable before the client is told PENDING; the
    /// transaction reads `pending` from then on.
    func hold(_ request: PendingRequest) throws
    /// Every request waiting for an operator, oldest first.
    func pendingRequests() throws -> [PendingRequest]
    func pendingRequest(_ transactionID: String) throws -> PendingRequest?
    /// An operator refused a held request: the transaction reads `rejected`, the request is gone.
    func reject(_ key: TransactionKey) throws

    // MARK: issuance (one path: ``Issuance``)

    /// Whether an issuance becomes durable together with its audit line, in one write made by
    /// ``audited(serial:line:)``, instead of at ``commit(_:issuer:transaction:durableNow:)``: the
    /// audit log then writes that line without a sync of its own (the store can put it back).
    var sealsWithAuditLine: Bool { get }

    /// Records a newly signed certificate, issued by `issuer` for `transaction`, as a unit. It is
    /// durable when this returns, unless the store ``sealsWithAuditLine`` and `durableNow` is
    /// false: then ``audited(serial:line:)`` makes it so. Until that call it counts as unaudited:
    /// if its request dies first, ``unaudited()`` hands it back. Throws if it cannot record it;
    /// it must then not be delivered.
    func commit(_ certificate: Certificate, issuer: IssuerID, transaction: TransactionKey, durableNow: Bool) throws
    /// The committed certificate was delivered (or approved for CertPoll): the transaction reads
    /// `issued` with `serial`, and a held request for it is gone.
    func issued(_ key: TransactionKey, serial: String) throws
    /// The committed certificate will never be delivered. When `auditLineWritten` is false,
    /// ``unaudited()`` hands it back at once, for its audit line to be written when it can be.
    func withhold(serial: String, auditLineWritten: Bool) throws
    /// The certificate's audit line is written (`line`: what and where, when the log is a file):
    /// nothing about it is left to recover. A store that ``sealsWithAuditLine`` makes the
    /// issuance and that line durable here, and keeps the line to put it back into the log if a
    /// power loss takes it; it throws when it cannot, and the certificate must then not be
    /// delivered (``unaudited()`` hands it back as `store-failed`). Other stores do not throw.
    func audited(serial: String, line: WrittenAuditLine?) throws
    /// Committed certificates without an audit line whose request is over (its process died, its
    /// lease ran out, or its audit write failed), each already marked withheld, and lines a power
    /// loss took from the log (``UnauditedCertificate/lostLine``): the caller writes their lines,
    /// then calls ``audited(serial:line:)``.
    func unaudited() throws -> [UnauditedCertificate]

    // MARK: certificates

    func certificate(serial: String) throws -> StoredCertificate?
    /// Every certificate issued to `subject` (OpenSSL one-line form), oldest first.
    func certificates(subject: String) throws -> [CertificateEntry]
    /// Every certificate, oldest first (`scep-fcgi ca list`).
    func certificates() throws -> [CertificateEntry]
    /// Revokes a certificate (RFC 5280 §5.3.1 reason). Revoking twice changes nothing (the first
    /// time and reason stand); an unknown serial is an answer, not an error.
    func revoke(serial: String, reason: RevocationReason?, at: Date) throws -> StoreRevocation
    /// The revoked certificates (RFC 5280 §5.1.2.6), with the issuer each was committed with.
    func revoked() throws -> [RevokedEntry]
    /// When the newest revocation happened (nil: none).
    func latestRevocation() throws -> Date?
    /// Takes the next cRLNumber (RFC 5280 §5.2.3) of `issuer`'s CRL: never one handed out
    /// before, and at least `atLeast` (a number published before the store kept count).
    func nextCRLNumber(issuer: IssuerID, atLeast: UInt64) throws -> UInt64
    /// Keeps `crl` (DER, cRLNumber `number`) as `issuer`'s newest CRL, unless one with a higher
    /// number is kept already: whoever signs a CRL, every host sharing the store then serves the
    /// newest instead of signing its own.
    func keepCRL(_ crl: [UInt8], number: UInt64, issuer: IssuerID) throws
    /// The newest CRL kept for `issuer`, DER (nil: none yet).
    func newestCRL(issuer: IssuerID) throws -> [UInt8]?

    // MARK: upkeep

    /// Runs `body` unless the job named `job` is running right now in another process, on this
    /// host or another sharing the store (then nil, and nothing is run): jobs that must run once,
    /// like the Intune revocation sync. The hold ends when `body` returns or its process dies.
    func exclusively<T>(_ job: String, _ body: () throws -> T) throws -> T?

    /// Periodic work (about once a minute, any process): forget transactions past their
    /// retention, clean up what dead writers left. Returns what it did, for the log.
    func maintain(now: Date) -> StoreMaintenance
    /// Nil when the store can take the next certificate; else a fixed code (`store-not-writable`,
    /// `store-disk-full`, `store-unavailable`). Checked without writing anything.
    func healthProblem() -> String?
}
