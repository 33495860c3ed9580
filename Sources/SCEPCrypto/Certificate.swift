import FoundationEssentials
import Glibc
internal import COpenSSL

/// An owned X.509 certificate (`X509*`).
///
/// Ownership: freed in `deinit`. Read-only use from several threads is safe in OpenSSL 3, which
/// is how the CA certificate is shared by every worker.
public final class Certificate: @unchecked Sendable {
    let pointer: OpaquePointer

    init(takingOwnershipOf pointer: OpaquePointer) { self.pointer = pointer }
    /// Takes a new reference to a borrowed (`get0`) certificate.
    init(upRef pointer: OpaquePointer) {
        X509_up_ref(pointer)
        self.pointer = pointer
    }
    deinit { X509_free(self.pointer) }

    public convenience init(derEncoded der: [UInt8]) throws {
        let x509 = try decodeDER(der, "parse X.509 certificate") { d2i_X509(nil, $0, $1) }
        self.init(takingOwnershipOf: x509)
    }

    /// Every certificate in a PEM bundle, in file order.
    public static func certificates(pemEncoded pem: [UInt8]) throws -> [Certificate] {
        try BIOHelper.withReadOnly(pem) { bio in
            var out: [Certificate] = []
            while let x509 = PEM_read_bio_X509(bio, nil, nil, nil) {
                out.append(Certificate(takingOwnershipOf: x509))
            }
            ERR_clear_error()  // the loop ends on a "no start line" error
            guard !out.isEmpty else { throw OpenSSLError.parse("no PEM certificate found") }
            return out
        }
    }

    public var derEncoded: [UInt8] {
        // i2d of a parsed or signed certificate cannot fail short of memory exhaustion.
        (try? encodeDER("i2d_X509") { i2d_X509(self.pointer, $0) }) ?? []
    }

    public var pemEncoded: String {
        let bytes = (try? BIOHelper.collecting { bio in _ = PEM_write_bio_X509(bio, self.pointer) }) ?? []
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Subject in RFC 2253 form, e.g. `CN=device,O=Example`.
    public var subject: String { DistinguishedName.rfc2253(X509_get_subject_name(self.pointer)) }
    public var issuer: String { DistinguishedName.rfc2253(X509_get_issuer_name(self.pointer)) }
    /// Subject in OpenSSL's one-line form (`/O=Example/CN=device`), as `index.txt` stores it.
    public var subjectOneLine: String { DistinguishedName.oneLine(X509_get_subject_name(self.pointer)) }

    /// Serial number as upper-case hex with an even number of digits (OpenSSL `index.txt` style).
    public var serialNumberHex: String {
        guard let serial = X509_get0_serialNumber(self.pointer) else { return "" }
        var hex = ASN1Integer.hex(serial) ?? ""
        if hex.count % 2 == 1 { hex = "0" + hex }
        return hex
    }

    public var notBefore: Date { Certificate.date(X509_get0_notBefore(self.pointer)) }
    public var notAfter: Date { Certificate.date(X509_get0_notAfter(self.pointer)) }

    /// The certificate's public key.
    ///
    /// A certificate built by ``CertificateBuilder/issue`` has its SubjectPublicKeyInfo copied as
    /// bytes, and OpenSSL 3.0 keeps no decoded `EVP_PKEY` for it until the certificate is parsed
    /// again: the key is then decoded from those bytes.
    public var publicKey: PublicKey? {
        if let key = X509_get0_pubkey(self.pointer) { return PublicKey(upRef: key) }
        ERR_clear_error()
        let spki = self.subjectPublicKeyInfoDER
        guard !spki.isEmpty, let key = try? decodeDER(spki, "d2i_PUBKEY", { d2i_PUBKEY(nil, $0, $1) }) else { return nil }
        return PublicKey(takingOwnershipOf: key)
    }

    /// This certificate, or, when OpenSSL has no decoded key for it (see ``publicKey``), a parsed
    /// copy that has one: what OpenSSL calls that use the key internally (CMS encryption to the
    /// certificate, CMS signing with it, key matching) are given.
    var keyed: Certificate {
        if X509_get0_pubkey(self.pointer) != nil { return self }
        ERR_clear_error()
        return (try? Certificate(derEncoded: self.derEncoded)) ?? self
    }

    /// Runs `body` with ``keyed``, kept alive until `body` returns: a copy's pointer handed to
    /// OpenSSL must not outlive the copy.
    func withDecodedKey<T>(_ body: (Certificate) throws -> T) rethrows -> T {
        let keyed = self.keyed
        return try withExtendedLifetime(keyed) { try body(keyed) }
    }

    /// The SubjectPublicKeyInfo as DER, read without decoding the key (what replay matching hashes).
    public var subjectPublicKeyInfoDER: [UInt8] { SCEPCrypto.subjectPublicKeyInfoDER(X509_get_X509_PUBKEY(self.pointer)) }

    /// DER of the subject Name (for IssuerAndSerialNumber / IssuerAndSubject).
    public var subjectNameDER: [UInt8] { DistinguishedName.der(X509_get_subject_name(self.pointer)) }

    /// True when subject and issuer are the same Name (a self-signed SCEP signer, or a root CA).
    public var isSelfIssued: Bool {
        X509_NAME_cmp(X509_get_subject_name(self.pointer), X509_get_issuer_name(self.pointer)) == 0
    }

    /// True when this certificate's issuer Name equals `other`'s subject Name (RFC 5280 §7.1 comparison).
    public func isIssued(byNameOf other: Certificate) -> Bool {
        X509_NAME_cmp(X509_get_issuer_name(self.pointer), X509_get_subject_name(other.pointer)) == 0
    }

    /// Compares this certificate's subject (or issuer) with a DER Name.
    public func subjectEquals(nameDER: [UInt8]) -> Bool { DistinguishedName.equals(X509_get_subject_name(self.pointer), nameDER) }
    public func issuerEquals(nameDER: [UInt8]) -> Bool { DistinguishedName.equals(X509_get_issuer_name(self.pointer), nameDER) }

    /// The subjectAltName entries as OpenSSL prints them (`DNS:host`), empty when absent.
    public var subjectAltNames: [String] {
        guard let raw = X509_get_ext_d2i(self.pointer, NID_subject_alt_name, nil, nil) else { return [] }
        let names = OpaquePointer(raw)
        defer { GENERAL_NAMES_free(names) }
        return GeneralNames.describe(names)
    }

    /// Whether extendedKeyUsage lists id-kp-OCSPSigning (a delegated OCSP responder, RFC 6960 §4.2.2.2).
    public var allowsOCSPSigning: Bool {
        X509_check_purpose(self.pointer, -1, 0)  // caches the extensions
        return X509_get_extended_key_usage(self.pointer) & UInt32(XKU_OCSP_SIGN) != 0 && X509_get_extension_flags(self.pointer) & UInt32(EXFLAG_XKUSAGE) != 0
    }

    /// The signature algorithm, dotted (e.g. 1.2.840.10045.4.3.3, ecdsa-with-SHA384).
    public var signatureAlgorithmOID: String {
        var algorithm: UnsafePointer<X509_ALGOR>? = nil
        X509_get0_signature(nil, &algorithm, self.pointer)
        var object: OpaquePointer? = nil
        if let algorithm { X509_ALGOR_get0(&object, nil, nil, algorithm) }
        return ObjectIdentifiers.dotted(object)
    }

    /// Digest of the DER encoding: the "thumbprint" Windows, Intune and `openssl x509 -fingerprint` show.
    public func fingerprint(_ digest: DigestAlgorithm) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard X509_digest(self.pointer, digest.md, &out, &length) == 1 else { return [] }
        return Array(out.prefix(Int(length)))
    }

    /// True when the certificate's signature verifies under `key`.
    public func isSigned(by key: PublicKey) -> Bool {
        defer { ERR_clear_error() }
        return X509_verify(self.pointer, key.pointer) == 1
    }

    /// The key usage bits (X509v3 keyUsage) as OpenSSL reports them, or nil when absent.
    public var keyUsage: UInt32? {
        let bits = X509_get_key_usage(self.pointer)
        return bits == UInt32.max ? nil : bits
    }

    /// The keyUsage bits SCEP roles need (RFC 5280 §4.2.1.3; RFC 8894 §3.5.2 for RA certificates).
    public enum KeyUse: Sendable {
        case digitalSignature, keyEncipherment

        var bit: UInt32 { self == .digitalSignature ? UInt32(KU_DIGITAL_SIGNATURE) : UInt32(KU_KEY_ENCIPHERMENT) }
    }

    /// Whether the key may be used so: a certificate without a keyUsage extension allows any use.
    public func permits(_ use: KeyUse) -> Bool { self.keyUsage.map { $0 & use.bit != 0 } ?? true }

    static func date(_ time: UnsafePointer<ASN1_TIME>?) -> Date {
        guard let time else { return Date(timeIntervalSince1970: 0) }
        var parts = tm()
        guard ASN1_TIME_to_tm(time, &parts) == 1 else { return Date(timeIntervalSince1970: 0) }
        return Date(timeIntervalSince1970: TimeInterval(timegm(&parts)))
    }
}

/// Helpers for X509_NAME, which only ever appears borrowed here.
public enum DistinguishedName {
    /// Every attribute value as UTF-8 (ASN1_STRING_to_UTF8 converts BMP, Universal, T61...).
    static func values(_ name: OpaquePointer?) -> [String]? {
        guard let name else { return [] }
        var values: [String] = []
        for i in 0..<X509_NAME_entry_count(name) {
            guard let entry = X509_NAME_get_entry(name, i), let data = X509_NAME_ENTRY_get_data(entry) else { return nil }
            var utf8: UnsafeMutablePointer<UInt8>? = nil
            let count = ASN1_STRING_to_UTF8(&utf8, data)
            guard count >= 0, let utf8 else {
                ERR_clear_error()
                return nil
            }
            values.append(String(decoding: UnsafeBufferPointer(start: utf8, count: Int(count)), as: UTF8.self))
            COpenSSL_OPENSSL_free(utf8)
        }
        return values
    }

    static func rfc2253(_ name: OpaquePointer?) -> String {
        guard let name else { return "" }
        let bytes = (try? BIOHelper.collecting { bio in
            _ = X509_NAME_print_ex(bio, name, 0, COpenSSL_XN_FLAG_RFC2253())
        }) ?? []
        return String(decoding: bytes, as: UTF8.self)
    }

    static func der(_ name: OpaquePointer?) -> [UInt8] {
        guard let name else { return [] }
        return (try? encodeDER("i2d_X509_NAME") { i2d_X509_NAME(name, $0) }) ?? []
    }

    /// RFC 5280 §7.1 comparison of a Name with a DER-encoded one (OpenSSL's canonical form).
    static func equals(_ name: OpaquePointer?, _ der: [UInt8]) -> Bool {
        guard let name, let other = try? decodeDER(der, "d2i_X509_NAME", { d2i_X509_NAME(nil, $0, $1) }) else { return false }
        defer { X509_NAME_free(other) }
        return X509_NAME_cmp(name, other) == 0
    }

    /// An RFC 2253 rendering of a DER Name, for logs and listings.
    public static func describe(der: [UInt8]) -> String {
        guard let name = try? decodeDER(der, "d2i_X509_NAME", { d2i_X509_NAME(nil, $0, $1) }) else { return "" }
        defer { X509_NAME_free(name) }
        return rfc2253(name)
    }

    static func oneLine(_ name: OpaquePointer?) -> String {
        guard let name else { return "" }
        return takeOpenSSLString(X509_NAME_oneline(name, nil, 0)) ?? ""
    }

    /// Builds an X509_NAME from an RFC 4514 string such as `CN=Demo CA,O=Example`.
    ///
    /// RFC 4514 lists the most specific RDN first, so the components are added in reverse;
    /// printing the name back in RFC 2253 form gives the input again. `\,` escapes a comma.
    static func make(_ text: String) throws -> OpaquePointer {
        var parts: [String] = []
        var current = ""
        var escaped = false
        for ch in text {
            if escaped { current.append(ch); escaped = false; continue }
            if ch == "\\" { escaped = true; continue }
            if ch == "," { parts.append(current); current = ""; continue }
            current.append(ch)
        }
        parts.append(current)
        guard let name = X509_NAME_new() else { throw OpenSSLError(.library, "X509_NAME_new") }
        for part in parts.reversed() {
            let pieces = part.split(separator: "=", maxSplits: 1).map { $0.trimmedWhitespace }
            guard pieces.count == 2, !pieces[0].isEmpty, !pieces[1].isEmpty,
                X509_NAME_add_entry_by_txt(name, pieces[0], MBSTRING_UTF8, pieces[1], -1, -1, 0) == 1
            else {
                X509_NAME_free(name)
                throw OpenSSLError.parse("distinguished name component \"\(part)\"")
            }
        }
        guard X509_NAME_entry_count(name) > 0 else {
            X509_NAME_free(name)
            throw OpenSSLError.parse("empty distinguished name")
        }
        return name
    }
}
