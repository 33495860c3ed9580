import FoundationEssentials

/// `scep-fcgi audit verify`: walks audit files in order and checks that every line is one JSON
/// object whose `prev` is the link of the line before it (``AuditChain``), across file boundaries.
/// Reports the first line that breaks the chain: edited, removed, inserted, reordered or torn.
public struct AuditVerification: Sendable {
    public struct Report: Sendable, Equatable {
        public var files = 0
        public var lines = 0
        /// Lines before the first chained one (written by a version without the chain).
        public var unchainedPrefix = 0
        /// Where the first chained line points: ``AuditChain/genesis`` for a log's very first line,
        /// or the link of a line in an earlier file that was not given.
        public var startsAt: String?
        /// The link of the last line: what the next line (or the next file) must name.
        public var lastLink: String?
        /// `FILE:LINE: what`, for the first break; nil when the chain holds.
        public var problem: String?
    }

    struct Line: Decodable {
        let prev: String?
    }

    let chain: AuditChain
    /// The link of "no line before" (a log's very first line).
    public static let genesis = AuditChain.genesis

    /// - Parameter key: the `audit.chain_key_file` secret, when the chain was written with one.
    public init(key: [UInt8]?) { self.chain = AuditChain(logPath: "", key: key) }

    /// Verifies `files` (name, contents) as one chain, oldest first.
    public func verify(_ files: [(name: String, contents: [UInt8])]) -> Report {
        var report = Report()
        var previous: (link: String, place: String)? = nil
        var chained = false
        for (name, contents) in files {
            report.files += 1
            guard contents.isEmpty || contents.last == 0x0A else {
                report.problem = "\(name): the last line is incomplete (torn write or truncation)"
                return report
            }
            var number = 0
            var start = contents.startIndex
            while start < contents.endIndex {
                let end = contents[start...].firstIndex(of: 0x0A)!
                let line = contents[start...end]
                start = end + 1
                number += 1
                report.lines += 1
                let place = "\(name):\(number)"
                guard let decoded = try? JSONDecoder().decode(Line.self, from: Data(line)) else {
                    report.problem = "\(place): not a JSON object (edited or torn)"
                    return report
                }
                if let prev = decoded.prev {
                    if let previous, prev != previous.link {
                        report.problem = "\(place): prev does not name \(previous.place) (a line was removed, changed, inserted or reordered there)"
                        return report
                    }
                    if !chained { report.startsAt = prev }
                    chained = true
                } else if chained {
                    report.problem = "\(place): no prev in a chained log (line inserted)"
                    return report
                } else {
                    report.unchainedPrefix += 1
                }
                previous = (self.chain.link(of: line), place)
            }
        }
        report.lastLink = previous?.link
        return report
    }
}
