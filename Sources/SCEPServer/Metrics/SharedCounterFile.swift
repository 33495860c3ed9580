import CSharedCounters
import FoundationEssentials
import Glibc
import DurableFiles

/// 64-bit counters in one small file that every process serving a CA directory maps
/// `MAP_SHARED` and updates with atomic adds, so any process can report the totals of all of them
/// (mod_fcgid and several `serve` processes are normal deployments; a per-process count would make
/// every scrape answer a different number).
///
/// Layout: eight header words (magic, layout fingerprint, slot count, creation time, reserved),
/// then the slots. The fingerprint names the metric layout of the binary that created the file:
/// a binary with another layout (an upgrade) replaces the file with a fresh one, which Prometheus
/// reads as a counter reset. The kernel keeps the pages, so counts survive a crashed process; they
/// start again from zero after a reboot only if the file is removed.
///
/// Ownership: this object owns the descriptor and the mapping, released in `deinit`.
final class SharedCounterFile: @unchecked Sendable {
    static let magic: UInt64 = 0x3154_454D_5045_4353  // "SCEPMET1", little-endian
    static let headerWords = 8

    let path: String
    let slots: Int
    private let fd: Int32
    private let base: UnsafeMutablePointer<UInt64>
    private let length: Int

    /// Opens the file at `path`; with `create`, makes it (or replaces one of another layout) under
    /// an `flock` of `path.lock`, so processes starting together agree on one file.
    init(path: String, fingerprint: UInt64, slots: Int, create: Bool) throws {
        self.path = path
        self.slots = slots
        self.length = (Self.headerWords + slots) * 8
        var lock: RunLock?
        if create {
            do { lock = try RunLock(path: path + ".lock", wait: true, mode: 0o640) } catch { throw ServerError(.metrics, "metrics counters \(error)") }
        }
        defer { lock?.release() }

        var fd = open(path, O_RDWR | O_CLOEXEC)
        if fd >= 0, !Self.valid(fd, fingerprint: fingerprint, slots: slots) {
            close(fd)
            fd = -1
            guard create else { throw ServerError(.metrics, "metrics counters \(path) belong to another version") }
            unlink(path)
        }
        if fd < 0 {
            let text = errnoText()
            guard create, access(path, F_OK) != 0 else { throw ServerError(.metrics, "metrics counters \(path) cannot be opened: \(text)") }
            try Self.make(path, fingerprint: fingerprint, slots: slots)
            fd = open(path, O_RDWR | O_CLOEXEC)
            guard fd >= 0 else { throw ServerError(.metrics, "metrics counters \(path) cannot be opened: \(errnoText())") }
        }
        guard let mapping = mmap(nil, self.length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapping != MAP_FAILED else {
            let text = errnoText()
            close(fd)
            throw ServerError(.metrics, "metrics counters \(path) cannot be mapped: \(text)")
        }
        self.fd = fd
        self.base = mapping.assumingMemoryBound(to: UInt64.self)
    }

    deinit {
        munmap(self.base, self.length)
        close(self.fd)
    }

    /// Header and size match this binary's layout.
    private static func valid(_ fd: Int32, fingerprint: UInt64, slots: Int) -> Bool {
        var info = stat()
        guard fstat(fd, &info) == 0, Int(info.st_size) == (headerWords + slots) * 8 else { return false }
        var header = [UInt64](repeating: 0, count: 3)
        let read = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 24, 0) }
        return read == 24 && header[0] == magic && header[1] == fingerprint && header[2] == UInt64(slots)
    }

    /// Writes a complete zeroed file beside `path` and renames it into place: a reader never maps
    /// a file whose header is half written.
    private static func make(_ path: String, fingerprint: UInt64, slots: Int) throws {
        var words = [UInt64](repeating: 0, count: headerWords + slots)
        words[0] = magic
        words[1] = fingerprint
        words[2] = UInt64(slots)
        words[3] = UInt64(time(nil))
        let temporary = "\(path).tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw ServerError(.metrics, "metrics counters \(path) cannot be created: \(errnoText())") }
        let written = words.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == words.count * 8, rename(temporary, path) == 0 else {
            let text = errnoText()
            unlink(temporary)
            throw ServerError(.metrics, "metrics counters \(path) cannot be created: \(text)")
        }
    }

    /// When the file was created (Unix seconds): the counters count from then.
    var created: UInt64 { scep_counter_load(self.base + 3) }

    func add(_ slot: Int, _ value: UInt64 = 1) {
        precondition(slot >= 0 && slot < self.slots)
        scep_counter_add(self.base + Self.headerWords + slot, value)
    }

    func load(_ slot: Int) -> UInt64 {
        precondition(slot >= 0 && slot < self.slots)
        return scep_counter_load(self.base + Self.headerWords + slot)
    }

    func store(_ slot: Int, _ value: UInt64) {
        precondition(slot >= 0 && slot < self.slots)
        scep_counter_store(self.base + Self.headerWords + slot, value)
    }
}
