import FoundationEssentials
import Glibc
internal import CPostgreSQL

/// One libpq connection (`PGconn`), owned here and finished in `deinit`. Not thread-safe: a
/// ``ConnectionPool`` lends it to one thread at a time. Statements are prepared on first use
/// (libpq's extended protocol, parameters as text), once per connection.
public final class Connection {
    private let connection: OpaquePointer
    private var prepared: Set<String> = []

    /// Connects with a libpq connection string (`host=… dbname=… user=… password=…` or a
    /// `postgresql://` URI).
    public init(_ conninfo: String, connectTimeoutSeconds: Int = 5) throws {
        var info = conninfo
        if !info.contains("connect_timeout") && !info.hasPrefix("postgres") { info += " connect_timeout=\(connectTimeoutSeconds)" }
        guard let connection = PQconnectdb(info) else { throw PostgreSQLError(.connection, "out of memory") }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = Self.text(PQerrorMessage(connection))
            PQfinish(connection)
            throw PostgreSQLError(.connection, message)
        }
        self.connection = connection
        // Notices ("relation already exists, skipping") would go to stderr: warnings and up only.
        _ = try? self.execute("SET client_min_messages = warning")
    }

    deinit { PQfinish(self.connection) }

    /// Whether the connection is still usable (a broken one is dropped by the pool).
    public var isHealthy: Bool { PQstatus(self.connection) == CONNECTION_OK }

    /// Runs a statement without parameters (`BEGIN`, DDL), returning its rows.
    @discardableResult
    public func execute(_ sql: String) throws -> Rows {
        try self.rows(PQexec(self.connection, sql))
    }

    /// Runs `statement` with `parameters` (nil is SQL NULL; bytea as ``Value/bytes(_:)``).
    @discardableResult
    public func execute(_ statement: Statement, _ parameters: [Value?] = []) throws -> Rows {
        if !self.prepared.contains(statement.name) {
            let result = PQprepare(self.connection, statement.name, statement.sql, Int32(parameters.count), nil)
            _ = try self.rows(result)
            self.prepared.insert(statement.name)
        }
        let texts = parameters.map { $0?.text }
        // C strings live until PQexecPrepared returns.
        var pointers = texts.map { $0.flatMap { strdup($0) } }
        defer { for p in pointers { free(p) } }
        let result = pointers.withUnsafeMutableBufferPointer { buffer -> OpaquePointer? in
            buffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: max(buffer.count, 1)) { values in
                PQexecPrepared(self.connection, statement.name, Int32(parameters.count), parameters.isEmpty ? nil : values, nil, nil, 0)
            }
        }
        return try self.rows(result)
    }

    /// Copies a result's rows out and frees it (PQclear here, the one place).
    private func rows(_ result: OpaquePointer?) throws -> Rows {
        guard let result else { throw PostgreSQLError(.connection, Self.text(PQerrorMessage(self.connection))) }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK:
            let count = Int(PQntuples(result))
            let columns = Int(PQnfields(result))
            var rows: [[String?]] = []
            rows.reserveCapacity(count)
            for r in 0..<Int32(count) {
                rows.append((0..<Int32(columns)).map { c in PQgetisnull(result, r, c) == 1 ? nil : String(cString: PQgetvalue(result, r, c)) })
            }
            return Rows(rows: rows, affected: Int(String(cString: PQcmdTuples(result))) ?? 0)
        default:
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            let message = Self.text(PQresultErrorMessage(result))
            if !self.isHealthy || state == nil { throw PostgreSQLError(.connection, message.isEmpty ? Self.text(PQerrorMessage(self.connection)) : message) }
            throw PostgreSQLError(.statement, message, sqlState: state)
        }
    }

    private static func text(_ pointer: UnsafePointer<CChar>?) -> String {
        pointer.map { String(cString: $0) }?.trimmingNewlines ?? "unknown error"
    }
}

extension String {
    fileprivate var trimmingNewlines: String {
        var s = Substring(self)
        while s.last == "\n" || s.last == " " { s = s.dropLast() }
        return String(s)
    }
}

/// A named statement, prepared once per connection.
public struct Statement: Sendable {
    public let name: String
    public let sql: String

    public init(_ name: String, _ sql: String) {
        self.name = name
        self.sql = sql
    }
}

/// A parameter, sent as text (PostgreSQL casts it to the column's type).
public enum Value: Sendable {
    case text(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)
    /// bytea, sent in hex form (`\x…`).
    case bytes([UInt8])

    var text: String {
        switch self {
        case .text(let s): return s
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .bool(let b): return b ? "t" : "f"
        case .bytes(let b):
            let digits: [UInt8] = Array("0123456789abcdef".utf8)
            var out: [UInt8] = [UInt8(ascii: "\\"), UInt8(ascii: "x")]
            out.reserveCapacity(2 + b.count * 2)
            for byte in b {
                out.append(digits[Int(byte >> 4)])
                out.append(digits[Int(byte & 0x0F)])
            }
            return String(decoding: out, as: UTF8.self)
        }
    }
}

/// Rows as text, copied out of the libpq result.
public struct Rows: Sendable {
    public let rows: [[String?]]
    /// Rows an INSERT/UPDATE/DELETE touched.
    public let affected: Int

    public var first: [String?]? { self.rows.first }
    public var isEmpty: Bool { self.rows.isEmpty }

    /// A bytea column in hex output form (`\x…`) as bytes.
    public static func bytes(_ text: String?) -> [UInt8]? {
        guard let text, text.hasPrefix("\\x") else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity((text.utf8.count - 2) / 2)
        var high: UInt8? = nil
        for c in text.utf8.dropFirst(2) {
            let v: UInt8
            switch c {
            case 0x30...0x39: v = c - 0x30
            case 0x61...0x66: v = c - 0x61 + 10
            case 0x41...0x46: v = c - 0x41 + 10
            default: return nil
            }
            if let h = high {
                out.append(h << 4 | v)
                high = nil
            } else {
                high = v
            }
        }
        return high == nil ? out : nil
    }
}
