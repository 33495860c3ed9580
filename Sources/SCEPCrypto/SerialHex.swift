/// Certificate serial numbers as text, the way `index.txt` and `openssl x509 -serial` write them:
/// upper-case hex, an even number of digits (RFC 5280 §4.1.2.2 serials are positive INTEGERs).
public enum SerialHex {
    /// Normalises operator input (`0a1b`, `0A1B`, `A1B`) to index.txt's form; nil if not hex.
    public static func normalize(_ text: String) -> String? {
        var digits = text.uppercased().filter { $0 != ":" }
        guard !digits.isEmpty, digits.count <= 40, digits.allSatisfy({ $0.isHexDigit }) else { return nil }
        while digits.count > 2 && digits.hasPrefix("00") { digits.removeFirst(2) }
        if digits.count % 2 == 1 { digits = "0" + digits }
        return digits
    }

    /// The magnitude octets of a hex serial, big-endian.
    public static func bytes(_ hex: String) -> [UInt8]? {
        guard let normalized = normalize(hex) else { return nil }
        var out: [UInt8] = []
        var index = normalized.startIndex
        while index < normalized.endIndex {
            let next = normalized.index(index, offsetBy: 2)
            guard let byte = UInt8(normalized[index..<next], radix: 16) else { return nil }
            out.append(byte)
            index = next
        }
        return out
    }

    /// Hex of an INTEGER's content octets (two's complement, so a leading 0x00 is dropped).
    public static func string(integerContent bytes: some Collection<UInt8>) -> String? {
        var trimmed = Array(bytes)
        guard !trimmed.isEmpty, trimmed[0] & 0x80 == 0 else { return nil }
        while trimmed.count > 1 && trimmed[0] == 0 { trimmed.removeFirst() }
        return normalize(HexEncoding.string(trimmed, uppercase: true))
    }
}
