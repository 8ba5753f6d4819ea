import Foundation

/// Opens connections for one pair from any thread (the config is a value; a ``PairContext``
/// is confined to its thread and must not be captured by worker threads).
struct Connector: Sendable {
  /// The pair's config.
  var config: MigrationConfig
  /// Connect timeout in seconds.
  var connectTimeout: Int
  /// For the connections' audit lines.
  var audit: AuditLog
  var db: String
  var reversed: Bool

  /// The connector of a pair context.
  init(_ ctx: PairContext) {
    config = ctx.config
    connectTimeout = ctx.env.connectTimeout
    audit = ctx.env.audit
    db = ctx.db
    reversed = ctx.reversed
  }

  /// A new connection owned by the caller's thread.
  /// - Parameter noTimeout: sets statement_timeout=0 (long COPY, whole-table hashes).
  func open(_ side: Side, _ role: Role = .root, noTimeout: Bool = false) throws -> PGConnection {
    let server = try config.server(side)
    var extra: [(String, String)] = []
    if noTimeout { extra.append(("options", "-c statement_timeout=0")) }
    let c = try PGConnection(
      conninfo: server.conninfo(role, connectTimeout: connectTimeout, extra: extra),
      label: "\(side.rawValue) as \(role.rawValue) (\(server.ip):\(server.port)/\(server.dbname))")
    c.audit = try AuditContext(log: audit, config: config, db: db, side: side, role: role, reversed: reversed)
    return c
  }
}

/// The connections of one worker thread, opened lazily and closed when the worker ends.
final class ConnCache {
  private let connector: Connector
  private let onOpen: String?
  private let noTimeout: Bool
  private var conns: [Side: PGConnection] = [:]

  /// A cache whose connections run `onOpen` (session settings) once when opened.
  init(_ connector: Connector, noTimeout: Bool, onOpen: String?) {
    self.connector = connector
    self.noTimeout = noTimeout
    self.onOpen = onOpen
  }

  /// The root connection to one side (opened on first use).
  func get(_ side: Side) throws -> PGConnection {
    if let c = conns[side] { return c }
    let c = try connector.open(side, .root, noTimeout: noTimeout)
    if let onOpen { try c.exec(onOpen) }
    conns[side] = c
    return c
  }

  /// Closes and forgets one side's connection (after a failure left it mid-protocol).
  func discard(_ side: Side) {
    conns[side]?.close()
    conns[side] = nil
  }

  /// Closes everything.
  func closeAll() {
    conns.values.forEach { $0.close() }
    conns.removeAll()
  }
}

/// Parallel work where every worker thread owns its own connections.
enum Workers {
  /// Maps `items` on up to `width` threads, preserving order. Each thread gets its own
  /// ``ConnCache`` (never shared), closed when the thread has no more items.
  static func map<T: Sendable, R: Sendable>(
    _ items: [T], width: Int, connector: Connector, noTimeout: Bool = false, onOpen: String? = nil,
    _ f: @escaping @Sendable (T, ConnCache) -> R
  ) -> [R] {
    if items.isEmpty { return [] }
    let workers = max(1, min(width, items.count))
    let box = ResultBox<R>(count: items.count)
    _ = Runner.parallelMap(Array(0..<workers), width: workers) { _ -> Int in
      let cache = ConnCache(connector, noTimeout: noTimeout, onOpen: onOpen)
      defer { cache.closeAll() }
      while let i = box.nextIndex() { box.set(i, f(items[i], cache)) }
      return 0
    }
    return box.results()
  }
}

/// One column of a table, as the catalog describes it.
struct ColumnInfo: Sendable, Equatable {
  /// Bare column name.
  var name: String
  /// `format_type` text, usable in a cast (`character varying(255)`).
  var type: String
  /// A generated column (never written by COPY).
  var generated: Bool
  /// The type's OID (below 16384 for built-in types).
  var typeOid: Int = 0
  /// The quoted identifier.
  var quoted: String { PGConnection.quoteIdent(name) }
}

/// Catalog helpers shared by the cutover commands.
enum CutoverCatalog {
  /// The columns of `schema.table` in attnum order; empty when the table does not exist.
  static func columns(_ c: PGConnection, schema: String, table: String) throws -> [ColumnInfo] {
    let r = try c.query(
      """
      SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attgenerated <> '' AS generated,
             a.atttypid::int AS typeoid
        FROM pg_attribute a
        JOIN pg_class cl ON cl.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = cl.relnamespace
       WHERE n.nspname = $1 AND cl.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY a.attnum
      """, [schema, table])
    return r.rows.map {
      ColumnInfo(name: $0.string("attname"), type: $0.string("type"), generated: $0.bool("generated"), typeOid: $0.int("typeoid") ?? 0)
    }
  }

  /// Whether an error is a schema-family operation that has not been written yet.
  static func isNotImplemented(_ error: any Error) -> Bool {
    guard let b = error as? BeltError else { return false }
    return b.code == .internal && b.message.contains("not implemented")
  }
}

/// Small formatting helpers for human messages.
enum Fmt {
  /// "1.2 s" or "340 ms".
  static func duration(ms: Int) -> String {
    ms >= 10_000 ? String(format: "%.1f s", Double(ms) / 1000) : "\(ms) ms"
  }
  /// "45.1 MB".
  static func megabytes(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1_048_576) }
  /// Truncates a value for display.
  static func short(_ s: String?, _ max: Int = 80) -> Value {
    guard let s else { return .null }
    return .string(s.count > max ? String(s.prefix(max)) + "…" : s)
  }
  /// `"a", "b"` for messages.
  static func names(_ items: [String], limit: Int = 10) -> String {
    let shown = items.prefix(limit).joined(separator: ", ")
    return items.count > limit ? shown + ", … (\(items.count - limit) more)" : shown
  }
}
