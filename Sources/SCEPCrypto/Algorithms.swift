internal import COpenSSL

/// Message digests a pkiMessage may be signed with (RFC 8894 §2.9, §3.5.2).
///
/// MD5 is recognised only so that it can be refused with `badAlg`: RFC 8894 §2.9 says single DES
/// and MD5 MUST NOT be supported.
public enum DigestAlgorithm: String, Sendable, CaseIterable {
    case md5 = "MD5"
    case sha1 = "SHA-1"
    case sha224 = "SHA-224"
    case sha256 = "SHA-256"
    case sha384 = "SHA-384"
    case sha512 = "SHA-512"

    public var isAcceptable: Bool { self != .md5 }

    init?(nid: Int32) {
        switch nid {
        case NID_md5: self = .md5
        case NID_sha1: self = .sha1
        case NID_sha224: self = .sha224
        case NID_sha256: self = .sha256
        case NID_sha384: self = .sha384
        case NID_sha512: self = .sha512
        default: return nil
        }
    }

    /// The digest named by an OID in dotted form.
    public init?(oid: String) {
        let nid = OBJ_txt2nid(oid)
        guard nid != NID_undef else { return nil }
        self.init(nid: nid)
    }

    var md: OpaquePointer? {
        switch self {
        case .md5: return EVP_md5()
        case .sha1: return EVP_sha1()
        case .sha224: return EVP_sha224()
        case .sha256: return EVP_sha256()
        case .sha384: return EVP_sha384()
        case .sha512: return EVP_sha512()
        }
    }

    /// Hashes `bytes`.
    public func hash(_ bytes: [UInt8]) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard EVP_Digest(bytes, bytes.count, &out, &length, self.md, nil) == 1 else {
            throw OpenSSLError(.library, "EVP_Digest \(self.rawValue)")
        }
        return Array(out.prefix(Int(length)))
    }

    /// HMAC (RFC 2104) of `bytes` under `key` with this digest.
    public func hmac(key: [UInt8], _ bytes: [UInt8]) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard HMAC(self.md, key, Int32(key.count), bytes, bytes.count, &out, &length) != nil else {
            throw OpenSSLError(.library, "HMAC \(self.rawValue)")
        }
        return Array(out.prefix(Int(length)))
    }
}

/// Content-encryption ciphers of a pkcsPKIEnvelope (RFC 8894 §3.2.1.1).
public enum ContentCipher: String, Sendable, CaseIterable {
    case des = "DES-CBC"
    case tripleDES = "DES-EDE3-CBC"
    case aes128 = "AES-128-CBC"
    case aes192 = "AES-192-CBC"
    case aes256 = "AES-256-CBC"

    public init?(oid: String) {
        switch oid {
        case "1.3.14.3.2.7": self = .des
        case "1.2.840.113549.3.7": self = .tripleDES
        case "2.16.840.1.101.3.4.1.2": self = .aes128
        case "2.16.840.1.101.3.4.1.22": self = .aes192
        case "2.16.840.1.101.3.4.1.42": self = .aes256
        default: return nil
        }
    }

    /// The cipher a reply uses for a request that used `self`.
    ///
    /// Follow the client (as OpenXPKI does), except that single DES is never *sent*: RFC 8894 §2.9
    /// says it MUST NOT be supported, and OpenSSL 3 clients (certmonger) cannot decrypt it without
    /// the legacy provider. A DES client (micromdm's scepclient) decrypts 3DES fine.
    public var replyCipher: ContentCipher { self == .des ? .tripleDES : self }

    var evpCipher: OpaquePointer? {
        switch self {
        case .des: return EVP_des_cbc()
        case .tripleDES: return EVP_des_ede3_cbc()
        case .aes128: return EVP_aes_128_cbc()
        case .aes192: return EVP_aes_192_cbc()
        case .aes256: return EVP_aes_256_cbc()
        }
    }
}

/// Key transport of the envelope's KeyTransRecipientInfo.
public enum KeyTransport: Sendable, Equatable, CustomStringConvertible {
    /// RSAES-PKCS1-v1_5 (rsaEncryption), what almost every client sends.
    case rsaPKCS1v15
    /// RSAES-OAEP with the given hash (some Windows clients).
    case rsaOAEP(DigestAlgorithm)

    public var description: String {
        switch self {
        case .rsaPKCS1v15: return "rsaEncryption"
        case .rsaOAEP(let digest): return "rsaesOAEP-\(digest.rawValue)"
        }
    }
}
