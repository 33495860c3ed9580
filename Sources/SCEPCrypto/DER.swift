/// A minimal DER reader for the few places OpenSSL has no getter (an ASN1_TYPE's string value,
/// EnvelopedData's content-encryption algorithm, OAEP parameters).
///
/// It only ever reads DER that OpenSSL itself re-encoded (`i2d_*`), so BER indefinite lengths
/// never reach it; it rejects them rather than guess.
public struct DERNode: Sendable, Equatable {
    /// The identifier octet, e.g. 0x30 SEQUENCE, 0x13 PrintableString, 0xA0 [0] constructed.
    public let tag: UInt8
    /// The content octets.
    public let value: ArraySlice<UInt8>
    /// The whole TLV (identifier, length and content octets).
    public let encoded: ArraySlice<UInt8>

    public var isConstructed: Bool { self.tag & 0x20 != 0 }

    /// Parses one TLV at the start of `bytes`; returns it and the rest.
    public static func parse(_ bytes: ArraySlice<UInt8>) throws -> (DERNode, ArraySlice<UInt8>) {
        var index = bytes.startIndex
        guard index < bytes.endIndex else { throw OpenSSLError.parse("DER: empty input") }
        let tag = bytes[index]
        guard tag & 0x1F != 0x1F else { throw OpenSSLError.parse("DER: high tag numbers") }
        index += 1
        guard index < bytes.endIndex else { throw OpenSSLError.parse("DER: truncated length") }
        var length = Int(bytes[index])
        index += 1
        if length & 0x80 != 0 {
            let count = length & 0x7F
            guard count > 0, count <= 4, bytes.endIndex - index >= count else {
                throw OpenSSLError.parse("DER: bad length")
            }
            length = 0
            for _ in 0..<count {
                length = length << 8 | Int(bytes[index])
                index += 1
            }
        }
        guard bytes.endIndex - index >= length else { throw OpenSSLError.parse("DER: truncated value") }
        let value = bytes[index..<(index + length)]
        return (DERNode(tag: tag, value: value, encoded: bytes[bytes.startIndex..<(index + length)]), bytes[(index + length)...])
    }

    /// Parses exactly one TLV spanning all of `bytes`.
    public static func parseSingle(_ bytes: [UInt8]) throws -> DERNode {
        let (node, rest) = try parse(bytes[...])
        guard rest.isEmpty else { throw OpenSSLError.parse("DER: trailing bytes") }
        return node
    }

    /// The children of a constructed node.
    public func children() throws -> [DERNode] {
        guard self.isConstructed else { throw OpenSSLError.parse("DER: not constructed") }
        var rest = self.value
        var out: [DERNode] = []
        while !rest.isEmpty {
            let (child, tail) = try DERNode.parse(rest)
            out.append(child)
            rest = tail
        }
        return out
    }

    /// DER-encodes one TLV (definite length), for the few structures SCEP clients send.
    public static func encode(tag: UInt8, _ content: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [tag]
        if content.count < 0x80 {
            out.append(UInt8(content.count))
        } else {
            var length = content.count
            var octets: [UInt8] = []
            while length > 0 {
                octets.insert(UInt8(length & 0xFF), at: 0)
                length >>= 8
            }
            out.append(0x80 | UInt8(octets.count))
            out += octets
        }
        return out + content
    }

    /// The DER INTEGER content octets of a non-negative magnitude (a 0x00 is prefixed when the top bit is set).
    public static func integerContent(_ magnitude: [UInt8]) -> [UInt8] {
        var bytes = Array(magnitude.drop { $0 == 0 })
        if bytes.isEmpty { bytes = [0] }
        return bytes[0] & 0x80 != 0 ? [0] + bytes : bytes
    }

    /// The dotted form of an OBJECT IDENTIFIER node.
    public func objectIdentifier() throws -> String {
        guard self.tag == 0x06, let first = self.value.first else { throw OpenSSLError.parse("DER: not an OID") }
        var arcs: [UInt64] = []
        var current: UInt64 = 0
        for byte in self.value {
            current = current << 7 | UInt64(byte & 0x7F)
            if byte & 0x80 == 0 {
                arcs.append(current)
                current = 0
            }
        }
        guard !arcs.isEmpty, self.value.last! & 0x80 == 0 else { throw OpenSSLError.parse("DER: bad OID") }
        let head = arcs.removeFirst()
        let (a, b): (UInt64, UInt64) = first >= 80 ? (2, head - 80) : (head / 40, head % 40)
        return ([a, b] + arcs).map(String.init).joined(separator: ".")
    }

    /// The text of any ASN.1 string type a DirectoryString or SCEP attribute may use.
    ///
    /// RFC 8894 §3.2.1 gives PrintableString for the SCEP attributes, and PKCS#9 allows any
    /// DirectoryString for challengePassword (Windows uses PrintableString, others UTF8String).
    public func stringValue() throws -> String {
        switch self.tag {
        case 0x0C, 0x13, 0x16, 0x14, 0x1A, 0x12:  // UTF8, Printable, IA5, T61, Visible, Numeric
            return String(decoding: self.value, as: UTF8.self)
        case 0x1E:  // BMPString: UTF-16BE
            guard self.value.count % 2 == 0 else { throw OpenSSLError.parse("DER: odd BMPString") }
            var units: [UInt16] = []
            var index = self.value.startIndex
            while index < self.value.endIndex {
                units.append(UInt16(self.value[index]) << 8 | UInt16(self.value[index + 1]))
                index += 2
            }
            return String(decoding: units, as: UTF16.self)
        case 0x1C:  // UniversalString: UTF-32BE
            guard self.value.count % 4 == 0 else { throw OpenSSLError.parse("DER: bad UniversalString") }
            var scalars = String.UnicodeScalarView()
            var index = self.value.startIndex
            while index < self.value.endIndex {
                let v = self.value[index..<(index + 4)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                guard let scalar = Unicode.Scalar(v) else { throw OpenSSLError.parse("DER: bad UniversalString") }
                scalars.append(scalar)
                index += 4
            }
            return String(scalars)
        default:
            throw OpenSSLError.parse("DER: not a string type (tag \(self.tag))")
        }
    }
}
