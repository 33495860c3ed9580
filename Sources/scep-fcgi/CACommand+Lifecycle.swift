import SCEPStore
import ArgumentParser
import FoundationEssentials
import Glibc
import SCEPCrypto
import SCEPServer

extension CACommand {
    struct ListCommand: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List issued certificates with their status.")
        @OptionGroup var location: CALocation
        @Option(name: .long, help: "Only this status: valid, revoked, expired, withheld.") var status: String?
        @Flag(name: .long, help: "One JSON object per line.") var json = false

        func validate() throws {
            if let status, !["valid", "revoked", "expired", "withheld"].contains(status) {
                throw ValidationError("--status must be valid, revoked, expired or withheld")
            }
        }

        func run() throws {
            try operatorCommand {
                let operations = try self.location.operations()
                // 200,000 lines: written in large blocks, not one print each.
                var output = BufferedOutput()
                defer { output.flush() }
                for entry in try operations.store.certificates() where self.status == nil || entry.status.name == self.status {
                    let status = entry.status
                    var reason: String? = nil
                    var revoked: String? = nil
                    if case .revoked(let at, let why) = status {
                        revoked = RFC3339.string(at)
                        reason = (why ?? .unspecified).name
                    }
                    if self.json {
                        output.line(jsonLine([
                            ("serial", entry.serial), ("status", status.name), ("subject", entry.subject),
                            ("notAfter", RFC3339.string(entry.notAfter)), ("revokedAt", revoked), ("reason", reason),
                        ]))
                    } else {
                        output.line([entry.serial, status.name, RFC3339.string(entry.notAfter), entry.subject, revoked.map { "revoked \($0) \(reason ?? "")" } ?? ""]
                            .joined(separator: "\t").trimmedTrailingTab)
                    }
                }
            }
        }
    }

    struct PendingCommand: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "pending", abstract: "List requests waiting for approval.")
        @OptionGroup var location: CALocation
        @Flag(name: .long, help: "One JSON object per line.") var json = false

        func run() throws {
            try operatorCommand {
                for request in try self.location.operations().store.pendingRequests() {
                    if self.json {
                        print(jsonLine(
                            [("transactionID", request.transactionID), ("subject", request.subject),
                                ("received", RFC3339.string(request.received)), ("remoteAddr", request.remoteAddr)],
                            lists: [("subjectAltNames", request.subjectAltNames)]))
                    } else {
                        print([request.transactionID, RFC3339.string(request.received), request.remoteAddr, request.subject,
                            request.subjectAltNames.joined(separator: ",")].joined(separator: "\t"))
                    }
                }
            }
        }
    }

    struct ApproveCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "approve", abstract: "Issue a pending request; the client receives it with its next poll.")
        @OptionGroup var location: CALocation
        @Argument(help: "transactionID of the pending request.") var transactionID: String

        func run() throws {
            try operatorCommand {
                let certificate = try self.location.operations().approve(self.transactionID)
                print("issued \(certificate.serialNumberHex) \(certificate.subject)")
            }
        }
    }

    struct RejectCommand: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "reject", abstract: "Refuse a pending request.")
        @OptionGroup var location: CALocation
        @Argument(help: "transactionID of the pending request.") var transactionID: String

        func run() throws {
            try operatorCommand {
                try self.location.operations().reject(self.transactionID)
                print("rejected \(self.transactionID)")
            }
        }
    }

    struct RevokeCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "revoke", abstract: "Revoke a certificate and publish a new CRL.")
        @OptionGroup var location: CALocation
        @Argument(help: "Serial number in hex, as in index.txt (any case).") var serial: String
        @Option(name: .long, help: "CRLReason: \(RevocationReason.allCases.map(\.name).joined(separator: ", ")).") var reason: String?

        func validate() throws {
            if let reason, RevocationReason(name: reason) == nil {
                throw ValidationError("--reason must be one of \(RevocationReason.allCases.map(\.name).joined(separator: ", "))")
            }
            guard SerialHex.normalize(self.serial) != nil else { throw ValidationError("\(self.serial) is not a hex serial number") }
        }

        func run() throws {
            try operatorCommand {
                let (entry, crl) = try self.location.operations().revoke(serial: self.serial, reason: self.reason.flatMap(RevocationReason.init(name:)))
                print("revoked \(entry.serial) \(entry.subject)")
                if let crl { print("published CRL number \(crl.number ?? "?")") }
            }
        }
    }

    struct CRLCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "crl", abstract: "Publish DIR/crl/ca.crl (DER) and DIR/crl/ca.crl.pem now.")
        @OptionGroup var location: CALocation

        func run() throws {
            try operatorCommand {
                for (path, crl) in try self.location.operations().publishCRLs() {
                    print("published \(path) number \(crl.number ?? "?") with \(crl.revokedSerials.count) revoked, next update \(crl.nextUpdate.map(RFC3339.string) ?? "-")")
                }
            }
        }
    }

    struct RolloverCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rollover",
            abstract: "Create the next CA under DIR/next/ (GetNextCACert), or --activate it (the old CA moves to DIR/previous/).")
        @OptionGroup var location: CALocation
        @Option(name: .long, help: "Subject of the next CA, RFC 4514.") var subject: String?
        @OptionGroup var key: CAKeyOptions
        @Option(name: .long, help: "Validity in days.") var days: Int = 3650
        @Flag(name: .long, help: "Make next/ the current CA.") var activate = false

        func validate() throws {
            guard self.activate != (self.subject != nil) else { throw ValidationError("give --subject to prepare a rollover, or --activate") }
            try KeyOptions.check(keyBits: self.key.keyBits, days: self.days)
        }

        func run() throws {
            try operatorCommand {
                let operations = try self.location.operations()
                if self.activate {
                    let certificate = try operations.activateRollover()
                    print("activated \(certificate.subject) (serial \(certificate.serialNumberHex)); the previous CA is in \(operations.directory.previousPath)")
                } else {
                    let certificate = try operations.prepareRollover(subject: self.subject!, key: try self.key.spec(), days: self.days)
                    print("created \(operations.directory.nextPath)/ca.pem: \(certificate.subject)")
                    print("sha256 fingerprint: \(HexEncoding.string(certificate.fingerprint(.sha256), uppercase: true, separator: ":"))")
                }
            }
        }
    }

    struct OCSPSignerCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ocsp-signer",
            abstract: "Create (or replace) DIR/ocsp.pem and ocsp.key: the OCSP responder certificate the server signs answers with.",
            discussion: """
                A delegated responder of the current CA (id-kp-OCSPSigning, id-pkix-ocsp-nocheck, RFC 6960 §4.2.2.2),                 short-lived since nothing checks its own revocation: the server renews it once a third of its life                 is left. Without one, the CA signs OCSP answers itself.
                """)
        @OptionGroup var location: CALocation
        @Option(name: .long, help: "Validity in days (1 to 90).") var days: Int = 7

        func validate() throws {
            guard (1...90).contains(self.days) else { throw ValidationError("--days must be 1...90: a responder certificate is short-lived") }
        }

        func run() throws {
            try operatorCommand {
                let certificate = try self.location.operations().createOCSPSigner(days: self.days)
                print("created OCSP responder \(certificate.subject) (serial \(certificate.serialNumberHex)), valid until \(RFC3339.string(certificate.notAfter))")
            }
        }
    }

    struct RACommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ra", abstract: "Create an RA certificate signed by the CA (DIR/ra.pem, DIR/ra.key); CertReps are then signed by it.")
        @OptionGroup var location: CALocation
        @Option(name: .long, help: "RA subject, RFC 4514.") var subject: String
        @Option(name: .long, help: "RSA key size: 2048, 3072 or 4096.") var keyBits: Int = 2048
        @Option(name: .long, help: "Validity in days (capped at the CA's).") var days: Int = 730
        @Flag(name: .long, help: "Separate signing (ra.pem) and encryption (ra-encrypt.pem) certificates, as NDES has.")
        var separateEncryption = false

        func validate() throws { try KeyOptions.check(keyBits: self.keyBits, days: self.days) }

        func run() throws {
            try operatorCommand {
                for certificate in try self.location.operations().createRA(
                    subject: self.subject, keyBits: self.keyBits, days: self.days, separateEncryption: self.separateEncryption)
                {
                    print("created RA \(certificate.subject) (serial \(certificate.serialNumberHex))")
                }
            }
        }
    }
}

extension String {
    var trimmedTrailingTab: String {
        var s = self
        while s.hasSuffix("\t") { s.removeLast() }
        return s
    }
}
