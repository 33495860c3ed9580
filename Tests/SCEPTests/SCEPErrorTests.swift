import SCEP
import Testing

@Suite("SCEPError answers")
struct SCEPErrorTests {
    @Test("failures that can follow a key transport look alike to the client (no padding oracle)")
    func envelopeContentErrors() {
        let codes = SCEPError.Code.allCases.filter { SCEPError($0).isEnvelopeContentError }
        #expect(Set(codes) == [.decryptFailed, .malformedCSR, .malformedPayload])
        #expect(Set(codes.map { SCEPError($0).failInfo }) == [.badMessageCheck])
        let text = SCEPError(.decryptFailed).failInfoText
        #expect(codes.allSatisfy { SCEPError($0).failInfoText == text })
        // No other answer shares that text, so it names exactly this group.
        #expect(SCEPError.Code.allCases.filter { SCEPError($0).failInfoText == text }.count == codes.count)
    }

    @Test("the clock checks are badTime, the signer's keyUsage badMessageCheck, the CSR's extensions badRequest")
    func newCodes() {
        #expect(SCEPError(.signerNotValid).failInfo == .badTime && SCEPError(.signingTimeSkew).failInfo == .badTime)
        #expect(SCEPError(.signerKeyUsage).failInfo == .badMessageCheck)
        #expect(SCEPError(.csrCARequested).failInfo == .badRequest && SCEPError(.csrCriticalExtension).failInfo == .badRequest)
        for code in [SCEPError.Code.signerNotValid, .signingTimeSkew, .signerKeyUsage, .csrCARequested, .csrCriticalExtension] {
            #expect(SCEPError(code).httpStatus == nil && SCEPError(code).failInfoText != "internal error, see server logs")
        }
    }
}
