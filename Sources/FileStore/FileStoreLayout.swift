/// Where the file store keeps its records inside the CA directory (docs/ca-layout.md).
public struct FileStoreLayout: Sendable {
    /// The CA directory.
    public let path: String

    public init(root: String) { self.path = root }

    /// One PEM file per certificate (`SERIAL.pem`; `SERIAL.withheld` marks one never delivered).
    public var issuedPath: String { self.path + "/issued" }
    /// Temporary files of writes into `issued/` (swept for orphans without listing `issued/`).
    public var scratchPath: String { self.path + "/issued/.tmp" }
    /// OpenSSL `ca`-compatible index, one line per certificate; `index.txt.lock` serialises writers.
    public var indexPath: String { self.path + "/index.txt" }
    /// The one durable write of each issuance, until a checkpoint (``IssuanceJournal``).
    public var journalPath: String { self.path + "/journal" }
    /// One entry per transactionID, for replay and polling.
    public var transactionsPath: String { self.path + "/transactions" }
    /// Requests waiting for an operator.
    public var pendingPath: String { self.path + "/pending" }
    /// Notes of certificates committed without an audit line yet.
    public var unauditedPath: String { self.path + "/unaudited" }
    /// CRL numbers per issuing key (beside the CRLs the server publishes there).
    public var crlPath: String { self.path + "/crl" }
}
