internal import COpenSSL

/// ASN.1 INTEGERs as serial numbers and CRL numbers use them: built from a big-endian magnitude,
/// read back as OpenSSL's hex. One place for the BIGNUM round trip every such value takes.
enum ASN1Integer {
    /// An owned ASN1_INTEGER holding `magnitude` (big-endian, non-negative); the caller frees it.
    static func make(magnitude: [UInt8]) -> UnsafeMutablePointer<ASN1_INTEGER>? {
        guard !magnitude.isEmpty, let bn = BN_bin2bn(magnitude, Int32(magnitude.count), nil) else { return nil }
        defer { BN_free(bn) }
        return BN_to_ASN1_INTEGER(bn, nil)
    }

    /// The value as `BN_bn2hex` prints it: upper-case hex without leading zeros (`0` for zero).
    static func hex(_ integer: UnsafePointer<ASN1_INTEGER>) -> String? {
        guard let bn = ASN1_INTEGER_to_BN(integer, nil) else { return nil }
        defer { BN_free(bn) }
        return takeOpenSSLString(BN_bn2hex(bn))
    }
}

/// DER of an X509_PUBKEY (SubjectPublicKeyInfo), read without decoding the key.
func subjectPublicKeyInfoDER(_ spki: OpaquePointer?) -> [UInt8] {
    guard let spki else { return [] }
    return (try? encodeDER("i2d_X509_PUBKEY") { i2d_X509_PUBKEY(spki, $0) }) ?? []
}
