internal import COpenSSL

/// An owned PKCS#10 certification request (`X509_REQ*`).
public final class CertificateSigningRequest: @unchecked Sendable {
    let pointer: OpaquePointer

    init(takingOwnershipOf pointer: OpaquePointer) { self.pointer = pointer }
    deinit { X509_REQ_free(self.pointer) }

    public convenience init(derEncoded der: [UInt8]) throws {
        let req = try decodeDER(der, "parse PKCS#10 request") { d2i_X509_REQ(nil, $0, $1) }
        self.init(takingOwnershipOf: req)
    }

    public var derEncoded: [UInt8] { (try? encodeDER("i2d_X509_REQ") { i2d_X509_REQ(self.pointer, $0) }) ?? [] }

    public var subject: String { DistinguishedName.rfc2253(X509_REQ_get_subject_name(self.pointer)) }
    public var hasEmptySubject: Bool { X509_NAME_entry_count(X509_REQ_get_subject_name(self.pointer)) == 0 }

    public var publicKey: PublicKey? {
        guard let key = X509_REQ_get0_pubkey(self.pointer) else { return nil }
        return PublicKey(upRef: key)
    }

    /// The digest of the request's own signature algorithm (md5WithRSAEncryption → MD5), or nil
    /// when OpenSSL cannot name one (then ``signatureAlgorithmOID`` says what it was).
    public var signatureDigest: DigestAlgorithm? {
        var digestNID: Int32 = 0
        var keyNID: Int32 = 0
        guard OBJ_find_sigid_algs(X509_REQ_get_signature_nid(self.pointer), &digestNID, &keyNID) == 1 else { return nil }
        return DigestAlgorithm(nid: digestNID)
    }

    public var signatureAlgorithmOID: String {
        var algorithm: UnsafePointer<X509_ALGOR>? = nil
        X509_REQ_get0_signature(self.pointer, nil, &algorithm)
        var object: OpaquePointer? = nil
        if let algorithm { X509_ALGOR_get0(&object, nil, nil, algorithm) }
        return ObjectIdentifiers.dotted(object)
    }

    /// SubjectPublicKeyInfo DER of the requested key (hashed for replay matching, RFC 8894 §3.3.3).
    public var subjectPublicKeyInfoDER: [UInt8] { SCEPCrypto.subjectPublicKeyInfoDER(X509_REQ_get_X509_PUBKEY(self.pointer)) }

    /// DER of the requested subject Name.
    public var subjectNameDER: [UInt8] { DistinguishedName.der(X509_REQ_get_subject_name(self.pointer)) }
    /// The subject's attribute values as UTF-8, in order; nil when one cannot be converted.
    public var subjectValues: [String]? { DistinguishedName.values(X509_REQ_get_subject_name(self.pointer)) }

    /// The subjectAltNames a certificate for this request would carry (the allowed forms only).
    public var issuableSubjectAltNames: [String] {
        guard let names = self.requestedSubjectAltNames() else { return [] }
        defer { GENERAL_NAMES_free(names) }
        GeneralNames.filterAllowed(names)
        return GeneralNames.describe(names)
    }

    /// Proof of possession: the request is signed by the private half of the key it carries.
    public func verifySignature() -> Bool {
        defer { ERR_clear_error() }
        guard let key = X509_REQ_get0_pubkey(self.pointer) else { return false }
        return X509_REQ_verify(self.pointer, key) == 1
    }

    /// The PKCS#9 challengePassword attribute (RFC 8894 §2.4, §3.3.1), or nil when absent.
    ///
    /// Any DirectoryString type is accepted: Windows sends PrintableString, OpenSSL UTF8String.
    /// - Throws: ``OpenSSLError/Code/parse`` when the attribute is present but malformed.
    public func challengePassword() throws -> String? {
        let index = X509_REQ_get_attr_by_NID(self.pointer, NID_pkcs9_challengePassword, -1)
        guard index >= 0 else { return nil }
        guard let attribute = X509_REQ_get_attr(self.pointer, index),
            X509_ATTRIBUTE_count(attribute) >= 1,
            let value = X509_ATTRIBUTE_get0_type(attribute, 0)
        else { throw OpenSSLError.parse("challengePassword attribute") }
        let der = try encodeDER("i2d_ASN1_TYPE") { i2d_ASN1_TYPE(value, $0) }
        return try DERNode.parseSingle(der).stringValue()
    }

    /// The requested subjectAltName entries as OpenSSL prints them (`DNS:host`, `URI:…`), for the audit log.
    public var subjectAltNames: [String] {
        guard let names = self.requestedSubjectAltNames() else { return [] }
        defer { GENERAL_NAMES_free(names) }
        return GeneralNames.describe(names)
    }

    /// Every requested subjectAltName entry with its raw value, for validation by type
    /// (RFC 5280 §4.2.1.6). Raw bytes, not OpenSSL's printout: a NUL or newline inside a name
    /// must be seen, not escaped or cut short.
    public var requestedNames: [RequestedName] {
        guard let names = self.requestedSubjectAltNames() else { return [] }
        defer { GENERAL_NAMES_free(names) }
        return (0..<COpenSSL_sk_GENERAL_NAME_num(names)).compactMap { i in
            COpenSSL_sk_GENERAL_NAME_value(names, i).map(RequestedName.init)
        }
    }

    /// DER of the requested subjectAltName extension value (GeneralNames), for a digest in the
    /// audit log of a request whose names are not recorded one by one.
    public var subjectAltNamesDER: [UInt8]? {
        guard let names = self.requestedSubjectAltNames() else { return nil }
        defer { GENERAL_NAMES_free(names) }
        return try? encodeDER("i2d_GENERAL_NAMES") { i2d_GENERAL_NAMES(names, $0) }
    }

    /// An extension of the extensionRequest attribute (RFC 2985 §5.4.2), by OID and criticality.
    public struct RequestedExtension: Sendable, Equatable {
        public let oid: String
        public let critical: Bool
    }

    /// What the extensionRequest asks for, read in one pass.
    public struct RequestedExtensions: Sendable, Equatable {
        /// Every extension; empty without an extensionRequest (or with one OpenSSL cannot read,
        /// which nothing copies from either).
        public let all: [RequestedExtension]
        /// basicConstraints cA TRUE (RFC 5280 §4.2.1.9). A basicConstraints that is there but
        /// unreadable, or there twice, counts as asking.
        public let requestsCA: Bool
    }

    public var requestedExtensions: RequestedExtensions {
        guard let extensions = X509_REQ_get_extensions(self.pointer) else {
            ERR_clear_error()
            return RequestedExtensions(all: [], requestsCA: false)
        }
        defer { COpenSSL_sk_X509_EXTENSION_pop_free(extensions) }
        let all = (0..<COpenSSL_sk_X509_EXTENSION_num(extensions)).compactMap { i -> RequestedExtension? in
            guard let ext = COpenSSL_sk_X509_EXTENSION_value(extensions, i) else { return nil }
            return RequestedExtension(oid: ObjectIdentifiers.dotted(X509_EXTENSION_get_object(ext)), critical: X509_EXTENSION_get_critical(ext) == 1)
        }
        guard all.contains(where: { $0.oid == "2.5.29.19" }) else { return RequestedExtensions(all: all, requestsCA: false) }
        var found: Int32 = 0
        guard let raw = X509V3_get_d2i(extensions, NID_basic_constraints, &found, nil) else {
            ERR_clear_error()
            return RequestedExtensions(all: all, requestsCA: found != -1)  // -2: repeated; 0/1: not decodable
        }
        let constraints = raw.assumingMemoryBound(to: BASIC_CONSTRAINTS.self)
        defer { BASIC_CONSTRAINTS_free(constraints) }
        return RequestedExtensions(all: all, requestsCA: constraints.pointee.ca != 0)
    }

    /// The subjectAltName extension of the extensionRequest attribute, decoded; caller frees.
    func requestedSubjectAltNames() -> OpaquePointer? {
        guard let extensions = X509_REQ_get_extensions(self.pointer) else {
            ERR_clear_error()
            return nil
        }
        defer { COpenSSL_sk_X509_EXTENSION_pop_free(extensions) }
        var critical: Int32 = 0
        guard let raw = X509V3_get_d2i(extensions, NID_subject_alt_name, &critical, nil) else { return nil }
        return OpaquePointer(raw)
    }

    /// Builds and signs a request, as a SCEP client does (used by tests and the load generator).
    ///
    /// - Parameters:
    ///   - subject: RFC 4514 text, e.g. `CN=device-1,O=Example`.
    ///   - subjectAltNames: one `TYPE:value` per entry, TYPE one of DNS, email, IP, URI, RID,
    ///     otherName (`otherName:1.3.6.1.4.1.311.20.2.3;UTF8:user@example.com`). Values may contain
    ///     commas (Intune's `tag:microsoft.com,2022-09-14:sid:…` URI does).
    public static func make(
        subject: String, key: PrivateKey, challengePassword: String?, subjectAltNames: [String] = [],
        digest: DigestAlgorithm = .sha256, nameValuePairs: [(String, String)] = [], extraExtensions: [(oid: String, value: [UInt8])] = []
    ) throws -> CertificateSigningRequest {
        guard let req = X509_REQ_new() else { throw OpenSSLError(.library, "X509_REQ_new") }
        let csr = CertificateSigningRequest(takingOwnershipOf: req)
        let name = try DistinguishedName.make(subject)
        defer { X509_NAME_free(name) }
        guard X509_REQ_set_version(req, 0) == 1, X509_REQ_set_subject_name(req, name) == 1,
            X509_REQ_set_pubkey(req, key.pointer) == 1
        else { throw OpenSSLError(.encode, "fill PKCS#10 request") }
        if let challengePassword {
            let bytes = Array(challengePassword.utf8)
            guard X509_REQ_add1_attr_by_NID(req, NID_pkcs9_challengePassword, MBSTRING_UTF8, bytes, Int32(bytes.count)) == 1
            else { throw OpenSSLError(.encode, "add challengePassword") }
        }
        try csr.addNameValuePairs(nameValuePairs)
        guard let stack = COpenSSL_sk_X509_EXTENSION_new_null() else { throw OpenSSLError(.library, "sk_new") }
        defer { COpenSSL_sk_X509_EXTENSION_pop_free(stack) }
        guard let keyUsage = X509V3_EXT_conf_nid(nil, nil, NID_key_usage, "critical,digitalSignature,keyEncipherment") else {
            throw OpenSSLError(.encode, "keyUsage extension")
        }
        _ = COpenSSL_sk_X509_EXTENSION_push(stack, keyUsage)
        if !subjectAltNames.isEmpty {
            let names = try GeneralNames.make(subjectAltNames)
            defer { GENERAL_NAMES_free(names) }
            guard let ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, UnsafeMutableRawPointer(names)) else {
                throw OpenSSLError(.encode, "subjectAltName extension")
            }
            _ = COpenSSL_sk_X509_EXTENSION_push(stack, ext)
        }
        for extra in extraExtensions { _ = COpenSSL_sk_X509_EXTENSION_push(stack, try ExtensionValues.make(oid: extra.oid, value: extra.value)) }
        guard X509_REQ_add_extensions(req, stack) == 1 else { throw OpenSSLError(.encode, "add extensionRequest") }
        guard X509_REQ_sign(req, key.pointer, digest.md) > 0 else { throw OpenSSLError(.encode, "sign PKCS#10") }
        return csr
    }
}

/// GENERAL_NAMES helpers (subjectAltName).
enum GeneralNames {
    /// Builds GENERAL_NAMES from `TYPE:value` entries; the caller frees.
    static func make(_ entries: [String]) throws -> OpaquePointer {
        guard let names = GENERAL_NAMES_new() else { throw OpenSSLError(.library, "GENERAL_NAMES_new") }
        for entry in entries {
            guard let colon = entry.firstIndex(of: ":") else {
                GENERAL_NAMES_free(names)
                throw OpenSSLError(.encode, "subjectAltName entry without TYPE: \(entry)")
            }
            let kinds: [String: Int32] = [
                "dns": GEN_DNS, "email": GEN_EMAIL, "ip": GEN_IPADD, "uri": GEN_URI, "rid": GEN_RID, "othername": GEN_OTHERNAME,
            ]
            let value = String(entry[entry.index(after: colon)...])
            guard let kind = kinds[entry[..<colon].lowercased()],
                let name = a2i_GENERAL_NAME(nil, nil, nil, kind, value, 0)
            else {
                GENERAL_NAMES_free(names)
                throw OpenSSLError(.encode, "subjectAltName entry \(entry)")
            }
            _ = COpenSSL_sk_GENERAL_NAME_push(names, name)
        }
        return names
    }

    static func describe(_ names: OpaquePointer) -> [String] {
        (0..<COpenSSL_sk_GENERAL_NAME_num(names)).compactMap { i in
            guard let name = COpenSSL_sk_GENERAL_NAME_value(names, i) else { return nil }
            let bytes = (try? BIOHelper.collecting { bio in _ = GENERAL_NAME_print(bio, name) }) ?? []
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// Keeps only the name forms a SCEP client may ask for: dNSName, rfc822Name, iPAddress,
    /// uniformResourceIdentifier (Intune's `tag:microsoft.com,…:sid:` URI among them) and the
    /// Microsoft UPN otherName. Directory names, registered IDs and other otherNames are dropped.
    static func filterAllowed(_ names: OpaquePointer) {
        var i = COpenSSL_sk_GENERAL_NAME_num(names) - 1
        while i >= 0 {
            defer { i -= 1 }
            guard let name = COpenSSL_sk_GENERAL_NAME_value(names, i) else { continue }
            let keep: Bool
            switch name.pointee.type {
            case GEN_DNS, GEN_EMAIL, GEN_IPADD, GEN_URI: keep = true
            case GEN_OTHERNAME:
                var oid: OpaquePointer? = nil
                keep = GENERAL_NAME_get0_otherName(name, &oid, nil) == 1 && OBJ_obj2nid(oid) == NID_ms_upn
            default: keep = false
            }
            if !keep { GENERAL_NAME_free(COpenSSL_sk_GENERAL_NAME_delete(names, i)) }
        }
    }
}

/// One requested subjectAltName entry (RFC 5280 §4.2.1.6) with its raw value.
public struct RequestedName: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case dns = "DNS"
        case email
        case ip = "IP"
        case uri = "URI"
        /// The Microsoft UPN otherName (1.3.6.1.4.1.311.20.2.3).
        case upn = "UPN"
        /// Directory names, registered IDs, other otherNames: never issued.
        case other
    }

    public let kind: Kind
    /// IA5String bytes (DNS, email, URI), address octets (IP), UTF-8 (UPN); empty for `other`.
    public let value: [UInt8]

    public init(kind: Kind, value: [UInt8]) {
        self.kind = kind
        self.value = value
    }

    init(_ name: UnsafeMutablePointer<GENERAL_NAME>) {
        switch name.pointee.type {
        case GEN_DNS, GEN_EMAIL, GEN_URI:
            let kind: Kind = name.pointee.type == GEN_DNS ? .dns : name.pointee.type == GEN_EMAIL ? .email : .uri
            self.init(kind: kind, value: Self.bytes(name.pointee.d.ia5))
        case GEN_IPADD:
            self.init(kind: .ip, value: Self.bytes(name.pointee.d.iPAddress))
        case GEN_OTHERNAME:
            var oid: OpaquePointer? = nil
            var value: UnsafeMutablePointer<ASN1_TYPE>? = nil
            guard GENERAL_NAME_get0_otherName(name, &oid, &value) == 1, OBJ_obj2nid(oid) == NID_ms_upn, let value,
                let der = try? encodeDER("i2d_ASN1_TYPE", { i2d_ASN1_TYPE(value, $0) }),
                let text = try? DERNode.parseSingle(der).stringValue()
            else {
                self.init(kind: .other, value: [])
                return
            }
            self.init(kind: .upn, value: Array(text.utf8))
        default:
            self.init(kind: .other, value: [])
        }
    }

    private static func bytes(_ string: UnsafeMutablePointer<ASN1_STRING>?) -> [UInt8] {
        guard let string, let data = ASN1_STRING_get0_data(string) else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: Int(ASN1_STRING_length(string))))
    }
}
