/// The `operation` query parameter (RFC 8894 §4.1).
public enum Operation: String, Sendable, CaseIterable {
    case getCACaps = "GetCACaps"
    case getCACert = "GetCACert"
    case getNextCACert = "GetNextCACert"
    case pkiOperation = "PKIOperation"

    /// Matches the RFC's spelling case-insensitively: the RFC names are case-sensitive, but
    /// nothing is gained by refusing `getcacert` from a hand-written client.
    public init?(lenient text: String) {
        let lowered = text.lowercased()
        guard let match = Operation.allCases.first(where: { $0.rawValue.lowercased() == lowered })
        else { return nil }
        self = match
    }
}

/// The query string of a SCEP request, split without form decoding.
///
/// RFC 8894 §4.1 percent-encodes base64 (RFC 3986), so `+` is a literal plus, never a space:
/// form decoding is what corrupted Android (jscep) GETs in fleetdm/fleet#45291.
public struct SCEPQuery: Sendable, Equatable {
    /// The `operation` value, percent-decoded.
    public let operation: String?
    /// The `message` value exactly as it arrived (still percent-encoded).
    public let rawMessage: String?

    public init(rawQuery: String) {
        var operation: String?
        var message: String?
        // Parameters in any order: scepclient sends message= before operation= on GET.
        for pair in rawQuery.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0])
            let value = parts.count > 1 ? String(parts[1]) : ""
            switch name.lowercased() {
            case "operation" where operation == nil:
                operation = String(decoding: SCEPQuery.percentDecoded(value) ?? Array(value.utf8), as: UTF8.self)
            case "message" where message == nil:
                message = value
            default:
                continue
            }
        }
        self.operation = operation
        self.rawMessage = message
    }

    /// Decodes a PKIOperation `message` as real clients send it.
    ///
    /// Accepted, in any mix: standard or URL-safe base64 (scepclient's GET uses `-` `_`),
    /// percent-encoded or raw `+` `/` `=` (macOS sends them unescaped, smallstep/certificates#1570),
    /// `%0A`/`%0D` line breaks (Cisco, sscep), `+` turned into a space by an intermediary, and
    /// missing `=` padding.
    /// - Throws: ``SCEPError/Code/missingMessage`` when empty, ``SCEPError/Code/badEncoding`` otherwise.
    public static func decodeMessage(_ raw: String) throws -> [UInt8] {
        guard let unescaped = percentDecoded(raw) else { throw SCEPError(.badEncoding, "bad percent escape") }
        var alphabet: [UInt8] = []
        alphabet.reserveCapacity(unescaped.count)
        for byte in unescaped {
            switch byte {
            case UInt8(ascii: "\r"), UInt8(ascii: "\n"), UInt8(ascii: "\t"), UInt8(ascii: "="): continue
            case UInt8(ascii: " "): alphabet.append(UInt8(ascii: "+"))
            case UInt8(ascii: "-"): alphabet.append(UInt8(ascii: "+"))
            case UInt8(ascii: "_"): alphabet.append(UInt8(ascii: "/"))
            default: alphabet.append(byte)
            }
        }
        guard !alphabet.isEmpty else { throw SCEPError(.missingMessage) }
        guard let bytes = Base64.decode(alphabet) else { throw SCEPError(.badEncoding, "not base64") }
        return bytes
    }

    /// RFC 3986 percent-decoding; nil on a malformed escape.
    static func percentDecoded(_ text: String) -> [UInt8]? {
        let input = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(input.count)
        var index = 0
        while index < input.count {
            let byte = input[index]
            if byte == UInt8(ascii: "%") {
                guard index + 2 < input.count, let high = hexValue(input[index + 1]), let low = hexValue(input[index + 2])
                else { return nil }
                out.append(high << 4 | low)
                index += 3
            } else {
                out.append(byte)
                index += 1
            }
        }
        return out
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// Standard-alphabet base64 without padding (padding is stripped before decoding).
enum Base64 {
    private static let table: [Int8] = {
        var t = [Int8](repeating: -1, count: 256)
        for (i, c) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() {
            t[Int(c)] = Int8(i)
        }
        return t
    }()

    static func decode(_ input: [UInt8]) -> [UInt8]? {
        guard input.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(input.count * 3 / 4)
        var buffer: UInt32 = 0
        var bits = 0
        for c in input {
            let v = table[Int(c)]
            guard v >= 0 else { return nil }
            buffer = buffer << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits)))
            }
        }
        return out
    }
}

/// The capabilities this server really implements (RFC 8894 §3.5.2), one keyword per line,
/// derived from what is configured, never a fixed list.
///
/// - AES: AES-128/192/256-CBC requests, replies in the same cipher.
/// - DES3: 3DES requests and replies (and DES requests, answered in 3DES).
/// - GetNextCACert: only while a next CA exists (`ca rollover`), as EJBCA does.
/// - POSTPKIOperation: PKIOperation by POST (GET works too).
/// - Renewal: RenewalReq and PKCSReq signed by a certificate this CA issued, when enabled.
/// - SHA-1, SHA-256, SHA-512: request digests; the reply uses the request's digest.
/// - SCEPStandard: RFC 8894 §2.9 conformance (AES, POST, SHA-256).
public struct CACapabilities: Sendable, Equatable {
    public var renewal: Bool
    public var nextCA: Bool

    public init(renewal: Bool, nextCA: Bool) {
        self.renewal = renewal
        self.nextCA = nextCA
    }

    public var keywords: [String] {
        var out = ["AES", "DES3"]
        if self.nextCA { out.append("GetNextCACert") }
        out.append("POSTPKIOperation")
        if self.renewal { out.append("Renewal") }
        out += ["SCEPStandard", "SHA-1", "SHA-256", "SHA-512"]
        return out
    }

    public var text: String { self.keywords.joined(separator: "\n") }
}
