import FoundationEssentials
import Glibc
import SCEP
import SCEPCrypto

/// What a request may ask for beyond its names: a SID for strong certificate mapping, and the
/// validity its Intune profile chose.
extension IssuancePolicy {
    /// The SID a request names, and whether it named it in a subjectAltName URI (the form Intune's
    /// validateRequest checks against the profile).
    struct RequestedSID: Equatable {
        let sid: String
        let inURI: Bool
    }

    /// The SID of the request (SID extension or Intune URI subjectAltName), checked for form: every
    /// one must be well formed and all must agree. Before the challenge, like the other names.
    func requestedSID(of csr: CertificateSigningRequest) throws -> RequestedSID? {
        let (fromURIs, fromExtensions) = csr.requestedSecurityIdentifiers
        let all = fromURIs + fromExtensions
        guard let first = all.first else { return nil }
        guard all.allSatisfy(SecurityIdentifier.isWellFormed) else { throw SCEPError(.sidInvalid) }
        guard all.allSatisfy({ $0 == first }) else { throw SCEPError(.sidInvalid, "the request names two different SIDs") }
        return RequestedSID(sid: first, inURI: !fromURIs.isEmpty)
    }

    /// The SID a certificate for this request may map to (KB5014754), or nil for none.
    ///
    /// A SID names a Windows account, a domain administrator's as easily as a laptop's: a requester
    /// who may choose it can log on as anyone (the ESC6 pattern). So a SID is issued only when
    /// someone vouched for it:
    /// - `vouched`: the challenge validator checked the request's names against what it expected
    ///   (Intune's validateRequest compares the subjectAltNames with the profile). It vouches for
    ///   the URI subjectAltName only; a SID extension alone is not something it checks.
    /// - a renewal keeps the SID of the certificate it renews, and may not add or change one.
    /// - `issue.allow_requested_sid = true`: the operator vouches for every requester.
    ///
    /// - Throws: `sid-not-validated` for a SID nobody vouched for.
    func mappedSID(_ requested: RequestedSID?, vouched: Bool, renewing: Certificate?) throws -> String? {
        if let renewing {
            let kept = renewing.securityIdentifiers.first { SecurityIdentifier.isWellFormed($0) }
            guard requested == nil || requested?.sid == kept else {
                throw SCEPError(.sidNotValidated, kept == nil ? "the renewal adds a SID" : "the renewal changes the SID")
            }
            return kept
        }
        guard let requested else { return nil }
        guard (vouched && requested.inURI) || self.allowRequestedSID else {
            throw SCEPError(.sidNotValidated, vouched ? "a SID extension without the validated URI" : "no validator vouched for the request's names")
        }
        return requested.sid
    }

    /// The SID for the SID security extension, per `issue.sid_extension`.
    func sidExtension(for mapped: String?) -> String? { self.sidExtension == .auto ? mapped : nil }
}

/// The validity an enrollment asks for (enrollment name/value pairs `ValidityPeriod` and
/// `ValidityPeriodUnits`, as Intune profiles and AD CS clients send them).
enum RequestedValidity: Equatable, Sendable {
    enum Unit: String, Sendable, CaseIterable {
        case years = "Years", months = "Months", weeks = "Weeks", days = "Days", hours = "Hours"
    }

    case period(Unit, Int)
    /// Pairs that are there but cannot be used; the reason goes to the audit line.
    case malformed(String)

    /// Reads the pairs in either order; nil when the request has neither.
    init?(_ csr: CertificateSigningRequest) {
        let pairs = csr.nameValuePairs
        guard !pairs.isEmpty else { return nil }
        var period: [String] = []
        var units: [String] = []
        var unreadable = false
        for pair in pairs {
            guard let pair else {
                unreadable = true
                continue
            }
            switch pair.name.lowercased() {
            case "validityperiod": period.append(pair.value)
            case "validityperiodunits": units.append(pair.value)
            default: continue  // other properties (CertificateTemplate, …) are not ours to read
            }
        }
        if period.isEmpty && units.isEmpty {
            if unreadable { self = .malformed("unreadable-pair") } else { return nil }
            return
        }
        guard period.count == 1, units.count == 1 else {
            self = .malformed(period.count > 1 || units.count > 1 ? "repeated-pair" : "incomplete-pair")
            return
        }
        guard let unit = Unit.allCases.first(where: { $0.rawValue.lowercased() == period[0].trimmedWhitespace.lowercased() }) else {
            self = .malformed("unknown-period")
            return
        }
        let digits = units[0].trimmedWhitespace
        guard !digits.isEmpty, digits.count <= 6, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let count = Int(digits), count > 0 else {
            self = .malformed("bad-units")
            return
        }
        self = .period(unit, count)
    }

    /// For the audit line: `2 Years`, or nil when malformed.
    var text: String? {
        guard case .period(let unit, let count) = self else { return nil }
        return "\(count) \(unit.rawValue)"
    }

    /// `start` plus the period, in UTC calendar terms (a month is a calendar month).
    func end(from start: Date) -> Date? {
        guard case .period(let unit, let count) = self else { return nil }
        var seconds = time_t(start.timeIntervalSince1970)
        var parts = tm()
        guard gmtime_r(&seconds, &parts) != nil else { return nil }
        let n = Int32(count)
        switch unit {
        case .years: parts.tm_year += n
        case .months: parts.tm_mon += n
        case .weeks: parts.tm_mday += 7 * n
        case .days: parts.tm_mday += n
        case .hours: parts.tm_hour += n
        }
        let end = timegm(&parts)
        guard end != -1 else { return nil }
        return Date(timeIntervalSince1970: Double(end) + start.timeIntervalSince1970.truncatingRemainder(dividingBy: 1))
    }
}
