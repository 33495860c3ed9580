import FoundationEssentials
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
        var start = 0
        while start < buffer.count {
            guard let end = Self.index(of: 0x0A, in: buffer, from: start) else { break }
            if let entry = Self.entry(UnsafeBufferPointer(rebasing: buffer[start..<end])) { body(entry) }
            start = end + 1
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
        var fields: [Range<Int>] = []
        fields.reserveCapacity(6)
        var start = 0
        for i in 0..<line.count where line[i] == 0x09 && fields.count < 5 {
            fields.append(start..<i)
            start = i + 1
        }
        guard fields.count == 5 else { return nil }
        fields.append(start..<line.count)
        let status: IndexEntry.Status
        guard fields[0].count == 1 else { return nil }
        switch line[fields[0].lowerBound] {
        case UInt8(ascii: "V"): status = .valid
        case UInt8(ascii: "R"): status = .revoked
        case UInt8(ascii: "E"): status = .expired
        default: return nil
        }
        guard let expiry = Self.time(line, fields[1]), let serial = Self.serial(line, fields[3]) else { return nil }
        var revokedAt: Date? = nil
        var reason: RevocationReason? = nil
        if !fields[2].isEmpty {
            let comma = fields[2].first { line[$0] == UInt8(ascii: ",") }
            revokedAt = Self.time(line, fields[2].lowerBound..<(comma ?? fields[2].upperBound))
            if let comma { reason = RevocationReason(name: Self.text(line, (comma + 1)..<fields[2].upperBound)) }
        }
        let issuer = fields[4].count == 64 ? IssuerID(hex: Self.text(line, fields[4])) : nil
        return IndexEntry(
            status: status, expiry: expiry, revokedAt: revokedAt, reason: reason, serial: serial, issuer: issuer, subject: Self.text(line, fields[5]))
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
        var digits: [Int] = []
        digits.reserveCapacity(14)
        for i in range.dropLast() {
            let d = Int(line[i]) - 0x30
            guard (0...9).contains(d) else { return nil }
            digits.append(d)
        }
        func number(_ at: Int, _ count: Int) -> Int { digits[at..<(at + count)].reduce(0) { $0 * 10 + $1 } }
        var year: Int
        var offset: Int
        if digits.count == 12 {
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
