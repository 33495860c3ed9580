import DurableFiles
import Foundation
import Glibc
import Testing

/// The run lock under a fork: the CI failure of 2026-12-07 ("free again once the first is done")
/// was a child process, spawned by another test meanwhile, sharing the lock's open file description.
@Suite("Durable files: run lock")
struct RunLockTests {
    @Test("released while a forked child still shares the descriptor: free at once")
    func releasedDespiteFork() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("runlock-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).lock").path
        defer { unlink(path) }
        let first = try #require(try RunLock(path: path))
        #expect(try RunLock(path: path) == nil, "held")
        // The child only sleeps and exits: what a fork waiting for its exec does with the descriptor.
        let child = fork()
        if child == 0 {
            usleep(2_000_000)
            _exit(0)
        }
        #expect(child > 0)
        defer {
            kill(child, SIGKILL)
            var status: Int32 = 0
            waitpid(child, &status, 0)
        }
        first.release()
        let again = try RunLock(path: path)
        #expect(again != nil, "free again although the child still has the descriptor")
        again?.release()
    }
}
