import FoundationEssentials
import Glibc
import SCEPLocking
import DurableFiles
import SCEPStore

/// The single choke point every audit record goes through.
public protocol AuditSink: Sendable {
    /// Writes the event durably, or, with `sealedByStore`, leaves its durability to the store
    /// (``CertificateStore/audited(serial:line:)`` keeps the returned line and syncs once for both);
    /// throws if it could not write it (the caller then withholds any certificate). Returns the
    /// line as written to a file (nil for a sink that writes none).
    @discardableResult
    func record(_ event: AuditEvent, sealedByStore: Bool) throws -> WrittenAuditLine?
    /// Writes again, durably, a line that a power loss took from the log
    /// (``UnauditedCertificate/lostLine``), marked `"restored":"power-loss"` and linked anew.
    func restore(lostLine: [UInt8]) throws
    /// Reopens the underlying file after log rotation (SIGHUP); a no-op where there is none.
    func reopen() throws
    /// Nil when the next record can be written; else a fixed code (`audit-not-writable`,
    /// `audit-disk-full`). Checked without writing (`health.path` writes no audit line).
    func healthProblem() -> String?
}

extension AuditSink {
    /// Writes the event durably.
    public func record(_ event: AuditEvent) throws { try self.record(event, sealedByStore: false) }
    public func reopen() throws {}
    public func healthProblem() -> String? { nil }
}

/// Append-only JSON lines, shared by every thread and process writing the same file.
///
/// The file is opened with `O_APPEND`; each event is one `write(2)` of the whole line, which
/// the kernel keeps whole and unmixed between concurrent writers on a local filesystem. With
/// `sync`, `fdatasync` follows each line that records an enrollment decision (PKIOperation), so an
/// issued certificate's record survives a crash, unless the store seals the issuance with its
/// line (the file store's journal keeps the line and puts it back after a power loss: one sync
/// per enrollment, not two); GetCACaps/GetCACert lines are written the same way but not synced one
/// by one (the next synced line or the kernel flushes them). Threads finishing together share one
/// `fdatasync` (``GroupSync``): it covers every line written before it began.
///
/// Rotation: ``reopen()`` (SIGHUP, SIGUSR1) opens the path afresh. Before each line the path is
/// also checked (one `stat`): a new file there (logrotate's `create`, a `mv` and `touch`) is
/// switched to at once; a path that is gone while the open file still has a name (renamed by
/// logrotate, which creates the new one next) keeps the line in the renamed file, where it is not
/// lost; an open file that was deleted outright is replaced by a new one at the path, with a
/// warning. `copytruncate` needs nothing: `O_APPEND` writes go to the new end.
///
/// Ownership: the descriptor lives in a ``Descriptor`` box, closed when the last writer using it
/// lets go, so a reopen never closes a descriptor another thread is writing to.
public final class JSONLinesAuditSink: AuditSink, Sendable {
    private let current: Locked<Descriptor>
    private let sync: Bool
    private let diagnostics: Diagnostics
    public let path: String
    let chain: AuditChain
    let head: ChainHead
    /// Held across link-then-append by this process's threads (an `flock` does not exclude threads
    /// sharing one open file); the file's `flock` then excludes other processes. Remembers the
    /// last line this process wrote: while the file is still that size, no other line followed it.
    private let appending = Locked<(inode: UInt, size: Int, link: String)?>(nil)

    final class Descriptor: Sendable {
        let fd: Int32
        let inode: UInt
        /// The threads that wrote lines to this file share their `fdatasync` calls.
        let group: GroupSync
        init(_ fd: Int32) {
            self.fd = fd
            self.group = GroupSync(descriptor: fd)
            var info = stat()
            self.inode = fstat(fd, &info) == 0 ? UInt(info.st_ino) : 0
        }
        deinit { close(self.fd) }
    }

    /// - Parameter chainKey: the `audit.chain_key_file` secret: `prev` links become HMAC-SHA-256.
    public init(path: String, sync: Bool, chainKey: [UInt8]? = nil, diagnostics: Diagnostics = Diagnostics()) throws {
        self.path = path
        self.sync = sync
        self.diagnostics = diagnostics
        self.chain = AuditChain(logPath: path, key: chainKey)
        self.head = ChainHead(path: self.chain.headPath)
        if !self.head.usable {
            diagnostics.log(.warning, "audit chain head \(self.chain.headPath) cannot be opened (\(errnoText())): after a rotation the chain restarts at genesis")
        }
        self.current = Locked(try Self.open(path))
    }

    private static func open(_ path: String) throws -> Descriptor {
        // Read access too: the last line is read to link the next one to it.
        let fd = Glibc.open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw ServerError(.audit, "audit.path \(path) cannot be opened for appending: \(errnoText())") }
        return Descriptor(fd)
    }

    /// Opens the path afresh (after rotation); the old descriptor closes once no line is being written to it.
    public func reopen() throws {
        let fresh = try Self.open(self.path)
        self.current.withLock { $0 = fresh }
    }

    @discardableResult
    public func record(_ event: AuditEvent, sealedByStore: Bool) throws -> WrittenAuditLine? {
        let (descriptor, written) = try self.append(Array(event.jsonLine().utf8))
        if self.sync, !sealedByStore, event.operation == "PKIOperation" || event.method == "CLI" { try self.sync(descriptor) }
        return written
    }

    public func restore(lostLine: [UInt8]) throws {
        guard let line = AuditChain.unlinked(lostLine).map({ AuditChain.adding(",\"restored\":\"power-loss\"", to: $0) }) else {
            throw ServerError(.audit, "a lost audit line to restore is not a line of this log")
        }
        let (descriptor, _) = try self.append(line)
        if self.sync { try self.sync(descriptor) }
    }

    /// Shared with the threads that wrote to the same file meanwhile (``GroupSync``).
    private func sync(_ descriptor: Descriptor) throws {
        do { try descriptor.group.sync() } catch { throw ServerError(.audit, "audit \(error)") }
    }

    /// Appends `line`, linked; the descriptor written to (for the sync) and the line as written.
    private func append(_ line: [UInt8]) throws -> (Descriptor, WrittenAuditLine) {
        try self.appending.withLock { last in
            let (descriptor, linked, end) = try self.appendLinked(line, &last)
            return (descriptor, WrittenAuditLine(bytes: linked, path: self.path, inode: UInt64(descriptor.inode), end: end))
        }
    }

    public func healthProblem() -> String? { FileHealth.problem(writing: self.path, prefix: "audit") }

    /// Links `line` to the file's last line and appends it, under the file's `flock`; returns the
    /// descriptor written to, the linked line and the file's size after it.
    private func appendLinked(
        _ line: [UInt8], _ last: inout (inode: UInt, size: Int, link: String)?
    ) throws -> (Descriptor, linked: [UInt8], end: Int) {
        while true {
            let descriptor = try self.descriptor()
            guard flock(descriptor.fd, LOCK_EX) == 0 else { throw ServerError(.audit, "audit lock on \(self.path) failed: \(errnoText())") }
            defer { flock(descriptor.fd, LOCK_UN) }
            // Rotated between the path check and the lock: write to the new file instead.
            var named = stat()
            if stat(self.path, &named) == 0, UInt(named.st_ino) != descriptor.inode { continue }
            var info = stat()
            guard fstat(descriptor.fd, &info) == 0 else { throw ServerError(.audit, "audit fstat failed: \(errnoText())") }
            var size = Int(info.st_size)
            let prev: String
            if let last, last.inode == descriptor.inode, last.size == size, size > 0 {
                prev = last.link
            } else {
                let tail = self.chain.tail(fd: descriptor.fd, size: size, head: self.head)
                if tail.end < size {
                    // A writer killed mid-line (kill -9 across a page boundary): cut the torn
                    // fragment off, so the log stays one JSON object per line.
                    _ = ftruncate(descriptor.fd, off_t(tail.end))
                    self.diagnostics.log(.warning, "audit log \(self.path): removed a torn line of \(size - tail.end) bytes left by a writer that died")
                    size = tail.end
                }
                prev = tail.link
            }
            let linked = AuditChain.linked(line, prev: prev)
            let written = linked.withUnsafeBytes { write(descriptor.fd, $0.baseAddress, $0.count) }
            guard written == linked.count else {
                let text = written < 0 ? errnoText() : "short write (\(written) of \(linked.count) bytes)"
                // A full disk writes part of a line: cut it off again (no one else appends while we
                // hold the lock), so the next line is not glued to a torn one.
                if written > 0 { _ = ftruncate(descriptor.fd, off_t(size)) }
                last = nil
                throw ServerError(.audit, "audit write to \(self.path) failed: \(text)")
            }
            let link = self.chain.link(of: linked[...])
            last = (descriptor.inode, size + linked.count, link)
            self.head.write(link)
            return (descriptor, linked, size + linked.count)
        }
    }

    /// The descriptor to write to, switching files when the path now names another one.
    private func descriptor() throws -> Descriptor {
        let descriptor = self.current.withLock { $0 }
        var info = stat()
        if stat(self.path, &info) == 0 {
            guard UInt(info.st_ino) != descriptor.inode else { return descriptor }
            try self.reopen()
            self.diagnostics.log(.notice, "audit log \(self.path) was replaced (rotated): writing to the new file")
            return self.current.withLock { $0 }
        }
        var open = stat()
        if fstat(descriptor.fd, &open) == 0, open.st_nlink == 0 {
            // Deleted, not rotated: lines written to it would be lost.
            try self.reopen()
            self.diagnostics.log(.warning, "audit log \(self.path) was deleted while open: a new file was created")
            return self.current.withLock { $0 }
        }
        return descriptor  // renamed away: rotation in progress, the next file appears shortly
    }
}
