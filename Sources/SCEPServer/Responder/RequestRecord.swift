import FoundationEssentials
import Glibc

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
    /// Run once the record is written (not when writing it failed).
    private var afterWrite: [() -> Void] = []

    /// `action` runs once this record is in the audit log (a stored certificate's note is cleared).
    func onWritten(_ action: @escaping () -> Void) { self.afterWrite.append(action) }

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

    /// Writes the record; throws when it could not be written (the caller then delivers nothing
    /// that needed it). A second call does nothing.
    func finish() throws {
        guard !self.finished else { return }
        self.finished = true
        self.event.durationMs = AuditEvent.milliseconds(since: self.started)
        defer { self.logOutcome() }
        try self.sink.record(self.event)
        for action in self.afterWrite { action() }
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
