/// Strong certificate mapping (KB5014754): a Windows security identifier (SID) in a certificate,
/// as the SID security extension or as Intune's URI subjectAltName.
public enum SecurityIdentifier {
    /// szOID_NTDS_CA_SECURITY_EXT: the SID security extension (MS-WCCE 2.2.2.7.7.4).
    public static let extensionOID = "1.3.6.1.4.1.311.25.2"
    /// szOID_NTDS_OBJECTSID: the otherName type inside it.
    public static let otherNameOID = "1.3.6.1.4.1.311.25.2.1"
    /// The URI subjectAltName Intune profiles send with `{{OnPremisesSecurityIdentifier}}`.
    public static let uriPrefix = "tag:microsoft.com,2022-09-14:sid:"
    /// "S-1-" + a 48-bit authority and 15 sub-authorities of 32 bits, each with its dash.
    public static let maxLength = 4 + 15 + 15 * 11

    /// Whether `text` is a SID in its string form (MS-DTYP 2.4.2.1): `S-1-`, the identifier
    /// authority in decimal (below 2^48), then 1 to 15 decimal sub-authorities below 2^32. No
    /// signs, spaces, hex or empty parts: a domain controller must read the same SID we checked.
    public static func isWellFormed(_ text: String) -> Bool {
        guard text.utf8.count <= Self.maxLength, text.hasPrefix("S-1-") else { return false }
        let parts = text.dropFirst(4).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 2, parts.count <= 16 else { return false }
        for (i, part) in parts.enumerated() {
            guard !part.isEmpty, part.utf8.count <= 15, part.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                part.count == 1 || part.first != "0", let value = UInt64(part)
            else { return false }
            if value > (i == 0 ? (1 << 48) - 1 : UInt64(UInt32.max)) { return false }
        }
        return true
    }

    /// The SID of an Intune URI subjectAltName (the prefix compared without regard to case: a
    /// consumer may compare it so, and a differently cased tag must not slip past the checks), or
    /// nil for any other URI.
    public static func fromURI(_ uri: String) -> String? {
        guard uri.utf8.count > Self.uriPrefix.utf8.count,
            uri.utf8.prefix(Self.uriPrefix.utf8.count).elementsEqual(Self.uriPrefix.utf8, by: { Self.lower($0) == $1 })
        else { return nil }
        return String(decoding: uri.utf8.dropFirst(Self.uriPrefix.utf8.count), as: UTF8.self)
    }

    private static func lower(_ byte: UInt8) -> UInt8 { (0x41...0x5A).contains(byte) ? byte + 0x20 : byte }

    /// The extension value (MS-WCCE 2.2.2.7.7.4): GeneralNames with one otherName of type
    /// 1.3.6.1.4.1.311.25.2.1 whose value is `[0] EXPLICIT OCTET STRING` holding the SID text.
    ///
    ///     30 L  A0 L  06 0A 2B 06 01 04 01 82 37 19 02 01  A0 L  04 L "S-1-5-21-…"
    public static func extensionValue(_ sid: String) -> [UInt8] {
        let oid: [UInt8] = [0x06, 0x0A, 0x2B, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x19, 0x02, 0x01]
        let value = DERNode.encode(tag: 0xA0, DERNode.encode(tag: 0x04, Array(sid.utf8)))
        return DERNode.encode(tag: 0x30, DERNode.encode(tag: 0xA0, oid + value))
    }

    /// The SID in an extension value built as ``extensionValue(_:)`` says; nil when it is
    /// anything else (another layout, several names, another otherName type).
    public static func parse(extensionValue der: [UInt8]) -> String? {
        guard let names = try? DERNode.parseSingle(der), names.tag == 0x30, let children = try? names.children(), children.count == 1,
            children[0].tag == 0xA0, let parts = try? children[0].children(), parts.count == 2,
            (try? parts[0].objectIdentifier()) == Self.otherNameOID, parts[1].tag == 0xA0,
            let inner = try? parts[1].children(), inner.count == 1, inner[0].tag == 0x04
        else { return nil }
        return String(decoding: inner[0].value, as: UTF8.self)
    }
}
