import Foundation
import Testing

@testable import FastCGI

@Suite("FastCGI connection deadlines and peers")
struct ConnectionGuardTests {
    static func pair() -> (Int32, Int32) {
        var fds: [Int32] = [0, 0]
        // CLOEXEC: other tests start child processes meanwhile, which would inherit (and hold open) the peer end.
        precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
        return (fds[0], fds[1])
    }

    @Test("a connection past its deadline is shut down, which ends a blocked read; a released one is left alone")
    func deadline() throws {
        let guardian = ConnectionGuard(deadlineSeconds: 0.2, allowed: [])
        let (server, client) = Self.pair()
        let (other, otherClient) = Self.pair()
        defer { [server, client, other, otherClient].forEach { close($0) } }
        guardian.limitReads(server)
        let id = guardian.watch(server)
        let released = guardian.watch(other)
        guardian.release(released)
        #expect(guardian.sweep() == 0)
        let blocked = DispatchSemaphore(value: 0)
        let result = Mutex2()
        DispatchQueue.global().async {
            var byte: UInt8 = 0
            result.set(read(server, &byte, 1))  // an idle peer: blocks until the watchdog acts
            blocked.signal()
        }
        usleep(300_000)
        #expect(guardian.sweep() == 1 && guardian.expired == 1)
        #expect(blocked.wait(timeout: .now() + 5) == .success)
        #expect(result.get() == 0, "EOF after shutdown")
        guardian.release(id)  // the watchdog already removed it: a no-op
        var byte: UInt8 = 1
        #expect(write(otherClient, &byte, 1) == 1 && read(other, &byte, 1) == 1, "the released connection still works")
    }

    @Test("a peer that closed its end is seen without blocking")
    func peerClosed() {
        let (server, client) = Self.pair()
        defer { close(server) }
        #expect(!ConnectionGuard.peerClosed(server))
        close(client)
        #expect(ConnectionGuard.peerClosed(server))
    }
}

final class Mutex2: @unchecked Sendable {
    private let lock = NSLock()
    private var value = -1
    func set(_ v: Int) { self.lock.withLock { self.value = v } }
    func get() -> Int { self.lock.withLock { self.value } }
}
