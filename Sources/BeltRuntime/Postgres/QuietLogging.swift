import CLibPQ
import Foundation

/// Keeping the statements that carry a secret out of the server's own log (issue 27).
///
/// Servers that are audited commonly run with `log_statement = 'all'` or
/// `log_min_duration_statement = 0`, and both log a statement's bound values. A statement that
/// carries a secret (a DSN with a password, a role's password hash, a native subscription's
/// `CONNECTION '...'`) therefore runs with the settings below changed for this session only:
/// set just before the statement, reset just after, whatever the outcome. Most of them are
/// superuser-only; a session that cannot change them (a managed service's admin role) is what
/// ``exposure(_:side:)`` describes, for precheck and for setup's refusal.
public enum QuietLogging {
  /// One setting and the value that keeps a statement (its text, its bound values, its error)
  /// out of the log.
  public struct Setting: Sendable {
    public var name: String
    public var quiet: String
  }

  /// Set in this order, reset in the reverse order. Settings a server does not have (older
  /// releases, a library not loaded) are left out.
  public static let settings: [Setting] = [
    // the statement and its bound values, logged before it runs
    Setting(name: "log_statement", quiet: "none"),
    // ... after it ran, with its duration and bound values
    Setting(name: "log_min_duration_statement", quiet: "-1"),
    Setting(name: "log_min_duration_sample", quiet: "-1"),
    Setting(name: "log_transaction_sample_rate", quiet: "0"),
    Setting(name: "log_parameter_max_length", quiet: "0"),
    // a failing statement: its text, its bound values and its error (pglogical puts the whole
    // DSN into the DETAIL of a connection failure: "dsn was: ... password=...")
    Setting(name: "log_parameter_max_length_on_error", quiet: "0"),
    Setting(name: "log_min_error_statement", quiet: "panic"),
    // Every message below FATAL that this session would log: the error above, and anything
    // emitted at LOG level (pgaudit's and auto_explain's lines go through it too).
    Setting(name: "log_min_messages", quiet: "fatal"),
    // pg_stat_statements keeps a utility statement's text as it is: ALTER ROLE ... PASSWORD
    // with the hash.
    Setting(name: "pg_stat_statements.track_utility", quiet: "off"),
    // Not a log, but read by more people than the superusers (pg_read_all_stats): the text of
    // the running statement in pg_stat_activity.
    Setting(name: "track_activities", quiet: "off"),
  ]

  /// What one session may do about the settings: read once per connection.
  public struct Access: Sendable {
    /// The settings this server has, with their current values.
    public var values: [String: String]
    /// Those this session may change (all of them for a superuser), in ``settings`` order.
    public var settable: [String]
    /// The session's user.
    public var user: String

    /// The settings the server has but this session cannot change.
    public var unsettable: [String] {
      QuietLogging.settings.map(\.name).filter { values[$0] != nil && !settable.contains($0) }
    }
  }

  /// Reads what the session may change. `has_parameter_privilege` (PostgreSQL 15+) covers
  /// `GRANT SET ON PARAMETER`; before that only a superuser may.
  static func readAccess(_ c: PGConnection) throws -> Access {
    let grant = c.serverVersion >= 15 ? " OR has_parameter_privilege(name, 'SET')" : ""
    let r = try c.query(
      """
      SELECT name, setting, current_user AS who,
             (current_setting('is_superuser') = 'on' OR context = 'user'\(grant)) AS settable
        FROM pg_settings WHERE name = ANY($1::text[])
      """, [PGArray.literal(settings.map(\.name))])
    var values: [String: String] = [:]
    var can: Set<String> = []
    for row in r.rows {
      values[row.string("name")] = row.string("setting")
      if row.bool("settable") { can.insert(row.string("name")) }
    }
    let user = r.rows.first?.string("who") ?? "?"
    return Access(values: values, settable: settings.map(\.name).filter(can.contains), user: user)
  }

  /// The settings that would put a secret into this server's log although belt changes what it
  /// may: each as "name = value" with what it would log, and the settings to lower; empty when
  /// belt can keep the secrets out.
  public static func leaks(_ a: Access) -> (lines: [String], settings: [String]) {
    let cannot = Set(a.unsettable)
    func value(_ name: String) -> String? { cannot.contains(name) ? a.values[name] : nil }
    func number(_ name: String) -> Double? { value(name).flatMap(Double.init) }
    var lines: [String] = []
    var names: [String] = []
    // The statements are logged, with their bound values unless those can be cut to nothing.
    let paramsCut =
      a.settable.contains("log_parameter_max_length")
      || (a.values["log_parameter_max_length"] ?? "0") == "0"
    var statements: [String] = []
    func add(_ name: String, _ shown: String) {
      statements.append("\(name) = \(shown)")
      names.append(name)
    }
    if let v = value("log_statement"), v != "none" { add("log_statement", "'\(v)'") }
    if let v = number("log_min_duration_statement"), v >= 0 {
      add("log_min_duration_statement", String(Int(v)))
    }
    if let v = number("log_min_duration_sample"), v >= 0,
      (Double(a.values["log_statement_sample_rate"] ?? "1") ?? 1) > 0
    {
      add("log_min_duration_sample", String(Int(v)))
    }
    if let v = value("log_transaction_sample_rate"), (Double(v) ?? 0) > 0 {
      add("log_transaction_sample_rate", v)
    }
    if !statements.isEmpty {
      lines.append(
        statements.joined(separator: ", ")
          + (paramsCut
            ? " logs the role's password hash"
            : " logs the pglogical user's password (the DSN given to create_node and create_subscription)")
      )
    }
    let verbose = [
      "debug5", "debug4", "debug3", "debug2", "debug1", "info", "notice", "warning", "error",
    ]
    if let v = value("log_min_messages"), verbose.contains(v) {
      lines.append("log_min_messages = \(v) logs it when a subscription cannot reach its provider")
      names.append("log_min_messages")
    }
    if value("pg_stat_statements.track_utility") == "on" {
      lines.append("pg_stat_statements.track_utility = on keeps the role's password hash")
      names.append("pg_stat_statements.track_utility")
    }
    return (lines, names)
  }

  /// One line for precheck and setup's refusal when this session cannot keep the secrets out of
  /// the server's log, or nil when it can.
  public static func exposure(_ c: PGConnection, side: String) throws -> String? {
    let a = try c.quietLoggingAccess()
    let (lines, names) = leaks(a)
    guard !lines.isEmpty else { return nil }
    let user = PGConnection.quoteIdent(a.user)
    let quiet = Dictionary(settings.map { ($0.name, $0.quiet) }, uniquingKeysWith: { a, _ in a })
    let fix = names.map { "\($0) = '\(quiet[$0] ?? "")'" }.joined(separator: ", ")
    return
      "\(side): the root user \(user) cannot change the logging settings (superuser-only) and the server would log "
      + "secrets belt sends: \(lines.joined(separator: "; ")); have a superuser set \(fix) for that user "
      + "(ALTER ROLE \(user) SET ..., or the provider's parameter group; with pgaudit, exclude that user) "
      + "or accept it with --accept-logged-secrets"
  }
}

extension PGConnection {
  /// What this session may change of ``QuietLogging/settings`` (read once, then cached).
  public func quietLoggingAccess() throws -> QuietLogging.Access {
    if let a = quietAccess { return a }
    let a = try QuietLogging.readAccess(self)
    quietAccess = a
    return a
  }

  /// Runs `body` with the server's logging of this session's statements off (the settings of
  /// ``QuietLogging/settings`` this session may change), then resets them, whatever `body` did.
  ///
  /// Session-level `SET`s, one round trip each way, rather than `SET LOCAL` in a transaction of
  /// its own: they also keep `log_transaction_sample_rate` from sampling the statement (decided
  /// when a transaction starts), work inside a caller's transaction, and `body` may use
  /// transactions itself. A failure inside leaves the connection usable with the settings reset;
  /// inside a caller's transaction that failed, its ROLLBACK undoes them. If they cannot be reset
  /// otherwise, the connection is closed rather than left logging nothing.
  /// - Throws: what `body` throws; a ``PGError`` when the settings cannot be changed.
  public func withoutServerLog<T>(_ body: () throws -> T) throws -> T {
    let names = try quietLoggingAccess().settable
    guard !names.isEmpty else { return try body() }
    let quiet = Dictionary(
      QuietLogging.settings.map { ($0.name, $0.quiet) }, uniquingKeysWith: { a, _ in a })
    let inTransaction = transactionStatus != PQTRANS_IDLE
    try exec(names.map { "SET \($0) = '\(quiet[$0] ?? "")'" }.joined(separator: "; "))
    defer {
      do {
        try exec(names.reversed().map { "RESET \($0)" }.joined(separator: "; "))
      } catch {
        if !(inTransaction && transactionStatus == PQTRANS_INERROR) { close() }
      }
    }
    return try body()
  }

  /// Runs one statement that carries a secret (a DSN or conninfo with a password, a password
  /// hash) with bound values, kept out of the server's log (``withoutServerLog(_:)``). An error
  /// comes back with every password, DSN password and hash in it masked (pglogical quotes the
  /// DSN in its connection errors).
  @discardableResult
  public func querySecret(_ sql: String, _ params: [String?] = []) throws -> PGResult {
    try masked { try withoutServerLog { try query(sql, params) } }
  }

  /// ``querySecret(_:_:)`` for a statement that cannot take bound values (a utility statement:
  /// `ALTER ROLE ... PASSWORD '<hash>'`, `CREATE SUBSCRIPTION ... CONNECTION '...'`): the secret
  /// is in the text, which is kept out of the server's log and masked in errors.
  @discardableResult
  public func execSecret(_ sql: String) throws -> PGResult {
    try masked(literals: true) { try withoutServerLog { try exec(sql) } }
  }

  /// Runs `body`; a ``PGError`` is rethrown with passwords, hashes and the config's secrets
  /// masked, and with `literals`, every string literal of its statement.
  private func masked<T>(literals: Bool = false, _ body: () throws -> T) throws -> T {
    do {
      return try body()
    } catch var e as PGError {
      let secrets = audit?.secrets ?? []
      let clean = { (s: String) in Audit.redact(s, secrets: secrets) }
      e.message = clean(e.message)
      e.detail = e.detail.map(clean)
      e.hint = e.hint.map(clean)
      e.query = e.query.map {
        clean(
          literals
            ? $0.replacingOccurrences(
              of: "E?'(?:[^']|'')*'", with: "'****'", options: .regularExpression) : $0)
      }
      throw e
    }
  }

  /// libpq's transaction status of the connection.
  var transactionStatus: PGTransactionStatusType {
    guard let c = rawConnection else { return PQTRANS_UNKNOWN }
    return PQtransactionStatus(c)
  }
}
