import Foundation
import Logging

/// Everything an operation needs that is not its arguments.
public struct Environment: Sendable {
  /// Where configs and schemas live.
  public var store: ConfigStore
  /// Log sink (stderr in the CLI).
  public var logger: Logger
  /// Databases processed at once when db is nil.
  public var jobs: Int
  /// Connect timeout in seconds.
  public var connectTimeout: Int
  /// Where the statements that change a server are recorded (see ``AuditLog``).
  public var audit: AuditLog
  /// The environment in which client programs (pg_dump) are looked up (`BELT_PG_BIN`, `PATH`)
  /// and run: belt's own, unless a test gives another.
  public var toolEnvironment: [String: String] = ProcessInfo.processInfo.environment

  /// Creates an environment; `auditLog` replaces the per-pair audit files beside the configs.
  public init(
    store: ConfigStore, logger: Logger, jobs: Int = 8, connectTimeout: Int = 10,
    auditLog: String? = nil
  ) {
    self.store = store
    self.logger = logger
    self.jobs = max(1, jobs)
    self.connectTimeout = connectTimeout
    audit = AuditLog(store: store, override: auditLog)
  }
}

/// The options passed to an operation, checked against its spec by ``Runner``.
public struct Options: Sendable {
  public var values: [String: Value]
  public init(_ values: [String: Value] = [:]) { self.values = values }

  public func bool(_ k: String, default d: Bool = false) -> Bool { values[k]?.boolValue ?? d }
  public func int(_ k: String) -> Int? { values[k]?.intValue }
  public func string(_ k: String) -> String? { values[k]?.stringValue }
  public func strings(_ k: String) -> [String] {
    values[k]?.arrayValue?.compactMap(\.stringValue) ?? values[k]?.stringValue.map { [$0] } ?? []
  }
  /// A duration in seconds.
  public func seconds(_ k: String) -> Double? {
    guard let v = values[k] else { return nil }
    switch v {
    case .int(let i): return Double(i)
    case .double(let d): return d
    case .string(let s): return try? Durations.parse(s)
    default: return nil
    }
  }
}

/// Everything one operation needs for one database pair; owns the pair's connections.
/// Confined to one thread.
public final class PairContext {
  public let config: MigrationConfig
  public let env: Environment
  public let options: Options
  /// Logger with dc/db metadata.
  public let logger: Logger
  private var connections: [String: PGConnection] = [:]

  public var dc: String { config.dc }
  /// The db (the directory name).
  public let db: String

  /// True when src and dst were swapped (`reverse = true`): the operation copies from the
  /// destination back to the source (rollback.lua).
  public let reversed: Bool

  /// The pairs (db names of the dc) this run covers: every pair of the dc when the operation
  /// fans out, else this one. revoke-logins uses it to tell which databases of a shared server
  /// are part of the cutover.
  public let runDBs: [String]

  /// Milliseconds this operation waited for server locks (``ServerWide``), and how many
  /// server-wide changes it made (the record gets `server_lock_wait_ms` when there were any).
  public internal(set) var serverLockWaitMS = 0
  /// See ``serverLockWaitMS``.
  public internal(set) var serverLockChanges = 0

  init(
    config: MigrationConfig, db: String, env: Environment, options: Options, reversed: Bool = false,
    runDBs: [String]? = nil
  ) {
    self.reversed = reversed
    self.runDBs = runDBs ?? [db]
    self.config = config
    self.db = db
    self.env = env
    self.options = options
    var l = env.logger
    l[metadataKey: "dc"] = .string(config.dc)
    l[metadataKey: "db"] = .string(db)
    self.logger = l
  }

  deinit { closeAll() }

  /// A connection to one side as one role, reused within this operation.
  /// - Parameter noTimeout: sets statement_timeout=0 (for ANALYZE, CREATE INDEX).
  public func connect(_ side: Side, _ role: Role, noTimeout: Bool = false) throws -> PGConnection {
    let key = "\(side.rawValue).\(role.rawValue).\(noTimeout)"
    if let c = connections[key] { return c }
    let c = try newConnection(side, role, noTimeout: noTimeout)
    connections[key] = c
    return c
  }

  /// The audit identity of a connection to one side as one role.
  public func auditContext(_ side: Side, _ role: Role) throws -> AuditContext {
    try AuditContext(
      log: env.audit, config: config, db: db, side: side, role: role, reversed: reversed)
  }

  /// A new connection that the caller owns (for work on another thread).
  public func newConnection(_ side: Side, _ role: Role, noTimeout: Bool = false) throws
    -> PGConnection
  {
    try Connector(self).open(side, role, noTimeout: noTimeout)
  }

  public func closeAll() {
    connections.values.forEach { $0.close() }
    connections.removeAll()
  }

  public var schema: String { config.schemaName }

  /// A precondition error for this pair.
  public func refuse(_ message: String) -> BeltError {
    BeltError(.preconditionFailed, message, dc: dc, db: db)
  }
}
