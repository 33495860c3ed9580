import FoundationEssentials
import SCEPStore
import Glibc
import SCEP

/// The counters behind `metrics.path`, kept in a ``SharedCounterFile`` so that every process and
/// worker serving one CA directory adds to the same totals.
///
/// Everything is counted from the audit records themselves (``CountingAuditSink``), so the
/// metrics and the audit log cannot disagree: `scep_requests_total{operation,outcome}` equals the
/// number of audit lines with that operation and outcome. Label values come from closed sets
/// (``Layout``); anything else counts as `other`, so no request can grow the set of series.
public final class Metrics: Sendable {
    let file: SharedCounterFile

    /// The counters file of a CA directory: `<ca.dir>/metrics.counters` unless configured.
    public static func defaultPath(caDirectory: String) -> String { caDirectory + "/metrics.counters" }

    /// - Parameter create: the server creates the file (or replaces one of another version); the
    ///   `ca` commands only join an existing one.
    public init(path: String, create: Bool) throws {
        self.file = try SharedCounterFile(path: path, fingerprint: Layout.fingerprint, slots: Layout.slotCount, create: create)
    }

    public var path: String { self.file.path }
    /// Unix time the counters started from.
    var created: UInt64 { self.file.created }

    /// Counts one written audit record.
    func count(_ event: AuditEvent) {
        if event.method == "CLI" {
            self.file.add(Layout.caOperationSlot(event.operation, event.outcome))
        } else {
            self.file.add(Layout.requestSlot(event.operation, event.outcome))
        }
        if let reason = event.reason {
            switch event.outcome {
            case .rejected: self.file.add(Layout.rejectionSlot(reason))
            case .failed, .withheld: self.file.add(Layout.failureSlot(reason))
            default: break
            }
        }
        for call in event.validatorCalls ?? [] { self.observe(call, at: event.ts) }
    }

    /// One `intune sync-revocations` run that reached its end; `succeededAt` when nothing failed.
    public func countRevocationSync(downloaded: Int, revoked: Int, alreadyRevoked: Int, notFound: Int, failed: Int, succeededAt time: Date?) {
        self.file.add(Layout.revocationsDownloaded, UInt64(downloaded))
        for (index, count) in [revoked, alreadyRevoked, notFound, failed].enumerated() where count > 0 {
            self.file.add(Layout.revocationResults + index, UInt64(count))
        }
        if let time { self.file.store(Layout.lastRevocationSync, UInt64(max(0, time.timeIntervalSince1970))) }
    }

    /// One OCSP answer: its kind (the first certificate's status, or the failure) and how long it took.
    func countOCSP(_ kind: String, durationMs: Double) {
        self.file.add(Layout.ocspSlot(kind))
        self.observeLatency(at: Layout.ocspLatency, milliseconds: durationMs)
    }

    /// One observation of a latency histogram laid out at `base`: its bucket, the sum (µs), the count.
    private func observeLatency(at base: Int, milliseconds ms: Double) {
        let seconds = ms / 1000
        let bucket = Layout.buckets.firstIndex { seconds <= $0 } ?? Layout.buckets.count
        self.file.add(base + bucket)
        self.file.add(base + Layout.bucketSlots, UInt64(max(0, ms * 1000).rounded()))
        self.file.add(base + Layout.bucketSlots + 1)
    }

    /// Totals of the Intune revocation sync, for the exposition.
    func revocationSync() -> (downloaded: UInt64, results: [(String, UInt64)], last: Date?) {
        let results = Layout.revocationResultNames.enumerated().map { ($1, self.file.load(Layout.revocationResults + $0)) }
        let last = self.file.load(Layout.lastRevocationSync)
        return (self.file.load(Layout.revocationsDownloaded), results, last == 0 ? nil : Date(timeIntervalSince1970: Double(last)))
    }

    /// An audit record that could not be written (it is in no count above).
    func countAuditFailure() { self.file.add(Layout.auditFailures) }

    private func observe(_ call: ValidatorCall, at time: Date) {
        let base = Layout.intuneSlot(call.operation)
        if let ms = call.durationMs { self.observeLatency(at: base, milliseconds: ms) }
        if call.failed { self.file.add(base + Layout.bucketSlots + 2) }
        // The last call's time and verdict in one word, so a reader never pairs one call's time
        // with another's verdict: milliseconds since 1970, shifted left, low bit set on failure.
        let stamp = UInt64(max(0, time.timeIntervalSince1970 * 1000 + (call.durationMs ?? 0))) << 1 | (call.failed ? 1 : 0)
        if stamp >> 1 >= self.file.load(Layout.lastIntuneCall) >> 1 { self.file.store(Layout.lastIntuneCall, stamp) }
    }

    /// The most recent Intune call of any process: when it ended and whether it failed.
    func lastIntuneCall() -> (at: Date, failed: Bool)? {
        let stamp = self.file.load(Layout.lastIntuneCall)
        guard stamp != 0 else { return nil }
        return (Date(timeIntervalSince1970: Double(stamp >> 1) / 1000), stamp & 1 == 1)
    }

    /// The closed label sets and where each series lives in the file.
    enum Layout {
        static let operations = Operation.allCases.map(\.rawValue) + ["none"]
        static let caOperations = [
            "ca-approve", "ca-reject", "ca-revoke", "ca-crl", "ca-rollover", "ca-rollover-activate", "ca-ra", "ca-ocsp-signer", "IntuneRevocation",
            "other",
        ]
        /// Results of Intune revocation requests, as uploaded.
        static let revocationResultNames = ["revoked", "already-revoked", "not-found", "failed"]
        static let outcomes = AuditEvent.Outcome.allCases
        static let reasons = SCEPError.Code.allCases.map(\.rawValue) + ["operator-rejected", "other"]
        static let intuneCalls = ["token", "discovery", "validateRequest", "successNotification", "failureNotification", "other"]
        /// Upper bounds (seconds) of the Intune latency histogram; a slot more counts the rest.
        static let buckets: [Double] = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25]
        /// Per Intune call: the buckets and +Inf, then sum (µs), count, errors.
        static let bucketSlots = buckets.count + 1
        static let intuneSlots = bucketSlots + 3

        static let requests = 0
        static let caOperationsStart = requests + operations.count * outcomes.count
        static let rejections = caOperationsStart + caOperations.count * outcomes.count
        static let failures = rejections + reasons.count
        static let intune = failures + reasons.count
        static let lastIntuneCall = intune + intuneCalls.count * intuneSlots
        static let auditFailures = lastIntuneCall + 1
        static let revocationsDownloaded = auditFailures + 1
        static let revocationResults = revocationsDownloaded + 1
        static let lastRevocationSync = revocationResults + revocationResultNames.count
        /// OCSP answers by kind, then the latency histogram (buckets, +Inf, sum in µs, count).
        static let ocspKinds = ["good", "revoked", "unknown", "malformedRequest", "unauthorized", "internalError"]
        static let ocspAnswers = lastRevocationSync + 1
        static let ocspLatency = ocspAnswers + ocspKinds.count
        static let slotCount = ocspLatency + bucketSlots + 2

        static func ocspSlot(_ kind: String) -> Int { ocspAnswers + (ocspKinds.firstIndex(of: kind) ?? ocspKinds.firstIndex(of: "malformedRequest")!) }

        private static let outcomeIndex = Dictionary(uniqueKeysWithValues: outcomes.enumerated().map { ($1, $0) })
        private static let reasonIndex = Dictionary(uniqueKeysWithValues: reasons.enumerated().map { ($1, $0) })

        static func requestSlot(_ operation: String?, _ outcome: AuditEvent.Outcome) -> Int {
            let op = operations.firstIndex(of: operation ?? "none") ?? operations.count - 1
            return requests + op * outcomes.count + outcomeIndex[outcome]!
        }

        static func caOperationSlot(_ operation: String?, _ outcome: AuditEvent.Outcome) -> Int {
            let op = caOperations.firstIndex(of: operation ?? "other") ?? caOperations.count - 1
            return caOperationsStart + op * outcomes.count + outcomeIndex[outcome]!
        }

        static func rejectionSlot(_ reason: String) -> Int { rejections + (reasonIndex[reason] ?? reasons.count - 1) }
        static func failureSlot(_ reason: String) -> Int { failures + (reasonIndex[reason] ?? reasons.count - 1) }

        static func intuneSlot(_ call: String) -> Int {
            intune + (intuneCalls.firstIndex(of: call) ?? intuneCalls.count - 1) * intuneSlots
        }

        /// FNV-1a of every label set and bucket, in order: any change to the layout changes it.
        static let fingerprint: UInt64 = {
            let text = [operations, caOperations, outcomes.map(\.rawValue), reasons, intuneCalls, buckets.map { "\($0)" }, revocationResultNames, ocspKinds]
                .map { $0.joined(separator: ",") }.joined(separator: ";")
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in text.utf8 {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01b3
            }
            return hash
        }()
    }
}

/// Counts every record the wrapped sink wrote, and every one it could not.
public struct CountingAuditSink: AuditSink {
    let inner: any AuditSink
    let metrics: Metrics

    public init(_ inner: any AuditSink, metrics: Metrics) {
        self.inner = inner
        self.metrics = metrics
    }

    @discardableResult
    public func record(_ event: AuditEvent, sealedByStore: Bool) throws -> WrittenAuditLine? {
        let written: WrittenAuditLine?
        do { written = try self.inner.record(event, sealedByStore: sealedByStore) } catch {
            self.metrics.countAuditFailure()
            throw error
        }
        self.metrics.count(event)
        return written
    }

    /// Not counted again: the request it records was counted when its line was first written.
    public func restore(lostLine: [UInt8]) throws { try self.inner.restore(lostLine: lostLine) }

    public func reopen() throws { try self.inner.reopen() }
    public func healthProblem() -> String? { self.inner.healthProblem() }
}
