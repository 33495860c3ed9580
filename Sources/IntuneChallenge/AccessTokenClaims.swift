import FoundationEssentials

/// Reads claims of an Entra access token for diagnostics (`check --intune`), never to decide
/// anything: the signature is not verified here, the resource server (Intune) verifies it.
///
/// An access token is a JWT (RFC 7519): three base64url parts; the second is the JSON claims set.
enum AccessTokenClaims {
    struct Claims: Decodable {
        let roles: [String]?
    }

    /// The `roles` claim (empty when absent, as Entra leaves it out without consent), or nil
    /// when the token is not a JWT.
    static func roles(of token: String) -> [String]? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let payload = Self.base64URLDecoded(parts[1]),
            let claims = try? JSONDecoder().decode(Claims.self, from: Data(payload))
        else { return nil }
        return claims.roles ?? []
    }

    /// RFC 4648 §5 base64url without padding, as JWTs use it (RFC 7515 §2).
    static func base64URLDecoded(_ text: Substring) -> [UInt8]? {
        var base64 = String(text).replacing("-", with: "+").replacing("_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        return Data(base64Encoded: String(base64)).map { Array($0) }
    }
}
