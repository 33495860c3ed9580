import FoundationEssentials
import Glibc
import SCEPCrypto
import SCEPLocking
import SCEPStore

/// `health.path`: 200 only if the next enrollment could be served (the CA key signs, the audit
/// log and the store take writes, and in Intune mode the last Intune call did not fail), else 503.
///
/// It writes nothing (no audit line, no test file) and names problems only by fixed codes: the
/// endpoint is for load balancers and monitors, often reachable by more than the metrics are.
final class HealthCheck: Sendable {
    struct Result: Sendable {
        /// Check name → `ok` or a fixed problem code, in a fixed order.
        let checks: [(String, String)]
        var healthy: Bool { self.checks.allSatisfy { $0.1 == "ok" } }

        var json: String {
            var checks = JSONObjectWriter()
            for (name, value) in self.checks { checks.add(name, value) }
            var json = JSONObjectWriter()
            json.add("status", self.healthy ? "ok" : "fail")
            json.addRaw("checks", checks.finish())
            return json.finish() + "\n"
        }
    }

    /// A signature costs about a millisecond with RSA-2048 (more with an HSM): its verdict is kept
    /// this long per process, so a flood of health requests costs no more than GetCACaps.
    static let keyCheckInterval: Duration = .seconds(10)
    private let keyVerdict = Locked<(at: ContinuousClock.Instant, problem: String?)?>(nil)

    func run(material: CAMaterial, audit: any AuditSink, store: any CertificateStore, metrics: Metrics?, intune: Bool) -> Result {
        var checks: [(String, String)] = []
        checks.append(("caKey", self.keyProblem(material) ?? "ok"))
        checks.append(("audit", audit.healthProblem() ?? "ok"))
        checks.append(("store", store.healthProblem() ?? "ok"))
        if intune {
            // "Did not fail": no call yet is healthy (a fresh server); the verdict is every
            // process's latest call, read from the shared counters.
            checks.append(("intune", metrics?.lastIntuneCall().map { $0.failed ? "last-call-failed" : "ok" } ?? "ok"))
        }
        return Result(checks: checks)
    }

    private func keyProblem(_ material: CAMaterial) -> String? {
        let now = ContinuousClock.now
        if let verdict = self.keyVerdict.withLock({ $0 }), now - verdict.at < Self.keyCheckInterval { return verdict.problem }
        // The issuer and the CertRep signer must both sign; a certificate whose key cannot is as
        // bad as an unreadable one.
        var pairs = [material.current]
        if let ra = material.ra { pairs.append(ra) }
        let problem = pairs.allSatisfy { $0.key.signsVerifiably(for: $0.certificate) } ? nil : "sign-failed"
        self.keyVerdict.withLock { $0 = (now, problem) }
        return problem
    }
}
