internal import COpenSSL

/// Raw extension values by OID, for extensions OpenSSL has no type for (the SID security extension).
enum ExtensionValues {
    /// The value (the OCTET STRING's content: the extension's own DER) of `ext` when its OID is `oid`.
    static func value(_ ext: OpaquePointer, ifOID oid: String) -> [UInt8]? {
        guard ObjectIdentifiers.dotted(X509_EXTENSION_get_object(ext)) == oid, let data = X509_EXTENSION_get_data(ext),
            let bytes = ASN1_STRING_get0_data(data)
        else { return nil }
        return Array(UnsafeBufferPointer(start: bytes, count: Int(ASN1_STRING_length(data))))
    }

    /// A non-critical extension with OID `oid` and DER value `value`; the caller frees it.
    static func make(oid: String, value: [UInt8]) throws -> OpaquePointer {
        guard let object = OBJ_txt2obj(oid, 1) else { throw OpenSSLError(.encode, "OID \(oid)") }
        defer { ASN1_OBJECT_free(object) }
        guard let data = ASN1_OCTET_STRING_new() else { throw OpenSSLError(.library, "ASN1_OCTET_STRING_new") }
        defer { ASN1_OCTET_STRING_free(data) }
        guard ASN1_OCTET_STRING_set(data, value, Int32(value.count)) == 1, let ext = X509_EXTENSION_create_by_OBJ(nil, object, 0, data)
        else { throw OpenSSLError(.encode, "extension \(oid)") }
        return ext
    }

    /// Adds a non-critical extension with OID `oid` and DER value `value`.
    static func add(oid: String, value: [UInt8], to cert: Certificate) throws {
        let ext = try self.make(oid: oid, value: value)
        defer { X509_EXTENSION_free(ext) }
        guard X509_add_ext(cert.pointer, ext, -1) == 1 else { throw OpenSSLError(.encode, "add extension \(oid)") }
    }
}

extension Certificate {
    /// The value of the extension with `oid` (its own DER), nil when absent.
    public func extensionValue(oid: String) -> [UInt8]? {
        (0..<X509_get_ext_count(self.pointer)).lazy.compactMap { i in
            X509_get_ext(self.pointer, i).flatMap { ExtensionValues.value($0, ifOID: oid) }
        }.first
    }

    /// The SIDs this certificate maps to (KB5014754): the SID security extension's, then each
    /// Intune URI subjectAltName's, as written (not checked).
    public var securityIdentifiers: [String] {
        let fromExtension = self.extensionValue(oid: SecurityIdentifier.extensionOID).map { SecurityIdentifier.parse(extensionValue: $0) ?? "" }
        let fromURIs = self.subjectAltNames.compactMap { $0.hasPrefix("URI:") ? SecurityIdentifier.fromURI(String($0.dropFirst(4))) : nil }
        return (fromExtension.map { [$0] } ?? []) + fromURIs
    }
}

extension CertificateSigningRequest {
    /// The values of every requested extension with `oid` (extensionRequest, RFC 2985 §5.4.2).
    public func requestedExtensionValues(oid: String) -> [[UInt8]] {
        guard let extensions = X509_REQ_get_extensions(self.pointer) else {
            ERR_clear_error()
            return []
        }
        defer { COpenSSL_sk_X509_EXTENSION_pop_free(extensions) }
        return (0..<COpenSSL_sk_X509_EXTENSION_num(extensions)).compactMap { i in
            COpenSSL_sk_X509_EXTENSION_value(extensions, i).flatMap { ExtensionValues.value($0, ifOID: oid) }
        }
    }

    /// The SIDs the request names (strong mapping): those of its Intune URI subjectAltNames, from
    /// the raw bytes (so a NUL or control character is seen, and refused by
    /// ``SecurityIdentifier/isWellFormed(_:)``), and those of each requested SID security
    /// extension ("" when one cannot be read).
    public var requestedSecurityIdentifiers: (fromURIs: [String], fromExtensions: [String]) {
        let fromURIs = self.requestedNames.compactMap { name -> String? in
            name.kind == .uri ? SecurityIdentifier.fromURI(String(decoding: name.value, as: UTF8.self)) : nil
        }
        let fromExtensions = self.requestedExtensionValues(oid: SecurityIdentifier.extensionOID).map {
            SecurityIdentifier.parse(extensionValue: $0) ?? ""
        }
        return (fromURIs, fromExtensions)
    }
}

extension CertificateSigningRequest {
    /// szOID_ENROLLMENT_NAME_VALUE_PAIR: Windows and Intune carry request properties (the profile's
    /// `ValidityPeriod` and `ValidityPeriodUnits`) in this attribute.
    public static let nameValuePairOID = "1.3.6.1.4.1.311.13.2.1"

    /// The DER of every value of every attribute with `oid`, in order.
    public func attributeValues(oid: String) -> [[UInt8]] {
        guard let object = OBJ_txt2obj(oid, 1) else { return [] }
        defer { ASN1_OBJECT_free(object) }
        var out: [[UInt8]] = []
        var index = X509_REQ_get_attr_by_OBJ(self.pointer, object, -1)
        while index >= 0 {
            if let attribute = X509_REQ_get_attr(self.pointer, index) {
                for i in 0..<X509_ATTRIBUTE_count(attribute) {
                    if let value = X509_ATTRIBUTE_get0_type(attribute, i), let der = try? encodeDER("i2d_ASN1_TYPE", { i2d_ASN1_TYPE(value, $0) }) {
                        out.append(der)
                    }
                }
            }
            index = X509_REQ_get_attr_by_OBJ(self.pointer, object, index)
        }
        return out
    }

    /// The enrollment name/value pairs (`SEQUENCE { name BMPString, value BMPString }`, MS-WCCE
    /// 2.2.2.7.10), in order; a value that is not such a pair is returned as nil, so the caller
    /// can tell a malformed request from one without pairs.
    public var nameValuePairs: [(name: String, value: String)?] {
        self.attributeValues(oid: Self.nameValuePairOID).map { der in
            guard let node = try? DERNode.parseSingle(der), node.tag == 0x30, let parts = try? node.children(), parts.count == 2,
                let name = try? parts[0].stringValue(), let value = try? parts[1].stringValue()
            else { return nil }
            return (name, value)
        }
    }

    /// Adds the enrollment name/value pairs (BMPStrings, as Windows writes them) as the values of
    /// one attribute (OpenSSL 3 refuses a second attribute of the same type): for test clients.
    func addNameValuePairs(_ pairs: [(String, String)]) throws {
        guard !pairs.isEmpty else { return }
        func bmp(_ text: String) -> [UInt8] { DERNode.encode(tag: 0x1E, text.utf16.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }) }
        guard let object = OBJ_txt2obj(Self.nameValuePairOID, 1), let attribute = X509_ATTRIBUTE_new() else { throw OpenSSLError(.encode, "attribute") }
        defer {
            ASN1_OBJECT_free(object)
            X509_ATTRIBUTE_free(attribute)
        }
        guard X509_ATTRIBUTE_set1_object(attribute, object) == 1 else { throw OpenSSLError(.encode, "attribute type") }
        for (name, value) in pairs {
            let der = DERNode.encode(tag: 0x30, bmp(name) + bmp(value))
            guard X509_ATTRIBUTE_set1_data(attribute, V_ASN1_SEQUENCE, der, Int32(der.count)) == 1 else {
                throw OpenSSLError(.encode, "name/value pair")
            }
        }
        guard X509_REQ_add1_attr(self.pointer, attribute) == 1 else { throw OpenSSLError(.encode, "add name/value pairs") }
    }
}
