import Foundation

/// Opens connections for one pair from any thread (the config is a value; a ``PairContext``
/// is confined to its thread and must not be captured by worker threads).
struct Connector: Sendable {
  var config: MigrationConfig
  /// Connect timeout in seconds.
  var connectTimeout: Int
  /// For the connections' audit lines.
  var audit: AuditLog
  var db: String
  var reversed: Bool

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
    c.audit = try AuditContext(
      log: audit, config: config, db: db, side: side, role: role, reversed: reversed)
    return c
  }
}

/// The connections of one worker thread, opened lazily and closed when the worker ends.
final class ConnCache {
  private let connector: Connector
  private let onOpen: String?
  private let noTimeout: Bool
  private var conns: [Side: PGConnection] = [:]
  /// A side whose server did not answer: this worker's other items fail with the same error at
  /// once instead of each waiting out the connect timeout again.
  private var unreachable: [Side: PGError] = [:]

  /// A cache whose connections run `onOpen` (session settings) once when opened.
  init(_ connector: Connector, noTimeout: Bool, onOpen: String?) {
    self.connector = connector
    self.noTimeout = noTimeout
    self.onOpen = onOpen
  }

  /// The root connection to one side (opened on first use).
  func get(_ side: Side) throws -> PGConnection {
    if let c = conns[side] { return c }
    if let e = unreachable[side] { throw e }
    let c: PGConnection
    do {
      c = try connector.open(side, .root, noTimeout: noTimeout)
    } catch let e as PGError where e.serverUnreachable {
      unreachable[side] = e
      throw e
    }
    if let onOpen { try c.exec(onOpen) }
    conns[side] = c
    return c
  }

  /// Closes and forgets one side's connection (after a failure left it mid-protocol).
  func discard(_ side: Side) {
    conns[side]?.close()
    conns[side] = nil
  }

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
