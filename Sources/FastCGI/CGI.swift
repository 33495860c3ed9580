import FoundationEssentials
import Glibc

/// Plain CGI (RFC 3875): a web server runs the program once per request, with the request in
/// the environment and standard input, and reads the response from standard output.
public enum CGI {
    /// True when the environment looks like a CGI invocation.
    public static var isInvocation: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["GATEWAY_INTERFACE"] != nil && env["REQUEST_METHOD"] != nil
    }

    /// Answers the one request of this process.
    public static func serveOne(maxBodyBytes: Int, handler: (GatewayRequest) -> GatewayResponse) {
        let env = ProcessInfo.processInfo.environment
        let declared = Int(env["CONTENT_LENGTH"] ?? "") ?? 0
        // RFC 3875 §4.2: the server need not close standard input, so read CONTENT_LENGTH bytes only.
        var remaining = declared
        let (body, tooLarge) = BodyReader.read(declared: declared, limit: maxBodyBytes) { buffer, count in
            guard remaining > 0 else { return 0 }
            let n = read(0, buffer, min(count, remaining))
            if n > 0 { remaining -= n }
            return n
        }
        let response = handler(GatewayRequest(params: env, body: body, bodyTooLarge: tooLarge))
        for part in [response.head, response.body] {
            var offset = 0
            while offset < part.count {
                let n = part[offset...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                offset += n
            }
        }
    }
}
