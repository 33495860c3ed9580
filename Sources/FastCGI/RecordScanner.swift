/// Whether a FastCGI connection's buffered bytes hold a whole request yet, read from a copy of
/// what the kernel has buffered (`MSG_PEEK`), so that libfcgi later reads the same bytes itself.
///
/// Why peek and keep libfcgi, rather than a record reader of our own: the front door only needs
/// to know *when* a request may go to a worker, never its contents; libfcgi still parses every
/// record, answers management records and writes the response, as it always did. A peek costs one
/// syscall per readiness event on a connection, and a request up to the bounds below (a
/// pkiMessage is 2-10 KB) is peeked whole.
///
/// Bodies: what the kernel holds for a connection is bounded by the *sender's* buffer, counted with
/// per-write overhead: Apache's mod_proxy_fcgi, writing small pieces, stalled with 50 KB queued
/// (measured with `ss -xm`). So a request whose params are complete is handed over once
/// ``bodyBound`` bytes have arrived, and its worker reads the rest of the body at the web
/// server's pace (nginx and Apache send a body they have already buffered; a direct client that
/// stalls meets the read deadline).
///
/// FastCGI 1.0 §3.3: each record is an 8-byte header (version 1, type, request id, content
/// length, padding length, reserved), then content and padding. The params end with an empty
/// FCGI_PARAMS record, the request with an empty FCGI_STDIN record (§5.2, §5.3).
enum RecordScanner {
    enum Verdict: Equatable {
        /// More bytes are needed (`params`: the params are complete already).
        case incomplete(params: Bool)
        /// The request is whole: through the empty FCGI_STDIN record.
        case complete
        /// Not FastCGI (a version other than 1): close the connection.
        case malformed
    }

    static let headerLength = 8
    static let paramsType: UInt8 = 4
    static let stdinType: UInt8 = 5
    /// With its params complete, a request is handed over once this much has arrived.
    static let bodyBound = 16 * 1024
    /// How much is peeked at most: the largest params record (64 KiB of content, header and
    /// padding); a request still incomplete at this size is handed over whatever it holds.
    static let peekBound = 65535 + 8 + 255

    static func scan(_ bytes: UnsafeRawBufferPointer) -> Verdict {
        var offset = 0
        var params = false
        while bytes.count - offset >= Self.headerLength {
            guard bytes[offset] == 1 else { return .malformed }
            let type = bytes[offset + 1]
            let content = Int(bytes[offset + 4]) << 8 | Int(bytes[offset + 5])
            let padding = Int(bytes[offset + 6])
            let end = offset + Self.headerLength + content + padding
            guard end <= bytes.count else { return .incomplete(params: params) }
            if type == Self.paramsType && content == 0 { params = true }
            if type == Self.stdinType && content == 0 { return .complete }
            offset = end
        }
        return .incomplete(params: params)
    }

    /// Whether a connection with `count` bytes buffered, scanned as `verdict`, goes to a worker.
    static func ready(_ verdict: Verdict, count: Int) -> Bool {
        switch verdict {
        case .complete: return true
        case .malformed: return false
        case .incomplete(let params): return count >= Self.peekBound || (params && count >= Self.bodyBound)
        }
    }
}
