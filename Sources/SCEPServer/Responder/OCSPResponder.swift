import FoundationEssentials
import Glibc
import SCEPCrypto
import SCEPStore

/// The OCSP responder (RFC 6960, with the RFC 5019 lightweight profile), answered by the same
/// program at `ocsp.path`: POST `application/ocsp-request`, or GET `{path}/{url-encoded base64}`.
///
/// Statuses come from the store, so a certificate is `revoked` the moment `ca revoke` or the
/// Intune sync has run. No audit line per query (they are frequent); the metrics count them.
/// Every answer is an OCSP response with HTTP 200, never a 500: a request that cannot be read is
/// `malformedRequest`, one for a CA that is not ours `unauthorized`, a signing failure
/// `internalError` (RFC 6960 §2.3).
struct OCSPResponder: Sendable {
    let path: String
    let validityMinutes: Int
    let store: any CertificateStore
    let metrics: Metrics?
    let diagnostics: Diagnostics

    static let contentType = "application/ocsp-response"
    /// RFC 5019 §5 clients send one CertID; a few more are allowed, never an unbounded list.
    static let maxCertificateIDs = 16
    /// A request is a few hundred bytes; anything near this is not an OCSP request.
    static let maxRequestBytes = 16 * 1024

    func handles(_ path: String?) -> Bool {
        guard let path else { return false }
        return path == self.path || path.hasPrefix(self.path + "/")
    }

    func respond(to request: SCEPHTTPRequest, material: CAMaterial, now: Date = Date()) -> SCEPHTTPResponse {
        let started = ContinuousClock.now
        let (response, kind) = self.answer(request, material: material, now: now)
        self.metrics?.countOCSP(kind, durationMs: AuditEvent.milliseconds(since: started))
        return response
    }

    private func answer(_ request: SCEPHTTPRequest, material: CAMaterial, now: Date) -> (SCEPHTTPResponse, String) {
        let der: [UInt8]
        switch request.method {
        case "POST":
            guard !request.bodyTooLarge, request.body.count <= Self.maxRequestBytes else { return self.failure(.malformedRequest) }
            der = request.body
        case "GET":
            guard let decoded = self.requestFromURI(request) else { return self.failure(.malformedRequest) }
            der = decoded
        default:
            return (SCEPHTTPResponse.text(405, "method not allowed: use GET or POST"), "malformedRequest")
        }
        guard let parsed = try? OCSPRequest(derEncoded: der) else { return self.failure(.malformedRequest) }
        let ids = parsed.certificateIDs
        guard !ids.isEmpty, ids.count <= Self.maxCertificateIDs else { return self.failure(.malformedRequest) }
        // The CA the first of our CertIDs names signs (or its delegated responder); CertIDs of
        // another CA in the same request get `unknown` (that signer has no authority for them).
        let matched = ids.map { id in material.authorities.first { id.isIssued(by: $0.certificate) } }
        guard let authority = matched.compactMap({ $0 }).first else { return self.failure(.unauthorized) }
        let statuses = zip(ids, matched).map { id, issuer -> (OCSPCertificateID, OCSPCertificateStatus) in
            guard let issuer, issuer.certificate === authority.certificate else { return (id, .unknown) }
            return (id, self.status(of: id, issuedBy: authority, material: material))
        }
        let signer = authority.certificate === material.current.certificate ? (material.ocspSigner ?? authority) : authority
        let nextUpdate = now.addingTimeInterval(Double(self.validityMinutes) * 60)
        let body: [UInt8]
        do {
            body = try OCSPResponseBuilder.response(
                to: parsed, statuses: statuses, thisUpdate: now, nextUpdate: nextUpdate, signer: signer.certificate, key: signer.key)
        } catch {
            self.diagnostics.log(.error, "OCSP response not signed: \(error)")
            return self.failure(.internalError)
        }
        var response = SCEPHTTPResponse(status: 200, contentType: Self.contentType, body: body)
        // RFC 5019 §6: GET answers may be cached until nextUpdate; a nonce makes one unique.
        if request.method == "GET" && !parsed.hasNonce {
            response.headers = Self.cachingHeaders(body: body, thisUpdate: now, nextUpdate: nextUpdate, now: now)
        } else {
            response.headers = [.init(name: "Cache-Control", value: "no-store")]
        }
        return (response, statuses.first?.1.name ?? "unknown")
    }

    private func failure(_ failure: OCSPFailure) -> (SCEPHTTPResponse, String) {
        (SCEPHTTPResponse(status: 200, contentType: Self.contentType, body: OCSPResponseBuilder.failure(failure)), failure.name)
    }

    /// A CertID of `authority`: its certificate's standing in the store. A certificate the store
    /// holds but that another CA signed (same serial space) is `unknown`; a withheld one, never
    /// delivered, is `revoked` since its notBefore, so it cannot be used if it ever leaked.
    private func status(of id: OCSPCertificateID, issuedBy authority: KeyPair, material: CAMaterial) -> OCSPCertificateStatus {
        guard let serial = id.serialHex, let stored = try? self.store.certificate(serial: serial),
            material.authority(of: stored.certificate)?.certificate === authority.certificate
        else { return .unknown }
        switch stored.status {
        case .valid, .expired: return .good
        case .revoked(let at, let reason): return .revoked(at: at, reason: reason)
        case .withheld: return .revoked(at: stored.certificate.notBefore, reason: nil)
        }
    }

    /// The DER of a GET: the raw request target after `path/`, percent-decoded, then base64 (RFC
    /// 5019 §5, RFC 6960 Appendix A.1). Read from REQUEST_URI: nginx's decoded `$uri` merges the
    /// slashes base64 contains. Some clients leave `/`, `+` and `=` unencoded; both forms decode.
    private func requestFromURI(_ request: SCEPHTTPRequest) -> [UInt8]? {
        guard let raw = request.requestURI ?? request.path else { return nil }
        let target = String(raw.prefix { $0 != "?" })
        guard target.hasPrefix(self.path + "/"), target.utf8.count <= Self.maxRequestBytes * 2 else { return nil }
        let encoded = target.dropFirst(self.path.count + 1)
        guard let text = Self.percentDecoded(encoded), !text.isEmpty else { return nil }
        return Data(base64Encoded: text).map { Array($0) }
    }

    static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next(), let low = iterator.next(), let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
            else { return nil }
            bytes.append(value)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    /// RFC 5019 §6.2: max-age up to nextUpdate, Last-Modified thisUpdate, Expires nextUpdate, and
    /// an ETag of the response.
    static func cachingHeaders(body: [UInt8], thisUpdate: Date, nextUpdate: Date, now: Date) -> [SCEPHTTPResponse.HeaderField] {
        let maxAge = max(0, Int(nextUpdate.timeIntervalSince(now)))
        let tag = (try? DigestAlgorithm.sha256.hash(body)).map { HexEncoding.string(Array($0.prefix(16))) } ?? "0"
        return [
            .init(name: "Cache-Control", value: "max-age=\(maxAge), public, no-transform, must-revalidate"),
            .init(name: "Last-Modified", value: HTTPDate.string(thisUpdate)),
            .init(name: "Expires", value: HTTPDate.string(nextUpdate)),
            .init(name: "ETag", value: "\"\(tag)\""),
        ]
    }
}

/// IMF-fixdate (RFC 9110 §5.6.7), as HTTP dates are written: `Sun, 06 Nov 1994 08:49:37 GMT`.
enum HTTPDate {
    static func string(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
