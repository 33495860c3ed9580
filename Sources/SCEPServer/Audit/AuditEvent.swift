import FoundationEssentials
import SCEPCrypto
import Glibc

/// One audit record: one per request, written before any certificate leaves the server.
///
/// Schema (version 1, see docs/audit-log.md). Absent fields are omitted, never null.
/// The challenge value never appears, nor does any free text from a request or an error.
public struct AuditEvent: Sendable, Equatable {
    public enum Outcome: String, Sendable, CaseIterable {
        /// A certificate was issued and delivered.
        case issued
        /// A certificate issued earlier was delivered: a retransmission (RFC 8894 §3.3.3) or a
        /// CertPoll after approval.
        case delivered
        /// The request waits for an operator (PENDING).
        case pending
        /// A certificate was issued and stored but not delivered (notification, signature or
        /// audit failure): `issued/SERIAL.withheld` marks it.
        case withheld
        /// The request was refused (client-side problem or a challenge rejection).
        case rejected
        /// The server could not complete the request (validator, store or audit failure).
        case failed
        /// GetCACaps, GetCACert, GetNextCACert, GetCert, GetCRL answered.
        case served
        /// `scep-fcgi ca approve`: issued by an operator, delivered by the next CertPoll.
        case approved
        /// `scep-fcgi ca revoke`.
        case revoked
        /// `scep-fcgi ca crl` or the server's own CRL refresh.
        case published
        /// `scep-fcgi ca rollover` / `ca ra`: key material created or activated.
        case created
    }

    public var ts = Date()
    public var requestID = ""
    public var operation: String?
    public var method: String?
    public var remoteAddr: String?
    public var outcome: Outcome = .served
    public var httpStatus: Int = 200
    /// Closed set: the raw values of ``SCEP/SCEPError/Code``.
    public var reason: String?
    public var failInfo: String?
    public var messageType: String?
    public var transactionID: String?
    public var digest: String?
    public var cipher: String?
    public var keyTransport: String?
    public var challengeMode: String?
    /// The validator's own result code (e.g. the Intune `code` of validateRequest), when it gave one.
    public var challengeResult: String?
    /// Why the validator itself failed (e.g. `intune-timeout`), when it did.
    public var challengeError: String?
    /// The validator's outgoing calls with their correlation ids.
    public var validatorCalls: [ValidatorCall]?
    public var subject: String?
    public var subjectAltNames: [String]?
    /// For a request whose subject or names are too large to record: their size and SHA-256
    /// (of the subject Name DER, of the GeneralNames DER) instead, so a line stays bounded.
    public var subjectBytes: Int?
    public var subjectSHA256: String?
    public var subjectAltNameCount: Int?
    public var subjectAltNamesSHA256: String?
    public var serial: String?
    /// For a renewal: the serial of the certificate it renews.
    public var renews: String?
    /// For `ca revoke`: the CRLReason name.
    public var revocationReason: String?
    /// The SID issued for strong certificate mapping (the SID security extension).
    public var sid: String?
    /// The validity the request's name/value pairs asked for (`2 Years`) and what became of it.
    public var requestedValidity: String?
    public var validityRule: String?
    /// Intune's `requestContext` of a revocation request (`IntuneRevocation` lines).
    public var requestContext: String?
    public var sha1: String?
    public var sha256: String?
    public var notBefore: Date?
    public var notAfter: Date?
    public var durationMs: Double?

    public init() {}

    /// The JSON line, fields in a fixed order with `ts` first (for `tail -f | jq`).
    public func jsonLine() -> String {
        var json = JSONObjectWriter()
        json.add("v", 1)
        json.add("ts", RFC3339.string(self.ts))
        json.add("requestID", self.requestID)
        json.add("operation", self.operation)
        json.add("method", self.method)
        json.add("remoteAddr", self.remoteAddr)
        json.add("outcome", self.outcome.rawValue)
        json.add("httpStatus", self.httpStatus)
        json.add("reason", self.reason)
        json.add("failInfo", self.failInfo)
        json.add("messageType", self.messageType)
        json.add("transactionID", self.transactionID)
        json.add("digest", self.digest)
        json.add("cipher", self.cipher)
        json.add("keyTransport", self.keyTransport)
        json.add("challengeMode", self.challengeMode)
        json.add("challengeResult", self.challengeResult)
        json.add("challengeError", self.challengeError)
        if let calls = self.validatorCalls, !calls.isEmpty {
            json.addRaw("validatorCalls", "[" + calls.map(Self.callJSON).joined(separator: ",") + "]")
        }
        json.add("subject", self.subject)
        json.add("subjectBytes", self.subjectBytes)
        json.add("subjectSHA256", self.subjectSHA256)
        json.add("subjectAltNames", self.subjectAltNames)
        json.add("subjectAltNameCount", self.subjectAltNameCount)
        json.add("subjectAltNamesSHA256", self.subjectAltNamesSHA256)
        json.add("serial", self.serial)
        json.add("renews", self.renews)
        json.add("sid", self.sid)
        json.add("requestedValidity", self.requestedValidity)
        json.add("validityRule", self.validityRule)
        json.add("revocationReason", self.revocationReason)
        json.add("requestContext", self.requestContext)
        json.add("sha1", self.sha1)
        json.add("sha256", self.sha256)
        json.add("notBefore", self.notBefore.map(RFC3339.string))
        json.add("notAfter", self.notAfter.map(RFC3339.string))
        if let durationMs = self.durationMs {
            let tenths = Int((durationMs * 10).rounded())
            json.addRaw("durationMs", "\(tenths / 10).\(tenths % 10)")
        }
        return json.finish() + "\n"
    }
}

extension AuditEvent {
    /// Names a certificate: serial, validity and thumbprints.
    mutating func describe(_ certificate: Certificate) {
        self.serial = certificate.serialNumberHex
        self.notBefore = certificate.notBefore
        self.notAfter = certificate.notAfter
        self.sha1 = HexEncoding.string(certificate.fingerprint(.sha1))
        self.sha256 = HexEncoding.string(certificate.fingerprint(.sha256))
    }

    static func callJSON(_ call: ValidatorCall) -> String {
        var json = JSONObjectWriter()
        json.add("op", call.operation)
        json.add("clientRequestID", call.requestID)
        json.add("status", call.status)
        json.add("code", call.code)
        if let ms = call.durationMs { json.addRaw("durationMs", String(Int(ms.rounded()))) }
        return json.finish()
    }
}

/// Builds one JSON object with keys in insertion order.
package struct JSONObjectWriter {
    private var text = "{"
    private var first = true

    package init() {}

    package mutating func add(_ key: String, _ value: String?) {
        guard let value else { return }
        self.addRaw(key, Self.quote(value))
    }

    package mutating func add(_ key: String, _ value: Int) { self.addRaw(key, String(value)) }

    package mutating func add(_ key: String, _ value: Int?) {
        if let value { self.add(key, value) }
    }

    package mutating func add(_ key: String, _ values: [String]?) {
        guard let values else { return }
        self.addRaw(key, "[" + values.map(Self.quote).joined(separator: ",") + "]")
    }

    package mutating func addRaw(_ key: String, _ raw: String) {
        if !self.first { self.text += "," }
        self.first = false
        self.text += Self.quote(key) + ":" + raw
    }

    package func finish() -> String { self.text + "}" }

    /// RFC 8259 §7 string escaping; control characters as \u00XX so a line never breaks.
    static func quote(_ s: String) -> String {
        // Most values (serials, times, names) need no escape: one pass over the bytes finds that.
        // 0xE2 starts U+2028/U+2029 (E2 80 A8/A9): such strings take the slow path too.
        if s.utf8.allSatisfy({ $0 >= 0x20 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") && $0 != 0xE2 }) { return "\"" + s + "\"" }
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x2028 || scalar.value == 0x2029:
                // Only below U+0020 or U+2028/U+2029: two bytes of hex always suffice.
                out += "\\u" + HexEncoding.string([UInt8(scalar.value >> 8), UInt8(scalar.value & 0xFF)])
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

extension AuditEvent {
    /// A fresh `requestID`: 64 random bits as 16 hex digits. Lines that no HTTP request made
    /// (reconciliation, `ca` commands) get one too, so every line can be referred to.
    public static func newRequestID() -> String {
        let hex = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// Milliseconds since `start`, as every `durationMs` in an audit line is measured.
    public static func milliseconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
    }
}
