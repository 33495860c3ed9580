internal import COpenSSL

/// Scoped memory BIOs: created, used and freed inside one call; bytes are copied out before the free.
enum BIOHelper {
    /// A read-only BIO over `bytes`, valid only inside `body`.
    /// Empty input gives an empty BIO that reads as end-of-file (OpenSSL refuses a NULL buffer,
    /// which is what an empty Swift array may hand over).
    static func withReadOnly<T>(_ bytes: [UInt8], _ body: (OpaquePointer) throws -> T) throws -> T {
        let backing = bytes.isEmpty ? [0] : bytes
        return try backing.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(bytes.count)) else {
                throw OpenSSLError(.library, "BIO_new_mem_buf")
            }
            defer { BIO_free(bio) }
            return try body(bio)
        }
    }

    /// A writable memory BIO; returns what `body` wrote into it.
    static func collecting(_ body: (OpaquePointer) throws -> Void) throws -> [UInt8] {
        guard let bio = BIO_new(BIO_s_mem()) else { throw OpenSSLError(.library, "BIO_new") }
        defer { BIO_free(bio) }
        try body(bio)
        var data: UnsafeMutablePointer<CChar>? = nil
        let count = COpenSSL_BIO_get_mem_data(bio, &data)
        guard count > 0, let data else { return [] }
        return data.withMemoryRebound(to: UInt8.self, capacity: count) { Array(UnsafeBufferPointer(start: $0, count: count)) }
    }
}

/// Runs an `i2d_*` function twice (length, then bytes) and returns the DER.
func encodeDER(_ operation: String, _ i2d: (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?) -> Int32) throws -> [UInt8] {
    let length = i2d(nil)
    guard length > 0 else { throw OpenSSLError(.encode, operation) }
    var out = [UInt8](repeating: 0, count: Int(length))
    let written = out.withUnsafeMutableBufferPointer { buffer -> Int32 in
        var cursor: UnsafeMutablePointer<UInt8>? = buffer.baseAddress
        return i2d(&cursor)
    }
    guard written == length else { throw OpenSSLError(.encode, operation) }
    return out
}

/// Runs a `d2i_*` function over `bytes`; the whole input must be consumed.
func decodeDER<T>(
    _ bytes: [UInt8], _ operation: String,
    _ d2i: (UnsafeMutablePointer<UnsafePointer<UInt8>?>, Int) -> T?
) throws -> T {
    try bytes.withUnsafeBufferPointer { buffer in
        var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
        guard buffer.count > 0, let object = d2i(&cursor, buffer.count) else { throw OpenSSLError.parse(operation) }
        return object
    }
}

/// A NUL-terminated C string owned by OpenSSL, copied into Swift and freed.
func takeOpenSSLString(_ pointer: UnsafeMutablePointer<CChar>?) -> String? {
    guard let pointer else { return nil }
    defer { COpenSSL_OPENSSL_free(pointer) }
    return String(cString: pointer)
}
