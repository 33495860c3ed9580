import FoundationEssentials
import SCEPCrypto

/// The Prometheus text exposition (format 0.0.4) of `metrics.path`: the shared counters, plus
/// gauges read at scrape time from the CA material and the published CRLs.
extension Metrics {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Outcomes a request (rather than a `ca` command) can end with: always exposed, zero or not,
    /// so `rate()` has a series from the first scrape on.
    static let requestOutcomes: [AuditEvent.Outcome] = [.issued, .delivered, .pending, .withheld, .rejected, .failed, .served]

    func exposition(
        material: CAMaterial, crls: CRLPublisher?, pendingRequests: Int?, intune: Bool, credentialExpiry: Date? = nil, now: Date = Date()
    ) -> String {
        var out = PrometheusText()
        out.family("scep_build_info", .gauge, "scep-fcgi version (always 1).")
        out.sample("scep_build_info", [("version", SCEPFCGIVersion.current)], 1)
        out.family("scep_metrics_start_time_seconds", .gauge, "When the shared counters started (Unix time): counters count from here.")
        out.sample("scep_metrics_start_time_seconds", [], Double(self.created))

        out.family("scep_requests_total", .counter, "SCEP requests by operation and audit outcome, across every process of this CA directory.")
        for operation in Layout.operations {
            for outcome in Layout.outcomes {
                let value = self.file.load(Layout.requestSlot(operation, outcome))
                guard value > 0 || Self.requestOutcomes.contains(outcome) else { continue }
                out.sample("scep_requests_total", [("operation", operation), ("outcome", outcome.rawValue)], Double(value))
            }
        }
        out.family("scep_ca_operations_total", .counter, "scep-fcgi ca commands (approve, reject, revoke, crl, rollover, ra) by outcome.")
        for operation in Layout.caOperations {
            for outcome in Layout.outcomes {
                let value = self.file.load(Layout.caOperationSlot(operation, outcome))
                if value > 0 { out.sample("scep_ca_operations_total", [("operation", operation), ("outcome", outcome.rawValue)], Double(value)) }
            }
        }
        for (name, start, help) in [
            ("scep_rejections_total", Layout.rejections, "Requests refused (audit outcome rejected), by audit reason."),
            ("scep_failures_total", Layout.failures, "Requests the server could not complete (outcome failed or withheld), by audit reason."),
        ] {
            out.family(name, .counter, help)
            for (r, reason) in Layout.reasons.enumerated() {
                let value = self.file.load(start + r)
                if value > 0 { out.sample(name, [("reason", reason)], Double(value)) }
            }
        }
        out.family("scep_audit_write_failures_total", .counter, "Audit records that could not be written (their certificates were withheld).")
        out.sample("scep_audit_write_failures_total", [], Double(self.file.load(Layout.auditFailures)))

        self.ocspSeries(&out)
        if intune { self.intuneExposition(&out) }

        out.family("scep_certificate_expiry_timestamp_seconds", .gauge, "notAfter of the CA and RA certificates in use (Unix time), by role.")
        let roles: [(String, KeyPair?)] = [
            ("ca", material.current), ("ra", material.ra), ("ra-encryption", material.raEncryption),
            ("previous-ca", material.previous), ("next-ca", material.next),
        ]
        for (role, pair) in roles {
            guard let certificate = pair?.certificate else { continue }
            out.sample("scep_certificate_expiry_timestamp_seconds", [("role", role), ("serial", certificate.serialNumberHex)],
                certificate.notAfter.timeIntervalSince1970)
        }
        if let credentialExpiry {
            out.family("scep_intune_client_certificate_expiry_timestamp_seconds", .gauge,
                "notAfter of the certificate credential scep-fcgi authenticates to Entra with (Unix time).")
            out.sample("scep_intune_client_certificate_expiry_timestamp_seconds", [], credentialExpiry.timeIntervalSince1970)
        }
        if let crls {
            let published = CRLPublisher.Slot.all(in: material).compactMap { slot in crls.published(slot).map { (slot, $0) } }
            if !published.isEmpty {
                out.family("scep_crl_this_update_timestamp_seconds", .gauge, "thisUpdate of the published CRL (Unix time).")
                for (slot, crl) in published { out.sample("scep_crl_this_update_timestamp_seconds", [("crl", slot.rawValue)], crl.thisUpdate.timeIntervalSince1970) }
                out.family("scep_crl_next_update_timestamp_seconds", .gauge, "nextUpdate of the published CRL (Unix time).")
                for (slot, crl) in published {
                    if let next = crl.nextUpdate { out.sample("scep_crl_next_update_timestamp_seconds", [("crl", slot.rawValue)], next.timeIntervalSince1970) }
                }
                out.family("scep_crl_age_seconds", .gauge, "Seconds since the published CRL's thisUpdate.")
                for (slot, crl) in published { out.sample("scep_crl_age_seconds", [("crl", slot.rawValue)], now.timeIntervalSince(crl.thisUpdate)) }
            }
        }
        if let pendingRequests {
            out.family("scep_pending_requests", .gauge, "Requests waiting for scep-fcgi ca approve (issue.approval = manual).")
            out.sample("scep_pending_requests", [], Double(pendingRequests))
        }
        return out.text
    }

    private func intuneExposition(_ out: inout PrometheusText) {
        let histogram = "scep_intune_call_duration_seconds"
        out.family(histogram, .histogram, "Latency of calls to Entra (token), Graph (discovery) and Intune (ScepActions), by call.")
        for (c, call) in Layout.intuneCalls.enumerated() {
            let base = Layout.intune + c * Layout.intuneSlots
            let count = self.file.load(base + Layout.bucketSlots + 1)
            guard count > 0 || call == "validateRequest" || call == "successNotification" else { continue }
            self.histogramSamples(&out, histogram, labels: [("call", call)], base: base)
        }
        out.family("scep_intune_call_errors_total", .counter, "Calls to Entra, Graph or Intune that got no answer or an HTTP error status.")
        for (c, call) in Layout.intuneCalls.enumerated() {
            let base = Layout.intune + c * Layout.intuneSlots
            let errors = self.file.load(base + Layout.bucketSlots + 2)
            if errors > 0 || call == "validateRequest" { out.sample("scep_intune_call_errors_total", [("call", call)], Double(errors)) }
        }
        if let last = self.lastIntuneCall() {
            out.family("scep_intune_last_call_timestamp_seconds", .gauge, "When the most recent Intune-side call ended (Unix time).")
            out.sample("scep_intune_last_call_timestamp_seconds", [], last.at.timeIntervalSince1970)
            out.family("scep_intune_last_call_success", .gauge, "1 if the most recent Intune-side call got an answer, 0 if it failed.")
            out.sample("scep_intune_last_call_success", [], last.failed ? 0 : 1)
        }
        let sync = self.revocationSync()
        if sync.last != nil || sync.downloaded > 0 {
            out.family("scep_intune_revocations_downloaded_total", .counter, "Intune revocation requests downloaded (ours and other CAs').")
            out.sample("scep_intune_revocations_downloaded_total", [], Double(sync.downloaded))
            out.family("scep_intune_revocations_total", .counter, "Intune revocation requests for this CA, by the result uploaded.")
            for (result, count) in sync.results { out.sample("scep_intune_revocations_total", [("result", result)], Double(count)) }
            if let last = sync.last {
                out.family("scep_intune_revocation_sync_last_success_timestamp_seconds", .gauge, "When intune sync-revocations last completed without a failure (Unix time).")
                out.sample("scep_intune_revocation_sync_last_success_timestamp_seconds", [], last.timeIntervalSince1970)
            }
        }
    }
}

extension Metrics {
    /// OCSP answers by kind and their latency, once the responder has answered anything.
    fileprivate func ocspSeries(_ out: inout PrometheusText) {
        let counts = Layout.ocspKinds.enumerated().map { ($1, self.file.load(Layout.ocspAnswers + $0)) }
        guard counts.contains(where: { $0.1 > 0 }) else { return }
        out.family("scep_ocsp_responses_total", .counter, "OCSP answers by the first certificate's status, or the OCSP error status.")
        for (kind, count) in counts { out.sample("scep_ocsp_responses_total", [("status", kind)], Double(count)) }
        let histogram = "scep_ocsp_response_duration_seconds"
        out.family(histogram, .histogram, "Time to answer an OCSP request (store lookup and signature).")
        self.histogramSamples(&out, histogram, labels: [], base: Layout.ocspLatency)
    }

    /// The cumulative buckets, +Inf, sum and count of the latency histogram laid out at `base`
    /// (``Metrics/observeLatency(at:milliseconds:)`` records them).
    fileprivate func histogramSamples(_ out: inout PrometheusText, _ name: String, labels: [(String, String)], base: Int) {
        var cumulative: UInt64 = 0
        for (b, bound) in Layout.buckets.enumerated() {
            cumulative += self.file.load(base + b)
            out.sample(name + "_bucket", labels + [("le", PrometheusText.number(bound))], Double(cumulative))
        }
        let count = self.file.load(base + Layout.bucketSlots + 1)
        out.sample(name + "_bucket", labels + [("le", "+Inf")], Double(count))
        out.sample(name + "_sum", labels, Double(self.file.load(base + Layout.bucketSlots)) / 1e6)
        out.sample(name + "_count", labels, Double(count))
    }
}

/// Builds Prometheus text: `# HELP`/`# TYPE` per family, then its samples.
struct PrometheusText {
    enum Kind: String {
        case counter, gauge, histogram
    }

    private(set) var text = ""

    mutating func family(_ name: String, _ kind: Kind, _ help: String) {
        self.text += "# HELP \(name) \(help)\n# TYPE \(name) \(kind.rawValue)\n"
    }

    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: Double) {
        self.text += name
        if !labels.isEmpty { self.text += "{" + labels.map { "\($0.0)=\"\(Self.escaped($0.1))\"" }.joined(separator: ",") + "}" }
        self.text += " " + Self.number(value) + "\n"
    }

    /// Integers without a fraction (counts, Unix seconds); others in Swift's shortest round-trip form.
    static func number(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    /// The exposition format's label escapes: backslash, double quote, newline.
    static func escaped(_ value: String) -> String {
        value.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"").replacing("\n", with: "\\n")
    }
}
