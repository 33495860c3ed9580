import FoundationEssentials
import Glibc
import SCEPCrypto

/// Where issued certificates are kept. The file store is the first conformer; replay by
/// transactionID, CertPoll, GetCert and revocation will extend this protocol.
public protocol CertificateStore: Sendable {
    /// Records a newly issued certificate durably. Throws if it cannot; the certificate must then
    /// not be delivered.
    func record(_ certificate: Certificate, transactionID: String) throws
}

/// `issued/SERIAL.pem` plus an OpenSSL-compatible `index.txt` line, safe with many processes:
/// the PEM is created with temp-file + fsync + link (never overwriting), the index line is one
/// `O_APPEND` write, fdatasynced. Serials are random (``SerialNumber/random()``), so nothing is shared.
///
/// Ownership: holds the index file descriptor open for the life of the process (one per process).
public final class FileCertificateStore: CertificateStore, @unchecked Sendable {
    public let directory: CADirectory
    private let indexFD: Int32

    public init(directory: CADirectory) throws {
        self.directory = directory
        let fd = open(directory.indexPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ServerError(.store, "open \(directory.indexPath): \(errnoText())") }
        self.indexFD = fd
    }

    deinit { close(self.indexFD) }

    public func record(_ certificate: Certificate, transactionID: String) throws {
        let serial = certificate.serialNumberHex
        // The file name is the serial only (hex): nothing from the request reaches a path.
        try AtomicFile.create("\(self.directory.issuedPath)/\(serial).pem", contents: Array(certificate.pemEncoded.utf8), mode: 0o644)
        try AtomicFile.writeAll(self.indexFD, Array(Self.indexLine(certificate).utf8), what: self.directory.indexPath)
        guard fdatasync(self.indexFD) == 0 else { throw ServerError(.store, "sync \(self.directory.indexPath): \(errnoText())") }
    }

    /// `V <tab> expiry <tab> (revocation) <tab> serial <tab> unknown <tab> subject`, as `openssl ca` writes.
    static func indexLine(_ certificate: Certificate) -> String {
        let subject = certificate.subjectOneLine.map { $0 == "\t" || $0 == "\n" || $0 == "\r" ? " " : $0 }
        return "V\t\(Self.indexTime(certificate.notAfter))\t\t\(certificate.serialNumberHex)\tunknown\t\(String(subject))\n"
    }

    /// UTCTime `YYMMDDHHMMSSZ` until 2049, GeneralizedTime after (RFC 5280 §4.1.2.5), as OpenSSL does.
    static func indexTime(_ date: Date) -> String {
        let t = UTCTime(date.timeIntervalSince1970)
        let head = t.year < 2050 ? RFC3339.pad(t.year % 100, 2) : RFC3339.pad(t.year, 4)
        return head + [t.month, t.day, t.hour, t.minute, t.second].map { RFC3339.pad($0, 2) }.joined() + "Z"
    }
}
