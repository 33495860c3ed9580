/// messageType (RFC 8894 §3.2.1.2), a decimal PrintableString.
public enum MessageType: Int, Sendable, CaseIterable {
    case certRep = 3
    case renewalReq = 17
    case updateReq = 18
    case pkcsReq = 19
    case certPoll = 20
    case getCert = 21
    case getCRL = 22

    public var name: String {
        switch self {
        case .certRep: return "CertRep"
        case .renewalReq: return "RenewalReq"
        case .updateReq: return "UpdateReq"
        case .pkcsReq: return "PKCSReq"
        case .certPoll: return "CertPoll"
        case .getCert: return "GetCert"
        case .getCRL: return "GetCRL"
        }
    }
}

/// pkiStatus (RFC 8894 §3.2.1.3).
public enum PKIStatus: Int, Sendable {
    case success = 0
    case failure = 2
    case pending = 3
}

/// failInfo (RFC 8894 §3.2.1.4).
public enum FailInfo: Int, Sendable, CaseIterable {
    case badAlg = 0
    case badMessageCheck = 1
    case badRequest = 2
    case badTime = 3
    case badCertID = 4

    public var name: String {
        switch self {
        case .badAlg: return "badAlg"
        case .badMessageCheck: return "badMessageCheck"
        case .badRequest: return "badRequest"
        case .badTime: return "badTime"
        case .badCertID: return "badCertId"
        }
    }
}

/// The SCEP attribute OIDs (RFC 8894 §3.2.1, arc 2.16.840.1.113733.1.9) and failInfoText.
public enum SCEPObjectIdentifier {
    public static let messageType = "2.16.840.1.113733.1.9.2"
    public static let pkiStatus = "2.16.840.1.113733.1.9.3"
    public static let failInfo = "2.16.840.1.113733.1.9.4"
    public static let senderNonce = "2.16.840.1.113733.1.9.5"
    public static let recipientNonce = "2.16.840.1.113733.1.9.6"
    public static let transactionID = "2.16.840.1.113733.1.9.7"
    /// id-pkix 24 1 (RFC 8894 §3.2.1.4.5).
    public static let failInfoText = "1.3.6.1.5.5.7.24.1"
}
