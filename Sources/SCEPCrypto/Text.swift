import FoundationEssentials
import Glibc
internal import COpenSSL

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

/// RFC 3339 UTC timestamps with milliseconds, e.g. `2026-11-26T04:55:15.123Z`.
/// Hand-formatted: this runs for every request, and `String(format:)` is slow.
package enum RFC3339 {
    package static func string(_ date: Date) -> String {
        let seconds = date.timeIntervalSince1970
        let parts = UTCTime(seconds)
        let millis = Int((seconds - seconds.rounded(.down)) * 1000)
        // 24 bytes written in place: no interpolation, no intermediate Strings.
        return String(unsafeUninitializedCapacity: 24) { out in
            func put(_ value: Int, _ width: Int, at position: Int) {
                var v = value
                for i in stride(from: position + width - 1, through: position, by: -1) {
                    out[i] = UInt8(ascii: "0") + UInt8(v % 10)
                    v /= 10
                }
            }
            put(parts.year, 4, at: 0)
            out[4] = UInt8(ascii: "-")
            put(parts.month, 2, at: 5)
            out[7] = UInt8(ascii: "-")
            put(parts.day, 2, at: 8)
            out[10] = UInt8(ascii: "T")
            put(parts.hour, 2, at: 11)
            out[13] = UInt8(ascii: ":")
            put(parts.minute, 2, at: 14)
            out[16] = UInt8(ascii: ":")
            put(parts.second, 2, at: 17)
            out[19] = UInt8(ascii: ".")
            put(millis, 3, at: 20)
            out[23] = UInt8(ascii: "Z")
            return 24
        }
    }

    package static func pad(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }
}

/// Broken-down UTC time (gmtime_r), without Foundation's Calendar.
package struct UTCTime {
    package let year, month, day, hour, minute, second: Int

    package init(_ secondsSince1970: Double) {
        var time = time_t(secondsSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&time, &parts)
        self.year = Int(parts.tm_year) + 1900
        self.month = Int(parts.tm_mon) + 1
        self.day = Int(parts.tm_mday)
        self.hour = Int(parts.tm_hour)
        self.minute = Int(parts.tm_min)
        self.second = Int(parts.tm_sec)
    }
}

/// The times of OpenSSL's `ca` database (`index.txt`), which are X.509's: UTCTime `YYMMDDHHMMSSZ` until 2049, GeneralizedTime after (RFC 5280 §4.1.2.5).
package enum IndexTime {
    package static func string(_ date: Date) -> String {
        let t = UTCTime(date.timeIntervalSince1970)
        let head = t.year < 2050 ? RFC3339.pad(t.year % 100, 2) : RFC3339.pad(t.year, 4)
        return head + [t.month, t.day, t.hour, t.minute, t.second].map { RFC3339.pad($0, 2) }.joined() + "Z"
    }
}
