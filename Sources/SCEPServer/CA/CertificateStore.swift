import Foundation
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
/// `O_APPEND` write. Serials are random (``SerialNumber/random()``), so nothing is shared.
public struct FileCertificateStore: CertificateStore {
    public let directory: CADirectory

    public init(directory: CADirectory) { self.directory = directory }

    public func record(_ certificate: Certificate, transactionID: String) throws {
        let serial = certificate.serialNumberHex
        // The file name is the serial only (hex): nothing from the request reaches a path.
        try AtomicFile.create("\(self.directory.issuedPath)/\(serial).pem", contents: Array(certificate.pemEncoded.utf8), mode: 0o644)
        try AtomicFile.append(self.directory.indexPath, Array(Self.indexLine(certificate).utf8), mode: 0o644, sync: true)
    }

    /// `V <tab> expiry <tab> (revocation) <tab> serial <tab> unknown <tab> subject`, as `openssl ca` writes.
    static func indexLine(_ certificate: Certificate) -> String {
        let subject = certificate.subjectOneLine.map { $0 == "\t" || $0 == "\n" || $0 == "\r" ? " " : $0 }
        return "V\t\(Self.indexTime(certificate.notAfter))\t\t\(certificate.serialNumberHex)\tunknown\t\(String(subject))\n"
    }

    /// UTCTime `YYMMDDHHMMSSZ` until 2049, GeneralizedTime after (RFC 5280 §4.1.2.5), as OpenSSL does.
    static func indexTime(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        let year = c.year ?? 1970
        let head = year < 2050 ? String(format: "%02d", year % 100) : String(format: "%04d", year)
        return head + String(format: "%02d%02d%02d%02d%02dZ", c.month ?? 1, c.day ?? 1, c.hour ?? 0, c.minute ?? 0, c.second ?? 0)
    }
}
