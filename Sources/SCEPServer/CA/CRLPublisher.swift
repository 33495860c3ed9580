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
///
/// Several hosts sharing a store (PostgreSQL): the store keeps each issuer's newest CRL
/// (``CertificateStore/keepCRL(_:number:issuer:)``). Before signing, a publisher takes the kept
/// one when it is current (signed by this CA, listing exactly the revocations the store has for
/// it, younger than half the validity) and only writes it to its own `crl/`; else one host at a time signs
/// (``CertificateStore/exclusively(_:_:)``, job `crl-ISSUER`) and keeps what it signed. So one host
/// generates and the others serve the newest, with one number sequence.
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
        return !self.isCurrent(crl, latestRevocation: latestRevocation, now: now)
    }

    /// Younger than half the validity, and signed after the newest revocation (a cheap first look:
    /// a CRL's times have whole seconds, a revocation's may not, so ``publish`` compares contents).
    private func isCurrent(_ crl: CertificateRevocationList, latestRevocation: Date?, now: Date) -> Bool {
        if !self.isYoung(crl, now: now) { return false }
        if let latestRevocation, latestRevocation > crl.thisUpdate { return false }
        return true
    }

    private func isYoung(_ crl: CertificateRevocationList, now: Date) -> Bool {
        now.timeIntervalSince(crl.thisUpdate) <= Double(self.validityHours) * 3600 / 2
    }

    /// How long a publisher that must have a CRL (`wait`) waits for another host signing one.
    static let otherHostPatience: TimeInterval = 10

    /// Writes the CRL of `slot`: the one the store keeps when it is current (another host signed
    /// it), else one built and signed now (always with `fresh`). Returns nil when `wait` is false
    /// and another process or host is at it.
    @discardableResult
    public func publish(
        _ slot: Slot, material: CAMaterial, store: any CertificateStore, now: Date = Date(), wait: Bool = true, fresh: Bool = false
    ) throws -> CertificateRevocationList? {
        guard let authority = slot.authority(in: material) else { return nil }
        guard mkdir(self.directory.crlPath, 0o755) == 0 || errno == EEXIST else {
            throw ServerError(.store, "create \(self.directory.crlPath): \(errnoText())")
        }
        let held: RunLock?
        do { held = try RunLock(path: self.directory.crlPath + "/.lock", wait: wait, mode: 0o644) } catch { throw ServerError(.store, "\(error)") }
        guard let lock = held else { return nil }
        defer { lock.release() }
        let issuer = IssuerID(authority: authority.certificate)
        let deadline = Date().addingTimeInterval(Self.otherHostPatience)
        while true {
            if !fresh, let kept = try self.kept(issuer, by: authority, listing: try self.revoked(for: authority, material: material, store: store), store: store, now: now) {
                try self.write(kept, slot, authority)
                return kept
            }
            let signed = try store.exclusively("crl-\(issuer.hex)") { () throws -> CertificateRevocationList in
                let entries = try self.revoked(for: authority, material: material, store: store)
                // Another host may have kept a current one while this one waited for the job.
                if !fresh, let kept = try self.kept(issuer, by: authority, listing: entries, store: store, now: now) { return kept }
                let number = try store.nextCRLNumber(issuer: issuer, atLeast: self.numberFloor(slot))
                let crl = try CertificateRevocationList.build(
                    issuer: authority.certificate, key: authority.key, number: number, thisUpdate: now,
                    nextUpdate: now.addingTimeInterval(Double(self.validityHours) * 3600), entries: entries, digest: authority.key.signatureDigest)
                try store.keepCRL(crl.derEncoded, number: number, issuer: issuer)
                return crl
            }
            if let signed {
                try self.write(signed, slot, authority)
                return signed
            }
            // Another host is signing: take its CRL once kept, or give up this turn.
            guard wait, Date() < deadline else {
                if wait { throw ServerError(.store, "another host has been signing the CRL for over \(Int(Self.otherHostPatience)) s") }
                return nil
            }
            usleep(100_000)
        }
    }

    /// The store's newest CRL of `issuer` when `authority` signed it, it is young, and it lists
    /// exactly `entries`, the revoked certificates the store has for `authority` now (read only
    /// when there is such a CRL to compare).
    private func kept(
        _ issuer: IssuerID, by authority: KeyPair, listing entries: @autoclosure () throws -> [RevokedCertificate],
        store: any CertificateStore, now: Date
    ) throws -> CertificateRevocationList? {
        guard let der = try store.newestCRL(issuer: issuer), let crl = try? CertificateRevocationList(derEncoded: der),
            crl.isSigned(by: authority.certificate), self.isYoung(crl, now: now)
        else { return nil }
        return Set(crl.revokedSerials) == Set(try entries().map(\.serialHex)) ? crl : nil
    }

    /// `crl/SLOT.crl`, `.crl.pem` and `.cer`, unless the CRL there is this one already.
    private func write(_ crl: CertificateRevocationList, _ slot: Slot, _ authority: KeyPair) throws {
        if let published = self.published(slot), published.derEncoded == crl.derEncoded { return }
        try AtomicFile.replace(self.derPath(slot), contents: crl.derEncoded, mode: 0o644, sync: true)
        try AtomicFile.replace(self.pemPath(slot), contents: Array(crl.pemEncoded.utf8), mode: 0o644, sync: true)
        // The issuer certificate in DER beside its CRL, for AIA caIssuers URLs (RFC 5280 §4.2.2.1).
        try AtomicFile.replace(self.certificatePath(slot), contents: authority.certificate.derEncoded, mode: 0o644, sync: false)
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
