import ArgumentParser
import BeltRuntime
import Foundation

struct Run: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run a Lua runbook against a dc (all databases) or one database.",
    discussion: """
      FILE is a path to a Lua script, or the name of a shipped runbook (e.g. cutover.lua). \
      A bare name that is both a file in the working directory and a shipped runbook is \
      refused: say ./NAME for the file, or --shipped NAME for belt's. \
      The script receives `dc, db, opts` as `...`; `opts` holds the `key=value` arguments given \
      after `--` (integers and true/false are converted), and the other arguments after `--` as \
      the list opts.args. Every belt command is available as \
      belt.<command_with_underscores>(dc, db, opts).

      Example: belt run cutover.lua testdc -- max_lag=1048576 drain_timeout=2m
      """)
  @OptionGroup var global: GlobalOptions
  @Flag(help: "Run the shipped runbook FILE, never a file of that name.") var shipped = false
  @Argument(help: "A Lua file, or a shipped runbook name.") var file: String
  @Argument var dc: String
  @Argument var db: String?
  @Argument(parsing: .postTerminator, help: "key=value arguments for the script (after --).")
  var args: [String] = []

  func validate() throws {
    // An ambiguous name is a usage error; a missing file is reported by run() (exit 1).
    do { _ = try Session.resolve(file, from: origin) } catch let e as BeltError
      where e.code == .badArgument
    {
      throw ValidationError(e.message)
    } catch {}
  }

  var origin: Session.Source { shipped ? .shipped : .fileOrShipped }

  func run() throws {
    var pairs: [(String, Value)] = []
    var positional: [Value] = []
    for a in args {
      if let eq = a.firstIndex(of: "="), eq != a.startIndex {
        let k = String(a[..<eq])
        let v = String(a[a.index(after: eq)...])
        pairs.append(
          (
            k,
            Int(v).map(Value.int)
              ?? (v == "true" ? .bool(true) : v == "false" ? .bool(false) : .string(v))
          ))
      } else {
        positional.append(.string(a))
      }
    }
    if !positional.isEmpty { pairs.append(("args", .array(positional))) }
    let code = runRunbook(
      file: file, dc: dc, db: db, opts: .object(pairs), global: global, spec: nil, from: origin)
    if code != 0 { throw ExitCode(code) }
  }
}

extension Run {
  /// `belt run FILE --help` (before any `--`): run's help, then the options that FILE, a
  /// shipped flow runbook, declares. Nil when the words are not that, or FILE declares none
  /// (ArgumentParser then prints run's help alone).
  static func helpWithRunbookOptions(_ words: [String]) -> String? {
    guard words.first == "run" else { return nil }
    let before = Array(words.dropFirst().prefix { $0 != "--" })
    guard before.contains("--help") || before.contains("-h") else { return nil }
    // The first positional word is FILE (the options with a value take the next word).
    var file: String?
    var i = 0
    while i < before.count, file == nil {
      let w = before[i]
      if ["--jobs", "--config-dir", "--audit-log"].contains(w) {
        i += 2
        continue
      }
      if !w.hasPrefix("-") { file = w }
      i += 1
    }
    guard let file, let global = try? GlobalOptions.parse([]) else { return nil }
    let origin: Session.Source = before.contains("--shipped") ? .shipped : .fileOrShipped
    guard
      let session = try? Session(
        env: global.makeEnvironment(), output: OutputSink.standard(stderr: true),
        flags: global.flags),
      let options = try? session.optionsHelp(file, from: origin)
    else { return nil }
    return Belt.helpMessage(for: Run.self) + "\n" + options
  }
}

struct Repl: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Interactive Lua prompt with the belt table, for ad hoc inspection.",
    discussion: """
      Expressions print their value (tables pretty-printed); multi-line input continues until the
      chunk is complete; Ctrl-C interrupts the running call, not the REPL; Ctrl-D exits.
      The global `dc` holds DC when given. Type :help for help. History is kept in ~/.belt_history.
      """)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String?

  func run() throws {
    let env = global.makeEnvironment()
    do {
      // A mistyped dc is refused as by every command (one without databases yet is fine here).
      if let dc { try env.store.checkDC(dc) }
      let session = try Session(env: env, output: OutputSink.standard(), flags: global.flags)
      ReplLoop.run(session: session, dc: dc)
    } catch {
      eprint("belt: " + BeltError.wrap(error).description)
      throw ExitCode.failure
    }
  }
}

struct HelpLua: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "help-lua", abstract: "Print the Lua scripting API (every belt.* function).")
  @Flag(help: "Print LuaCATS definitions (runbooks/belt.meta.lua) instead.")
  var meta = false

  func run() throws {
    if meta {
      print(LuaDocs.meta())
      return
    }
    print(LuaDocs.text())
    // The flow runbooks' options, as `belt run NAME --help` shows them.
    let global = try GlobalOptions.parse([])
    let session = try Session(
      env: global.makeEnvironment(), output: OutputSink.standard(stderr: true), flags: global.flags)
    print(try session.allOptionsHelp(), terminator: "")
  }
}
