import FoundationEssentials
import Glibc
internal import COpenSSL

/// CRLReason (RFC 5280 §5.3.1), with the names `openssl ca` writes into `index.txt`.
public enum RevocationReason: Int, Sendable, CaseIterable {
    case unspecified = 0
    case keyCompromise = 1
    case caCompromise = 2
    case affiliationChanged = 3
    case superseded = 4
    case cessationOfOperation = 5
    case certificateHold = 6
    case removeFromCRL = 8
    case privilegeWithdrawn = 9
    case aaCompromise = 10

    /// The spelling of `openssl ca -crl_reason` and of the index.txt revocation field.
    public var name: String {
        switch self {
        case .unspecified: return "unspecified"
        case .keyCompromise: return "keyCompromise"
        case .caCompromise: return "CACompromise"
        case .affiliationChanged: return "affiliationChanged"
        case .superseded: return "superseded"
        case .cessationOfOperation: return "cessationOfOperation"
        case .certificateHold: return "certificateHold"
        case .removeFromCRL: return "removeFromCRL"
        case .privilegeWithdrawn: return "privilegeWithdrawn"
        case .aaCompromise: return "AACompromise"
        }
    }

    /// Case-insensitive lookup by name.
    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.name.lowercased() == name.lowercased() }) else { return nil }
        self = match
    }
}

/// One revoked certificate as a CRL lists it.
public struct RevokedCertificate: Sendable, Equatable {
    public let serialHex: String
    public let revokedAt: Date
    public let reason: RevocationReason?

    public init(serialHex: String, revokedAt: Date, reason: RevocationReason?) {
        self.serialHex = serialHex
        self.revokedAt = revokedAt
        self.reason = reason
    }
}

/// An owned X.509 v2 CRL (`X509_CRL*`, RFC 5280 §5).
///
/// Ownership: freed in `deinit`; read-only after construction, so shared between threads.
public final class CertificateRevocationList: @unchecked Sendable {
    let pointer: OpaquePointer

    init(takingOwnershipOf pointer: OpaquePointer) { self.pointer = pointer }
    deinit { X509_CRL_free(self.pointer) }

    public convenience init(derEncoded der: [UInt8]) throws {
        let crl = try decodeDER(der, "parse X.509 CRL") { d2i_X509_CRL(nil, $0, $1) }
        self.init(takingOwnershipOf: crl)
    }

    public var derEncoded: [UInt8] { (try? encodeDER("i2d_X509_CRL") { i2d_X509_CRL(self.pointer, $0) }) ?? [] }

    public var pemEncoded: String {
        let bytes = (try? BIOHelper.collecting { bio in _ = PEM_write_bio_X509_CRL(bio, self.pointer) }) ?? []
        return String(decoding: bytes, as: UTF8.self)
    }

    public var thisUpdate: Date { Certificate.date(X509_CRL_get0_lastUpdate(self.pointer)) }
    public var nextUpdate: Date? { X509_CRL_get0_nextUpdate(self.pointer).map { Certificate.date($0) } }

    /// The cRLNumber extension (RFC 5280 §5.2.3) as upper-case hex, nil when absent.
    public var number: String? {
        guard let raw = X509_CRL_get_ext_d2i(self.pointer, NID_crl_number, nil, nil) else { return nil }
        let integer = raw.assumingMemoryBound(to: ASN1_INTEGER.self)
        defer { ASN1_INTEGER_free(integer) }
        return ASN1Integer.hex(integer)
    }

    /// Serials of the revoked certificates, upper-case hex.
    public var revokedSerials: [String] {
        guard let stack = X509_CRL_get_REVOKED(self.pointer) else { return [] }
        return (0..<COpenSSL_sk_X509_REVOKED_num(stack)).compactMap { i in
            guard let entry = COpenSSL_sk_X509_REVOKED_value(stack, i), let serial = X509_REVOKED_get0_serialNumber(entry) else { return nil }
            return ASN1Integer.hex(serial).flatMap(SerialHex.normalize)
        }
    }

    /// True when the CRL's signature verifies under `issuer`'s key.
    public func isSigned(by issuer: Certificate) -> Bool {
        defer { ERR_clear_error() }
        guard let key = issuer.publicKey else { return false }
        return X509_CRL_verify(self.pointer, key.pointer) == 1
    }

    /// Builds and signs a CRL: issuer, thisUpdate/nextUpdate, the entries (with a reasonCode
    /// extension unless unspecified), cRLNumber and authorityKeyIdentifier (RFC 5280 §5.2.1,
    /// §5.2.3, both required for conforming CAs).
    public static func build(
        issuer: Certificate, key: PrivateKey, number: UInt64, thisUpdate: Date, nextUpdate: Date,
        entries: [RevokedCertificate], digest: DigestAlgorithm = .sha256
    ) throws -> CertificateRevocationList {
        guard let raw = X509_CRL_new() else { throw OpenSSLError(.library, "X509_CRL_new") }
        let crl = CertificateRevocationList(takingOwnershipOf: raw)
        guard X509_CRL_set_version(raw, 1) == 1, X509_CRL_set_issuer_name(raw, X509_get_subject_name(issuer.pointer)) == 1
        else { throw OpenSSLError(.encode, "CRL version and issuer") }
        try self.setTime(thisUpdate) { X509_CRL_set1_lastUpdate(raw, $0) }
        try self.setTime(nextUpdate) { X509_CRL_set1_nextUpdate(raw, $0) }
        for entry in entries {
            guard let revoked = X509_REVOKED_new() else { throw OpenSSLError(.library, "X509_REVOKED_new") }
            var added = false
            defer { if !added { X509_REVOKED_free(revoked) } }
            guard let integer = SerialHex.bytes(entry.serialHex).flatMap(ASN1Integer.make(magnitude:)) else {
                throw OpenSSLError(.encode, "CRL entry serial \(entry.serialHex)")
            }
            defer { ASN1_INTEGER_free(integer) }
            guard X509_REVOKED_set_serialNumber(revoked, integer) == 1 else { throw OpenSSLError(.encode, "CRL entry serial") }
            try self.setTime(entry.revokedAt) { X509_REVOKED_set_revocationDate(revoked, UnsafeMutablePointer(mutating: $0)) }
            if let reason = entry.reason, reason != .unspecified {
                guard let code = ASN1_ENUMERATED_new() else { throw OpenSSLError(.library, "ASN1_ENUMERATED_new") }
                defer { ASN1_ENUMERATED_free(code) }
                guard ASN1_ENUMERATED_set(code, reason.rawValue) == 1,
                    X509_REVOKED_add1_ext_i2d(revoked, NID_crl_reason, UnsafeMutableRawPointer(code), 0, 0) == 1
                else { throw OpenSSLError(.encode, "CRL entry reasonCode") }
            }
            guard X509_CRL_add0_revoked(raw, revoked) == 1 else { throw OpenSSLError(.encode, "X509_CRL_add0_revoked") }
            added = true
        }
        let numberBytes = (0..<8).map { UInt8(truncatingIfNeeded: number >> (56 - 8 * $0)) }
        guard let numberInteger = ASN1Integer.make(magnitude: numberBytes) else { throw OpenSSLError(.encode, "cRLNumber") }
        defer { ASN1_INTEGER_free(numberInteger) }
        guard X509_CRL_add1_ext_i2d(raw, NID_crl_number, UnsafeMutableRawPointer(numberInteger), 0, 0) == 1 else {
            throw OpenSSLError(.encode, "add cRLNumber")
        }
        var context = X509V3_CTX()
        X509V3_set_ctx(&context, issuer.pointer, nil, nil, raw, 0)
        guard let aki = X509V3_EXT_conf_nid(nil, &context, NID_authority_key_identifier, "keyid:always") else {
            throw OpenSSLError(.encode, "CRL authorityKeyIdentifier")
        }
        defer { X509_EXTENSION_free(aki) }
        guard X509_CRL_add_ext(raw, aki, -1) == 1 else { throw OpenSSLError(.encode, "add CRL authorityKeyIdentifier") }
        // RFC 5280 §5.1.2.6: entries in serial order is not required, but sorting gives a stable encoding.
        guard X509_CRL_sort(raw) == 1, X509_CRL_sign(raw, key.pointer, digest.md) > 0 else {
            throw OpenSSLError(.encode, "sign CRL")
        }
        return crl
    }

    private static func setTime(_ date: Date, _ apply: (UnsafePointer<ASN1_TIME>) -> Int32) throws {
        guard let time = ASN1_TIME_set(nil, time_t(date.timeIntervalSince1970)) else { throw OpenSSLError(.encode, "ASN1_TIME") }
        defer { ASN1_TIME_free(time) }
        guard apply(time) == 1 else { throw OpenSSLError(.encode, "CRL time") }
    }
}
