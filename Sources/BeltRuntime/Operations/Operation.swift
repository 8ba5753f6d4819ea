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
    name: String, summary: String, details: String = "", sides: SidesNeeded,
    options: [OptionSpec] = [],
    allowsAllDBs: Bool = true, isCommand: Bool = true, columns: [(String, String)] = [],
    render: (@Sendable ([Value]) -> String)? = nil,
    body: @escaping @Sendable (PairContext) throws -> Value
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
    _ key: String, _ type: OptionType, _ help: String, default defaultValue: Value? = nil,
    choices: [String] = [],
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
  public var longName: String? {
    cli.map { $0.long ?? key.replacingOccurrences(of: "_", with: "-") }
  }

  /// Checks one present value; returns it normalised.
  func check(_ v: Value) throws(OptionError) -> Value {
    func bad(_ want: String) -> OptionError {
      OptionError(option: self, problem: "\(want) expected")
    }
    switch type {
    case .bool: guard case .bool = v else { throw bad("boolean") }
    case .int:
      guard let n = v.intValue else { throw bad("integer") }
      if let minimum, n < minimum {
        throw OptionError(option: self, problem: "must be at least \(minimum), got \(n)")
      }
      return .int(n)
    case .number:
      switch v {
      case .int, .double: break;
      default: throw bad("number")
      }
    case .string:
      guard case .string(let s) = v else { throw bad("string") }
      if !choices.isEmpty, !choices.contains(s) {
        let list = choices.dropLast().joined(separator: ", ") + " or " + (choices.last ?? "")
        throw OptionError(option: self, problem: "must be \(list), got \(Value.jsonQuote(s))")
      }
    case .strings:
      if case .string = v { return .array([v]) }
      if case .object(let o) = v, o.isEmpty { return .array([]) }
      guard let a = v.arrayValue, a.allSatisfy({ $0.stringValue != nil }) else {
        throw bad("list of strings")
      }
    case .duration:
      switch v {
      case .int, .double: break
      case .string(let s):
        do { _ = try Durations.parse(s) } catch {
          throw OptionError(
            option: self, problem: (error as? BeltError)?.message ?? "invalid duration")
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
