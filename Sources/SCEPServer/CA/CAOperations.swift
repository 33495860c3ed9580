import FoundationEssentials
import Glibc
import SCEPCrypto
import SCEPStore
import DurableFiles

/// What the `scep-fcgi ca …` commands do to a CA directory, safe while servers serve from it:
/// every change goes through the store's locks and atomic renames, and servers pick up new key
/// material on their own (``CAMaterialSource``). Every change writes an audit line.
public struct CAOperations: Sendable {
    public let directory: CADirectory
    public let store: any CertificateStore
    public let audit: any AuditSink
    public let policy: IssuancePolicy
    public let crls: CRLPublisher
    /// Reads encrypted keys and encrypts the keys this creates.
    let passphraseFile: String?

    public init(
        directory: CADirectory, store: any CertificateStore, passphraseFile: String?, audit: any AuditSink, policy: IssuancePolicy, crlValidityHours: Int
    ) {
        self.directory = directory
        self.passphraseFile = passphraseFile
        self.store = store
        self.audit = audit
        self.policy = policy
        self.crls = CRLPublisher(directory: directory, validityHours: crlValidityHours)
    }

    public func material(servable: Bool = true) throws -> CAMaterial {
        switch self.directory.loadMaterial(passphraseFile: self.passphraseFile, servable: servable) {
        case .success(let material): return material
        case .failure(let problems): throw ServerError(.caMaterial, problems.lines.joined(separator: "; "))
        }
    }

    private func event(_ operation: String, _ outcome: AuditEvent.Outcome) -> AuditEvent {
        var event = AuditEvent()
        event.requestID = AuditEvent.newRequestID()
        event.operation = operation
        event.method = "CLI"
        event.remoteAddr = ProcessInfo.processInfo.environment["SUDO_USER"] ?? ProcessInfo.processInfo.environment["USER"] ?? "local"
        event.outcome = outcome
        return event
    }

    private func auditCreated(_ operation: String, _ certificate: Certificate) throws {
        var event = self.event(operation, .created)
        event.subject = certificate.subject
        event.serial = certificate.serialNumberHex
        event.sha256 = HexEncoding.string(certificate.fingerprint(.sha256))
        try self.audit.record(event)
    }

    // MARK: approval

    /// Issues a pending request through the one issuance path (``Issuance``); the client's next
    /// CertPoll (or retransmission) receives it.
    public func approve(_ transactionID: String) throws -> Certificate {
        guard let pending = try self.store.pendingRequest(transactionID) else {
            throw ServerError(.store, "no pending request with transactionID \(transactionID) (scep-fcgi ca pending lists them)")
        }
        let csr = try CertificateSigningRequest(derEncoded: pending.csr)
        var event = self.event("ca-approve", .approved)
        event.transactionID = transactionID
        event.subject = csr.subject
        event.subjectAltNames = pending.subjectAltNames.isEmpty ? nil : pending.subjectAltNames
        let record = RequestRecord(sink: self.audit, diagnostics: Diagnostics(), event: event)
        let key = TransactionKey(transactionID: transactionID, keyHash: pending.keyHash)
        // An operator approves a request, not the SID it names: the same rule as at enrollment.
        let sid = try self.policy.mappedSID(try self.policy.requestedSID(of: csr), vouched: false, renewing: nil)
        let issued = try Issuance(store: self.store, policy: self.policy, diagnostics: Diagnostics()).issue(
            IssuanceRequest(csr: csr, securityIdentifier: self.policy.sidExtension(for: sid)), by: try self.material().current, transaction: key, record: record, outcome: .approved,
            deliver: { _ in })
        guard issued.transactionRecorded else {
            throw ServerError(.store, "certificate \(issued.certificate.serialNumberHex) issued and audited, but transaction \(transactionID) not updated: approve again")
        }
        return issued.certificate
    }

    /// Refuses a pending request; its CertPoll and retransmissions get FAILURE badRequest.
    public func reject(_ transactionID: String) throws {
        guard let pending = try self.store.pendingRequest(transactionID) else {
            throw ServerError(.store, "no pending request with transactionID \(transactionID)")
        }
        var event = self.event("ca-reject", .rejected)
        event.transactionID = transactionID
        event.subject = pending.subject
        event.reason = "operator-rejected"
        try self.audit.record(event)
        try self.store.reject(pending.key)
    }

    // MARK: revocation and CRL

    /// The one revocation path (``Revocation``), its audit lines naming `operation` and this operator.
    public func revocation(operation: String) throws -> Revocation {
        Revocation(store: self.store, audit: self.audit, crls: self.crls, material: try self.material(), event: { self.event(operation, .revoked) })
    }

    /// Revokes a certificate and publishes the CRL of the CA that issued it.
    public func revoke(serial: String, reason: RevocationReason?) throws -> (CertificateEntry, CertificateRevocationList?) {
        let outcome = try self.revocation(operation: "ca-revoke").revoke([Revocation.Request(serial: serial, reason: reason)])
        guard let result = outcome.results.first else { throw ServerError(.store, "no result") }
        switch result.status {
        case .revoked:
            if let crlError = outcome.crlError { throw ServerError(.store, "revoked \(serial), but the CRL was not published: \(crlError)") }
            guard let entry = result.entry else { throw ServerError(.store, "no entry for \(serial)") }
            return (entry, outcome.crls.first?.1)
        case .alreadyRevoked: throw ServerError(.store, "certificate \(result.entry?.serial ?? serial) is already revoked")
        case .unknown: throw ServerError(.store, "no certificate with serial \(serial) in the store")
        case .failed(let why): throw ServerError(.store, "revoke \(serial): \(why)")
        }
    }

    /// Signs and publishes a new CRL of the current CA (and of the previous one during a rollover).
    public func publishCRLs() throws -> [(String, CertificateRevocationList)] {
        let material = try self.material()
        var out: [(String, CertificateRevocationList)] = []
        for slot in CRLPublisher.Slot.all(in: material) {
            if let crl = try self.crls.publish(slot, material: material, store: self.store, fresh: true) {
                var event = self.event("ca-crl", .published)
                event.serial = crl.number
                try self.audit.record(event)
                out.append((self.crls.derPath(slot), crl))
            }
        }
        return out
    }

    // MARK: rollover (RFC 8894 §3.5.2 GetNextCACert, §4.7)

    /// Creates the next CA under `next/`; GetNextCACert serves it from now on.
    /// The next CA may change key type: RSA to EC needs an RA (reissued by the new CA at activation).
    public func prepareRollover(subject: String, key keySpec: CAKeySpec, days: Int) throws -> Certificate {
        let nextDirectory = self.directory.nextPath
        guard access(nextDirectory + "/ca.pem", F_OK) != 0 else {
            throw ServerError(.caMaterial, "\(nextDirectory)/ca.pem already exists: activate it (--activate) or remove \(nextDirectory)")
        }
        let material = try self.material()  // the directory must be loadable before it is changed
        let (certificate, key) = try CADirectory.makeCA(subject: subject, key: keySpec, days: days, token: self.directory.token)
        guard key.algorithm == .rsa || material.ra != nil else {
            throw ServerError(.caMaterial, "an EC CA needs an RSA RA to receive SCEP requests: create one first (scep-fcgi ca ra)")
        }
        guard mkdir(nextDirectory, 0o755) == 0 || errno == EEXIST else { throw ServerError(.caMaterial, "create \(nextDirectory): \(errnoText())") }
        try self.writePair(KeyPair(certificate: certificate, key: key), certificate: nextDirectory + "/ca.pem", key: nextDirectory + "/ca.key")
        try self.auditCreated("ca-rollover", certificate)
        return certificate
    }

    /// Makes `next/` the current CA and keeps the old one under `previous/` (an older `previous/`
    /// moves to `retired/`). RA certificates are reissued by the new CA for the same RA keys.
    public func activateRollover() throws -> Certificate {
        let material = try self.material()
        guard let next = material.next else { throw ServerError(.caMaterial, "no next CA: run scep-fcgi ca rollover --subject … first") }
        let fm = FileManager.default
        if fm.fileExists(atPath: self.directory.previousPath) {
            let retired = self.directory.path + "/retired"
            try fm.createDirectory(atPath: retired, withIntermediateDirectories: true)
            let target = retired + "/" + IndexTime.string(Date())
            guard rename(self.directory.previousPath, target) == 0 else { throw ServerError(.caMaterial, "retire previous/: \(errnoText())") }
        }
        // previous/ is assembled aside and renamed in, so it appears whole.
        let staging = self.directory.path + "/.previous-\(getpid())"
        try? fm.removeItem(atPath: staging)
        try fm.createDirectory(atPath: staging, withIntermediateDirectories: false)
        try self.writePair(material.current, certificate: staging + "/ca.pem", key: staging + "/ca.key")
        if fm.fileExists(atPath: self.directory.chainPath) {
            guard rename(self.directory.chainPath, staging + "/chain.pem") == 0 else { throw ServerError(.caMaterial, "move chain.pem: \(errnoText())") }
        }
        guard rename(staging, self.directory.previousPath) == 0 else { throw ServerError(.caMaterial, "create previous/: \(errnoText())") }
        // The old CA's CRL keeps its numbering as the previous CA's.
        for suffix in [".crl", ".crl.pem", ".crlnumber"] {
            rename(self.directory.crlPath + "/ca" + suffix, self.directory.crlPath + "/previous" + suffix)
        }
        // Key first: a server reloading in between sees a key that does not match and keeps the old
        // material. The key is a file or, on a token, its URI; the other form of the old key goes.
        let nextKey = self.directory.nextPath + "/ca.key"
        let (moved, stale) = access(nextKey, F_OK) == 0
            ? (nextKey, CADirectory.uriPath(ofKey: self.directory.keyPath))
            : (CADirectory.uriPath(ofKey: nextKey), self.directory.keyPath)
        let target = moved == nextKey ? self.directory.keyPath : CADirectory.uriPath(ofKey: self.directory.keyPath)
        guard rename(moved, target) == 0 else { throw ServerError(.caMaterial, "activate next/: \(errnoText())") }
        unlink(stale)
        guard rename(self.directory.nextPath + "/ca.pem", self.directory.certificatePath) == 0 else {
            throw ServerError(.caMaterial, "activate next/: \(errnoText())")
        }
        if fm.fileExists(atPath: self.directory.nextPath + "/chain.pem") {
            rename(self.directory.nextPath + "/chain.pem", self.directory.chainPath)
        }
        rmdir(self.directory.nextPath)
        AtomicFile.syncDirectory(self.directory.path)
        let newCA = KeyPair(certificate: next.certificate, key: next.key)
        for (pair, path) in [(material.ra, self.directory.raCertificatePath), (material.raEncryption, self.directory.raEncryptionCertificatePath)] {
            guard let pair else { continue }
            let reissued = try self.issueRA(key: pair.key, subject: pair.certificate.subject, keyUsage: Self.keyUsageText(pair.certificate),
                days: max(1, Int(pair.certificate.notAfter.timeIntervalSince(pair.certificate.notBefore) / 86400)), by: newCA)
            try AtomicFile.replace(path, contents: Array(reissued.pemEncoded.utf8), mode: 0o644, sync: true)
        }
        try self.auditCreated("ca-rollover-activate", next.certificate)
        _ = try self.publishCRLs()
        return next.certificate
    }

    // MARK: RA

    /// Creates `ra.pem`/`ra.key` (digitalSignature + keyEncipherment), or with
    /// `separateEncryption` a signing RA plus `ra-encrypt.pem`/`.key` (keyEncipherment only), as
    /// NDES has (RFC 8894 §3.5.2).
    public func createRA(subject: String, keyBits: Int, days: Int, separateEncryption: Bool) throws -> [Certificate] {
        let ca = try self.material(servable: false).current
        for path in [self.directory.raCertificatePath, self.directory.raKeyPath, self.directory.raEncryptionCertificatePath]
        where access(path, F_OK) == 0 {
            throw ServerError(.caMaterial, "\(path) already exists; remove the RA files first to replace the RA")
        }
        var roles: [(String, String, String)] = []
        if separateEncryption {
            roles.append(("critical,digitalSignature", self.directory.raCertificatePath, self.directory.raKeyPath))
            roles.append(("critical,keyEncipherment", self.directory.raEncryptionCertificatePath, self.directory.raEncryptionKeyPath))
        } else {
            roles.append(("critical,digitalSignature,keyEncipherment", self.directory.raCertificatePath, self.directory.raKeyPath))
        }
        // The encryption RA first: a signing RA alone would briefly claim both roles.
        var created: [Certificate] = []
        for (keyUsage, certificatePath, keyPath) in roles.reversed() {
            let key = try PrivateKey.generateRSA(bits: keyBits)
            let roleSubject = separateEncryption && keyUsage.contains("keyEncipherment") ? Self.encryptionSubject(subject) : subject
            let certificate = try self.issueRA(key: key, subject: roleSubject, keyUsage: keyUsage, days: days, by: ca)
            try self.writePair(KeyPair(certificate: certificate, key: key), certificate: certificatePath, key: keyPath)
            created.insert(certificate, at: 0)
        }
        for certificate in created { try self.auditCreated("ca-ra", certificate) }
        return created
    }

    /// "CN=SCEP RA,O=Example" → "CN=SCEP RA Encryption,O=Example": the two RA certificates get
    /// distinct names, as NDES's "CEP Encryption" and "Exchange Enrollment Agent" have.
    static func encryptionSubject(_ subject: String) -> String { Self.serviceSubject(subject, "Encryption") }

    /// The subject with `role` appended to its leading CN ("CN=Example CA,O=Example", "OCSP
    /// Responder" → "CN=Example CA OCSP Responder,O=Example"), or a CN of its own in front.
    static func serviceSubject(_ subject: String, _ role: String) -> String {
        guard subject.uppercased().hasPrefix("CN=") else { return "CN=\(role)," + subject }
        let comma = subject.firstIndex(of: ",") ?? subject.endIndex
        return subject[..<comma] + " " + role + subject[comma...]
    }

    private static func keyUsageText(_ certificate: Certificate) -> String {
        var names: [String] = []
        if certificate.permits(.digitalSignature) { names.append("digitalSignature") }
        if certificate.permits(.keyEncipherment) { names.append("keyEncipherment") }
        return "critical," + (names.isEmpty ? "digitalSignature,keyEncipherment" : names.joined(separator: ","))
    }

    /// A certificate for one of the CA's own services (RA, OCSP responder), never past the CA's.
    private func issueRA(
        key: PrivateKey, subject: String, keyUsage: String, days: Int, by ca: KeyPair, extendedKeyUsage: [String] = [], ocspNoCheck: Bool = false
    ) throws -> Certificate {
        let csr = try CertificateSigningRequest.make(subject: subject, key: key, challengePassword: nil)
        let now = Date()
        let notAfter = min(now.addingTimeInterval(Double(days) * 86400), ca.certificate.notAfter)
        var profile = IssuanceProfile(keyUsage: keyUsage, extendedKeyUsage: extendedKeyUsage, signatureDigest: ca.key.signatureDigest)
        profile.ocspNoCheck = ocspNoCheck
        return try CertificateBuilder.issue(
            csr: csr, issuer: ca.certificate, issuerKey: ca.key, serial: try SerialNumber.random(), notBefore: now.addingTimeInterval(-300),
            notAfter: notAfter, profile: profile)
    }

    // MARK: OCSP (RFC 6960)

    /// Creates or replaces `ocsp.pem`/`ocsp.key`: a delegated responder of the current CA with
    /// id-kp-OCSPSigning and id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2), short-lived because nothing
    /// checks its own revocation; a new key each time. The key type follows the CA's (EC P-256 for
    /// an EC CA, RSA-2048 otherwise). Servers pick it up on their own.
    public func createOCSPSigner(days: Int) throws -> Certificate {
        let ca = try self.material(servable: false).current
        let key = ca.key.algorithm == .ec ? try PrivateKey.generateEC(curve: .p256) : try PrivateKey.generateRSA(bits: 2048)
        let subject = Self.serviceSubject(ca.certificate.subject, "OCSP Responder")
        let certificate = try self.issueRA(
            key: key, subject: subject, keyUsage: "critical,digitalSignature", days: days, by: ca, extendedKeyUsage: ["OCSPSigning"], ocspNoCheck: true)
        // Key first: a server reloading in between sees a key that does not match and keeps the old pair.
        var passphrase = try self.passphraseFile.map { try SecretFile.read($0, key: "ca.key_passphrase_file", allowEmpty: true) }
        defer { if passphrase != nil { OpenSSL.cleanse(&passphrase!) } }
        try AtomicFile.replace(self.directory.ocspKeyPath, contents: try key.pemEncoded(passphrase: passphrase), mode: 0o600, sync: true)
        try AtomicFile.replace(self.directory.ocspCertificatePath, contents: Array(certificate.pemEncoded.utf8), mode: 0o644, sync: true)
        try self.auditCreated("ca-ocsp-signer", certificate)
        return certificate
    }

    /// Renews the delegated responder once less than a third of its life is left (the server's
    /// housekeeping calls this; nil when nothing was due).
    public func renewOCSPSignerIfDue(now: Date = Date()) throws -> Certificate? {
        guard let signer = try self.material().ocspSigner else { return nil }
        let life = signer.certificate.notAfter.timeIntervalSince(signer.certificate.notBefore)
        guard signer.certificate.notAfter.timeIntervalSince(now) < life / 3 else { return nil }
        return try self.createOCSPSigner(days: max(1, Int((life / 86400).rounded())))
    }

    /// Key (0600, encrypted when a passphrase is configured) then certificate, each created whole.
    /// A key on a token is not written: `KEY.uri` says where it is.
    private func writePair(_ pair: KeyPair, certificate: String, key: String) throws {
        if let uri = pair.key.tokenURI {
            try AtomicFile.create(CADirectory.uriPath(ofKey: key), contents: Array((uri + "\n").utf8), mode: 0o644)
        } else {
            var passphrase = try self.passphraseFile.map { try SecretFile.read($0, key: "ca.key_passphrase_file", allowEmpty: true) }
            defer { if passphrase != nil { OpenSSL.cleanse(&passphrase!) } }
            try AtomicFile.create(key, contents: try pair.key.pemEncoded(passphrase: passphrase), mode: 0o600)
        }
        try AtomicFile.create(certificate, contents: Array(pair.certificate.pemEncoded.utf8), mode: 0o644)
    }
}
