import FoundationEssentials
import Glibc
internal import COpenSSL

/// An owned OCSP request (RFC 6960 §4.1), parsed from DER.
public final class OCSPRequest: @unchecked Sendable {
    let pointer: OpaquePointer

    /// Exactly one DER OCSPRequest: trailing bytes make it malformed (OpenSSL's d2i would stop
    /// after the first structure and ignore them).
    public init(derEncoded der: [UInt8]) throws {
        _ = try DERNode.parseSingle(der)
        self.pointer = try decodeDER(der, "parse OCSP request") { d2i_OCSP_REQUEST(nil, $0, $1) }
    }

    deinit { OCSP_REQUEST_free(self.pointer) }

    /// Whether the request carries a nonce extension (RFC 6960 §4.4.1), which the answer echoes.
    public var hasNonce: Bool { OCSP_REQUEST_get_ext_by_NID(self.pointer, NID_id_pkix_OCSP_Nonce, -1) >= 0 }

    /// The certificates asked about, in order.
    public var certificateIDs: [OCSPCertificateID] {
        (0..<OCSP_request_onereq_count(self.pointer)).compactMap { i in
            guard let one = OCSP_request_onereq_get0(self.pointer, i), let id = OCSP_onereq_get0_id(one) else { return nil }
            return OCSPCertificateID(borrowing: id, owner: self)
        }
    }
}

/// One CertID of a request (hash algorithm, issuer name and key hashes, serial number). Borrowed
/// from its ``OCSPRequest``, which it keeps alive.
public struct OCSPCertificateID: @unchecked Sendable {
    let pointer: OpaquePointer
    let owner: OCSPRequest

    init(borrowing pointer: OpaquePointer, owner: OCSPRequest) {
        self.pointer = pointer
        self.owner = owner
    }

    /// The serial number asked about, as index.txt writes it (nil for a negative or empty one).
    public var serialHex: String? {
        var serial: UnsafeMutablePointer<ASN1_INTEGER>? = nil
        guard OCSP_id_get0_info(nil, nil, nil, &serial, self.pointer) == 1, let serial, ASN1_STRING_type(serial) == V_ASN1_INTEGER,
            let data = ASN1_STRING_get0_data(serial)
        else { return nil }
        return SerialHex.string(integerContent: UnsafeBufferPointer(start: data, count: Int(ASN1_STRING_length(serial))))
    }

    /// Whether the CertID names `issuer` (its name and key hashed with the request's own hash
    /// algorithm: SHA-1 per RFC 5019, or any other the client chose).
    public func isIssued(by issuer: Certificate) -> Bool {
        var algorithm: OpaquePointer? = nil
        guard OCSP_id_get0_info(nil, &algorithm, nil, nil, self.pointer) == 1, let algorithm,
            let name = OBJ_nid2sn(OBJ_obj2nid(algorithm)), let md = EVP_get_digestbyname(name)
        else { return false }
        defer { ERR_clear_error() }
        return issuer.withDecodedKey { keyed in
            guard let candidate = OCSP_cert_to_id(md, nil, keyed.pointer) else { return false }
            defer { OCSP_CERTID_free(candidate) }
            return OCSP_id_issuer_cmp(candidate, self.pointer) == 0
        }
    }
}

/// What a responder says of one certificate (RFC 6960 §2.2).
public enum OCSPCertificateStatus: Sendable, Equatable {
    case good
    case revoked(at: Date, reason: RevocationReason?)
    case unknown

    public var name: String {
        switch self {
        case .good: return "good"
        case .revoked: return "revoked"
        case .unknown: return "unknown"
        }
    }
}

/// OCSPResponseStatus (RFC 6960 §4.2.1) of the unsuccessful kinds.
public enum OCSPFailure: Int32, Sendable {
    case malformedRequest = 1
    case internalError = 2
    case tryLater = 3
    case unauthorized = 6

    public var name: String {
        switch self {
        case .malformedRequest: return "malformedRequest"
        case .internalError: return "internalError"
        case .tryLater: return "tryLater"
        case .unauthorized: return "unauthorized"
        }
    }
}

/// Builds OCSP responses (RFC 6960 §4.2, RFC 5019 profile).
public enum OCSPResponseBuilder {
    /// An unsuccessful response: only the status, no signature (RFC 6960 §4.2.1).
    public static func failure(_ failure: OCSPFailure) -> [UInt8] {
        guard let response = OCSP_response_create(failure.rawValue, nil) else { return [0x30, 0x03, 0x0A, 0x01, UInt8(failure.rawValue)] }
        defer { OCSP_RESPONSE_free(response) }
        return (try? encodeDER("i2d_OCSP_RESPONSE") { i2d_OCSP_RESPONSE(response, $0) }) ?? [0x30, 0x03, 0x0A, 0x01, UInt8(failure.rawValue)]
    }

    /// A successful response with one SingleResponse per `(id, status)`, signed by `signer` with
    /// its key's digest; the signer certificate is included (a delegated responder must be, RFC
    /// 6960 §4.2.2.2), and the request's nonce echoed when it sent one.
    public static func response(
        to request: OCSPRequest, statuses: [(OCSPCertificateID, OCSPCertificateStatus)], thisUpdate: Date, nextUpdate: Date,
        signer: Certificate, key: PrivateKey
    ) throws -> [UInt8] {
        guard let basic = OCSP_BASICRESP_new() else { throw OpenSSLError(.library, "OCSP_BASICRESP_new") }
        defer { OCSP_BASICRESP_free(basic) }
        let this = ASN1_TIME_set(nil, time_t(thisUpdate.timeIntervalSince1970))
        let next = ASN1_TIME_set(nil, time_t(nextUpdate.timeIntervalSince1970))
        defer {
            ASN1_TIME_free(this)
            ASN1_TIME_free(next)
        }
        for (id, status) in statuses {
            let added: OpaquePointer?
            switch status {
            case .good:
                added = OCSP_basic_add1_status(basic, id.pointer, V_OCSP_CERTSTATUS_GOOD, 0, nil, this, next)
            case .unknown:
                added = OCSP_basic_add1_status(basic, id.pointer, V_OCSP_CERTSTATUS_UNKNOWN, 0, nil, this, next)
            case .revoked(let at, let reason):
                let when = ASN1_TIME_set(nil, time_t(at.timeIntervalSince1970))
                defer { ASN1_TIME_free(when) }
                // RFC 5280 §5.3.1: no reasonCode rather than unspecified.
                let code = reason.flatMap { $0 == .unspecified ? nil : Int32($0.rawValue) } ?? OCSP_REVOKED_STATUS_NOSTATUS
                added = OCSP_basic_add1_status(basic, id.pointer, V_OCSP_CERTSTATUS_REVOKED, code, when, this, next)
            }
            guard added != nil else { throw OpenSSLError(.encode, "OCSP single response") }
        }
        guard OCSP_copy_nonce(basic, request.pointer) > 0 else { throw OpenSSLError(.encode, "OCSP nonce") }
        guard OCSP_basic_sign(basic, signer.pointer, key.pointer, key.signatureDigest.md, nil, 0) == 1 else {
            throw OpenSSLError(.encode, "sign OCSP response")
        }
        guard let response = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, basic) else {
            throw OpenSSLError(.encode, "OCSP response")
        }
        defer { OCSP_RESPONSE_free(response) }
        return try encodeDER("i2d_OCSP_RESPONSE") { i2d_OCSP_RESPONSE(response, $0) }
    }
}
