import FoundationEssentials
import Glibc
import SCEPCrypto

/// The tamper-evident chain of an audit log: every line ends with `"prev"`, the SHA-256 of the
/// complete line before it (newline included), or its HMAC-SHA-256 under `audit.chain_key_file`,
/// so that whoever can write the file cannot recompute the chain without the key.
///
/// Many writers: ``JSONLinesAuditSink`` takes an `flock` on the file around read-last-link,
/// write; every process and thread appends under it, so each line names the line really before
/// it. Rotation: the link of the last line written is also kept in a head file beside the log
/// (`.NAME.chain`, which logrotate leaves alone), and the first line of an empty file (after
/// `create` or `copytruncate`) names it, so the chain runs on across files. A file that is not
/// empty is its own truth: its last line is read (or known from this process's last write).
struct AuditChain: Sendable {
    /// The link of "no line before": the first line of a brand-new log.
    static let genesis = String(repeating: "0", count: 64)

    let key: [UInt8]?
    let headPath: String

    init(logPath: String, key: [UInt8]?) {
        self.key = key
        let slash = logPath.lastIndex(of: "/")
        let directory = slash.map { String(logPath[...$0]) } ?? ""
        let name = slash.map { String(logPath[logPath.index(after: $0)...]) } ?? logPath
        self.headPath = directory + "." + name + ".chain"
    }

    /// The link naming `line` (its complete bytes, newline included).
    func link(of line: ArraySlice<UInt8>) -> String {
        let bytes = Array(line)
        let digest = (try? self.key.map { try DigestAlgorithm.sha256.hmac(key: $0, bytes) } ?? DigestAlgorithm.sha256.hash(bytes)) ?? []
        return HexEncoding.string(digest)
    }

    /// `line` (one JSON object and a newline) with `"prev":link` added as its last member.
    static func linked(_ line: [UInt8], prev: String) -> [UInt8] {
        precondition(line.count >= 3 && line[line.count - 2] == UInt8(ascii: "}") && line.last == 0x0A)
        return line.dropLast(2) + Array(",\"prev\":\"\(prev)\"}\n".utf8)
    }

    /// `line` without the `"prev"` member ``linked(_:prev:)`` added; nil when it has none.
    static func unlinked(_ line: [UInt8]) -> [UInt8]? {
        let suffix = Array(",\"prev\":\"".utf8)
        let tail = 64 + 3  // the link, `"}` and the newline
        guard line.count > suffix.count + tail, line.suffix(3) == Array("\"}\n".utf8)[...],
            line[(line.count - tail - suffix.count)..<(line.count - tail)].elementsEqual(suffix)
        else { return nil }
        return Array(line[..<(line.count - tail - suffix.count)]) + Array("}\n".utf8)
    }

    /// `line` with `members` (`,"name":value`) added before its closing brace.
    static func adding(_ members: String, to line: [UInt8]) -> [UInt8] {
        Array(line.dropLast(2)) + Array(members.utf8) + Array("}\n".utf8)
    }

    /// The link of the last whole line of the open file `fd` of `size` bytes, and where that line
    /// ends. A file that does not end in a newline holds a line torn by a writer that was killed
    /// mid-write: `end` then stops before it (the caller cuts it off). No whole line: the head's
    /// link (the previous file's last line), else ``genesis``.
    func tail(fd: Int32, size: Int, head: ChainHead) -> (link: String, end: Int) {
        guard size > 0 else { return (head.read() ?? Self.genesis, 0) }
        // Lines are bounded (names are capped): read backwards in blocks until a line start.
        var block = 4096
        while true {
            let start = max(0, size - block)
            var bytes = [UInt8](repeating: 0, count: size - start)
            let read = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(start)) }
            guard read == bytes.count else { return (Self.genesis, size) }
            let whole = bytes.last == 0x0A ? bytes.count : (bytes.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0)
            if whole == 0 && start > 0 {
                block *= 4
                continue
            }
            let end = start + whole
            guard whole > 0 else { return (head.read() ?? Self.genesis, 0) }  // only a torn first line
            let body = bytes[..<(whole - 1)]  // the last whole line's own newline
            if let newline = body.lastIndex(of: 0x0A) { return (self.link(of: bytes[(newline + 1)..<whole]), end) }
            if start == 0 { return (self.link(of: bytes[..<whole]), end) }
            block *= 4
        }
    }
}

/// The head file of a chain (`.NAME.chain` beside the log): the link of the last line written, for
/// the first line of the next file. Owns its descriptor, kept open for the life of the sink.
final class ChainHead: Sendable {
    let path: String
    private let fd: Int32
    var usable: Bool { self.fd >= 0 }

    init(path: String) {
        self.path = path
        self.fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o640)
    }

    deinit { if self.fd >= 0 { close(self.fd) } }

    func read() -> String? {
        guard self.fd >= 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: 64)
        let read = bytes.withUnsafeMutableBytes { pread(self.fd, $0.baseAddress, 64, 0) }
        return read == 64 ? String(decoding: bytes, as: UTF8.self) : nil
    }

    /// Best effort: a head that could not be written only matters at the next rotation.
    func write(_ link: String) {
        guard self.fd >= 0 else { return }
        let bytes = Array((link + "\n").utf8)
        _ = bytes.withUnsafeBytes { pwrite(self.fd, $0.baseAddress, $0.count, 0) }
    }
}
