internal import COpenSSL

/// The kind of a key, as far as SCEP cares.
public enum KeyAlgorithm: String, Sendable {
    case rsa = "RSA"
    case ec = "EC"
    case other = "other"
}

/// The EC curves a CA key may use (names as OpenSSL and RFC 5480 give them).
public enum ECCurve: String, Sendable, CaseIterable {
    case p256 = "P-256"
    case p384 = "P-384"
}

/// An owned `EVP_PKEY`, private half included.
///
/// Ownership: this object frees the key in `deinit`. OpenSSL 3 keys are safe to use for signing
/// and decryption from several threads at once (each operation makes its own `EVP_PKEY_CTX`),
/// which is why the CA key is parsed once per process and shared by every worker thread.
public final class PrivateKey: @unchecked Sendable {
    let pointer: OpaquePointer
    /// The RFC 7512 URI of a key that lives on a PKCS#11 token (nil for a key in memory): such a
    /// key is never written out, only where to find it.
    public let tokenURI: String?

    init(takingOwnershipOf pointer: OpaquePointer, tokenURI: String? = nil) {
        self.pointer = pointer
        self.tokenURI = tokenURI
    }
    deinit { EVP_PKEY_free(self.pointer) }

    /// Generates an RSA key with `bits` modulus bits (public exponent 65537).
    public static func generateRSA(bits: Int) throws -> PrivateKey {
        guard let ctx = EVP_PKEY_CTX_new_from_name(nil, "RSA", nil) else {
            throw OpenSSLError(.key, "EVP_PKEY_CTX_new_from_name RSA")
        }
        defer { EVP_PKEY_CTX_free(ctx) }
        var key: OpaquePointer? = nil
        guard EVP_PKEY_keygen_init(ctx) == 1,
            EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, Int32(bits)) == 1,
            EVP_PKEY_generate(ctx, &key) == 1, let key
        else { throw OpenSSLError(.key, "generate RSA-\(bits) key") }
        return PrivateKey(takingOwnershipOf: key)
    }

    /// Generates an EC key on `curve` (RFC 5480 named curves).
    public static func generateEC(curve: ECCurve) throws -> PrivateKey {
        guard let ctx = EVP_PKEY_CTX_new_from_name(nil, "EC", nil) else { throw OpenSSLError(.key, "EVP_PKEY_CTX_new_from_name EC") }
        defer { EVP_PKEY_CTX_free(ctx) }
        var key: OpaquePointer? = nil
        guard EVP_PKEY_keygen_init(ctx) == 1, EVP_PKEY_CTX_set_group_name(ctx, curve.rawValue) == 1, EVP_PKEY_generate(ctx, &key) == 1, let key
        else { throw OpenSSLError(.key, "generate EC \(curve.rawValue) key") }
        return PrivateKey(takingOwnershipOf: key)
    }

    /// The digest this key signs with: SHA-384 for P-384 (RFC 5480 §4 pairs the curve with the
    /// hash of matching strength), SHA-256 for P-256 and for RSA.
    public var signatureDigest: DigestAlgorithm { self.algorithm == .ec && self.bits >= 384 ? .sha384 : .sha256 }

    /// Reads a PEM private key (PKCS#8, traditional RSA, encrypted or not).
    ///
    /// - Parameter passphrase: used only if the PEM is encrypted. An empty passphrase is a real
    ///   passphrase (micromdm's `ca.key` is encrypted under ""), distinct from `nil`.
    public convenience init(pemEncoded pem: [UInt8], passphrase: [UInt8]?) throws {
        let key: OpaquePointer? = try BIOHelper.withReadOnly(pem) { bio in
            let callback: @convention(c) (UnsafeMutablePointer<CChar>?, Int32, Int32, UnsafeMutableRawPointer?) -> Int32 = {
                buffer, size, _, userData in
                guard let buffer, let userData else { return -1 }
                let secret = userData.assumingMemoryBound(to: [UInt8]?.self).pointee
                guard let secret, secret.count <= Int(size) else { return -1 }
                secret.withUnsafeBytes { raw in
                    if let base = raw.baseAddress { buffer.withMemoryRebound(to: UInt8.self, capacity: Int(size)) { $0.update(from: base.assumingMemoryBound(to: UInt8.self), count: secret.count) } }
                }
                return Int32(secret.count)
            }
            var secret = passphrase
            return withUnsafeMutablePointer(to: &secret) { PEM_read_bio_PrivateKey(bio, nil, callback, $0) }
        }
        guard let key else {
            throw OpenSSLError(.key, passphrase == nil ? "read PEM private key" : "read PEM private key (wrong passphrase?)")
        }
        self.init(takingOwnershipOf: key)
    }

    /// PKCS#8 PEM; encrypted with AES-256-CBC when `passphrase` is given.
    public func pemEncoded(passphrase: [UInt8]?) throws -> [UInt8] {
        try BIOHelper.collecting { bio in
            let ok: Int32
            if let passphrase, !passphrase.isEmpty {
                var secret = passphrase.map { CChar(bitPattern: $0) }
                defer { secret.withUnsafeMutableBytes { if let b = $0.baseAddress { OPENSSL_cleanse(b, $0.count) } } }
                ok = secret.withUnsafeMutableBufferPointer {
                    PEM_write_bio_PKCS8PrivateKey(bio, self.pointer, EVP_aes_256_cbc(), $0.baseAddress, Int32($0.count), nil, nil)
                }
            } else {
                ok = PEM_write_bio_PrivateKey(bio, self.pointer, nil, nil, 0, nil, nil)
            }
            guard ok == 1 else { throw OpenSSLError(.encode, "write PEM private key") }
        }
    }

    public var algorithm: KeyAlgorithm { PublicKey.algorithm(of: self.pointer) }
    public var bits: Int { Int(EVP_PKEY_get_bits(self.pointer)) }

    /// True when `certificate` carries this key's public half.
    public func matches(_ certificate: Certificate) -> Bool {
        defer { ERR_clear_error() }
        return certificate.withDecodedKey { X509_check_private_key($0.pointer, self.pointer) == 1 }
    }

    /// A signature of `message` with SHA-256: RSASSA-PKCS1-v1_5 for an RSA key (JWS `RS256`,
    /// RFC 7518 §3.3), ECDSA for an EC key.
    public func signSHA256(_ message: [UInt8]) throws -> [UInt8] {
        guard let signing = EVP_MD_CTX_new() else { throw OpenSSLError(.library, "EVP_MD_CTX_new") }
        defer { EVP_MD_CTX_free(signing) }
        guard EVP_DigestSignInit_ex(signing, nil, "SHA256", nil, nil, self.pointer, nil) == 1 else { throw OpenSSLError(.encode, "sign init") }
        var length = 0
        guard EVP_DigestSign(signing, nil, &length, message, message.count) == 1, length > 0 else { throw OpenSSLError(.encode, "sign") }
        var signature = [UInt8](repeating: 0, count: length)
        guard EVP_DigestSign(signing, &signature, &length, message, message.count) == 1 else { throw OpenSSLError(.encode, "sign") }
        return Array(signature.prefix(length))
    }

    /// Signs a fixed message with SHA-256 and verifies the signature with `certificate`'s public
    /// key: proof that the key can sign now (an HSM key may stop, a file key cannot), for health checks.
    public func signsVerifiably(for certificate: Certificate) -> Bool {
        defer { ERR_clear_error() }
        let message = Array("scep-fcgi health check".utf8)
        guard let signature = try? self.signSHA256(message) else { return false }
        return certificate.withDecodedKey { keyed in
            guard let key = X509_get0_pubkey(keyed.pointer), let verifying = EVP_MD_CTX_new() else { return false }
            defer { EVP_MD_CTX_free(verifying) }
            return EVP_DigestVerifyInit_ex(verifying, nil, "SHA256", nil, nil, key, nil) == 1
                && EVP_DigestVerify(verifying, signature, signature.count, message, message.count) == 1
        }
    }
}

/// An owned `EVP_PKEY` holding a public key (from a certificate or CSR).
public final class PublicKey: @unchecked Sendable {
    let pointer: OpaquePointer

    init(takingOwnershipOf pointer: OpaquePointer) { self.pointer = pointer }
    /// Takes a new reference to a borrowed (`get0`) key.
    init(upRef pointer: OpaquePointer) {
        EVP_PKEY_up_ref(pointer)
        self.pointer = pointer
    }
    deinit { EVP_PKEY_free(self.pointer) }

    public var algorithm: KeyAlgorithm { PublicKey.algorithm(of: self.pointer) }
    public var bits: Int { Int(EVP_PKEY_get_bits(self.pointer)) }

    /// SubjectPublicKeyInfo DER.
    public var derEncoded: [UInt8] {
        (try? encodeDER("i2d_PUBKEY") { i2d_PUBKEY(self.pointer, $0) }) ?? []
    }

    static func algorithm(of pointer: OpaquePointer) -> KeyAlgorithm {
        if EVP_PKEY_is_a(pointer, "RSA") == 1 { return .rsa }
        if EVP_PKEY_is_a(pointer, "EC") == 1 { return .ec }
        return .other
    }
}
