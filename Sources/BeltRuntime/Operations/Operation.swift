import Foundation
import Logging

/// Which servers of a pair an operation needs in the config (pgbelt's skip_src/skip_dst).
public enum SidesNeeded: Sendable {
  /// Both src and dst must be configured.
  case both
  /// Only src is used ("Can be run with a null dst in the config file").
  case srcOnly
  /// Only dst is used ("Can be run with a null src in the config file").
  case dstOnly
  /// No server is contacted (src-dsn, dst-dsn resolve their own side).
  case none
}

/// The type of one option an operation accepts (checked by ``OperationSpec/checkOptions(_:)``).
public enum OptionType: String, Sendable {
  case bool
  case int
  case number
  case string
  /// A list of strings (a single string is a list of one).
  case strings
  /// A duration: seconds as a number or "30s", "5m", "1h".
  case duration
  /// A table of plain values (kept as JSON), e.g. the data a journal step records.
  case table
}

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

  /// Creates an environment; `auditLog` replaces the per-pair audit files beside the configs.
  public init(store: ConfigStore, logger: Logger, jobs: Int = 8, connectTimeout: Int = 10, auditLog: String? = nil) {
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

/// "30s", "5m", "1h30m", "250ms" or a plain number of seconds.
public enum Durations {
  /// Seconds.
  /// - Throws: ``BeltError`` `bad_argument`.
  public static func parse(_ s: String) throws -> Double {
    if let d = Double(s) { return d }
    var total = 0.0
    var num = ""
    var chars = Array(s.trimmingCharacters(in: .whitespaces))
    if chars.isEmpty { throw BeltError(.badArgument, "empty duration") }
    var i = 0
    while i < chars.count {
      let c = chars[i]
      if c.isNumber || c == "." { num.append(c); i += 1; continue }
      guard let n = Double(num) else { throw bad(s) }
      if c == "m", i + 1 < chars.count, chars[i + 1] == "s" { total += n / 1000; i += 2 }
      else if c == "h" { total += n * 3600; i += 1 }
      else if c == "m" { total += n * 60; i += 1 }
      else if c == "s" { total += n; i += 1 }
      else { throw bad(s) }
      num = ""
    }
    if !num.isEmpty { throw bad(s) }
    chars.removeAll()
    return total
  }
  private static func bad(_ s: String) -> BeltError {
    BeltError(.badArgument, "invalid duration \(Value.jsonQuote(s)) (use seconds or e.g. \"30s\", \"5m\", \"1h\")")
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
    try AuditContext(log: env.audit, config: config, db: db, side: side, role: role, reversed: reversed)
  }

  /// A new connection that the caller owns (for work on another thread).
  public func newConnection(_ side: Side, _ role: Role, noTimeout: Bool = false) throws -> PGConnection {
    let server = try config.server(side)
    var extra: [(String, String)] = []
    if noTimeout { extra.append(("options", "-c statement_timeout=0")) }
    let c = try PGConnection(
      conninfo: server.conninfo(role, connectTimeout: env.connectTimeout, extra: extra),
      label: "\(side.rawValue) as \(role.rawValue) (\(server.ip):\(server.port)/\(server.dbname))")
    c.audit = try auditContext(side, role)
    return c
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

/// One operation: the single declaration that the CLI, the Lua table and the docs derive from.
public struct OperationSpec: Sendable {
  /// snake_case name (Lua `belt.<name>`, runbook `<cli-name>.lua`).
  public var name: String
  /// One line: the command's abstract in `belt --help` and its line in `belt help-lua`.
  public var summary: String
  /// What `belt <command> --help` says below the summary; the CLI appends the sides and fleet
  /// notes derived from ``sides`` and ``allowsAllDBs``.
  public var details: String
  public var sides: SidesNeeded
  public var options: [OptionSpec]
  /// Whether db may be nil (fan out over the dc).
  public var allowsAllDBs: Bool
  /// False for a runbook primitive with no command of its own (its options are tables).
  public var isCommand: Bool
  /// Columns for the human table: header and record key.
  public var columns: [(String, String)]
  /// The human output of the command's records (those without an error), when neither the
  /// ``columns`` table nor the one-line-per-record default says it.
  public var render: (@Sendable ([Value]) -> String)?
  /// The work for one pair; returns the record's fields.
  public var body: @Sendable (PairContext) throws -> Value

  public init(
    name: String, summary: String, details: String = "", sides: SidesNeeded, options: [OptionSpec] = [],
    allowsAllDBs: Bool = true, isCommand: Bool = true, columns: [(String, String)] = [],
    render: (@Sendable ([Value]) -> String)? = nil, body: @escaping @Sendable (PairContext) throws -> Value
  ) {
    self.name = name
    self.summary = summary
    self.details = details
    self.sides = sides
    self.options = options
    self.allowsAllDBs = allowsAllDBs
    self.isCommand = isCommand
    self.columns = columns
    self.render = render
    self.body = body
  }

  /// The CLI spelling (`sync_sequences` → `sync-sequences`).
  public var cliName: String { name.replacingOccurrences(of: "_", with: "-") }

  /// The options a command line can set, in `--help` order.
  public var commandOptions: [OptionSpec] { options.filter { $0.cli != nil } }

  /// The one check of an operation's options, whoever passes them (a runbook, the CLI, a test):
  /// types (an integral number is an int, a single string is a list of one), choices, minimums
  /// and required options, then the defaults of the absent ones. Keys the spec does not declare
  /// are dropped: the Lua prelude has already refused them (Swift never walks a Lua table).
  /// - Throws: ``OptionError`` naming the first bad option.
  public func checkOptions(_ values: [String: Value]) throws(OptionError) -> Options {
    try options.check(values)
  }
}

extension [OptionSpec] {
  /// See ``OperationSpec/checkOptions(_:)``; also used by primitives with options (belt.exec).
  public func check(_ values: [String: Value]) throws(OptionError) -> Options {
    var out: [String: Value] = [:]
    for o in self {
      if let v = values[o.key], !v.isNull {
        if o.required, v == .string("") { throw OptionError(option: o, problem: "required") }
        out[o.key] = try o.check(v)
      } else if let d = o.defaultValue {
        out[o.key] = d
      } else if o.required {
        throw OptionError(option: o, problem: "required")
      }
    }
    return Options(out)
  }
}

/// One option of an operation: what it is, what it accepts and how the command line spells it.
public struct OptionSpec: Sendable {
  /// The key in the Lua opts table (snake_case).
  public var key: String
  public var type: OptionType
  /// One sentence for `--help` and the Lua docs.
  public var help: String
  /// Used when the option is absent (and shown by `--help`).
  public var defaultValue: Value?
  /// For a string: the only values accepted.
  public var choices: [String]
  /// For an integer: the smallest value accepted.
  public var minimum: Int?
  public var required: Bool
  /// nil: runbooks only (`belt.x(dc, db, {key = ...})`), no command-line option.
  public var cli: CLISpelling?

  public init(
    _ key: String, _ type: OptionType, _ help: String, default defaultValue: Value? = nil, choices: [String] = [],
    minimum: Int? = nil, required: Bool = false, cli: CLISpelling? = .derived
  ) {
    self.key = key
    self.type = type
    self.help = help
    self.defaultValue = defaultValue
    self.choices = choices
    self.minimum = minimum
    self.required = required
    self.cli = cli
  }

  /// The long name on the command line (`exclude-user`), nil for a runbook-only option.
  public var longName: String? { cli.map { $0.long ?? key.replacingOccurrences(of: "_", with: "-") } }

  /// Checks one present value; returns it normalised.
  func check(_ v: Value) throws(OptionError) -> Value {
    func bad(_ want: String) -> OptionError { OptionError(option: self, problem: "\(want) expected") }
    switch type {
    case .bool: guard case .bool = v else { throw bad("boolean") }
    case .int:
      guard let n = v.intValue else { throw bad("integer") }
      if let minimum, n < minimum { throw OptionError(option: self, problem: "must be at least \(minimum), got \(n)") }
      return .int(n)
    case .number:
      switch v { case .int, .double: break; default: throw bad("number") }
    case .string:
      guard case .string(let s) = v else { throw bad("string") }
      if !choices.isEmpty, !choices.contains(s) {
        let list = choices.dropLast().joined(separator: ", ") + " or " + (choices.last ?? "")
        throw OptionError(option: self, problem: "must be \(list), got \(Value.jsonQuote(s))")
      }
    case .strings:
      if case .string = v { return .array([v]) }
      if case .object(let o) = v, o.isEmpty { return .array([]) }
      guard let a = v.arrayValue, a.allSatisfy({ $0.stringValue != nil }) else { throw bad("list of strings") }
    case .duration:
      switch v {
      case .int, .double: break
      case .string(let s):
        do { _ = try Durations.parse(s) } catch {
          throw OptionError(option: self, problem: (error as? BeltError)?.message ?? "invalid duration")
        }
      default: throw bad("duration")
      }
    case .table:
      switch v {
      case .object, .array: break
      default: throw bad("table")
      }
    }
    return v
  }
}

/// How an option is spelled on the command line.
public struct CLISpelling: Sendable {
  /// nil: the key with `-` for `_`.
  public var long: String?
  public var short: Character?
  /// A boolean spelled `--x/--no-x` (pgbelt's typer flags: `--owner / --no-owner`, and sync's
  /// `--no-schema / --no-no-schema`) instead of a lone `--x`.
  public var inverted: Bool

  public init(_ long: String? = nil, short: Character? = nil, inverted: Bool = false) {
    self.long = long
    self.short = short
    self.inverted = inverted
  }

  /// `--<key with dashes>`.
  public static let derived = CLISpelling()
  /// `--<key>/--no-<key>`.
  public static let inverted = CLISpelling(inverted: true)
}

/// A bad option value, phrased by the caller: `--stride must be at least 0, got -5` on the
/// command line, `bad argument #3 to 'belt.sync_sequences' (option stride: ...)` in Lua.
public struct OptionError: Error, Sendable {
  public let option: OptionSpec
  /// "integer expected", "must be at least 0, got -5", "required".
  public let problem: String
}
