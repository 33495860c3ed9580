import Foundation
import SCEP
import Testing

@Suite("GET query and message decoding (RFC 8894 §4.1 and real clients)")
struct QueryDecodingTests {
    /// Bytes whose standard base64 uses every awkward character: `+`, `/` and `=` padding.
    static let payload: [UInt8] = [0xFB, 0xEF, 0xBE, 0xFF, 0xFF, 0xFF, 0x3E, 0x3F, 0x00, 0x01, 0x02, 0x03, 0x04]
    static let standard = Data(payload).base64EncodedString()  // "++++////Pj8AAQIDBA=="

    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let raw: String
        var testDescription: String { self.name }
    }

    static let accepted: [Case] = [
        Case(name: "ok/standard-percent-encoded", raw: percentEncode(standard)),
        Case(name: "ok/macos-unescaped-plus-slash-equals", raw: standard),
        Case(name: "ok/unescaped-plus-slash-escaped-padding", raw: standard.replacingOccurrences(of: "=", with: "%3D")),
        Case(name: "ok/url-safe-scepclient", raw: standard.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "%3D")),
        Case(name: "ok/no-padding", raw: standard.replacingOccurrences(of: "=", with: "")),
        Case(name: "ok/cisco-percent-0A-line-breaks", raw: percentEncode(String(standard.prefix(8))) + "%0A" + percentEncode(String(standard.dropFirst(8)))),
        Case(name: "ok/crlf-line-breaks", raw: String(standard.prefix(4)) + "%0D%0A" + String(standard.dropFirst(4))),
        Case(name: "ok/plus-turned-into-space", raw: standard.replacingOccurrences(of: "+", with: "%20")),
        Case(name: "ok/lower-case-escapes", raw: percentEncode(standard).replacingOccurrences(of: "%2B", with: "%2b").replacingOccurrences(of: "%2F", with: "%2f").replacingOccurrences(of: "%3D", with: "%3d")),
    ]

    @Test("accepted encodings all decode to the same bytes", arguments: accepted)
    func decodes(_ c: Case) throws {
        #expect(try SCEPQuery.decodeMessage(c.raw) == Self.payload)
    }

    @Test("fail/ cases give the right HTTP-tier error")
    func failures() {
        #expect(throws: SCEPError(.missingMessage)) { try SCEPQuery.decodeMessage("") }
        #expect(throws: SCEPError(.missingMessage)) { try SCEPQuery.decodeMessage("%0A%0D") }
        #expect(throws: SCEPError(.badEncoding)) { try SCEPQuery.decodeMessage("abc!def") }
        #expect(throws: SCEPError(.badEncoding)) { try SCEPQuery.decodeMessage("abc%zz") }
        #expect(throws: SCEPError(.badEncoding)) { try SCEPQuery.decodeMessage("abcde") }
        #expect(throws: SCEPError(.badEncoding)) { try SCEPQuery.decodeMessage("%") }
    }

    @Test("parameters in any order, first occurrence wins, unknown ones ignored")
    func parameters() {
        let q = SCEPQuery(rawQuery: "message=AB%2BC&foo=1&operation=PKIOperation&operation=GetCACert")
        #expect(q.operation == "PKIOperation")
        #expect(q.rawMessage == "AB%2BC")
        #expect(SCEPQuery(rawQuery: "operation=GetCACaps").rawMessage == nil)
        #expect(SCEPQuery(rawQuery: "operation=GetCACaps&message=").rawMessage == "")
        #expect(SCEPQuery(rawQuery: "").operation == nil)
        #expect(SCEPQuery(rawQuery: "OPERATION=getcacert").operation == "getcacert")
    }

    @Test("operations match case-insensitively, unknown ones do not")
    func operations() {
        #expect(Operation(lenient: "GetCACert") == .getCACert)
        #expect(Operation(lenient: "pkioperation") == .pkiOperation)
        #expect(Operation(lenient: "GetCert") == nil)
    }

    @Test("GetCACaps lists what is configured, one per line, and nothing more")
    func caps() {
        #expect(CACapabilities(renewal: false, nextCA: false).text == "AES\nDES3\nPOSTPKIOperation\nSCEPStandard\nSHA-1\nSHA-256\nSHA-512")
        #expect(CACapabilities(renewal: true, nextCA: false).keywords == ["AES", "DES3", "POSTPKIOperation", "Renewal", "SCEPStandard", "SHA-1", "SHA-256", "SHA-512"])
        #expect(CACapabilities(renewal: true, nextCA: true).keywords.contains("GetNextCACert"))
        #expect(!CACapabilities(renewal: false, nextCA: false).keywords.contains("Renewal"))
    }

    static func percentEncode(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? s
    }
}
