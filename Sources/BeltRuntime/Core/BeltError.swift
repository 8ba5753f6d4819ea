/// The operation-layer error. Every failure that reaches a user or a Lua script is one of these.
///
/// Its ``description`` is one sentence that names the file, field, database or table involved
/// and never contains a password.
public struct BeltError: Error, Equatable, CustomStringConvertible, Sendable {
  /// A stable, public error code (also `err.code` in Lua).
  ///
  /// ``allCases`` lists every code belt raises, shipped runbooks included: the Lua docs and
  /// `runbooks/belt.meta.lua` are generated from it. A script may raise codes of its own
  /// (`belt.error("my_code", ...)`); those are not listed.
  public struct Code: RawRepresentable, Equatable, Hashable, Sendable, CustomStringConvertible,
    CaseIterable
  {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// A config file is missing, malformed or has a bad field.
    public static let configInvalid = Code(rawValue: "config_invalid")
    /// A dc or db does not exist.
    public static let notFound = Code(rawValue: "not_found")
    /// A server could not be reached.
    public static let connectionFailed = Code(rawValue: "connection_failed")
    /// The server rejected the credentials.
    public static let authFailed = Code(rawValue: "auth_failed")
    /// A statement failed on the server.
    public static let sqlError = Code(rawValue: "sql_error")
    /// A safety check refused to go on.
    public static let preconditionFailed = Code(rawValue: "precondition_failed")
    /// A wait ran out of time.
    public static let timeout = Code(rawValue: "timeout")
    /// The user pressed Ctrl-C.
    public static let interrupted = Code(rawValue: "interrupted")
    /// A function was called with a bad argument.
    public static let badArgument = Code(rawValue: "bad_argument")
    /// Data on the two sides differs.
    public static let validationFailed = Code(rawValue: "validation_failed")
    /// A file could not be read or written.
    public static let ioError = Code(rawValue: "io_error")
    /// A program run by belt.exec failed.
    public static let commandFailed = Code(rawValue: "command_failed")
    /// A runbook raised an error that is not a belt error.
    public static let scriptError = Code(rawValue: "script_error")
    /// A bug in belt.
    public static let `internal` = Code(rawValue: "internal")
    /// A step of a shipped flow runbook failed for one or more databases (each named).
    public static let stepFailed = Code(rawValue: "step_failed")
    /// Replication that a shipped runbook waits for is down (the cause is in the message).
    public static let replicationDown = Code(rawValue: "replication_down")

    /// Every code above, in this order (a test checks that none is missing).
    public static let allCases: [Code] = [
      .configInvalid, .notFound, .connectionFailed, .authFailed, .sqlError, .preconditionFailed,
      .timeout,
      .interrupted, .badArgument, .validationFailed, .ioError, .commandFailed, .scriptError,
      .internal,
      .stepFailed, .replicationDown,
    ]
  }

  /// What kind of failure.
  public var code: Code
  /// One sentence, no secrets.
  public var message: String
  /// The datacenter, when known.
  public var dc: String?
  /// The database pair, when known.
  public var db: String?
  /// The server's SQLSTATE, for SQL errors.
  public var sqlstate: String?
  /// Whether calling again may succeed.
  public var retryable: Bool
  /// The Lua traceback, for an error that a script raised (logged at debug level, in --json).
  public var traceback: String?
  /// "file:line" of the operator's script line that raised or made the failing call; nil when
  /// the error did not come from a script of the operator's (shipped runbooks have none).
  public var position: String?

  public init(
    _ code: Code, _ message: String, dc: String? = nil, db: String? = nil, sqlstate: String? = nil,
    retryable: Bool = false
  ) {
    self.code = code
    self.message = message
    self.dc = dc
    self.db = db
    self.sqlstate = sqlstate
    self.retryable = retryable
  }

  /// "dc/db: message (at file:line)".
  public var description: String {
    var prefix = ""
    if let dc, let db { prefix = "\(dc)/\(db): " } else if let dc { prefix = "\(dc): " }
    return prefix + message + (position.map { " (at \($0))" } ?? "")
  }

  /// Returns a copy that names dc and db (keeping any already set).
  public func located(dc: String?, db: String?) -> BeltError {
    var e = self
    if e.dc == nil { e.dc = dc }
    if e.db == nil { e.db = db }
    return e
  }

  /// The Lua/JSON form: `{code, message, dc, db, sqlstate, retryable}`, plus `traceback` and
  /// `position` when a script raised it.
  public var value: Value {
    var pairs: [(String, Value)] = [
      ("code", .string(code.rawValue)), ("message", .string(message)), ("dc", .from(dc)),
      ("db", .from(db)), ("sqlstate", .from(sqlstate)), ("retryable", .bool(retryable)),
    ]
    if let traceback { pairs.append(("traceback", .string(traceback))) }
    if let position { pairs.append(("position", .string(position))) }
    return .object(pairs)
  }

  /// Converts any error into a BeltError.
  public static func wrap(_ error: any Error, dc: String? = nil, db: String? = nil) -> BeltError {
    if let b = error as? BeltError { return b.located(dc: dc, db: db) }
    if let p = error as? any BeltErrorConvertible { return p.beltError.located(dc: dc, db: db) }
    return BeltError(.internal, String(describing: error), dc: dc, db: db)
  }
}

/// An error of a lower layer (a PostgreSQL error, say) that knows its BeltError form, so Core
/// never names the layers above it.
public protocol BeltErrorConvertible: Error {
  var beltError: BeltError { get }
}
