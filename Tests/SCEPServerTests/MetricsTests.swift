import FileStore
import Foundation
import SCEP
import SCEPCrypto
import Testing

@testable import SCEPServer

@Suite("Metrics and health")
struct MetricsTests {
    static func temporaryPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(UUID().uuidString).counters").path
    }

    static func event(_ operation: String?, _ outcome: AuditEvent.Outcome, reason: String? = nil, method: String = "GET") -> AuditEvent {
        var event = AuditEvent()
        event.operation = operation
        event.outcome = outcome
        event.reason = reason
        event.method = method
        return event
    }

    static func value(_ text: String, _ series: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last!) }
    }

    @Test("two openers of one file (two processes) add to the same totals")
    func shared() throws {
        let path = Self.temporaryPath()
        let first = try Metrics(path: path, create: true)
        let second = try Metrics(path: path, create: false)
        DispatchQueue.concurrentPerform(iterations: 1000) { i in
            (i % 2 == 0 ? first : second).count(Self.event("GetCACert", .served))
        }
        let slot = Metrics.Layout.requestSlot("GetCACert", .served)
        #expect(first.file.load(slot) == 1000 && second.file.load(slot) == 1000)
        #expect(first.created == second.created && first.created > 0)
    }

    @Test("a file of another layout is replaced by the server and refused by the ca commands")
    func otherLayout() throws {
        let path = Self.temporaryPath()
        _ = try SharedCounterFile(path: path, fingerprint: 42, slots: 3, create: true)
        #expect(throws: ServerError.self) { try Metrics(path: path, create: false) }
        let metrics = try Metrics(path: path, create: true)
        metrics.count(Self.event("GetCACaps", .served))
        #expect(metrics.file.load(Metrics.Layout.requestSlot("GetCACaps", .served)) == 1)
    }

    @Test("label values come from closed sets: anything else counts as none or other")
    func closedSets() throws {
        let metrics = try Metrics(path: Self.temporaryPath(), create: true)
        metrics.count(Self.event(nil, .rejected, reason: "unknown-operation"))
        metrics.count(Self.event("Injected\"}\n", .rejected, reason: "not-a-reason"))
        metrics.count(Self.event("ca-revoke", .revoked, method: "CLI"))
        #expect(metrics.file.load(Metrics.Layout.requestSlot("none", .rejected)) == 2)
        #expect(metrics.file.load(Metrics.Layout.rejectionSlot("other")) == 1)
        #expect(metrics.file.load(Metrics.Layout.rejectionSlot("unknown-operation")) == 1)
        #expect(metrics.file.load(Metrics.Layout.caOperationSlot("ca-revoke", .revoked)) == 1)
    }

    @Test("Intune calls: histogram buckets, sum, errors and the last verdict")
    func intune() throws {
        let metrics = try Metrics(path: Self.temporaryPath(), create: true)
        var event = Self.event("PKIOperation", .failed, reason: "challenge-unavailable", method: "POST")
        event.validatorCalls = [
            ValidatorCall(operation: "validateRequest", requestID: "a", status: 500, code: nil, durationMs: 30),
            ValidatorCall(operation: "validateRequest", requestID: "b", status: 200, code: "Success", durationMs: 700),
        ]
        metrics.count(event)
        let h = try Harness()
        let text = metrics.exposition(material: h.material, crls: nil, pendingRequests: nil, intune: true)
        #expect(Self.value(text, #"scep_intune_call_duration_seconds_bucket{call="validateRequest",le="0.025"}"#) == 0)
        #expect(Self.value(text, #"scep_intune_call_duration_seconds_bucket{call="validateRequest",le="0.05"}"#) == 1)
        #expect(Self.value(text, #"scep_intune_call_duration_seconds_bucket{call="validateRequest",le="1"}"#) == 2)
        #expect(Self.value(text, #"scep_intune_call_duration_seconds_bucket{call="validateRequest",le="+Inf"}"#) == 2)
        #expect(Self.value(text, #"scep_intune_call_duration_seconds_sum{call="validateRequest"}"#) == 0.73)
        #expect(Self.value(text, #"scep_intune_call_errors_total{call="validateRequest"}"#) == 1)
        #expect(Self.value(text, "scep_intune_last_call_success") == 1)
        #expect(Self.value(text, #"scep_failures_total{reason="challenge-unavailable"}"#) == 1)
        #expect(metrics.lastIntuneCall()?.failed == false)
    }

    @Test("Intune revocation sync: downloads, results by kind, the last run without a failure, the credential's expiry")
    func revocationSync() throws {
        let metrics = try Metrics(path: Self.temporaryPath(), create: true)
        let h = try Harness()
        #expect(!metrics.exposition(material: h.material, crls: nil, pendingRequests: nil, intune: true).contains("scep_intune_revocations"))
        let done = Date(timeIntervalSince1970: 1_800_000_000)
        metrics.countRevocationSync(downloaded: 7, revoked: 2, alreadyRevoked: 1, notFound: 3, failed: 0, succeededAt: done)
        metrics.countRevocationSync(downloaded: 1, revoked: 0, alreadyRevoked: 0, notFound: 0, failed: 1, succeededAt: nil)
        let text = metrics.exposition(
            material: h.material, crls: nil, pendingRequests: nil, intune: true, credentialExpiry: Date(timeIntervalSince1970: 1_900_000_000))
        #expect(Self.value(text, "scep_intune_revocations_downloaded_total") == 8)
        #expect(Self.value(text, #"scep_intune_revocations_total{result="revoked"}"#) == 2)
        #expect(Self.value(text, #"scep_intune_revocations_total{result="already-revoked"}"#) == 1)
        #expect(Self.value(text, #"scep_intune_revocations_total{result="not-found"}"#) == 3)
        #expect(Self.value(text, #"scep_intune_revocations_total{result="failed"}"#) == 1)
        #expect(Self.value(text, "scep_intune_revocation_sync_last_success_timestamp_seconds") == 1_800_000_000)
        #expect(Self.value(text, "scep_intune_client_certificate_expiry_timestamp_seconds") == 1_900_000_000)
    }

    @Test("counted only once written: a failed audit write counts as such, not as a request")
    func countingSink() throws {
        let metrics = try Metrics(path: Self.temporaryPath(), create: true)
        let inner = InMemoryAuditSink()
        let sink = CountingAuditSink(inner, metrics: metrics)
        try sink.record(Self.event("GetCACert", .served))
        inner.setFailing(true)
        #expect(throws: ServerError.self) { try sink.record(Self.event("GetCACert", .served)) }
        #expect(metrics.file.load(Metrics.Layout.requestSlot("GetCACert", .served)) == 1)
        #expect(metrics.file.load(Metrics.Layout.auditFailures) == 1)
    }

    @Test("metrics.path and health.path answer without an audit record; other paths are SCEP")
    func endpoints() throws {
        var monitoring = Configuration.Monitoring()
        monitoring.metricsPath = "/scep-metrics"
        monitoring.healthPath = "/scep-health"
        let h = try Harness(monitoring: monitoring)
        #expect(h.get("operation=GetCACaps", path: "/scep").status == 200)
        #expect(h.get("operation=GetCACert", path: "/scep/pkiclient.exe").status == 200)
        let events = h.audit.events.count
        let metrics = h.get("", path: "/scep-metrics")
        #expect(metrics.status == 200 && metrics.contentType == Metrics.contentType)
        let text = String(decoding: metrics.body, as: UTF8.self)
        #expect(Self.value(text, #"scep_requests_total{operation="GetCACaps",outcome="served"}"#) == 1)
        #expect(Self.value(text, #"scep_requests_total{operation="PKIOperation",outcome="issued"}"#) == 0)
        #expect(text.contains(#"scep_certificate_expiry_timestamp_seconds{role="ca",serial=""# + h.ca.certificate.serialNumberHex + "\"}"))
        let health = h.get("", path: "/scep-health")
        #expect(health.status == 200 && health.contentType == "application/json")
        #expect(String(decoding: health.body, as: UTF8.self) == #"{"status":"ok","checks":{"caKey":"ok","audit":"ok","store":"ok"}}"# + "\n")
        #expect(h.responder.respond(to: SCEPHTTPRequest(method: "POST", query: "", path: "/scep-health")).status == 405)
        #expect(h.audit.events.count == events)

        // The store's issued/ directory gone: 503 naming the store, nothing else.
        try FileManager.default.moveItem(atPath: h.layout.issuedPath, toPath: h.layout.issuedPath + ".away")
        let failing = h.get("", path: "/scep-health")
        #expect(failing.status == 503)
        #expect(String(decoding: failing.body, as: UTF8.self).contains(#""store":"store-not-writable""#))
    }

    @Test("a CA key that no longer matches its certificate fails the key check")
    func keyCheck() throws {
        let h = try Harness()
        #expect(h.ca.key.signsVerifiably(for: h.ca.certificate))
        #expect(!TestClient.signerKey.signsVerifiably(for: h.ca.certificate))
    }

    @Test("monitoring paths: absolute, outside the public SCEP location, distinct")
    func configuration() throws {
        for bad in ["scep-metrics", "/scep/metrics", "/SCEP", "/cgi-bin/pkiclient.exe", "/m?x=1"] {
            #expect(throws: ServerError.self) { try Configuration.load(file: nil, environment: ["SCEP_METRICS_PATH": bad]) }
        }
        let config = try Configuration.load(file: nil, environment: ["SCEP_METRICS_PATH": "/m", "SCEP_HEALTH_PATH": "/m"])
        #expect(config.problems().contains("metrics.path and health.path are both /m: give each its own path"))
        #expect(config.monitoring.enabled)
        #expect(!Configuration().monitoring.enabled)
    }

    @Test("Prometheus text: label values escaped, integers without a fraction")
    func text() {
        var out = PrometheusText()
        out.sample("x", [("a", "q\"b\\c\nd")], 3)
        out.sample("y", [], 0.25)
        #expect(out.text == "x{a=\"q\\\"b\\\\c\\nd\"} 3\ny 0.25\n")
    }
}
