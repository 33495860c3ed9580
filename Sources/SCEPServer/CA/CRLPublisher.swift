import FoundationEssentials
import Glibc
import SCEPCrypto
import SCEPStore
import DurableFiles

/// Writes and reads the CRLs of a CA directory (RFC 5280 §5): `crl/ca.crl` (DER),
/// `crl/ca.crl.pem` and the CA certificate `crl/ca.cer` (DER) for the current CA, `crl/previous.crl(.pem)` for the previous one during a
/// rollover, each replaced atomically. The cRLNumber comes from the store
/// (``CertificateStore/nextCRLNumber(issuer:atLeast:)``), per issuing key, so it only ever
/// increases, whichever process or host publishes; `crl/NAME.crlnumber` of older versions is
/// read once as a floor.
///
/// One process publishes at a time (`flock` on `crl/.lock`); a server that finds the lock taken
/// skips its turn and keeps serving.
public struct CRLPublisher: Sendable {
    public enum Slot: String, Sendable, CaseIterable {
        case current = "ca"
        case previous

        /// The slots `material` has a CA for: the current one, and the previous one after a rollover.
        public static func all(in material: CAMaterial) -> [Slot] { material.previous == nil ? [.current] : [.current, .previous] }

        /// The slot of one of `material`'s authorities (its KeyPairs, compared by identity).
        public init(of authority: KeyPair, in material: CAMaterial) {
            self = material.previous.map { $0.certificate === authority.certificate } == true ? .previous : .current
        }

        func authority(in material: CAMaterial) -> KeyPair? { self == .current ? material.current : material.previous }
    }

    /// When the newest revocation in `store` happened (nil: none, or the store cannot be read).
    public static func latestRevocation(in store: any CertificateStore) -> Date? {
        (try? store.latestRevocation()) ?? nil
    }

    public let directory: CADirectory
    public let validityHours: Int

    public init(directory: CADirectory, validityHours: Int) {
        self.directory = directory
        self.validityHours = validityHours
    }

    public func derPath(_ slot: Slot) -> String { "\(self.directory.crlPath)/\(slot.rawValue).crl" }
    public func pemPath(_ slot: Slot) -> String { "\(self.directory.crlPath)/\(slot.rawValue).crl.pem" }
    /// `crl/ca.cer`: the CA certificate, DER, for `issue.aia_url`.
    public func certificatePath(_ slot: Slot) -> String { "\(self.directory.crlPath)/\(slot.rawValue).cer" }
    private func numberPath(_ slot: Slot) -> String { "\(self.directory.crlPath)/\(slot.rawValue).crlnumber" }

    /// The published CRL, if any.
    public func published(_ slot: Slot) -> CertificateRevocationList? {
        FileManager.default.contents(atPath: self.derPath(slot)).flatMap { try? CertificateRevocationList(derEncoded: Array($0)) }
    }

    /// Whether `slot`'s CRL is missing, older than half its validity, or older than a revocation.
    public func needsRefresh(_ slot: Slot, latestRevocation: Date?, now: Date = Date()) -> Bool {
        guard let crl = self.published(slot) else { return true }
        if now.timeIntervalSince(crl.thisUpdate) > Double(self.validityHours) * 3600 / 2 { return true }
        if let latestRevocation, latestRevocation > crl.thisUpdate { return true }
        return false
    }

    /// Builds, signs and writes the CRL of `slot`. Returns nil when `wait` is false and another
    /// process holds the lock.
    @discardableResult
    public func publish(
        _ slot: Slot, material: CAMaterial, store: any CertificateStore, now: Date = Date(), wait: Bool = true
    ) throws -> CertificateRevocationList? {
        guard let authority = slot.authority(in: material) else { return nil }
        guard mkdir(self.directory.crlPath, 0o755) == 0 || errno == EEXIST else {
            throw ServerError(.store, "create \(self.directory.crlPath): \(errnoText())")
        }
        let held: RunLock?
        do { held = try RunLock(path: self.directory.crlPath + "/.lock", wait: wait, mode: 0o644) } catch { throw ServerError(.store, "\(error)") }
        guard let lock = held else { return nil }
        defer { lock.release() }
        let entries = try self.revoked(for: authority, material: material, store: store)
        let number = try store.nextCRLNumber(issuer: IssuerID(authority: authority.certificate), atLeast: self.numberFloor(slot))
        let crl = try CertificateRevocationList.build(
            issuer: authority.certificate, key: authority.key, number: number, thisUpdate: now,
            nextUpdate: now.addingTimeInterval(Double(self.validityHours) * 3600), entries: entries, digest: authority.key.signatureDigest)
        try AtomicFile.replace(self.derPath(slot), contents: crl.derEncoded, mode: 0o644, sync: true)
        try AtomicFile.replace(self.pemPath(slot), contents: Array(crl.pemEncoded.utf8), mode: 0o644, sync: true)
        // The issuer certificate in DER beside its CRL, for AIA caIssuers URLs (RFC 5280 §4.2.2.1).
        try AtomicFile.replace(self.certificatePath(slot), contents: authority.certificate.derEncoded, mode: 0o644, sync: false)
        return crl
    }

    /// The revoked certificates `authority` issued, by the issuer the store recorded. An entry
    /// without one (recorded before the store kept issuers, or recovered after a crash) is
    /// matched by its certificate's signature; one whose certificate is missing too (imported by
    /// hand) is listed by the current CA.
    private func revoked(for authority: KeyPair, material: CAMaterial, store: any CertificateStore) throws -> [RevokedCertificate] {
        let id = IssuerID(authority: authority.certificate)
        return try store.revoked().compactMap { entry in
            if let issuer = entry.issuer {
                guard issuer == id else { return nil }
            } else {
                let issuer = try store.certificate(serial: entry.serial).flatMap { material.authority(of: $0.certificate) } ?? material.current
                guard issuer.certificate === authority.certificate else { return nil }
            }
            return RevokedCertificate(serialHex: entry.serial, revokedAt: entry.revokedAt, reason: entry.reason)
        }
    }

    /// The least number the next CRL may take: after the one published, and after an older
    /// version's `crl/NAME.crlnumber`.
    private func numberFloor(_ slot: Slot) -> UInt64 {
        let text = FileManager.default.contents(atPath: self.numberPath(slot)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let legacy = UInt64(text.trimmedWhitespace, radix: 16) ?? 1
        let published = (self.published(slot)?.number).flatMap { UInt64($0, radix: 16) }.map { $0 + 1 } ?? 1
        return max(legacy, published)
    }
}
