import ArgumentParser
import Foundation
import SCEP
import SCEPCrypto

/// A scriptable SCEP client for tests and benchmarks: builds PKCSReq messages exactly as chosen
/// (cipher, digest, key transport, message type) and opens CertRep replies.
struct SCEPClientTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scep-client",
        abstract: "Build SCEP PKCSReq messages and open CertRep replies (test and benchmark tool).",
        subcommands: [MakeRequest.self, MakeQuery.self, OpenReply.self, Prebuild.self, Load.self, GetLoad.self])
}

SCEPClientTool.main()
