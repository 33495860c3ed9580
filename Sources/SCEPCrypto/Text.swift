/// Whitespace trimming without Foundation (the server links FoundationEssentials only, which has no
/// `trimmingCharacters(in:)`). Visible inside this package only.
package extension StringProtocol {
    var trimmedWhitespace: String {
        String(self.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}

/// Hex digits for thumbprints, fingerprints and percent-escapes. Visible inside this package only.
package enum HexEncoding {
    package static func string(_ bytes: some Sequence<UInt8>, uppercase: Bool = false, separator: String = "") -> String {
        let digits = Array(uppercase ? "0123456789ABCDEF" : "0123456789abcdef")
        return bytes.map { String([digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]]) }.joined(separator: separator)
    }
}
