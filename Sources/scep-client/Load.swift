import ArgumentParser
import CurlHTTP
import Foundation
import SCEP
import SCEPCrypto

/// Sends prebuilt PKCSReqs with C concurrent keep-alive connections, then checks every reply.
struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "POST every prebuilt request once with C concurrent connections; print JSON with enrollments/s, latency percentiles and failures.")

    @Option(help: "SCEP URL, e.g. http://127.0.0.1:8080/scep") var url: String
    @Option(help: "Directory written by prebuild.") var requestsDir: String
    @Option(help: "Concurrent connections.") var concurrency: Int = 1
    @Option(help: "Use only the first N requests (default all).") var limit: Int?

    func run() throws {
        try OpenSSL.bootstrap()
        try CurlHTTPTransport.bootstrap()
        let files = try FileManager.default.contentsOfDirectory(atPath: self.requestsDir).filter { $0.hasSuffix(".der") }.sorted()
        let names = Array(files.prefix(self.limit ?? files.count))
        guard !names.isEmpty else { throw ValidationError("no requests in \(self.requestsDir)") }
        let bodies = try names.map { Array(try Data(contentsOf: URL(fileURLWithPath: self.requestsDir).appendingPathComponent($0))) }

        // Timed phase: only HTTP. Each worker takes the next request index; one keep-alive
        // connection per worker (the transport's handle pool).
        let transport = CurlHTTPTransport(connectTimeout: 5, totalTimeout: 60, userAgent: "scep-client-load")
        let next = Counter()
        let results = ResultStore(count: bodies.count)
        let endpoint = self.url + (self.url.contains("?") ? "&" : "?") + "operation=PKIOperation"
        let started = ContinuousClock.now
        let cpuBefore = Self.cpuSeconds()
        Workers.run(self.concurrency) {
            while true {
                let index = next.take()
                guard index < bodies.count else { return }
                let t0 = ContinuousClock.now
                do {
                    let response = try transport.send(
                        HTTPRequest(method: "POST", url: endpoint, headers: [("Content-Type", "application/x-pki-message")], body: bodies[index]),
                        timeout: 60)
                    results.set(index, response, latency: ContinuousClock.now - t0)
                } catch {
                    results.set(index, nil, latency: ContinuousClock.now - t0, error: "transport: \(error)")
                }
            }
        }
        let elapsed = Self.seconds(ContinuousClock.now - started)
        // What this generator spent sending (the benchmark checks it stays below the server's).
        let clientCPU = Self.cpuSeconds() - cpuBefore

        // Untimed: decrypt and verify every reply; count failures of any kind.
        let failures = Counter()
        let reasons = ReasonCounts()
        let serials = SerialSet()
        let dir = URL(fileURLWithPath: self.requestsDir)
        DispatchQueue.concurrentPerform(iterations: bodies.count) { index in
            if let error = results.error(index) {
                failures.add(1)
                reasons.add(error)
                return
            }
            if let response = results.response(index), response.status != 200 {
                failures.add(1)
                reasons.add("http \(response.status)")
                return
            }
            guard let response = results.response(index), let request = try? PKIMessage.decode(bodies[index]),
                let pem = try? Data(contentsOf: dir.appendingPathComponent(names[index].replacingOccurrences(of: ".der", with: ".pem"))),
                let signer = try? Certificate.certificates(pemEncoded: Array(pem)).first,
                let key = try? PrivateKey(pemEncoded: Array(pem), passphrase: nil),
                let rep = try? ReceivedCertRep.open(response.body, signerCertificate: signer, signerKey: key),
                rep.status == .success, rep.transactionID == request.transactionID, rep.recipientNonce == request.senderNonce,
                // Other servers add the CA certificate; the issued one carries the request's key.
                let issued = rep.certificates.first(where: { $0.publicKey?.derEncoded == signer.publicKey?.derEncoded })
            else {
                failures.add(1)
                reasons.add("reply not a SUCCESS for this request")
                return
            }
            serials.insert(issued.serialNumberHex)
        }
        let latencies = results.latencies.sorted()
        func percentile(_ p: Double) -> Double {
            latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] * 1000
        }
        let report: [String: Any] = [
            "requests": bodies.count, "concurrency": self.concurrency, "seconds": elapsed,
            "enrollments_per_second": Double(bodies.count - failures.value) / elapsed,
            "failures": failures.value, "unique_serials": serials.count,
            "p50_ms": percentile(0.5), "p90_ms": percentile(0.9), "p99_ms": percentile(0.99),
            "failure_reasons": reasons.counts,
            "client_cpu_ms_per_request": clientCPU * 1000 / Double(bodies.count),
        ]
        print(String(decoding: try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]), as: UTF8.self))
    }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

    /// User + system CPU of this process so far (all threads).
    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}

/// GetCACert / GetCACaps requests per second over a fixed time.
struct GetLoad: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get-load", abstract: "GET an operation repeatedly; print JSON with requests/s.")

    @Option(help: "SCEP URL.") var url: String
    @Option(help: "GetCACert or GetCACaps.") var operation: String = "GetCACert"
    @Option(help: "Concurrent connections.") var concurrency: Int = 16
    @Option(help: "Seconds to run.") var duration: Double = 3

    func run() throws {
        try CurlHTTPTransport.bootstrap()
        let transport = CurlHTTPTransport(connectTimeout: 5, totalTimeout: 10, userAgent: "scep-client-load")
        let endpoint = self.url + (self.url.contains("?") ? "&" : "?") + "operation=\(self.operation)"
        let ok = Counter()
        let failed = Counter()
        let end = ContinuousClock.now + .milliseconds(Int64(self.duration * 1000))
        let started = ContinuousClock.now
        Workers.run(self.concurrency) {
            var good = 0
            var bad = 0
            while ContinuousClock.now < end {
                if let response = try? transport.send(HTTPRequest(url: endpoint), timeout: 10), response.status == 200, !response.body.isEmpty {
                    good += 1
                } else {
                    bad += 1
                }
            }
            ok.add(good)
            failed.add(bad)
        }
        let elapsed = Load.seconds(ContinuousClock.now - started)
        let report: [String: Any] = [
            "operation": self.operation, "concurrency": self.concurrency, "seconds": elapsed, "requests": ok.value,
            "failures": failed.value, "requests_per_second": Double(ok.value) / elapsed,
        ]
        print(String(decoding: try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]), as: UTF8.self))
    }
}

final class ResultStore: @unchecked Sendable {
    private let lock = NSLock()
    private var responses: [HTTPResponse?]
    private var durations: [Double] = []

    init(count: Int) { self.responses = Array(repeating: nil, count: count) }

    private var errors: [Int: String] = [:]

    func set(_ index: Int, _ response: HTTPResponse?, latency: Duration, error: String? = nil) {
        self.lock.withLock {
            self.responses[index] = response
            if let error { self.errors[index] = error }
            self.durations.append(Load.seconds(latency))
        }
    }

    func response(_ index: Int) -> HTTPResponse? { self.lock.withLock { self.responses[index] } }
    /// Why a request got no response at all (the transport's error), for the report.
    func error(_ index: Int) -> String? { self.lock.withLock { self.errors[index] } }
    var latencies: [Double] { self.lock.withLock { self.durations } }
}

/// Failure reasons and how often each occurred.
final class ReasonCounts: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [String: Int] = [:]
    func add(_ reason: String) { self.lock.withLock { self.storage[reason, default: 0] += 1 } }
    var counts: [String: Int] { self.lock.withLock { self.storage } }
}

final class SerialSet: @unchecked Sendable {
    private let lock = NSLock()
    private var set = Set<String>()
    func insert(_ s: String) { _ = self.lock.withLock { self.set.insert(s) } }
    var count: Int { self.lock.withLock { self.set.count } }
}


/// Runs `body` on `count` dedicated threads and waits for all of them. (DispatchQueue.concurrentPerform
/// would run only as many at once as there are cores, which is not a concurrency of 64.)
enum Workers {
    static func run(_ count: Int, _ body: @escaping @Sendable () -> Void) {
        let group = DispatchGroup()
        for _ in 0..<max(1, count) {
            group.enter()
            let thread = Thread {
                body()
                group.leave()
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        group.wait()
    }
}
