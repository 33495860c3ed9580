/// The one error type of `DurableFiles`: a file operation that failed, in one line naming the
/// path and the system's reason.
public struct FileError: Error, CustomStringConvertible, Sendable {
    public let message: String

    public init(_ message: String) { self.message = message }

    public var description: String { self.message }
}
