internal import COpenSSL

/// The result of opening a pkcsPKIEnvelope.
public struct OpenedEnvelope: Sendable {
    /// The decrypted messageData (for PKCSReq, the PKCS#10 DER).
    public let content: [UInt8]
    /// The content-encryption cipher the client chose.
    public let cipher: ContentCipher
    public let cipherOID: String
    public let keyTransport: KeyTransport
}

/// CMS EnvelopedData (RFC 5652 §6) with RSA key transport, the pkcsPKIEnvelope of RFC 8894 §3.2.2.
public enum CMSEnvelope {
    /// Decrypts `bytes` (BER or DER) with the recipient's key and certificate.
    ///
    /// RSA PKCS#1 v1.5 and RSAES-OAEP key transport are both handled by OpenSSL's CMS code; the
    /// content cipher may be any OpenSSL knows, single DES included once the legacy provider is
    /// loaded (`OpenSSL.bootstrap()`).
    ///
    /// - Throws: ``OpenSSLError/Code/parse`` when it is not an EnvelopedData,
    ///   ``OpenSSLError/Code/decrypt`` when no recipient matches or decryption fails.
    public static func open(_ bytes: [UInt8], certificate: Certificate, key: PrivateKey) throws -> OpenedEnvelope {
        try self.open(bytes, candidates: [(certificate, key)])
    }

    /// Decrypts with whichever candidate the envelope is addressed to.
    ///
    /// The RecipientInfo's issuerAndSerialNumber (or subjectKeyIdentifier) picks the candidate
    /// (`CMS_RecipientInfo_ktri_cert_cmp`), so an RA, the current CA, the previous CA during a
    /// rollover and the next CA can all receive requests. An envelope that names none of them is
    /// refused rather than tried with each key: without a certificate OpenSSL substitutes a random
    /// key on failure (its MMA countermeasure) and may "decrypt" to garbage.
    ///
    /// An envelope with several recipients (CMS allows it, e.g. a copy for the sender) is opened
    /// with the one addressed to us, and the reply mirrors that recipient's key transport.
    ///
    /// - Throws: ``OpenSSLError/Code/parse`` when it is not an EnvelopedData,
    ///   ``OpenSSLError/Code/unsupportedAlgorithm`` for a cipher or key transport we do not know
    ///   (before any decryption), ``OpenSSLError/Code/decrypt`` when no candidate is named or
    ///   decryption fails.
    public static func open(
        _ bytes: [UInt8], candidates: [(Certificate, PrivateKey)]
    ) throws -> OpenedEnvelope {
        let cms = try decodeDER(bytes, "parse pkcsPKIEnvelope") { d2i_CMS_ContentInfo(nil, $0, $1) }
        defer { CMS_ContentInfo_free(cms) }
        guard OBJ_obj2nid(CMS_get0_type(cms)) == NID_pkcs7_enveloped else {
            throw OpenSSLError.parse("pkcsPKIEnvelope is not an EnvelopedData")
        }
        let cipherOID = try self.contentEncryptionOID(of: cms)
        guard let cipher = ContentCipher(oid: cipherOID) else {
            throw OpenSSLError(.unsupportedAlgorithm, "content cipher \(cipherOID)")
        }
        var addressed: (info: OpaquePointer, certificate: Certificate, key: PrivateKey)? = nil
        for (certificate, key) in candidates {
            if let info = self.recipient(in: cms, for: certificate) {
                addressed = (info, certificate, key)
                break
            }
        }
        guard let addressed else {
            throw OpenSSLError(.decrypt, "pkcsPKIEnvelope is addressed to none of this server's certificates")
        }
        let keyTransport = try self.keyTransport(of: addressed.info)
        let content = try BIOHelper.collecting { out in
            // With the certificate given and no CMS_DEBUG_DECRYPT, OpenSSL hides a key-transport
            // failure behind a random content key (the MMA countermeasure); the caller answers
            // both outcomes alike (SCEPError.isEnvelopeContentError).
            guard CMS_decrypt(cms, addressed.key.pointer, addressed.certificate.pointer, nil, out, UInt32(CMS_BINARY)) == 1 else {
                throw OpenSSLError(.decrypt, "decrypt pkcsPKIEnvelope")
            }
        }
        return OpenedEnvelope(content: content, cipher: cipher, cipherOID: cipherOID, keyTransport: keyTransport)
    }

    /// The content-encryption algorithm (dotted OID) of an EnvelopedData, nil when `bytes` is
    /// not one: for the audit line of an envelope `open` refused as unsupported.
    public static func contentCipherOID(of bytes: [UInt8]) -> String? {
        guard let cms = try? decodeDER(bytes, "parse pkcsPKIEnvelope", { d2i_CMS_ContentInfo(nil, $0, $1) }) else { return nil }
        defer { CMS_ContentInfo_free(cms) }
        return try? self.contentEncryptionOID(of: cms)
    }

    /// OpenSSL re-encodes BER input as DER, so the content-encryption algorithm can be read with
    /// the small DER reader (OpenSSL has no getter for it).
    private static func contentEncryptionOID(of cms: OpaquePointer) throws -> String {
        try self.contentEncryptionOID(try encodeDER("i2d_CMS_ContentInfo") { i2d_CMS_ContentInfo(cms, $0) })
    }

    /// The KeyTransRecipientInfo addressed to `certificate` (issuerAndSerialNumber or
    /// subjectKeyIdentifier), borrowed from `cms`.
    private static func recipient(in cms: OpaquePointer, for certificate: Certificate) -> OpaquePointer? {
        guard let infos = CMS_get0_RecipientInfos(cms) else { return nil }
        for i in 0..<COpenSSL_sk_CMS_RecipientInfo_num(infos) {
            if let info = COpenSSL_sk_CMS_RecipientInfo_value(infos, i), CMS_RecipientInfo_type(info) == CMS_RECIPINFO_TRANS,
                CMS_RecipientInfo_ktri_cert_cmp(info, certificate.pointer) == 0
            {
                return info
            }
        }
        return nil
    }

    /// Encrypts `content` to `recipient` (RFC 8894 §3.2.2): one KeyTransRecipientInfo, DER,
    /// primitive encryptedContent.
    public static func seal(
        _ content: [UInt8], to recipient: Certificate, cipher: ContentCipher, keyTransport: KeyTransport
    ) throws -> [UInt8] {
        // OpenSSL encrypts to the certificate's decoded key (see Certificate.keyed).
        try recipient.withDecodedKey { try self.seal(content, toKeyed: $0, cipher: cipher, keyTransport: keyTransport) }
    }

    private static func seal(
        _ content: [UInt8], toKeyed recipient: Certificate, cipher: ContentCipher, keyTransport: KeyTransport
    ) throws -> [UInt8] {
        guard recipient.publicKey?.algorithm == .rsa else {
            throw OpenSSLError(.unsupportedAlgorithm, "envelope recipient key is not RSA")
        }
        let flags = UInt32(CMS_BINARY | CMS_PARTIAL)
        guard let cms = CMS_encrypt(nil, nil, cipher.evpCipher, flags) else {
            throw OpenSSLError(.encode, "CMS_encrypt \(cipher.rawValue)")
        }
        defer { CMS_ContentInfo_free(cms) }
        guard let info = CMS_add1_recipient_cert(cms, recipient.pointer, flags | UInt32(CMS_KEY_PARAM)) else {
            throw OpenSSLError(.encode, "CMS_add1_recipient_cert")
        }
        if case .rsaOAEP(let digest) = keyTransport {
            guard let context = CMS_RecipientInfo_get0_pkey_ctx(info),
                EVP_PKEY_CTX_set_rsa_padding(context, RSA_PKCS1_OAEP_PADDING) > 0,
                EVP_PKEY_CTX_set_rsa_oaep_md(context, digest.md) > 0,
                EVP_PKEY_CTX_set_rsa_mgf1_md(context, digest.md) > 0
            else { throw OpenSSLError(.encode, "RSA-OAEP parameters") }
        }
        try BIOHelper.withReadOnly(content) { data in
            guard CMS_final(cms, data, nil, flags) == 1 else { throw OpenSSLError(.encode, "CMS_final envelope") }
        }
        return try encodeDER("i2d_CMS_ContentInfo") { i2d_CMS_ContentInfo(cms, $0) }
    }

    private static func keyTransport(of info: OpaquePointer) throws -> KeyTransport {
        var algorithm: UnsafeMutablePointer<X509_ALGOR>? = nil
        guard CMS_RecipientInfo_ktri_get0_algs(info, nil, nil, &algorithm) == 1, let algorithm else {
            throw OpenSSLError.parse("KeyTransRecipientInfo algorithm")
        }
        var object: OpaquePointer? = nil
        X509_ALGOR_get0(&object, nil, nil, algorithm)
        switch OBJ_obj2nid(object) {
        case NID_rsaEncryption:
            return .rsaPKCS1v15
        case NID_rsaesOaep:
            // RSAES-OAEP-params (RFC 8017 §A.2.1): hashAlgorithm [0] defaults to SHA-1.
            let der = try encodeDER("i2d_X509_ALGOR") { i2d_X509_ALGOR(algorithm, $0) }
            let fields = try DERNode.parseSingle(der).children()
            if fields.count > 1, fields[1].tag == 0x30, let hash = try fields[1].children().first(where: { $0.tag == 0xA0 }),
                let hashAlgorithm = try hash.children().first?.children().first,
                let digest = DigestAlgorithm(oid: try hashAlgorithm.objectIdentifier())
            {
                return .rsaOAEP(digest)
            }
            return .rsaOAEP(.sha1)
        default:
            throw OpenSSLError(.unsupportedAlgorithm, "key transport \(ObjectIdentifiers.dotted(object))")
        }
    }

    /// ContentInfo → [0] EnvelopedData → encryptedContentInfo → contentEncryptionAlgorithm.
    private static func contentEncryptionOID(_ der: [UInt8]) throws -> String {
        let contentInfo = try DERNode.parseSingle(der).children()
        guard contentInfo.count == 2, let enveloped = try contentInfo[1].children().first else {
            throw OpenSSLError.parse("EnvelopedData layout")
        }
        // EnvelopedData ::= SEQUENCE { version, originatorInfo [0] OPTIONAL, recipientInfos SET,
        //                              encryptedContentInfo SEQUENCE, ... }
        let fields = try enveloped.children()
        guard let setIndex = fields.firstIndex(where: { $0.tag == 0x31 }), setIndex + 1 < fields.count else {
            throw OpenSSLError.parse("EnvelopedData layout")
        }
        let encryptedContentInfo = try fields[setIndex + 1].children()
        guard encryptedContentInfo.count >= 2, let oid = try encryptedContentInfo[1].children().first else {
            throw OpenSSLError.parse("EncryptedContentInfo layout")
        }
        return try oid.objectIdentifier()
    }
}
