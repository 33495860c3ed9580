internal import COpenSSL

/// The one error type of `SCEPCrypto`: an OpenSSL call failed, or its input did not have the expected shape.
///
/// Equal by ``code`` only, so tests can assert `#expect(throws: OpenSSLError.parse(""))`. The
/// drained OpenSSL error queue is kept in ``details`` for the diagnostic log; it never reaches a
/// client or the audit log.
public struct OpenSSLError: Error, Hashable, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable, CaseIterable {
        /// DER/PEM input could not be parsed.
        case parse
        /// A signature did not verify.
        case signature
        /// Decryption failed (wrong key, bad padding, unknown recipient).
        case decrypt
        /// An algorithm is not supported or not allowed.
        case unsupportedAlgorithm
        /// A key or passphrase problem.
        case key
        /// Building or signing an object failed.
        case encode
        /// Anything else an OpenSSL call reported.
        case library
    }

    public let code: Code
    /// What we were doing, in words.
    public let operation: String
    /// The drained OpenSSL error queue, "lib:reason" per entry.
    public let details: [String]
    public let file: String
    public let line: Int

    public init(_ code: Code, _ operation: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.operation = operation
        self.details = OpenSSLError.drainQueue()
        self.file = file
        self.line = line
    }

    public static func parse(_ operation: String, file: String = #fileID, line: Int = #line) -> OpenSSLError {
        OpenSSLError(.parse, operation, file: file, line: line)
    }

    /// A bounded string for audit lines and metrics: no dynamic data.
    public var auditCode: String { "crypto-\(self.code.rawValue)" }

    public var description: String {
        let queue = self.details.isEmpty ? "" : " [" + self.details.joined(separator: "; ") + "]"
        return "OpenSSLError.\(self.code.rawValue): \(self.operation)\(queue) (\(self.file):\(self.line))"
    }

    public static func == (lhs: OpenSSLError, rhs: OpenSSLError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }

    /// Empties the thread's OpenSSL error queue into strings.
    static func drainQueue() -> [String] {
        var entries: [String] = []
        while true {
            let err = ERR_get_error()
            if err == 0 { break }
            if entries.count < 8 {
                var buffer = [CChar](repeating: 0, count: 256)
                ERR_error_string_n(err, &buffer, buffer.count)
                entries.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
        }
        return entries
    }
}
