import FoundationEssentials
import Glibc
internal import COpenSSL

/// What goes into an issued end-entity certificate besides the CSR's subject, key and SANs.
public struct IssuanceProfile: Sendable, Equatable {
    /// OpenSSL `keyUsage` syntax.
    public var keyUsage: String
    /// OpenSSL `extendedKeyUsage` short names (clientAuth, serverAuth, …) or dotted OIDs.
    public var extendedKeyUsage: [String]
    public var signatureDigest: DigestAlgorithm
    /// CRL distribution point URLs (RFC 5280 §4.2.1.13), e.g. `http://pki.example/ca.crl`.
    public var crlURLs: [String]
    /// Authority information access caIssuers URLs (RFC 5280 §4.2.2.1).
    public var caIssuersURLs: [String]
    /// Authority information access OCSP URLs (RFC 5280 §4.2.2.1).
    public var ocspURLs: [String] = []
    /// id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1): a delegated responder's own status is not checked.
    public var ocspNoCheck = false
    /// A SID for the SID security extension (strong certificate mapping, MS-WCCE 2.2.2.7.7.4),
    /// written non-critical; nil writes none. The caller has checked who vouched for it.
    public var securityIdentifier: String?

    public init(
        keyUsage: String = "critical,digitalSignature,keyEncipherment",
        extendedKeyUsage: [String] = ["clientAuth"],
        signatureDigest: DigestAlgorithm = .sha256,
        crlURLs: [String] = [],
        caIssuersURLs: [String] = [],
        securityIdentifier: String? = nil
    ) {
        self.keyUsage = keyUsage
        self.extendedKeyUsage = extendedKeyUsage
        self.signatureDigest = signatureDigest
        self.crlURLs = crlURLs
        self.caIssuersURLs = caIssuersURLs
        self.securityIdentifier = securityIdentifier
    }
}

extension IssuanceProfile {
    /// The entries of an `extendedKeyUsage` list OpenSSL cannot encode (unknown short names,
    /// malformed OIDs), checked with the same call issuance makes, so a bad configuration is
    /// refused at startup instead of failing every enrollment.
    public static func invalidExtendedKeyUsages(_ usages: [String]) -> [String] {
        usages.filter { usage in
            defer { ERR_clear_error() }
            guard let ext = X509V3_EXT_conf_nid(nil, nil, NID_ext_key_usage, usage) else { return true }
            X509_EXTENSION_free(ext)
            return false
        }
    }
}

/// Makes and signs X.509 certificates.
public enum CertificateBuilder {
    /// Issues an end-entity certificate for `csr`, signed by `issuerKey`.
    ///
    /// Subject and subjectAltName come from the CSR (SAN forms filtered by
    /// `GeneralNames.filterAllowed`); keyUsage and extendedKeyUsage come from `profile`; SKI and AKI
    /// are computed (RFC 5280 §4.2.1.1, §4.2.1.2). The caller supplies the serial so it controls
    /// uniqueness (RFC 5280 §4.1.2.2: positive, at most 20 octets).
    public static func issue(
        csr: CertificateSigningRequest, issuer: Certificate, issuerKey: PrivateKey, serial: [UInt8],
        notBefore: Date, notAfter: Date, profile: IssuanceProfile
    ) throws -> Certificate {
        guard let publicKey = X509_REQ_get0_pubkey(csr.pointer) else { throw OpenSSLError.parse("CSR public key") }
        let cert = try self.skeleton(serial: serial, notBefore: notBefore, notAfter: notAfter)
        guard X509_set_subject_name(cert.pointer, X509_REQ_get_subject_name(csr.pointer)) == 1,
            X509_set_issuer_name(cert.pointer, X509_get_subject_name(issuer.pointer)) == 1,
            Self.copySubjectPublicKeyInfo(from: csr, to: cert) || X509_set_pubkey(cert.pointer, publicKey) == 1
        else { throw OpenSSLError(.encode, "fill certificate") }

        var extensions: [(Int32, String)] = [
            (NID_basic_constraints, "critical,CA:FALSE"),
            (NID_key_usage, profile.keyUsage),
        ]
        if !profile.extendedKeyUsage.isEmpty {
            extensions.append((NID_ext_key_usage, profile.extendedKeyUsage.joined(separator: ",")))
        }
        extensions.append((NID_subject_key_identifier, "hash"))
        extensions.append((NID_authority_key_identifier, "keyid:always"))
        if profile.ocspNoCheck { extensions.append((NID_id_pkix_OCSP_noCheck, "ignored")) }
        if !profile.crlURLs.isEmpty {
            extensions.append((NID_crl_distribution_points, profile.crlURLs.map { "URI:" + $0 }.joined(separator: ",")))
        }
        // One authorityInfoAccess extension holds both access methods (RFC 5280 §4.2.2.1).
        let access = profile.ocspURLs.map { "OCSP;URI:" + $0 } + profile.caIssuersURLs.map { "caIssuers;URI:" + $0 }
        if !access.isEmpty { extensions.append((NID_info_access, access.joined(separator: ","))) }
        try self.add(extensions, to: cert, issuer: issuer)

        if let sid = profile.securityIdentifier {
            try ExtensionValues.add(oid: SecurityIdentifier.extensionOID, value: SecurityIdentifier.extensionValue(sid), to: cert)
        }
        if let names = csr.requestedSubjectAltNames() {
            defer { GENERAL_NAMES_free(names) }
            GeneralNames.filterAllowed(names)
            if COpenSSL_sk_GENERAL_NAME_num(names) > 0 {
                // RFC 5280 §4.2.1.6: critical when the subject is empty.
                let critical: Int32 = csr.hasEmptySubject ? 1 : 0
                guard X509_add1_ext_i2d(cert.pointer, NID_subject_alt_name, UnsafeMutableRawPointer(names), critical, UInt(X509V3_ADD_DEFAULT)) == 1
                else { throw OpenSSLError(.encode, "add subjectAltName") }
            }
        }
        guard X509_sign(cert.pointer, issuerKey.pointer, profile.signatureDigest.md) > 0 else {
            throw OpenSSLError(.encode, "sign certificate")
        }
        // The SubjectPublicKeyInfo was copied as bytes, so OpenSSL 3.0 has no EVP_PKEY cached for
        // it. Decoding it here would cost what the copy saved (OpenSSL's decoder framework, ~8% of
        // an enrollment's CPU); ``Certificate/publicKey`` and ``Certificate/keyed`` decode it on
        // the rare paths that need it instead.
        return cert
    }

    /// A self-signed certificate: a CA (`isCA`) or a SCEP client's signer certificate.
    ///
    /// An RSA CA gets keyUsage digitalSignature and keyEncipherment besides keyCertSign and
    /// cRLSign, because without an RA it also signs and decrypts SCEP messages (RFC 8894 §2.1.2).
    /// An EC CA cannot decrypt (SCEP's key transport is RSA): no keyEncipherment, and an RSA RA
    /// receives the requests. The signature uses the key's digest unless `digest` says otherwise.
    public static func selfSigned(
        subject: String, key: PrivateKey, serial: [UInt8], notBefore: Date, notAfter: Date, isCA: Bool,
        digest: DigestAlgorithm? = nil
    ) throws -> Certificate {
        let digest = digest ?? key.signatureDigest
        let cert = try self.skeleton(serial: serial, notBefore: notBefore, notAfter: notAfter)
        let name = try DistinguishedName.make(subject)
        defer { X509_NAME_free(name) }
        guard X509_set_subject_name(cert.pointer, name) == 1, X509_set_issuer_name(cert.pointer, name) == 1,
            X509_set_pubkey(cert.pointer, key.pointer) == 1
        else { throw OpenSSLError(.encode, "fill certificate") }
        let extensions: [(Int32, String)] =
            isCA
            ? [
                (NID_basic_constraints, "critical,CA:TRUE"),
                (NID_key_usage, key.algorithm == .rsa ? "critical,keyCertSign,cRLSign,digitalSignature,keyEncipherment" : "critical,keyCertSign,cRLSign,digitalSignature"),
                (NID_subject_key_identifier, "hash"),
                (NID_authority_key_identifier, "keyid:always"),
            ]
            : [(NID_key_usage, "critical,digitalSignature,keyEncipherment")]
        try self.add(extensions, to: cert, issuer: cert)
        guard X509_sign(cert.pointer, key.pointer, digest.md) > 0 else { throw OpenSSLError(.encode, "self-sign") }
        return cert
    }

    /// Copies the CSR's SubjectPublicKeyInfo (algorithm, parameters, key bits) into the certificate
    /// as it is. `X509_set_pubkey` would re-encode the key and decode it again through OpenSSL 3.0's
    /// encoder/decoder framework, which the profile showed at ~8% of the CPU of an enrollment.
    /// Returns false (caller falls back to `X509_set_pubkey`) if any step fails.
    private static func copySubjectPublicKeyInfo(from csr: CertificateSigningRequest, to cert: Certificate) -> Bool {
        guard let source = X509_REQ_get_X509_PUBKEY(csr.pointer), let target = X509_get_X509_PUBKEY(cert.pointer) else { return false }
        var keyBytes: UnsafePointer<UInt8>? = nil
        var keyLength: Int32 = 0
        var algorithm: UnsafeMutablePointer<X509_ALGOR>? = nil
        guard X509_PUBKEY_get0_param(nil, &keyBytes, &keyLength, &algorithm, source) == 1, let keyBytes, let algorithm, keyLength > 0
        else { return false }
        var oid: OpaquePointer? = nil
        var parameterType: Int32 = 0
        var parameter: UnsafeRawPointer? = nil
        X509_ALGOR_get0(&oid, &parameterType, &parameter, algorithm)
        // X509_PUBKEY_set0_param takes ownership of what it is given: pass copies.
        let parameterCopy: UnsafeMutableRawPointer?
        switch parameterType {
        case V_ASN1_UNDEF, V_ASN1_NULL:
            parameterCopy = nil
        case V_ASN1_OBJECT:
            guard let parameter, let copy = OBJ_dup(OpaquePointer(parameter)) else { return false }
            parameterCopy = UnsafeMutableRawPointer(copy)
        default:
            guard let parameter,
                let copy = ASN1_STRING_dup(parameter.assumingMemoryBound(to: ASN1_STRING.self))
            else { return false }
            parameterCopy = UnsafeMutableRawPointer(copy)
        }
        /// Frees the copies when ownership was not taken.
        func release(_ oid: OpaquePointer?, _ buffer: UnsafeMutableRawPointer?) {
            if let parameterCopy {
                if parameterType == V_ASN1_OBJECT { ASN1_OBJECT_free(OpaquePointer(parameterCopy)) }
                else { ASN1_STRING_free(parameterCopy.assumingMemoryBound(to: ASN1_STRING.self)) }
            }
            ASN1_OBJECT_free(oid)
            COpenSSL_OPENSSL_free(buffer)
        }
        guard let oidCopy = OBJ_dup(oid), let buffer = CRYPTO_malloc(Int(keyLength), #fileID, #line) else {
            release(nil, nil)
            return false
        }
        buffer.copyMemory(from: keyBytes, byteCount: Int(keyLength))
        guard X509_PUBKEY_set0_param(target, oidCopy, parameterType, parameterCopy, buffer.assumingMemoryBound(to: UInt8.self), keyLength) == 1
        else {
            release(oidCopy, buffer)
            return false
        }
        return true
    }

    private static func skeleton(serial: [UInt8], notBefore: Date, notAfter: Date) throws -> Certificate {
        guard let x509 = X509_new() else { throw OpenSSLError(.library, "X509_new") }
        let cert = Certificate(takingOwnershipOf: x509)
        guard serial.count <= 20, let integer = ASN1Integer.make(magnitude: serial) else { throw OpenSSLError(.encode, "serial number") }
        defer { ASN1_INTEGER_free(integer) }
        guard X509_set_version(x509, 2) == 1, X509_set_serialNumber(x509, integer) == 1,
            ASN1_TIME_set(X509_getm_notBefore(x509), time_t(notBefore.timeIntervalSince1970)) != nil,
            ASN1_TIME_set(X509_getm_notAfter(x509), time_t(notAfter.timeIntervalSince1970)) != nil
        else { throw OpenSSLError(.encode, "certificate version, serial, validity") }
        return cert
    }

    private static func add(_ extensions: [(Int32, String)], to cert: Certificate, issuer: Certificate) throws {
        var context = X509V3_CTX()
        X509V3_set_ctx(&context, issuer.pointer, cert.pointer, nil, nil, 0)
        for (nid, value) in extensions {
            guard let ext = X509V3_EXT_conf_nid(nil, &context, nid, value) else {
                throw OpenSSLError(.encode, "extension \(value)")
            }
            defer { X509_EXTENSION_free(ext) }
            guard X509_add_ext(cert.pointer, ext, -1) == 1 else { throw OpenSSLError(.encode, "add extension") }
        }
    }
}
