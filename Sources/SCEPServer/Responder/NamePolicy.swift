import SCEP
import SCEPCrypto

/// What a request may put into an issued certificate's subject and subjectAltName, checked before
/// the challenge so a refused request costs a bounded audit line and no validator call.
///
/// RFC 5280 §4.2.1.6: a dNSName is a hostname in the preferred name syntax (RFC 1034 §3.5 as
/// relaxed by RFC 1123 §2.1: letters, digits and hyphens, labels of 1 to 63, 253 in all), with a
/// wildcard only as the whole leftmost label (RFC 6125 §6.4.3 practice); an rfc822Name is
/// `local@domain`; a URI has a scheme (RFC 3986 §3.1); an iPAddress is 4 or 16 octets. No control
/// character or NUL is accepted anywhere, in a name or in the subject (they would split
/// `index.txt` lines, log lines, and the comparisons relying parties make: `good.example\0.evil`).
struct NamePolicy: Sendable {
    /// `issue.max_subject_alt_names`.
    let maxNames: Int
    /// `issue.max_subject_bytes`: DER size of the requested subject Name.
    let maxSubjectBytes: Int

    /// - Parameter subjectValues: the subject's attribute values as UTF-8 (nil when one cannot be
    ///   decoded). Not the RFC 2253 text: OpenSSL escapes control characters there (`\0A`).
    func check(subjectDER: [UInt8], subjectValues: [String]?, names: [RequestedName]) throws(SCEPError) {
        guard subjectDER.count <= self.maxSubjectBytes else { throw SCEPError(.subjectTooLarge, "\(subjectDER.count) bytes") }
        guard let subjectValues,
            !subjectValues.contains(where: { $0.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) })
        else { throw SCEPError(.subjectInvalid) }
        guard names.count <= self.maxNames else { throw SCEPError(.tooManyNames, "\(names.count) names") }
        for (index, name) in names.enumerated() where !Self.valid(name) {
            throw SCEPError(.nameInvalid, "subjectAltName #\(index + 1) (\(name.kind.rawValue))")
        }
    }

    static func valid(_ name: RequestedName) -> Bool {
        let bytes = name.value
        switch name.kind {
        case .ip:
            return bytes.count == 4 || bytes.count == 16
        case .other:
            return true  // never issued (dropped when the certificate is built)
        case .dns, .email, .uri, .upn:
            guard !bytes.isEmpty, bytes.count <= 1024, !bytes.contains(where: { $0 < 0x20 || $0 == 0x7F }) else { return false }
        }
        switch name.kind {
        case .dns:
            return Self.hostname(bytes, wildcard: true)
        case .email:
            // local@domain: a printable ASCII local part, a hostname domain (RFC 5280 §4.2.1.6, RFC 5321 §4.1.2).
            guard let at = bytes.lastIndex(of: UInt8(ascii: "@")), at > 0 else { return false }
            return bytes[..<at].allSatisfy { $0 > 0x20 && $0 < 0x7F } && Self.hostname(Array(bytes[(at + 1)...]), wildcard: false)
        case .uri:
            // scheme ":" …, no spaces (RFC 3986 §3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )).
            guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")), colon > 0, Self.isLetter(bytes[0]) else { return false }
            return bytes[..<colon].allSatisfy { Self.isLetter($0) || Self.isDigit($0) || $0 == 0x2B || $0 == 0x2D || $0 == 0x2E }
                && bytes.allSatisfy { $0 > 0x20 && $0 < 0x7F }
        case .upn:
            guard let text = String(validating: bytes, as: UTF8.self) else { return false }
            return text.count <= 256 && text.contains("@")
        case .ip, .other:
            return true
        }
    }

    /// RFC 1123 §2.1 hostname; `*` allowed as the whole leftmost label of three or more labels.
    static func hostname(_ bytes: [UInt8], wildcard: Bool) -> Bool {
        guard !bytes.isEmpty, bytes.count <= 253 else { return false }
        let labels = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        for (index, label) in labels.enumerated() {
            if wildcard && index == 0 && label.elementsEqual([UInt8(ascii: "*")]) {
                guard labels.count >= 3 else { return false }
                continue
            }
            guard (1...63).contains(label.count), label.first != 0x2D, label.last != 0x2D,
                label.allSatisfy({ Self.isLetter($0) || Self.isDigit($0) || $0 == 0x2D })
            else { return false }
        }
        return true
    }

    static func isLetter(_ b: UInt8) -> Bool { (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b) }
    static func isDigit(_ b: UInt8) -> Bool { (0x30...0x39).contains(b) }
}
