import ArgumentParser
import BeltRuntime
import Foundation

/// The operations that are commands, in `belt --help` order.
let commandSpecs = OperationRegistry.all.filter(\.isCommand)

/// What the command line adds to an operation, beyond its spec.
enum CLIExtras {
  /// Commands that take `--watch SECONDS` and redraw until Ctrl-C.
  static let watch: Set<String> = ["status"]
}

// ArgumentParser reads a command's name, help and arguments from static members of its type,
// so each command needs a type of its own. `OperationCommand<Slot>` makes one per entry of
// `commandSpecs` without naming any: the slot types `First`, `Next<First>`,
// `Next<Next<First>>`, ... count 0, 1, 2, ... and select the spec.

protocol CommandSlot { static var index: Int { get } }
enum First: CommandSlot { static var index: Int { 0 } }
enum Next<Previous: CommandSlot>: CommandSlot { static var index: Int { Previous.index + 1 } }

/// One command per operation spec, in the registry's order.
func operationCommands<Slot: CommandSlot>(
  from _: Slot.Type = First.self, count: Int = commandSpecs.count
) -> [any ParsableCommand.Type] {
  count == 0
    ? []
    : [OperationCommand<Slot>.self] + operationCommands(from: Next<Slot>.self, count: count - 1)
}

/// `belt <command> DC [DB] [options]`: its name, help and options come from the spec; it runs
/// the command's shipped runbook with the options as `opts`.
///
/// The options are not stored properties, so the type describes them to ArgumentParser through
/// its mirror (ArgumentParser finds its property wrappers with `Mirror(reflecting: Self())`) and
/// reads them back in `init(from:)`, one key per option.
struct OperationCommand<Slot: CommandSlot>: ParsableCommand, CustomReflectable {
  static var spec: OperationSpec { commandSpecs[Slot.index] }

  static var configuration: CommandConfiguration {
    CommandConfiguration(
      commandName: spec.cliName, abstract: spec.summary, discussion: discussion(spec))
  }

  private(set) var global = GlobalOptions()
  private(set) var dc = ""
  private(set) var db: String?
  private(set) var watch: Double?
  /// The options given or defaulted on the command line, in the spec's order.
  private(set) var opts: [(String, Value)] = []

  init() {}

  init(from decoder: any Decoder) throws {
    let spec = Self.spec
    let c = try decoder.container(keyedBy: Key.self)
    global = try c.decode(OptionGroup<GlobalOptions>.self, forKey: Key("global")).wrappedValue
    dc = try c.decode(Argument<String>.self, forKey: Key("dc")).wrappedValue
    db =
      spec.allowsAllDBs
      ? try c.decode(Argument<String?>.self, forKey: Key("db")).wrappedValue
      : try c.decode(Argument<String>.self, forKey: Key("db")).wrappedValue
    for o in spec.commandOptions {
      if let v = try CommandOption.decode(o, from: c) { opts.append((o.key, v)) }
    }
    if CLIExtras.watch.contains(spec.name) {
      watch = try c.decode(Option<Double?>.self, forKey: Key("watch")).wrappedValue
    }
  }

  var customMirror: Mirror {
    let spec = Self.spec
    var children: [Mirror.Child] = [
      ("global", OptionGroup<GlobalOptions>()),
      ("dc", Argument<String>()),
      ("db", spec.allowsAllDBs ? Argument<String?>() as Any : Argument<String>() as Any),
    ]
    children += spec.commandOptions.map { (label: $0.key, value: CommandOption.definition($0)) }
    if CLIExtras.watch.contains(spec.name) {
      children.append(
        (
          "watch",
          Option<Double?>(
            help: ArgumentHelp(
              "Redraw every SECONDS (at least 0.5) until interrupted.", valueName: "seconds"))
        ))
    }
    return Mirror(self, children: children)
  }

  mutating func validate() throws {
    do {
      _ = try Self.spec.checkOptions(Dictionary(opts, uniquingKeysWith: { a, _ in a }))
    } catch {
      throw ValidationError("--\(error.option.longName ?? error.option.key): \(error.problem)")
    }
    if let every = watch, !(every >= 0.5 && every.isFinite) {
      throw ValidationError("--watch: at least 0.5 seconds expected, got \(every)")
    }
  }

  func run() throws {
    let spec = Self.spec
    func once() -> Int32 {
      runRunbook(
        file: spec.cliName + ".lua", dc: dc, db: db, opts: .object(opts), global: global,
        spec: spec, from: .shipped)
    }
    guard let every = watch else {
      let code = once()
      if code != 0 { throw ExitCode(code) }
      return
    }
    while true {
      if !global.json { print("\u{1B}[H\u{1B}[2J", terminator: "") }
      _ = once()
      Thread.sleep(forTimeInterval: every)
    }
  }

  static func discussion(_ spec: OperationSpec) -> String {
    var parts = [spec.details]
    if spec.allowsAllDBs {
      switch spec.sides {
      case .both: parts.append("Requires both src and dst to be not null in the config file.")
      case .srcOnly: parts.append("Can be run with a null dst in the config file.")
      case .dstOnly: parts.append("Can be run with a null src in the config file.")
      case .none: break
      }
      parts.append("If the db name is not given run on all dbs in the dc.")
    }
    return parts.filter { !$0.isEmpty }.joined(separator: "\n\n")
  }

  struct Key: CodingKey {
    var stringValue: String
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    var intValue: Int? { nil }
    init?(intValue: Int) { nil }
  }
}

/// The ArgumentParser property wrapper that stands for one spec option, and its parsed value.
enum CommandOption {
  static func names(_ o: OptionSpec) -> NameSpecification {
    let long = NameSpecification.Element.customLong(o.longName ?? o.key)
    guard let short = o.cli?.short else { return [long] }
    return [.customShort(short), long]
  }

  /// The wrapper, holding its definition (what the mirror shows ArgumentParser).
  static func definition(_ o: OptionSpec) -> Any {
    let help = ArgumentHelp(o.help)
    let name = names(o)
    switch o.type {
    case .bool:
      let initial = o.defaultValue?.boolValue ?? false
      if o.cli?.inverted == true {
        return Flag<Bool>(wrappedValue: initial, name: name, inversion: .prefixedNo, help: help)
      }
      return Flag<Bool>(wrappedValue: initial, name: name, help: help)
    case .int:
      if let d = o.defaultValue?.intValue {
        return Option<Int>(wrappedValue: d, name: name, help: help)
      }
      return o.required ? Option<Int>(name: name, help: help) : Option<Int?>(name: name, help: help)
    case .number:
      if let d = o.defaultValue.flatMap({ Double($0.display) }) {
        return Option<Double>(wrappedValue: d, name: name, help: help)
      }
      return o.required
        ? Option<Double>(name: name, help: help) : Option<Double?>(name: name, help: help)
    case .string, .duration:
      if let d = o.defaultValue {
        return Option<String>(wrappedValue: d.display, name: name, help: help)
      }
      return o.required
        ? Option<String>(name: name, help: help) : Option<String?>(name: name, help: help)
    case .strings:
      return Option<[String]>(wrappedValue: [], name: name, parsing: .singleValue, help: help)
    case .table:
      preconditionFailure("option \(o.key) is a table: it cannot be a command-line option")
    }
  }

  /// The parsed value; nil when an option without a default was not given.
  static func decode<K: CodingKey>(_ o: OptionSpec, from c: KeyedDecodingContainer<K>) throws
    -> Value?
  {
    guard let key = K(stringValue: o.key) else { return nil }
    let fixed = o.defaultValue != nil || o.required
    switch o.type {
    case .bool:
      return .bool(try c.decode(Flag<Bool>.self, forKey: key).wrappedValue)
    case .int:
      if fixed { return .int(try c.decode(Option<Int>.self, forKey: key).wrappedValue) }
      return try c.decode(Option<Int?>.self, forKey: key).wrappedValue.map(Value.int)
    case .number:
      if fixed { return .double(try c.decode(Option<Double>.self, forKey: key).wrappedValue) }
      return try c.decode(Option<Double?>.self, forKey: key).wrappedValue.map(Value.double)
    case .string, .duration:
      if fixed { return .string(try c.decode(Option<String>.self, forKey: key).wrappedValue) }
      return try c.decode(Option<String?>.self, forKey: key).wrappedValue.map(Value.string)
    case .strings:
      return .from(try c.decode(Option<[String]>.self, forKey: key).wrappedValue)
    case .table:
      return nil
    }
  }
}
