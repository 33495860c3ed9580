/// Whitespace trimming without Foundation (the server links FoundationEssentials only, which has no
/// `trimmingCharacters(in:)`). Visible inside this package only.
package extension StringProtocol {
    var trimmedWhitespace: String {
        String(self.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
