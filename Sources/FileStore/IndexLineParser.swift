import FoundationEssentials
import Glibc
import SCEPCrypto
import SCEPStore

/// One line of `index.txt` as parsed, without a String: its fixed fields decoded, its serial,
/// issuer and subject as byte ranges of the buffer it was read from. 200,000 lines are read at a
/// process's first lookup; a String per field was most of what that cost.
struct IndexLine {
    var status: IndexEntry.Status
    /// Unix seconds.
    var expiry: Int64
    var revokedAt: Int64?
    var reason: RevocationReason?
    /// Upper-case hex as this store writes it; otherwise ``normalizedSerial`` holds the canonical form.
    var serial: Range<Int>
    var normalizedSerial: String?
    var issuer: Range<Int>
    var subject: Range<Int>
}

/// Parses `index.txt` from its bytes (see ``IndexLine``): Foundation-free date arithmetic, no
/// allocation per line.
enum IndexLineParser {
    /// Every well-formed complete line of `buffer` (a torn last line without its newline is left).
    static func lines(_ buffer: UnsafeBufferPointer<UInt8>, into body: (IndexLine) -> Void) {
        var start = 0
        while start < buffer.count {
            var end = start
            while end < buffer.count && buffer[end] != 0x0A { end += 1 }
            guard end < buffer.count else { break }
            if let line = Self.line(buffer, start..<end) { body(line) }
            start = end + 1
        }
    }

    /// Every well-formed complete line of `bytes` as an entry.
    static func entries(_ bytes: UnsafeRawBufferPointer, into body: (IndexEntry) -> Void) {
        let buffer = bytes.bindMemory(to: UInt8.self)
        var issuers = IssuerCache()
        Self.lines(buffer) { body(Self.entry($0, in: buffer, issuers: &issuers)) }
    }

    static func entry(_ line: IndexLine, in buffer: UnsafeBufferPointer<UInt8>, issuers: inout IssuerCache) -> IndexEntry {
        IndexEntry(
            status: line.status, expiry: Date(timeIntervalSince1970: TimeInterval(line.expiry)),
            revokedAt: line.revokedAt.map { Date(timeIntervalSince1970: TimeInterval($0)) }, reason: line.reason,
            serial: line.normalizedSerial ?? Self.text(buffer, line.serial), issuer: issuers.issuer(buffer, line.issuer),
            subject: Self.text(buffer, line.subject))
    }

    /// A CA has one or two issuers (two during a rollover): their IDs are parsed once.
    struct IssuerCache {
        var known: [([UInt8], IssuerID)] = []

        mutating func issuer(_ buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> IssuerID? {
            guard range.count == 64 else { return nil }
            let bytes = UnsafeBufferPointer(rebasing: buffer[range])
            for (known, id) in self.known where known.withUnsafeBytes({ memcmp($0.baseAddress!, bytes.baseAddress!, 64) }) == 0 { return id }
            guard let id = IssuerID(hex: String(decoding: bytes, as: UTF8.self)) else { return nil }
            if self.known.count < 8 { self.known.append((Array(bytes), id)) }
            return id
        }
    }

    static func text(_ buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> String {
        String(decoding: UnsafeBufferPointer(rebasing: buffer[range]), as: UTF8.self)
    }

    /// `status \\t expiry \\t revocation \\t serial \\t file \\t subject` (the subject may hold tabs).
    static func line(_ buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> IndexLine? {
        // Six fields without an array per line.
        var fields = (0..<0, 0..<0, 0..<0, 0..<0, 0..<0, 0..<0)
        var found = 0
        var start = range.lowerBound
        var i = range.lowerBound
        while i < range.upperBound && found < 5 {
            if buffer[i] == 0x09 {
                switch found {
                case 0: fields.0 = start..<i
                case 1: fields.1 = start..<i
                case 2: fields.2 = start..<i
                case 3: fields.3 = start..<i
                default: fields.4 = start..<i
                }
                found += 1
                start = i + 1
            }
            i += 1
        }
        guard found == 5 else { return nil }
        fields.5 = start..<range.upperBound
        let status: IndexEntry.Status
        guard fields.0.count == 1 else { return nil }
        switch buffer[fields.0.lowerBound] {
        case UInt8(ascii: "V"): status = .valid
        case UInt8(ascii: "R"): status = .revoked
        case UInt8(ascii: "E"): status = .expired
        default: return nil
        }
        guard let expiry = Self.time(buffer, fields.1) else { return nil }
        var normalized: String? = nil
        if !Self.isCanonicalSerial(buffer, fields.3) {
            guard let serial = SerialHex.normalize(Self.text(buffer, fields.3)) else { return nil }
            normalized = serial
        }
        var revokedAt: Int64? = nil
        var reason: RevocationReason? = nil
        if !fields.2.isEmpty {
            let comma = fields.2.first { buffer[$0] == UInt8(ascii: ",") }
            revokedAt = Self.time(buffer, fields.2.lowerBound..<(comma ?? fields.2.upperBound))
            if let comma { reason = RevocationReason(name: Self.text(buffer, (comma + 1)..<fields.2.upperBound)) }
        }
        return IndexLine(
            status: status, expiry: expiry, revokedAt: revokedAt, reason: reason, serial: fields.3, normalizedSerial: normalized, issuer: fields.4,
            subject: fields.5)
    }

    /// Upper-case hex of even length, no redundant leading zero octet: as this store writes serials.
    private static func isCanonicalSerial(_ buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
        range.count >= 2 && range.count % 2 == 0 && range.count <= 40
            && !(range.count > 2 && buffer[range.lowerBound] == UInt8(ascii: "0") && buffer[range.lowerBound + 1] == UInt8(ascii: "0"))
            && range.allSatisfy { (0x30...0x39).contains(buffer[$0]) || (0x41...0x46).contains(buffer[$0]) }
    }

    /// `YYMMDDHHMMSSZ` (UTCTime, 1950–2049) or `YYYYMMDDHHMMSSZ` (RFC 5280 §4.1.2.5), as Unix seconds.
    static func time(_ buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Int64? {
        guard range.count == 13 || range.count == 15, buffer[range.upperBound - 1] == UInt8(ascii: "Z") else { return nil }
        for i in range.dropLast() where !(0x30...0x39).contains(buffer[i]) { return nil }
        func number(_ at: Int, _ count: Int) -> Int {
            var value = 0
            for i in (range.lowerBound + at)..<(range.lowerBound + at + count) { value = value * 10 + Int(buffer[i] - 0x30) }
            return value
        }
        var year: Int
        let offset: Int
        if range.count == 13 {
            let yy = number(0, 2)
            year = yy < 50 ? 2000 + yy : 1900 + yy
            offset = 2
        } else {
            year = number(0, 4)
            offset = 4
        }
        let (month, day) = (number(offset, 2), number(offset + 2, 2))
        let (hour, minute, second) = (number(offset + 4, 2), number(offset + 6, 2), number(offset + 8, 2))
        guard (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        // Days from 1970-01-01 to the civil date (the proleptic Gregorian calendar, as timegm).
        year -= month <= 2 ? 1 : 0
        let era = (year >= 0 ? year : year - 399) / 400
        let yearOfEra = year - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146097 + dayOfEra - 719468
        return Int64(days * 86400 + hour * 3600 + minute * 60 + second)
    }
}

/// A serial as a dictionary key without a String: up to 20 octets (RFC 5280 §4.1.2.2) from its hex.
struct SerialKey: Hashable {
    let high: UInt64
    let middle: UInt64
    let low: UInt32
    let length: UInt8

    /// From canonical upper-case hex bytes (at most 40 digits).
    init?(hex: UnsafeBufferPointer<UInt8>) {
        guard hex.count <= 40 else { return nil }
        var words: (UInt64, UInt64, UInt32) = (0, 0, 0)
        for (i, c) in hex.enumerated() {
            let v: UInt64
            switch c {
            case 0x30...0x39: v = UInt64(c - 0x30)
            case 0x41...0x46: v = UInt64(c - 0x41 + 10)
            default: return nil
            }
            if i < 16 { words.0 = words.0 << 4 | v } else if i < 32 { words.1 = words.1 << 4 | v } else { words.2 = words.2 << 4 | UInt32(v) }
        }
        (self.high, self.middle, self.low, self.length) = (words.0, words.1, words.2, UInt8(hex.count))
    }

    init?(_ serial: String) {
        var serial = serial
        guard let key = serial.withUTF8({ SerialKey(hex: $0) }) else { return nil }
        self = key
    }
}
