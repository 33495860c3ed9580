import FoundationEssentials
import SCEPCrypto
import SCEPServer

/// How the app proves itself to Entra in the client-credentials grant: a client secret, or a
/// certificate uploaded to the app registration whose key signs a client assertion (what
/// Microsoft recommends for daemon apps; secrets expire within two years and leak more easily).
///
/// The files are read at each token request (about once an hour per scope), so a rotated secret,
/// certificate or key is used from the next token on, without a restart.
public enum EntraCredential: Sendable {
    case secretFile(String)
    case certificate(certificateFile: String, keyFile: String)
    /// A secret already in memory (tests).
    case secret([UInt8])

    /// From `[intune]`: the certificate when its files are configured, else the secret file.
    public init(_ intune: Configuration.Intune) {
        if let certificate = intune.clientCertificateFile, let key = intune.clientKeyFile {
            self = .certificate(certificateFile: certificate, keyFile: key)
        } else {
            self = .secretFile(intune.clientSecretFile ?? "")
        }
    }

    /// Appends the proof to a client-credentials form: `client_secret`, percent-encoded straight
    /// into the form (no String of the secret is ever made), or `client_assertion_type` and
    /// `client_assertion`.
    func appendProof(to form: inout [UInt8], clientID: String, tokenURL: String, now: Date = Date()) throws {
        switch self {
        case .secret(let bytes):
            Self.appendSecret(bytes, to: &form)
        case .secretFile(let path):
            var bytes = try Self.read(path, key: "intune.client_secret_file")
            defer { OpenSSL.cleanse(&bytes) }
            Self.appendSecret(bytes, to: &form)
        case .certificate(let certificateFile, let keyFile):
            let (certificate, key) = try Self.loadPair(certificateFile: certificateFile, keyFile: keyFile)
            let assertion = try ClientAssertion.make(certificate: certificate, key: key, clientID: clientID, audience: tokenURL, now: now)
            form.append(contentsOf: "&client_assertion_type=".utf8)
            FormEncoding.append(bytes: Array(ClientAssertion.type.utf8), to: &form)
            form.append(contentsOf: "&client_assertion=".utf8)
            form.append(contentsOf: assertion.utf8)  // base64url and dots: nothing to escape
        }
    }

    private static func appendSecret(_ secret: [UInt8], to form: inout [UInt8]) {
        form.reserveCapacity(form.count + 15 + secret.count * 3)
        form.append(contentsOf: "&client_secret=".utf8)
        FormEncoding.append(bytes: secret, to: &form)
    }

    private static func read(_ path: String, key: String) throws -> [UInt8] {
        do { return try SecretFile.read(path, key: key) } catch let error as ServerError {
            throw IntuneError(.credentialUnreadable, error.message)
        }
    }

    /// The certificate and its key, checked to belong together and to be RSA (what Entra takes).
    static func loadPair(certificateFile: String, keyFile: String) throws -> (Certificate, PrivateKey) {
        guard let pem = FileManager.default.contents(atPath: certificateFile),
            let certificate = try? Certificate.certificates(pemEncoded: Array(pem)).first
        else { throw IntuneError(.credentialUnreadable, "intune.client_certificate_file: \(certificateFile) holds no PEM certificate") }
        var keyPEM = try Self.read(keyFile, key: "intune.client_key_file")
        defer { OpenSSL.cleanse(&keyPEM) }
        guard let key = try? PrivateKey(pemEncoded: keyPEM, passphrase: nil) else {
            throw IntuneError(.credentialUnreadable, "intune.client_key_file: \(keyFile) holds no unencrypted PEM private key")
        }
        guard key.algorithm == .rsa else { throw IntuneError(.credentialUnreadable, "intune.client_key_file: Entra certificate credentials are RSA keys") }
        guard key.matches(certificate) else {
            throw IntuneError(.credentialUnreadable, "intune.client_key_file does not belong to intune.client_certificate_file")
        }
        return (certificate, key)
    }

    /// When the certificate credential's certificate expires (nil for a secret or an unreadable
    /// file): read from the certificate file alone, for every metrics scrape.
    public var certificateExpiry: Date? {
        guard case .certificate(let certificateFile, _) = self, let pem = FileManager.default.contents(atPath: certificateFile) else { return nil }
        return (try? Certificate.certificates(pemEncoded: Array(pem)).first)?.notAfter
    }

    /// For `check --intune`: which credential, and when its certificate expires.
    public func describe() throws -> (text: String, certificateExpiry: Date?) {
        switch self {
        case .secret, .secretFile:
            return ("client secret", nil)
        case .certificate(let certificateFile, let keyFile):
            let (certificate, _) = try Self.loadPair(certificateFile: certificateFile, keyFile: keyFile)
            let thumbprint = HexEncoding.string(certificate.fingerprint(.sha1), uppercase: true)
            return ("certificate \(thumbprint) (\(certificate.subject)), expires \(RFC3339.string(certificate.notAfter))", certificate.notAfter)
        }
    }
}

/// The client assertion of the certificate credential: a JWT (RFC 7519) signed RS256 with the
/// certificate's key, as Entra's client-credentials grant takes it (RFC 7523 §2.2).
enum ClientAssertion {
    static let type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    /// Entra refuses long-lived assertions; a few minutes is what Microsoft's libraries use.
    static let lifetime: Double = 300

    struct Header: Encodable {
        let alg = "RS256"
        let typ = "JWT"
        /// base64url SHA-256 thumbprint of the DER certificate (RFC 7515 §4.1.8), which Entra
        /// looks up among the app's uploaded certificates.
        let thumbprint: String
        enum CodingKeys: String, CodingKey { case alg, typ, thumbprint = "x5t#S256" }
    }

    struct Claims: Encodable {
        /// The token endpoint the assertion is sent to.
        let aud: String
        let iss: String
        let sub: String
        let jti: String
        let nbf: Int64
        let iat: Int64
        let exp: Int64
    }

    static func make(certificate: Certificate, key: PrivateKey, clientID: String, audience: String, now: Date) throws -> String {
        let seconds = Int64(now.timeIntervalSince1970)
        let header = Header(thumbprint: Self.base64URL(certificate.fingerprint(.sha256)))
        // nbf a minute back: a clock slightly ahead of Entra's must not make the assertion "not yet valid".
        let claims = Claims(
            aud: audience, iss: clientID, sub: clientID, jti: UUID().uuidString.lowercased(), nbf: seconds - 60, iat: seconds,
            exp: seconds + Int64(Self.lifetime))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        let signingInput = Self.base64URL(Array(try encoder.encode(header))) + "." + Self.base64URL(Array(try encoder.encode(claims)))
        let signature = try key.signSHA256(Array(signingInput.utf8))
        return signingInput + "." + Self.base64URL(signature)
    }

    /// RFC 4648 §5 without padding (RFC 7515 §2).
    static func base64URL(_ bytes: [UInt8]) -> String {
        var text = Data(bytes).base64EncodedString()
        while text.hasSuffix("=") { text.removeLast() }
        return text.replacing("+", with: "-").replacing("/", with: "_")
    }
}
