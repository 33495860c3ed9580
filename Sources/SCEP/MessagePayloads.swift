import SCEPCrypto

/// IssuerAndSerialNumber (RFC 5652 §10.2.4): the messageData of GetCert and GetCRL (RFC 8894 §3.3.4).
public struct IssuerAndSerialNumber: Sendable, Equatable {
    /// The issuer Name, DER.
    public let issuer: [UInt8]
    /// The serial as upper-case hex (index.txt form).
    public let serialHex: String

    public init(issuer: [UInt8], serialHex: String) {
        self.issuer = issuer
        self.serialHex = serialHex
    }

    /// - Throws: ``SCEPError/Code/malformedPayload``.
    public init(derEncoded der: [UInt8]) throws {
        guard let node = try? DERNode.parseSingle(der), node.tag == 0x30, let fields = try? node.children(), fields.count == 2,
            fields[0].tag == 0x30, fields[1].tag == 0x02, let serial = SerialHex.string(integerContent: fields[1].value)
        else { throw SCEPError(.malformedPayload, "IssuerAndSerialNumber") }
        self.issuer = Array(fields[0].encoded)
        self.serialHex = serial
    }

    public var derEncoded: [UInt8] {
        let serial = DERNode.encode(tag: 0x02, DERNode.integerContent(SerialHex.bytes(self.serialHex) ?? [0]))
        return DERNode.encode(tag: 0x30, self.issuer + serial)
    }
}

/// IssuerAndSubject (RFC 8894 §3.3.3): the messageData of CertPoll (formerly GetCertInitial).
public struct IssuerAndSubject: Sendable, Equatable {
    public let issuer: [UInt8]
    public let subject: [UInt8]

    public init(issuer: [UInt8], subject: [UInt8]) {
        self.issuer = issuer
        self.subject = subject
    }

    /// - Throws: ``SCEPError/Code/malformedPayload``.
    public init(derEncoded der: [UInt8]) throws {
        guard let node = try? DERNode.parseSingle(der), node.tag == 0x30, let fields = try? node.children(), fields.count == 2,
            fields[0].tag == 0x30, fields[1].tag == 0x30
        else { throw SCEPError(.malformedPayload, "IssuerAndSubject") }
        self.issuer = Array(fields[0].encoded)
        self.subject = Array(fields[1].encoded)
    }

    public var derEncoded: [UInt8] { DERNode.encode(tag: 0x30, self.issuer + self.subject) }
}
