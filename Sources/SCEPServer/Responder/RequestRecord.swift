import FoundationEssentials
import Glibc
import SCEPStore

/// One request's audit record, written exactly once by ``finish()``: the single choke point every
/// request's record goes through (the hash-chained audit log hooks in here).
///
/// Owned by the thread serving the request; never shared.
final class RequestRecord {
    var event = AuditEvent()
    private let sink: any AuditSink
    private let started: ContinuousClock.Instant
    private let diagnostics: Diagnostics
    private(set) var finished = false
    /// Run once the record is written (not when writing it failed), with the line as written.
    private var afterWrite: [(WrittenAuditLine?) throws -> Void] = []
    /// The store makes this line durable with the issuance it records (``CertificateStore/sealsWithAuditLine``):
    /// the log writes it without a sync, and the `onWritten` action that seals it must succeed.
    var sealedByStore = false

    /// What went wrong after the line was written: an `onWritten` action (the store's seal) threw.
    struct FollowUpFailed: Error {
        let error: any Error
    }

    /// `action` runs once this record is in the audit log (a stored certificate's note is cleared,
    /// the issuance sealed with the line); its error reaches ``finish()``'s caller as ``FollowUpFailed``.
    func onWritten(_ action: @escaping (WrittenAuditLine?) throws -> Void) { self.afterWrite.append(action) }

    convenience init(sink: any AuditSink, diagnostics: Diagnostics, request: SCEPHTTPRequest) {
        var event = AuditEvent()
        event.requestID = AuditEvent.newRequestID()
        event.method = request.method
        event.remoteAddr = request.remoteAddr
        self.init(sink: sink, diagnostics: diagnostics, event: event)
    }

    /// A record that starts from `event` (a `scep-fcgi ca …` command's, with its operation and operator).
    init(sink: any AuditSink, diagnostics: Diagnostics, event: AuditEvent) {
        self.sink = sink
        self.diagnostics = diagnostics
        self.started = .now
        self.event = event
    }

    /// Writes the record, then runs the `onWritten` actions; throws when the record could not be
    /// written, or ``FollowUpFailed`` when an action failed (either way the caller delivers nothing
    /// that needed it). A second call does nothing.
    func finish() throws {
        guard !self.finished else { return }
        self.finished = true
        self.event.durationMs = AuditEvent.milliseconds(since: self.started)
        defer { self.logOutcome() }
        let line = try self.sink.record(self.event, sealedByStore: self.sealedByStore)
        var failure: (any Error)?
        for action in self.afterWrite {
            do { try action(line) } catch { failure = failure ?? error }
        }
        if let failure { throw FollowUpFailed(error: failure) }
    }

    /// At `info`, one line per request outcome: the audit line's bounded fields, never a secret
    /// or free text from the request (the transactionID is printable ASCII, at most 256 characters).
    private func logOutcome() {
        guard self.diagnostics.enabled(.info) else { return }
        var parts = ["request \(self.event.requestID)", self.event.operation ?? self.event.method ?? "-", self.event.outcome.rawValue,
            "http=\(self.event.httpStatus)"]
        if let reason = self.event.reason { parts.append("reason=\(reason)") }
        if let type = self.event.messageType { parts.append("messageType=\(type)") }
        if let id = self.event.transactionID { parts.append("transactionID=\(id)") }
        if let serial = self.event.serial { parts.append("serial=\(serial)") }
        let tenths = Int(((self.event.durationMs ?? 0) * 10).rounded())
        parts.append("\(tenths / 10).\(tenths % 10)ms")
        self.diagnostics.log(.info, parts.joined(separator: " "))
    }

    /// ``finish()`` for records that gate nothing: a failure is logged.
    func finishLogging() {
        do { try self.finish() } catch {
            self.diagnostics.log(.error, "request \(self.event.requestID): audit record not written: \(error)")
        }
    }
}
