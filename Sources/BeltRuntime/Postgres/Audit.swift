import Foundation

/// The audit log (design.md §8): one JSON line per statement belt sends that changes a server
/// (DDL, role and LOGIN changes, pglogical calls, COPY into a table, DML, setval, terminated
/// sessions), with the time, dc/db, side, role, the statement and its bound values (secrets
/// redacted), the duration and the outcome.
///
/// Appended to `configs/<dc>/<db>/audit.jsonl` beside the pair's config, or to the file
/// given by `--audit-log` / `$BELT_AUDIT_LOG` (a directory there gets `<dc>/<db>/audit.jsonl`).
/// Each line is written with one `write(2)` on an `O_APPEND` descriptor, so lines from the
/// threads of a fan-out, or from two belt processes, never interleave.
public final class AuditLog: @unchecked Sendable {
  private let store: ConfigStore
  /// The `--audit-log` / `$BELT_AUDIT_LOG` target, when given (passed on to the watchdog).
  let override: String?
  private let lock = NSLock()

  /// An audit log for the pairs of `store`, or everything into `override` when given.
  public init(store: ConfigStore, override: String? = nil) {
    self.store = store
    self.override = override.flatMap { $0.isEmpty ? nil : $0 }
  }

  /// The file that receives the lines of one pair (of a dc, or of no dc, for actions such as
  /// `belt.exec` that a runbook did not tie to a pair).
  public func file(dc: String?, db: String?) -> String {
    let rel =
      [dc, dc == nil ? nil : db].compactMap { $0 }.map { $0 + "/" }.joined() + "audit.jsonl"
    guard let o = override else { return "\(store.root)/configs/\(rel)" }
    var isDir: ObjCBool = false
    if o.hasSuffix("/")
      || (FileManager.default.fileExists(atPath: o, isDirectory: &isDir) && isDir.boolValue)
    {
      return (o.hasSuffix("/") ? String(o.dropLast()) : o) + "/\(rel)"
    }
    return o
  }

  /// Appends one record as a line. An audit line that cannot be written is reported on
  /// stderr once per file (the statement itself has already run).
  func append(_ record: Value, dc: String?, db: String?) {
    let path = file(dc: dc, db: db)
    let line = Array((record.json(indent: 0) + "\n").utf8)
    lock.lock()
    defer { lock.unlock() }
    let dir = (path as NSString).deletingLastPathComponent
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0o600)
    guard fd >= 0 else {
      if !failed.contains(path) {
        failed.insert(path)
        FileHandle.standardError.write(Data("belt: cannot append to the audit log \(path)\n".utf8))
      }
      return
    }
    _ = line.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
    close(fd)
  }
  private var failed: Set<String> = []
}

/// Who a connection is, for its audit lines.
public struct AuditContext: Sendable {
  /// Where the lines go.
  var log: AuditLog
  /// The pair.
  var dc: String
  var db: String
  /// The real server (src or dst), also when an operation runs reversed.
  var side: Side
  /// The belt role (root, owner, pglogical) and the user name.
  var role: Role
  var user: String
  /// `ip:port/dbname`.
  var server: String
  /// The config's passwords, scrubbed from every line in any of their quoted forms.
  var secrets: [String]

  /// The context of a connection to `side` (as the config names it) of a pair.
  init(log: AuditLog, config: MigrationConfig, db: String, side: Side, role: Role, reversed: Bool)
    throws
  {
    let server = try config.server(side)
    self.log = log
    dc = config.dc
    self.db = db
    self.side = reversed ? (side == .src ? .dst : .src) : side
    self.role = role
    user = server.credentials(role).name
    self.server = "\(server.ip):\(server.port)/\(server.dbname)"
    secrets = [config.src, config.dst].compactMap { $0 }.flatMap { s in
      Role.allCases.map { s.credentials($0).password }
    }
  }
}

/// Deciding what is audited, and redaction.
enum Audit {
  /// Whether `sql` (one statement or a simple-protocol script) can change a server.
  static func changes(_ sql: String) -> Bool {
    statements(sql).contains { stmt in
      let word = firstWord(stmt)
      switch word {
      case "", "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE",
        "SET", "RESET", "SHOW", "LOCK",
        "DISCARD", "DECLARE", "FETCH", "CLOSE", "MOVE", "LISTEN", "UNLISTEN", "EXPLAIN",
        "DEALLOCATE", "PREPARE":
        return false
      case "SELECT", "WITH", "VALUES", "TABLE":
        return callsChangingFunction(stmt)
      case "COPY":
        return stmt.range(of: "FROM\\s+STDIN", options: [.regularExpression, .caseInsensitive])
          != nil
      default:
        return true
      }
    }
  }

  /// Functions that change something although called from a SELECT.
  static let changingFunctions =
    "setval|nextval|pg_terminate_backend|pg_cancel_backend|pg_drop_replication_slot|pg_create_logical_replication_slot"
    + "|pg_create_physical_replication_slot|pg_replication_origin_create|pg_replication_origin_drop"
    + "|pg_replication_origin_advance|pg_reload_conf|pg_switch_wal|lo_unlink|lo_create|lo_put|lo_from_bytea"
    + "|lo_import|lo_truncate"
  /// Functions of an extension's schema that only read, by schema (an engine registers its own:
  /// ``registerReadOnly(schema:_:)``); every other call into such a schema changes something.
  nonisolated(unsafe) private static var readOnlyCalls: [String: Set<String>] = [:]
  private static let readOnlyLock = NSLock()

  /// Registers `schema` as an extension schema whose functions change something, except `functions`.
  public static func registerReadOnly(schema: String, _ functions: Set<String>) {
    readOnlyLock.lock()
    readOnlyCalls[schema] = functions
    readOnlyLock.unlock()
  }

  static func callsChangingFunction(_ sql: String) -> Bool {
    // Function names inside string literals are not calls.
    let stmt = sql.replacingOccurrences(
      of: "'(?:[^']|'')*'", with: "''", options: .regularExpression)
    if stmt.range(
      of: "\\b(\(changingFunctions))\\s*\\(", options: [.regularExpression, .caseInsensitive])
      != nil
    {
      return true
    }
    readOnlyLock.lock()
    let schemas = readOnlyCalls
    readOnlyLock.unlock()
    for (schema, readOnly) in schemas {
      let pattern =
        "\\b\(NSRegularExpression.escapedPattern(for: schema))\\s*\\.\\s*([a-z_0-9]+)\\s*\\("
      guard let re = try? NSRegularExpression(pattern: pattern, options: .caseInsensitive) else {
        continue
      }
      let ns = stmt as NSString
      let changes = re.matches(in: stmt, range: NSRange(location: 0, length: ns.length)).contains {
        m in
        !readOnly.contains(ns.substring(with: m.range(at: 1)).lowercased())
      }
      if changes { return true }
    }
    return false
  }

  /// The first keyword, upper-cased, after whitespace and comments.
  static func firstWord(_ s: String) -> String {
    var rest = Substring(s)
    while true {
      rest = rest.drop { $0.isWhitespace || $0 == "(" }
      if rest.hasPrefix("--") {
        rest = rest.drop { $0 != "\n" }
      } else if rest.hasPrefix("/*"), let end = rest.range(of: "*/") {
        rest = rest[end.upperBound...]
      } else {
        break
      }
    }
    return String(rest.prefix { $0.isLetter }).uppercased()
  }

  /// A script split at top-level semicolons (quotes respected; enough to classify).
  static func statements(_ sql: String) -> [String] {
    var out: [String] = []
    var cur = ""
    var quote: Character? = nil
    for ch in sql {
      if let q = quote {
        if ch == q { quote = nil }
      } else if ch == "'" || ch == "\"" {
        quote = ch
      } else if ch == ";" {
        out.append(cur)
        cur = ""
        continue
      }
      cur.append(ch)
    }
    out.append(cur)
    return out.filter { !$0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }
  }

  /// Text with every password and password hash replaced by `****`: `PASSWORD '...'` clauses,
  /// `password=` in connection strings, SCRAM and md5 hashes, and the config's passwords in
  /// their plain, SQL-quoted and conninfo-quoted forms.
  static func redact(_ text: String, secrets: [String]) -> String {
    var s = text
    let patterns: [(String, String)] = [
      ("(?i)(PASSWORD\\s+)E?'(?:[^']|'')*'", "$1'****'"),
      // a conninfo inside an SQL literal (CREATE SUBSCRIPTION ... CONNECTION '...'): its quotes doubled
      ("(?i)(password\\s*=\\s*)''(?:\\\\''|\\\\[^']|[^'\\\\])*''", "$1****"),
      ("(?i)(password\\s*=\\s*)('(?:[^'\\\\]|\\\\.)*'|[^\\s']+)", "$1****"),
      ("SCRAM-SHA-256\\$[^\\s'\",}]+", "****"),
      ("\\bmd5[0-9a-f]{32}\\b", "****"),
    ]
    for (p, r) in patterns {
      s = s.replacingOccurrences(of: p, with: r, options: .regularExpression)
    }
    for secret in secrets where secret.count >= 4 {
      let forms = [
        secret, secret.replacingOccurrences(of: "'", with: "''"),
        secret.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(
          of: "'", with: "\\'"),
      ]
      for f in Set(forms) { s = s.replacingOccurrences(of: f, with: "****") }
    }
    return s
  }
}

extension AuditContext {
  /// Writes the line of one statement that ran (or failed) on this connection.
  func record(
    _ sql: String, params: [String?], start: Date, error: (any Error)?, rows: Int? = nil,
    bytes: Int? = nil,
    returned: [[String?]]? = nil
  ) {
    let ms = (Date().timeIntervalSince(start) * 1_000_000).rounded() / 1000
    let clean = { (s: String) in Audit.redact(s, secrets: secrets) }
    // SchemaLoader wraps each statement in a savepoint: the statement is what matters.
    let sql = sql.replacingOccurrences(
      of: "^\\s*SAVEPOINT \\w+;\\s*", with: "", options: .regularExpression
    )
    .replacingOccurrences(
      of: "\\s*RELEASE SAVEPOINT \\w+;\\s*$", with: "", options: .regularExpression)
    var fields: [(String, Value)] = [
      ("time", .string(Audit.timestamp(start))), ("dc", .string(dc)), ("db", .string(db)),
      ("side", .string(side.rawValue)),
      ("server", .string(server)), ("role", .string(role.rawValue)), ("user", .string(user)),
      ("statement", .string(clean(sql))),
    ]
    if !params.isEmpty {
      fields.append(("params", .array(params.map { $0.map { .string(clean($0)) } ?? .null })))
    }
    fields.append(("duration_ms", .double(ms)))
    if let error {
      let e = error as? PGError
      let what =
        e.map { ($0.sqlState.map { "\($0): " } ?? "") + $0.message } ?? String(describing: error)
      fields += [("outcome", "error"), ("error", .string(clean(what)))]
    } else {
      fields.append(("outcome", "ok"))
    }
    if let rows { fields.append(("rows", .int(rows))) }
    if let bytes { fields.append(("bytes", .int(bytes))) }
    if let returned, !returned.isEmpty {
      fields.append(
        (
          "returned",
          .array(
            returned.prefix(50).map { .array($0.map { $0.map { .string(clean($0)) } ?? .null }) })
        ))
    }
    log.append(.object(fields), dc: dc, db: db)
  }
}

extension Audit {
  /// ISO 8601 with milliseconds, UTC.
  static func timestamp(_ d: Date) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.string(from: d)
  }
}

extension AuditLog {
  /// The line of an action that is not a statement on a pair's servers: a program run by
  /// `belt.exec`, a command on pgbouncer's console. `fields` must hold no secret.
  func action(_ kind: String, _ fields: [(String, Value)], start: Date, dc: String?, db: String?) {
    let ms = (Date().timeIntervalSince(start) * 1_000_000).rounded() / 1000
    var line: [(String, Value)] = [
      ("time", .string(Audit.timestamp(start))), ("action", .string(kind)),
    ]
    if let dc { line.append(("dc", .string(dc))) }
    if let db { line.append(("db", .string(db))) }
    line += fields
    line.append(("duration_ms", .double(ms)))
    append(.object(line), dc: dc, db: db)
  }
}
