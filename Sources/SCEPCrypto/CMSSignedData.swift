import FoundationEssentials
internal import COpenSSL

/// A signed attribute value to add to a SignerInfo.
public struct SignedAttribute: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case printableString, octetString, utf8String }
    /// Dotted OID.
    public let oid: String
    public let kind: Kind
    public let value: [UInt8]

    public init(oid: String, kind: Kind, value: [UInt8]) {
        self.oid = oid
        self.kind = kind
        self.value = value
    }
}

/// A parsed CMS SignedData (RFC 5652 §5) whose signature has been checked against the signer
/// certificate it carries, as a SCEP pkiMessage is (RFC 8894 §3.1).
///
/// Ownership: keeps the ``ParsedSignedData`` (the one owner of the `CMS_ContentInfo`) alive;
/// the signer certificate is up-ref'd.
public final class VerifiedSignedData: @unchecked Sendable {
    private let parsed: ParsedSignedData
    /// The encapsulated content (for SCEP, the DER of the pkcsPKIEnvelope); empty when absent.
    public let content: [UInt8]
    /// The certificate whose key made the signature.
    public let signer: Certificate
    /// The SignerInfo's digestAlgorithm, or nil when OpenSSL does not know it.
    public var digest: DigestAlgorithm? { self.parsed.digest }
    /// The digest algorithm's dotted OID (for messages about unknown ones).
    public var digestOID: String { self.parsed.digestOID }

    fileprivate init(parsed: ParsedSignedData, content: [UInt8], signer: Certificate) {
        self.parsed = parsed
        self.content = content
        self.signer = signer
    }

    /// The DER of the first value of a signed attribute, or nil when the attribute is absent.
    public func signedAttribute(_ oid: String) throws -> DERNode? {
        try self.parsed.signedAttribute(oid)
    }
}

/// A SignedData parsed but not yet verified: SCEP reads the transactionID and senderNonce
/// first, so that even a message whose signature fails gets a CertRep FAILURE it can match.
///
/// Ownership: the one owner of its `CMS_ContentInfo`, freed in `deinit`; `signerInfo` is borrowed
/// from it and never outlives it.
public final class ParsedSignedData: @unchecked Sendable {
    private let cms: OpaquePointer
    private let signerInfo: OpaquePointer
    /// The SignerInfo's digestAlgorithm (readable before verification, for FAILURE replies).
    public let digest: DigestAlgorithm?
    public let digestOID: String

    /// Parses BER or DER `bytes`; ``verify()`` then checks the SignerInfo's signature.
    ///
    /// A pkiMessage has exactly one signer (RFC 8894 §3.2): with two, which one's transactionID
    /// and nonce the reply answers, and which certificate it is encrypted to, would be a guess.
    ///
    /// - Throws: ``OpenSSLError/Code/parse`` for a message that is not a SignedData with exactly
    ///   one SignerInfo.
    public static func parse(_ bytes: [UInt8]) throws -> ParsedSignedData {
        let cms = try decodeDER(bytes, "parse CMS ContentInfo") { d2i_CMS_ContentInfo(nil, $0, $1) }
        guard OBJ_obj2nid(CMS_get0_type(cms)) == NID_pkcs7_signed,
            let signerInfos = CMS_get0_SignerInfos(cms), COpenSSL_sk_CMS_SignerInfo_num(signerInfos) == 1,
            let signerInfo = COpenSSL_sk_CMS_SignerInfo_value(signerInfos, 0)
        else {
            CMS_ContentInfo_free(cms)
            throw OpenSSLError.parse("pkiMessage is not a CMS SignedData with exactly one SignerInfo")
        }
        return ParsedSignedData(cms: cms, signerInfo: signerInfo)
    }

    private init(cms: OpaquePointer, signerInfo: OpaquePointer) {
        self.cms = cms
        self.signerInfo = signerInfo
        (self.digest, self.digestOID) = CMSAttributes.digest(of: signerInfo)
    }

    deinit { CMS_ContentInfo_free(self.cms) }

    public func signedAttribute(_ oid: String) throws -> DERNode? {
        try CMSAttributes.value(of: self.signerInfo, oid)
    }

    /// The signingTime attribute (RFC 5652 §11.3), nil when absent.
    /// - Throws: ``OpenSSLError/Code/parse`` when it is present but not a UTCTime/GeneralizedTime.
    public func signingTime() throws -> Date? {
        guard let node = try self.signedAttribute(CMSAttributes.signingTimeOID) else { return nil }
        return try CMSAttributes.time(node)
    }

    /// Verifies the signature with the embedded signer certificate.
    ///
    /// Only the signature is checked, not a chain: a SCEP client's signer certificate is
    /// self-signed (RFC 8894 §2.3). `CMS_NO_SIGNER_CERT_VERIFY` says exactly that. A SignedData
    /// without eContent (a detached FAILURE from some servers) is verified over empty content.
    /// - Throws: ``OpenSSLError/Code/signature``.
    public func verify() throws -> VerifiedSignedData {
        let flags = UInt32(CMS_NO_SIGNER_CERT_VERIFY | CMS_BINARY)
        let detached = CMS_is_detached(self.cms) == 1
        let content = try BIOHelper.collecting { out in
            let ok = try BIOHelper.withReadOnly([]) { empty in
                CMS_verify(self.cms, nil, nil, detached ? empty : nil, out, flags)
            }
            guard ok == 1 else { throw OpenSSLError(.signature, "pkiMessage signature") }
        }
        guard let signers = CMS_get0_signers(self.cms) else { throw OpenSSLError(.signature, "no signer certificate") }
        defer { COpenSSL_sk_X509_free(signers) }
        guard COpenSSL_sk_X509_num(signers) >= 1, let first = COpenSSL_sk_X509_value(signers, 0) else {
            throw OpenSSLError(.signature, "no signer certificate")
        }
        return VerifiedSignedData(parsed: self, content: detached ? [] : content, signer: Certificate(upRef: first))
    }
}

enum CMSAttributes {
    /// The SignerInfo's digestAlgorithm, named if known, and its dotted OID.
    static func digest(of signerInfo: OpaquePointer) -> (DigestAlgorithm?, String) {
        var digestAlgorithm: UnsafeMutablePointer<X509_ALGOR>? = nil
        CMS_SignerInfo_get0_algs(signerInfo, nil, nil, &digestAlgorithm, nil)
        var object: OpaquePointer? = nil
        if let digestAlgorithm { X509_ALGOR_get0(&object, nil, nil, digestAlgorithm) }
        return (DigestAlgorithm(nid: OBJ_obj2nid(object)), ObjectIdentifiers.dotted(object))
    }

    static let signingTimeOID = "1.2.840.113549.1.9.5"

    /// The one value of a signed attribute, nil when the attribute is absent.
    ///
    /// An attribute that appears twice, or holds more than one value, is refused (RFC 5652 §5.3
    /// and §11 allow one instance of each attribute type these messages use): which of two
    /// transactionIDs or nonces was meant cannot be known.
    static func value(of signerInfo: OpaquePointer, _ oid: String) throws -> DERNode? {
        guard let object = OBJ_txt2obj(oid, 1) else { throw OpenSSLError(.library, "OID \(oid)") }
        defer { ASN1_OBJECT_free(object) }
        let index = CMS_signed_get_attr_by_OBJ(signerInfo, object, -1)
        guard index >= 0 else { return nil }
        guard CMS_signed_get_attr_by_OBJ(signerInfo, object, index) < 0 else {
            throw OpenSSLError.parse("signed attribute \(oid) appears twice")
        }
        guard let attribute = CMS_signed_get_attr(signerInfo, index), X509_ATTRIBUTE_count(attribute) == 1,
            let value = X509_ATTRIBUTE_get0_type(attribute, 0)
        else { throw OpenSSLError.parse("signed attribute \(oid) has no single value") }
        let der = try encodeDER("i2d_ASN1_TYPE") { i2d_ASN1_TYPE(value, $0) }
        return try DERNode.parseSingle(der)
    }
}

extension CMSAttributes {
    /// A UTCTime or GeneralizedTime value (RFC 5652 §11.3 signingTime).
    static func time(_ node: DERNode) throws -> Date {
        guard node.tag == 0x17 || node.tag == 0x18, let time = ASN1_TIME_new() else {
            throw OpenSSLError.parse("signingTime is not a time")
        }
        defer { ASN1_TIME_free(time) }
        let text = String(decoding: node.value, as: UTF8.self)
        guard ASN1_TIME_set_string(time, text) == 1, ASN1_TIME_check(time) == 1 else {
            ERR_clear_error()
            throw OpenSSLError.parse("signingTime is not a valid time")
        }
        return Certificate.date(time)
    }
}

enum ObjectIdentifiers {
    static func dotted(_ object: OpaquePointer?) -> String {
        guard let object else { return "" }
        var buffer = [CChar](repeating: 0, count: 128)
        let n = OBJ_obj2txt(&buffer, Int32(buffer.count), object, 1)
        guard n > 0 else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Builds CMS SignedData.
public enum CMSSigner {
    /// Signs `content` (or nothing, when nil: the eContent is then omitted) with `key`.
    ///
    /// Signed attributes: contentType, messageDigest and signingTime (added by OpenSSL), then
    /// `attributes`. The signer certificate and `extraCertificates` go into `certificates`.
    /// Output is DER with a definite-length, primitive eContent (PyScep cannot read a
    /// constructed one).
    public static func sign(
        content: [UInt8]?, certificate: Certificate, key: PrivateKey, digest: DigestAlgorithm,
        attributes: [SignedAttribute], extraCertificates: [Certificate] = []
    ) throws -> [UInt8] {
        var flags = UInt32(CMS_PARTIAL | CMS_BINARY)
        if content == nil { flags |= UInt32(CMS_DETACHED) }
        guard let cms = CMS_sign(nil, nil, nil, nil, flags) else { throw OpenSSLError(.encode, "CMS_sign") }
        defer { CMS_ContentInfo_free(cms) }
        // The CMS structure takes its own reference to the signer certificate.
        let added = certificate.withDecodedKey { CMS_add1_signer(cms, $0.pointer, key.pointer, digest.md, flags | UInt32(CMS_NOSMIMECAP)) }
        guard let signerInfo = added
        else { throw OpenSSLError(.encode, "CMS_add1_signer") }
        for attribute in attributes {
            guard let object = OBJ_txt2obj(attribute.oid, 1) else { throw OpenSSLError(.library, "OID \(attribute.oid)") }
            defer { ASN1_OBJECT_free(object) }
            let type: Int32
            switch attribute.kind {
            case .printableString: type = V_ASN1_PRINTABLESTRING
            case .octetString: type = V_ASN1_OCTET_STRING
            case .utf8String: type = V_ASN1_UTF8STRING
            }
            guard CMS_signed_add1_attr_by_OBJ(signerInfo, object, type, attribute.value, Int32(attribute.value.count)) == 1
            else { throw OpenSSLError(.encode, "add signed attribute \(attribute.oid)") }
        }
        for extra in extraCertificates {
            guard CMS_add1_cert(cms, extra.pointer) == 1 else { throw OpenSSLError(.encode, "CMS_add1_cert") }
        }
        try BIOHelper.withReadOnly(content ?? []) { data in
            guard CMS_final(cms, data, nil, UInt32(CMS_BINARY)) == 1 else { throw OpenSSLError(.encode, "CMS_final") }
        }
        return try encodeDER("i2d_CMS_ContentInfo") { i2d_CMS_ContentInfo(cms, $0) }
    }

    /// A degenerate certificates-only SignedData (RFC 8894 §3.4): no signers, no eContent.
    public static func certificatesOnly(_ certificates: [Certificate], crls: [CertificateRevocationList] = []) throws -> [UInt8] {
        guard let stack = COpenSSL_sk_X509_new_null() else { throw OpenSSLError(.library, "sk_X509_new_null") }
        defer { COpenSSL_sk_X509_free(stack) }
        for certificate in certificates { _ = COpenSSL_sk_X509_push(stack, certificate.pointer) }
        guard let cms = CMS_sign(nil, nil, stack, nil, UInt32(CMS_PARTIAL | CMS_DETACHED | CMS_BINARY)) else {
            throw OpenSSLError(.encode, "certs-only CMS_sign")
        }
        defer { CMS_ContentInfo_free(cms) }
        // RFC 8894 §3.3.2.1: a GetCRL reply carries the CRL in `crls` of the degenerate SignedData.
        for crl in crls {
            guard CMS_add1_crl(cms, crl.pointer) == 1 else { throw OpenSSLError(.encode, "CMS_add1_crl") }
        }
        return try encodeDER("i2d_CMS_ContentInfo") { i2d_CMS_ContentInfo(cms, $0) }
    }

    /// The CRLs of a degenerate SignedData, in order.
    public static func crls(in bytes: [UInt8]) throws -> [CertificateRevocationList] {
        let cms = try decodeDER(bytes, "parse CMS ContentInfo") { d2i_CMS_ContentInfo(nil, $0, $1) }
        defer { CMS_ContentInfo_free(cms) }
        guard let stack = CMS_get1_crls(cms) else { return [] }
        defer { COpenSSL_sk_X509_CRL_pop_free(stack) }
        return (0..<COpenSSL_sk_X509_CRL_num(stack)).compactMap { i in
            guard let crl = COpenSSL_sk_X509_CRL_value(stack, i), X509_CRL_up_ref(crl) == 1 else { return nil }
            return CertificateRevocationList(takingOwnershipOf: crl)
        }
    }

    /// The certificates of a (degenerate) SignedData, in order.
    public static func certificates(in bytes: [UInt8]) throws -> [Certificate] {
        let cms = try decodeDER(bytes, "parse CMS ContentInfo") { d2i_CMS_ContentInfo(nil, $0, $1) }
        defer { CMS_ContentInfo_free(cms) }
        guard let stack = CMS_get1_certs(cms) else { return [] }
        defer { COpenSSL_sk_X509_pop_free(stack) }
        return (0..<COpenSSL_sk_X509_num(stack)).compactMap { i in
            COpenSSL_sk_X509_value(stack, i).map { Certificate(upRef: $0) }
        }
    }
}
