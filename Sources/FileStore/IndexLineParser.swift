import FoundationEssentials
import Glibc
import SCEPCrypto
import SCEPStore

/// Parses `index.txt` from its bytes, without making a String of the line first: a CA two years
/// into a 100,000-device fleet has 200,000 lines, and every server process reads them all once
/// (the first lookup after a start). Foundation-free date arithmetic and no per-field Strings but
/// the serial and the subject keep that to tens of milliseconds.
enum IndexLineParser {
    /// Every well-formed complete line of `bytes` (a torn last line without its newline is left).
    static func entries(_ bytes: UnsafeRawBufferPointer, into body: (IndexEntry) -> Void) {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        let buffer = UnsafeBufferPointer(start: base, count: bytes.count)
        var issuers = IssuerCache()
        var start = 0
        while start < buffer.count {
            guard let end = Self.index(of: 0x0A, in: buffer, from: start) else { break }
            if let entry = Self.entry(UnsafeBufferPointer(rebasing: buffer[start..<end]), issuers: &issuers) { body(entry) }
            start = end + 1
        }
    }

    /// A CA has one or two issuers (two during a rollover): their IDs are parsed once.
    struct IssuerCache {
        var known: [([UInt8], IssuerID)] = []

        mutating func issuer(_ line: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> IssuerID? {
            guard range.count == 64 else { return nil }
            let bytes = UnsafeBufferPointer(rebasing: line[range])
            for (known, id) in self.known where known.withUnsafeBytes({ memcmp($0.baseAddress!, bytes.baseAddress!, 64) }) == 0 { return id }
            guard let id = IssuerID(hex: String(decoding: bytes, as: UTF8.self)) else { return nil }
            if self.known.count < 8 { self.known.append((Array(bytes), id)) }
            return id
        }
    }

    private static func index(of byte: UInt8, in buffer: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
        var i = start
        while i < buffer.count {
            if buffer[i] == byte { return i }
            i += 1
        }
        return nil
    }

    /// One line: `status \t expiry \t revocation \t serial \t file \t subject` (the subject may hold tabs).
    static func entry(_ line: UnsafeBufferPointer<UInt8>) -> IndexEntry? {
        var issuers = IssuerCache()
        return Self.entry(line, issuers: &issuers)
    }

    static func entry(_ line: UnsafeBufferPointer<UInt8>, issuers: inout IssuerCache) -> IndexEntry? {
        // Six fields without an array per line (200,000 lines: allocations are most of the cost).
        var fields = (0..<0, 0..<0, 0..<0, 0..<0, 0..<0, 0..<0)
        var found = 0
        var start = 0
        var i = 0
        while i < line.count && found < 5 {
            if line[i] == 0x09 {
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
        fields.5 = start..<line.count
        return Self.entry(line, fields, issuers: &issuers)
    }

    private static func entry(
        _ line: UnsafeBufferPointer<UInt8>, _ f: (Range<Int>, Range<Int>, Range<Int>, Range<Int>, Range<Int>, Range<Int>), issuers: inout IssuerCache
    ) -> IndexEntry? {
        let status: IndexEntry.Status
        guard f.0.count == 1 else { return nil }
        switch line[f.0.lowerBound] {
        case UInt8(ascii: "V"): status = .valid
        case UInt8(ascii: "R"): status = .revoked
        case UInt8(ascii: "E"): status = .expired
        default: return nil
        }
        guard let expiry = Self.time(line, f.1), let serial = Self.serial(line, f.3) else { return nil }
        var revokedAt: Date? = nil
        var reason: RevocationReason? = nil
        if !f.2.isEmpty {
            let comma = f.2.first { line[$0] == UInt8(ascii: ",") }
            revokedAt = Self.time(line, f.2.lowerBound..<(comma ?? f.2.upperBound))
            if let comma { reason = RevocationReason(name: Self.text(line, (comma + 1)..<f.2.upperBound)) }
        }
        return IndexEntry(
            status: status, expiry: expiry, revokedAt: revokedAt, reason: reason, serial: serial, issuer: issuers.issuer(line, f.4),
            subject: Self.text(line, f.5))
    }

    private static func text(_ line: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> String {
        String(decoding: UnsafeBufferPointer(rebasing: line[range]), as: UTF8.self)
    }

    /// Upper-case hex as this store writes it is taken as is; anything else goes through ``SerialHex``.
    private static func serial(_ line: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> String? {
        let canonical = range.count >= 2 && range.count % 2 == 0 && range.count <= 40
            && !(range.count > 2 && line[range.lowerBound] == UInt8(ascii: "0") && line[range.lowerBound + 1] == UInt8(ascii: "0"))
            && range.allSatisfy { (0x30...0x39).contains(line[$0]) || (0x41...0x46).contains(line[$0]) }
        return canonical ? Self.text(line, range) : SerialHex.normalize(Self.text(line, range))
    }

    /// `YYMMDDHHMMSSZ` (UTCTime, 1950–2049) or `YYYYMMDDHHMMSSZ` (RFC 5280 §4.1.2.5), as seconds.
    static func time(_ line: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Date? {
        guard range.count == 13 || range.count == 15, line[range.upperBound - 1] == UInt8(ascii: "Z") else { return nil }
        for i in range.dropLast() where !(0x30...0x39).contains(line[i]) { return nil }
        func number(_ at: Int, _ count: Int) -> Int {
            var value = 0
            for i in (range.lowerBound + at)..<(range.lowerBound + at + count) { value = value * 10 + Int(line[i] - 0x30) }
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
        return Date(timeIntervalSince1970: TimeInterval(days * 86400 + hour * 3600 + minute * 60 + second))
    }
}
