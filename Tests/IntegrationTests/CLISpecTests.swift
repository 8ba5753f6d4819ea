import Foundation
import Testing

@testable import BeltRuntime

/// The command line is derived from the operation table and nothing else: read back through
/// ArgumentParser's own description of the tool (`--experimental-dump-help`), it has exactly the
/// table's commands plus run, repl and help-lua, each with the spec's summary, details, arguments
/// and options (names, kind, repetition, default), and each typed option refuses a bad value.
@Suite struct CLISpecTests {
  /// Options every command has (GlobalOptions and ArgumentParser's own).
  static let global: Set<String> = [
    "json", "verbose", "jobs", "config-dir", "yes", "audit-log", "version", "help",
  ]
  /// What the command line adds beyond the spec (Sources/belt `CLIExtras`).
  static let cliOnly: [String: [Argument]] = [
    "status": [Argument(kind: "option", names: ["watch"])]
  ]

  struct Argument: Equatable, CustomStringConvertible {
    var kind: String
    var names: [String]
    var repeating = false
    var defaultValue: String? = nil
    var description: String {
      "\(kind) \(names) \(repeating ? "repeating " : "")default=\(defaultValue ?? "-")"
    }
  }

  /// The arguments a spec option must have on the command line.
  static func expected(_ o: OptionSpec) -> [Argument] {
    guard let long = o.longName else { return [] }
    let names = (o.cli?.short.map { [String($0)] } ?? []) + [long]
    switch o.type {
    case .bool:
      guard o.cli?.inverted == true else { return [Argument(kind: "flag", names: names)] }
      let on = o.defaultValue?.boolValue ?? false
      return [
        Argument(kind: "flag", names: names, defaultValue: on ? "--\(long)" : "--no-\(long)"),
        Argument(kind: "flag", names: ["no-\(long)"]),
      ]
    case .strings: return [Argument(kind: "option", names: names, repeating: true)]
    default: return [Argument(kind: "option", names: names, defaultValue: o.defaultValue?.display)]
    }
  }

  @Test func theCommandLineIsTheOperationTable() throws {
    let r = try CLI.run(["--experimental-dump-help"])
    #expect(r.code == 0)
    let subs = try JSONParser.parse(r.out)["command"]?["subcommands"]?.arrayValue ?? []
    let commands = OperationRegistry.all.filter(\.isCommand)
    let names = subs.compactMap { $0["commandName"]?.stringValue }.filter { $0 != "help" }
    // (and the hidden process belt starts itself: the pgbouncer watchdog)
    #expect(names == commands.map(\.cliName) + ["run", "repl", "help-lua", "_pgbouncer-watchdog"])
    // An operation without a command is a runbook primitive whose options are tables.
    for op in OperationRegistry.all where !op.isCommand {
      #expect(op.options.contains { $0.type == .table }, "\(op.name) has no command")
    }
    for op in commands {
      guard let sub = subs.first(where: { $0["commandName"]?.stringValue == op.cliName }) else {
        Issue.record("\(op.cliName) is missing from the CLI's dump")
        continue
      }
      #expect(sub["abstract"]?.stringValue == op.summary, "\(op.cliName) abstract")
      let discussion = sub["discussion"]?.stringValue ?? ""
      #expect(discussion.hasPrefix(op.details), "\(op.cliName) discussion")
      #expect(
        discussion.contains("If the db name is not given run on all dbs in the dc.")
          == op.allowsAllDBs)
      let args = sub["arguments"]?.arrayValue ?? []
      let positional = args.filter { $0["kind"] == "positional" }.map {
        "\($0["valueName"]?.stringValue ?? "")\($0["isOptional"] == true ? "?" : "")"
      }
      #expect(
        positional == ["dc", op.allowsAllDBs ? "db?" : "db"], "\(op.cliName) positional arguments")
      let named = args.filter { $0["kind"] != "positional" }.map { a in
        Argument(
          kind: a["kind"]?.stringValue ?? "",
          names: (a["names"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue },
          repeating: a["isRepeating"] == true, defaultValue: a["defaultValue"]?.stringValue)
      }.filter { !$0.names.contains { Self.global.contains($0) } }
      let want = op.commandOptions.flatMap(Self.expected) + (Self.cliOnly[op.name] ?? [])
      #expect(named == want, "\(op.cliName) options")
    }
  }

  /// The option types reach the parser: a value of the wrong type, outside the choices or
  /// below the minimum is refused with one line and exit 64 before anything runs.
  @Test func typedOptionsRefuseBadValues() throws {
    for op in OperationRegistry.all where op.isCommand {
      for o in op.commandOptions {
        guard let long = o.longName else { continue }
        let bad: String
        switch o.type {
        case .int, .number: bad = "not-a-number"
        case .duration: bad = "5q"
        case .string where !o.choices.isEmpty: bad = "bogus"
        default: continue
        }
        let r = try CLI.run([op.cliName, "dc", "db", "--\(long)", bad])
        #expect(r.code == 64, "\(op.cliName) --\(long) \(bad): \(r.err)")
        #expect(r.err.hasPrefix("belt: ") && r.err.split(separator: "\n").count == 1, "\(r.err)")
        #expect(r.err.contains("--\(long)"), "\(r.err)")
      }
      for o in op.commandOptions where o.minimum != nil {
        guard let long = o.longName, let min = o.minimum else { continue }
        let r = try CLI.run([op.cliName, "dc", "db", "--\(long)=\(min - 1)"])
        #expect(r.code == 64 && r.err.contains("--\(long): must be at least \(min)"), "\(r.err)")
      }
    }
    // status --watch: refused below its floor instead of being raised silently.
    for bad in ["0", "-1", "0.1", "nan"] {
      let r = try CLI.run(["status", "dc", "--watch=\(bad)"])
      #expect(
        r.code == 64 && r.err.contains("--watch: at least 0.5 seconds expected"), "\(bad): \(r.err)"
      )
    }
  }
}
