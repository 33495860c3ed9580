internal import CEnginePKCS11
internal import COpenSSL
import SCEPLocking

/// Keys on a PKCS#11 token (an HSM, a smart card, SoftHSM), reached through OpenSSL's pkcs11
/// engine (libp11). The key material never leaves the token: the EVP_PKEY this returns sends each
/// signature or decryption to it.
///
/// Ownership: one engine per process and module, opened on first use and kept for the process's
/// life (libp11 keeps its PKCS#11 sessions in it; closing it while keys from it are in use would
/// pull them from under the worker threads). Never made a default engine (see the shim's header).
/// libp11 serialises what it sends to a slot, so worker threads may sign with one key at once.
public enum PKCS11Token {
    /// Module path (or "" for libp11's default) → its engine.
    private static let engines = Locked<[String: OpaquePointer]>([:])

    /// Loads the private key named by an RFC 7512 `pkcs11:` URI, logging in with `pin`.
    ///
    /// - Parameters:
    ///   - uri: e.g. `pkcs11:token=scep-ca;object=ca-key;type=private`; a PIN in the URI is refused
    ///     (it belongs in a file of its own, never in configuration or logs).
    ///   - module: the PKCS#11 module (`/usr/lib/softhsm/libsofthsm2.so`); nil: libp11's default.
    public static func loadPrivateKey(uri: String, pin: [UInt8], module: String?) throws -> PrivateKey {
        guard uri.hasPrefix("pkcs11:") else { throw OpenSSLError(.key, "\(uri) is not a pkcs11: URI (RFC 7512)") }
        guard !uri.lowercased().contains("pin-value") else {
            throw OpenSSLError(.key, "the pkcs11: URI holds a PIN: put it in ca.key_pin_file instead")
        }
        return try self.engines.withLock { engines in
            defer { ERR_clear_error() }
            let key = module ?? ""
            let engine: OpaquePointer
            if let open = engines[key] {
                engine = open
            } else {
                guard let opened = CEnginePKCS11_open(module) else {
                    throw OpenSSLError(
                        .key, "cannot load OpenSSL's pkcs11 engine\(module.map { " with module \($0)" } ?? "") (is libengine-pkcs11-openssl installed?)")
                }
                engines[key] = opened
                engine = opened
            }
            // The PIN as a C string for the engine's ctrl, wiped straight after.
            var text = pin.filter { $0 != 0 } + [0]
            defer { OpenSSL.cleanse(&text) }
            let pinSet = text.withUnsafeBufferPointer { buffer in
                buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) { CEnginePKCS11_set_pin(engine, $0) }
            }
            guard pinSet == 1 else { throw OpenSSLError(.key, "the pkcs11 engine refused the PIN") }
            guard let loaded = CEnginePKCS11_load_private_key(engine, uri) else {
                throw OpenSSLError(.key, "no private key for \(uri) on the token (token present? PIN right? object label and type?)")
            }
            return PrivateKey(takingOwnershipOf: loaded, tokenURI: uri)
        }
    }
}
