import CLibPQ
import CSignals
import Foundation

/// The rows of one query, all values in text format.
public struct PGResult: Sendable {
  public var columns: [String]
  /// Rows of nullable text values.
  public var values: [[String?]]
  /// Rows affected (for commands).
  public var affected: Int

  /// Rows with name-based access.
  public var rows: [PGRow] { values.map { PGRow(columns: columns, values: $0) } }
  /// The first value of the first row.
  public var scalar: String? { values.first?.first ?? nil }
}

/// One row with typed accessors.
public struct PGRow: Sendable {
  public var columns: [String]
  /// Values in text format.
  public var values: [String?]

  /// The text value of a column (nil for NULL or unknown column).
  public subscript(_ name: String) -> String? {
    guard let i = columns.firstIndex(of: name) else { return nil }
    return values[i]
  }
  /// A non-null string ("" for NULL).
  public func string(_ name: String) -> String { self[name] ?? "" }
  public func int(_ name: String) -> Int? { self[name].flatMap { Int($0) } }
  /// A boolean value (`t`/`f`).
  public func bool(_ name: String) -> Bool { self[name] == "t" || self[name] == "true" }
  /// The strings of a JSON array column: select it as `array_to_json(...)`, so that quoting
  /// and NULL are the JSON parser's business. NULL elements are left out (the catalog arrays
  /// belt reads have none); a NULL or non-array value reads as [].
  public func array(_ name: String) -> [String] {
    guard let text = self[name], let items = (try? JSONParser.parse(text))?.arrayValue else {
      return []
    }
    return items.compactMap(\.stringValue)
  }
}

/// A synchronous libpq connection, owned by one thread.
public final class PGConnection {
  private var conn: OpaquePointer?
  private var cancel: OpaquePointer?
  private var cancelSlot: Int32 = -1
  /// "src as root": names the connection in errors.
  public let label: String
  /// Set for the connections of an operation: every statement that changes the server gets a
  /// line in the audit log.
  public var audit: AuditContext?
  /// The COPY FROM STDIN in progress, for its audit line.
  private var copyIn: (sql: String, start: Date, bytes: Int)?
  /// What this session may change of the logging settings (``QuietLogging``), read once.
  var quietAccess: QuietLogging.Access?
  /// The libpq handle (nil once closed), for ``QuietLogging``.
  var rawConnection: OpaquePointer? { conn }

  /// Connects. `conninfo` contains the password; it is never logged or put in an error.
  /// - Throws: ``PGError`` of kind `.connection` or `.authentication`.
  public init(conninfo: String, label: String) throws {
    self.label = label
    let c = PQconnectdb(conninfo + " application_name='belt'")
    conn = c
    guard let c, PQstatus(c) == CONNECTION_OK else {
      let raw = c.map { String(cString: PQerrorMessage($0)) } ?? "out of memory"
      let msg = PGConnection.cleanConnectMessage(raw, conninfo: conninfo)
      if let c { PQfinish(c) }
      conn = nil
      let auth =
        raw.contains("password authentication failed") || raw.contains("no password supplied")
        || raw.contains("no pg_hba.conf entry") || raw.contains("does not exist")
      throw PGError(
        kind: auth ? .authentication : .connection, label: label, message: msg, sqlState: nil,
        detail: nil, hint: nil, query: nil)
    }
    PQsetNoticeProcessor(c, { _, _ in }, nil)
    if let cc = PQgetCancel(c) {
      cancel = cc
      cancelSlot = belt_register_cancel(cc)
    }
  }

  deinit { close() }

  /// Closes the connection. Idempotent.
  public func close() {
    if cancelSlot >= 0 {
      belt_unregister_cancel(cancelSlot)
      cancelSlot = -1
    }
    if let cancel {
      PQfreeCancel(cancel)
      self.cancel = nil
    }
    if let conn {
      PQfinish(conn)
      self.conn = nil
    }
  }

  /// libpq's message, one line, without anything that could echo a secret.
  static func cleanConnectMessage(_ raw: String, conninfo: String) -> String {
    var lines = raw.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
    lines = lines.filter { !$0.isEmpty }
    var msg = lines.joined(separator: "; ")
    // Defence in depth: never let a password that libpq might quote back through.
    for part in conninfo.components(separatedBy: " password=").dropFirst() {
      if let pw = ConnInfo.firstValue(part), pw.count >= 3 {
        msg = msg.replacingOccurrences(of: pw, with: "****")
      }
    }
    return msg.isEmpty ? "connection failed" : msg
  }

  private func live() throws -> OpaquePointer {
    guard let conn else {
      throw PGError(
        kind: .client, label: label, message: "connection is closed", sqlState: nil, detail: nil,
        hint: nil, query: nil)
    }
    return conn
  }

  /// The server's major version number (e.g. 15).
  public var serverVersion: Int { conn.map { Int(PQserverVersion($0)) / 10000 } ?? 0 }

  /// Runs one statement with bound text parameters (nil = NULL).
  /// - Throws: ``PGError`` with SQLSTATE and the statement text.
  @discardableResult
  public func query(_ sql: String, _ params: [String?] = []) throws -> PGResult {
    try audited(sql, params) { try run(sql, params) }
  }

  /// Runs `body` and writes the audit line of `sql` when it changes the server.
  private func audited(_ sql: String, _ params: [String?], _ body: () throws -> PGResult) throws
    -> PGResult
  {
    guard let audit, Audit.changes(sql) else { return try body() }
    let t0 = Date()
    do {
      let r = try body()
      audit.record(sql, params: params, start: t0, error: nil, rows: r.affected, returned: r.values)
      return r
    } catch {
      audit.record(sql, params: params, start: t0, error: error)
      throw error
    }
  }

  private func run(_ sql: String, _ params: [String?]) throws -> PGResult {
    let c = try live()
    let res: OpaquePointer?
    if params.isEmpty {
      res = PQexecParams(c, sql, 0, nil, nil, nil, nil, 0)
    } else {
      let cStrings: [UnsafeMutablePointer<CChar>?] = params.map { $0.flatMap { strdup($0) } }
      defer { cStrings.forEach { free($0) } }
      let values: [UnsafePointer<CChar>?] = cStrings.map { $0.map { UnsafePointer($0) } }
      res = values.withUnsafeBufferPointer { buf in
        PQexecParams(c, sql, Int32(params.count), nil, buf.baseAddress, nil, nil, 0)
      }
    }
    return try consume(res, sql: sql)
  }

  /// Runs a script of several statements with no parameters (simple protocol).
  @discardableResult
  public func exec(_ sql: String) throws -> PGResult {
    try audited(sql, []) {
      let c = try live()
      return try consume(PQexec(c, sql), sql: sql)
    }
  }

  private func consume(_ res: OpaquePointer?, sql: String) throws -> PGResult {
    guard let res else { throw clientError(sql: sql) }
    defer { PQclear(res) }
    let status = PQresultStatus(res)
    switch status {
    case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY, PGRES_COPY_OUT, PGRES_COPY_IN:
      let nf = Int(PQnfields(res))
      let nt = Int(PQntuples(res))
      var cols: [String] = []
      for i in 0..<nf { cols.append(String(cString: PQfname(res, Int32(i)))) }
      var rows: [[String?]] = []
      rows.reserveCapacity(nt)
      for r in 0..<nt {
        var row: [String?] = []
        for f in 0..<nf {
          if PQgetisnull(res, Int32(r), Int32(f)) == 1 {
            row.append(nil)
          } else {
            row.append(String(cString: PQgetvalue(res, Int32(r), Int32(f))))
          }
        }
        rows.append(row)
      }
      let affected = Int(String(cString: PQcmdTuples(res))) ?? 0
      return PGResult(columns: cols, values: rows, affected: affected)
    default:
      throw serverError(res, sql: sql)
    }
  }

  private func field(_ res: OpaquePointer, _ code: Int32) -> String? {
    guard let p = PQresultErrorField(res, code) else { return nil }
    return String(cString: p)
  }

  private func serverError(_ res: OpaquePointer, sql: String) -> PGError {
    let primary = field(res, Int32(UInt8(ascii: "M")))
    let fallback = String(cString: PQresultErrorMessage(res)).trimmingCharacters(
      in: .whitespacesAndNewlines)
    let state = field(res, Int32(UInt8(ascii: "C")))
    return PGError(
      kind: state == nil ? .client : .server, label: label, message: primary ?? fallback,
      sqlState: state, detail: field(res, Int32(UInt8(ascii: "D"))),
      hint: field(res, Int32(UInt8(ascii: "H"))), query: sql)
  }

  private func clientError(sql: String?) -> PGError {
    let msg = conn.map { String(cString: PQerrorMessage($0)) } ?? "no connection"
    return PGError(
      kind: .client, label: label,
      message: msg.trimmingCharacters(in: .whitespacesAndNewlines), sqlState: nil, detail: nil,
      hint: nil, query: sql)
  }

  /// Runs `body` in a transaction; rolls back if it throws.
  public func transaction<T>(_ body: () throws -> T) throws -> T {
    try exec("BEGIN")
    do {
      let r = try body()
      try exec("COMMIT")
      return r
    } catch {
      _ = try? exec("ROLLBACK")
      throw error
    }
  }

  /// Streams `COPY ... TO STDOUT`, handing each chunk (one or more rows) to `sink`.
  /// - Returns: the number of bytes streamed.
  @discardableResult
  public func copyOut(_ sql: String, _ sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Int
  {
    let c = try live()
    let res = PQexec(c, sql)
    guard let res else { throw clientError(sql: sql) }
    if PQresultStatus(res) != PGRES_COPY_OUT {
      defer { PQclear(res) }
      throw serverError(res, sql: sql)
    }
    PQclear(res)
    var total = 0
    while true {
      var buf: UnsafeMutablePointer<CChar>? = nil
      let n = PQgetCopyData(c, &buf, 0)
      if n > 0, let buf {
        defer { PQfreemem(buf) }
        total += Int(n)
        try sink(UnsafeRawBufferPointer(start: buf, count: Int(n)))
      } else if n == -1 {
        break
      } else {
        throw clientError(sql: sql)
      }
    }
    while let r = PQgetResult(c) {
      defer { PQclear(r) }
      if PQresultStatus(r) != PGRES_COMMAND_OK { throw serverError(r, sql: sql) }
    }
    return total
  }

  /// Streams `COPY … TO STDOUT` on `source` into `COPY … FROM STDIN` on `target`, chunk by
  /// chunk (nothing is held whole). When it fails, the COPY into `target` is aborted and the
  /// real cause thrown (target's own error when sending to it failed); `sourceBroken` runs
  /// when `source` may be left mid-COPY.
  /// - Returns: the bytes streamed and the CopyData messages (one per row, plus binary's trailer).
  @discardableResult
  public static func pipeCopy(
    from source: PGConnection, out: String, into target: PGConnection, in copyIn: String,
    sourceBroken: () -> Void = {}
  ) throws -> (bytes: Int, messages: Int) {
    try target.beginCopyIn(copyIn)
    var messages = 0
    let bytes: Int
    do {
      bytes = try source.copyOut(out) { chunk in
        messages += 1
        try target.putCopyData(chunk)
      }
    } catch {
      var cause: any Error = error
      do {
        try target.endCopy(error: "belt: reading the source failed")
      } catch let e as PGError where e.kind == .server {
        if (error as? PGError)?.kind == .client { cause = e }
      } catch {}
      sourceBroken()
      throw cause
    }
    try target.endCopy()
    return (bytes, messages)
  }

  /// Starts `COPY ... FROM STDIN`. Call ``putCopyData(_:)`` then ``endCopy(error:)``.
  public func beginCopyIn(_ sql: String) throws {
    let c = try live()
    let t0 = Date()
    guard let res = PQexec(c, sql) else { throw clientError(sql: sql) }
    defer { PQclear(res) }
    if PQresultStatus(res) != PGRES_COPY_IN {
      let e = serverError(res, sql: sql)
      audit?.record(sql, params: [], start: t0, error: e)
      throw e
    }
    if audit != nil { copyIn = (sql, t0, 0) }
  }

  /// Sends a chunk of COPY data.
  public func putCopyData(_ data: UnsafeRawBufferPointer) throws {
    let c = try live()
    guard let base = data.baseAddress else { return }
    if PQputCopyData(c, base.assumingMemoryBound(to: CChar.self), Int32(data.count)) != 1 {
      throw clientError(sql: nil)
    }
    copyIn?.bytes += data.count
  }

  /// Ends COPY FROM STDIN (with an error message to abort it).
  public func endCopy(error: String? = nil) throws {
    let c = try live()
    let pending = copyIn
    copyIn = nil
    if PQputCopyEnd(c, error) != 1 {
      let e = clientError(sql: nil)
      if let pending {
        audit?.record(pending.sql, params: [], start: pending.start, error: e, bytes: pending.bytes)
      }
      throw e
    }
    var failure: PGError? = nil
    var rows: Int? = nil
    while let r = PQgetResult(c) {
      if PQresultStatus(r) != PGRES_COMMAND_OK, failure == nil {
        failure = serverError(r, sql: "COPY FROM STDIN")
      }
      if PQresultStatus(r) == PGRES_COMMAND_OK { rows = Int(String(cString: PQcmdTuples(r))) }
      PQclear(r)
    }
    if let pending {
      let outcome: (any Error)? =
        failure ?? error.map { BeltError(.internal, "aborted by belt: \($0)") }
      audit?.record(
        pending.sql, params: [], start: pending.start, error: outcome, rows: rows,
        bytes: pending.bytes)
    }
    if let failure { throw failure }
  }

  /// Quotes an identifier: always double quotes, embedded quotes doubled.
  public static func quoteIdent(_ s: String) -> String {
    "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
  }

  /// The name a quoted identifier (`"Odd ""Name"""`) stands for; anything else as it is.
  public static func unquoteIdent(_ s: String) -> String {
    guard s.count >= 2, s.hasPrefix("\""), s.hasSuffix("\"") else { return s }
    return String(s.dropFirst().dropLast()).replacingOccurrences(of: "\"\"", with: "\"")
  }

  /// `"schema"."name"`.
  public static func qualified(_ schema: String, _ name: String) -> String {
    quoteIdent(schema) + "." + quoteIdent(name)
  }

  /// Hashes a password for CREATE/ALTER ROLE so the clear text never reaches the server:
  /// always SCRAM-SHA-256 (md5 only for a server older than 10, which has no SCRAM), whatever
  /// the server's `password_encryption` says.
  public func encryptPassword(_ password: String, user: String) throws -> String {
    let c = try live()
    let algorithm = serverVersion >= 10 ? "scram-sha-256" : "md5"
    guard let p = PQencryptPasswordConn(c, password, user, algorithm) else {
      throw clientError(sql: nil)
    }
    defer { PQfreemem(p) }
    return String(cString: p)
  }

  /// Quotes a string literal with the connection's rules (for the rare statements that cannot
  /// take bound parameters, such as utility commands).
  public func literal(_ s: String) throws -> String {
    let c = try live()
    guard let p = PQescapeLiteral(c, s, s.utf8.count) else { throw clientError(sql: nil) }
    defer { PQfreemem(p) }
    return String(cString: p)
  }
}

extension ConnInfo {
  /// The first value in a conninfo fragment starting at a value.
  static func firstValue(_ s: String) -> String? {
    var it = s.makeIterator()
    guard let first = it.next() else { return nil }
    if first != "'" {
      return String(s.prefix { $0 != " " })
    }
    var out = ""
    while let ch = it.next() {
      if ch == "\\" { if let n = it.next() { out.append(n) }; continue }
      if ch == "'" { break }
      out.append(ch)
    }
    return out
  }
}
