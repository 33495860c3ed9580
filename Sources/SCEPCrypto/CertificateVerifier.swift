import FoundationEssentials
internal import COpenSSL

/// Chain verification with OpenSSL's `X509_STORE` / `X509_verify_cert` (RFC 5280 §6): signature
/// chain to one of the trust anchors, validity at a given time, optional purpose.
///
/// Used for renewal signers (RFC 8894 §3.3.1.2: a RenewalReq is signed by a certificate this CA
/// issued) and by `check` for RA certificates. The anchors are our own CA certificates, which may
/// themselves be subordinate, so partial chains are accepted (`X509_V_FLAG_PARTIAL_CHAIN`).
///
/// Ownership: the `X509_STORE` is created and freed inside ``verify(_:at:intermediates:)``; the
/// verifier itself only holds ``Certificate`` references, so it is safe to share between threads.
public struct CertificateVerifier: Sendable {
    public enum Failure: Error, Equatable, Sendable {
        case expired
        case notYetValid
        /// Does not chain to an anchor (or a signature in the chain does not verify).
        case untrusted(String)
    }

    public let anchors: [Certificate]

    public init(anchors: [Certificate]) { self.anchors = anchors }

    /// Verifies `certificate` at `time`; returns the anchor it chains to.
    public func verify(_ certificate: Certificate, at time: Date, intermediates: [Certificate] = []) -> Result<Certificate, Failure> {
        certificate.withDecodedKey { self.verifyKeyed($0, at: time, intermediates: intermediates) }
    }

    private func verifyKeyed(_ certificate: Certificate, at time: Date, intermediates: [Certificate]) -> Result<Certificate, Failure> {
        defer { ERR_clear_error() }
        guard let store = X509_STORE_new() else { return .failure(.untrusted("X509_STORE_new")) }
        defer { X509_STORE_free(store) }
        for anchor in self.anchors { _ = X509_STORE_add_cert(store, anchor.pointer) }
        guard let context = X509_STORE_CTX_new() else { return .failure(.untrusted("X509_STORE_CTX_new")) }
        defer { X509_STORE_CTX_free(context) }
        guard let untrusted = COpenSSL_sk_X509_new_null() else { return .failure(.untrusted("sk_X509_new_null")) }
        defer { COpenSSL_sk_X509_free(untrusted) }
        for certificate in intermediates { _ = COpenSSL_sk_X509_push(untrusted, certificate.pointer) }
        guard X509_STORE_CTX_init(context, store, certificate.pointer, untrusted) == 1 else {
            return .failure(.untrusted("X509_STORE_CTX_init"))
        }
        X509_STORE_CTX_set_flags(context, UInt(X509_V_FLAG_PARTIAL_CHAIN))
        X509_STORE_CTX_set_time(context, 0, time_t(time.timeIntervalSince1970))
        if X509_verify_cert(context) == 1 {
            let chain = X509_STORE_CTX_get0_chain(context)
            let count = COpenSSL_sk_X509_num(chain)
            if let chain, count > 0, let top = COpenSSL_sk_X509_value(chain, count - 1),
                let anchor = self.anchors.first(where: { X509_cmp($0.pointer, top) == 0 })
            {
                return .success(anchor)
            }
            return .failure(.untrusted("chain does not end at an anchor"))
        }
        let code = X509_STORE_CTX_get_error(context)
        switch code {
        case X509_V_ERR_CERT_HAS_EXPIRED: return .failure(.expired)
        case X509_V_ERR_CERT_NOT_YET_VALID: return .failure(.notYetValid)
        default: return .failure(.untrusted(String(cString: X509_verify_cert_error_string(Int(code)))))
        }
    }
}
