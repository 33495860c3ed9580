internal import COpenSSL

/// Process-wide OpenSSL setup.
public enum OpenSSL {
    /// Loads the `default` and `legacy` providers. Call once from `main` before any worker starts.
    ///
    /// micromdm's `scepclient` encrypts every request with single DES (1.3.14.3.2.7), which OpenSSL 3
    /// keeps in the legacy provider. Loading any provider explicitly disables the implicit default
    /// one, so both are loaded. DES is only ever *decrypted*: replies to DES requests use 3DES
    /// (see `ContentCipher.replyCipher`).
    ///
    /// Loaded once per process however often this is called; the handles stay referenced for the
    /// life of the process (the providers are never unloaded, and LeakSanitizer sees them held).
    public static func bootstrap() throws { _ = try Self.providers.get() }

    /// The loaded providers' handles, owned here until exit.
    final class Providers: @unchecked Sendable {
        let handles: [OpaquePointer]
        init(_ handles: [OpaquePointer]) { self.handles = handles }
    }

    private static let providers: Result<Providers, OpenSSLError> = {
        guard let base = OSSL_PROVIDER_load(nil, "default") else {
            return .failure(OpenSSLError(.library, "load the OpenSSL default provider"))
        }
        guard let legacy = OSSL_PROVIDER_load(nil, "legacy") else {
            return .failure(OpenSSLError(.library, "load the OpenSSL legacy provider (single DES requests)"))
        }
        return .success(Providers([base, legacy]))
    }()

    /// Clears the calling thread's error queue, so a stale entry is not blamed on the next call.
    public static func clearErrors() { ERR_clear_error() }

    /// The library version string, e.g. "OpenSSL 3.0.22 25 Aug 2026".
    public static var version: String { String(cString: OpenSSL_version(OPENSSL_VERSION)) }

    /// Overwrites memory that held a secret.
    public static func cleanse(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { raw in
            if let base = raw.baseAddress { OPENSSL_cleanse(base, raw.count) }
        }
    }
}

/// Cryptographically secure random bytes.
public enum SecureRandom {
    public static func bytes(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        guard RAND_bytes(&out, Int32(count)) == 1 else { throw OpenSSLError(.library, "RAND_bytes") }
        return out
    }
}
