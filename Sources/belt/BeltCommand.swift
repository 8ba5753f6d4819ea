import ArgumentParser
import BeltRuntime
import Foundation
import Logging

/// Options every subcommand accepts.
struct GlobalOptions: ParsableArguments {
  @Flag(
    name: .long, help: "Print one JSON document with the result on stdout (logs stay on stderr).")
  var json = false

  @Flag(name: .shortAndLong, help: "Log debug details to stderr.")
  var verbose = false

  @Option(name: .long, help: "Databases processed at once when DB is omitted.")
  var jobs: Int = 8

  @Option(
    name: .long,
    help:
      "Directory holding configs/ and schemas/ (default: $BELT_CONFIG_DIR or the current directory)."
  )
  var configDir: String?

  @Flag(name: .long, help: "Answer yes to confirmations (unattended runs).")
  var yes = false

  @Option(
    name: .long,
    help:
      "Append the audit log (every statement that changes a server) to FILE, or to DIR/<dc>/<db>/audit.jsonl (default: configs/<dc>/<db>/audit.jsonl; also $BELT_AUDIT_LOG)."
  )
  var auditLog: String?

  func validate() throws {
    if jobs < 1 { throw ValidationError("--jobs must be at least 1") }
  }

  var root: String {
    configDir ?? ProcessInfo.processInfo.environment["BELT_CONFIG_DIR"]
      ?? FileManager.default.currentDirectoryPath
  }

  func makeEnvironment() -> Environment {
    let level: Logger.Level = verbose ? .debug : .notice
    var logger = Logger(label: "belt") { label in
      var h = StreamLogHandler.standardError(label: label)
      h.logLevel = level
      return h
    }
    logger.logLevel = level
    let timeout = Int(ProcessInfo.processInfo.environment["BELT_CONNECT_TIMEOUT"] ?? "") ?? 10
    return Environment(
      store: ConfigStore(root: root), logger: logger, jobs: jobs, connectTimeout: timeout,
      auditLog: auditLog ?? ProcessInfo.processInfo.environment["BELT_AUDIT_LOG"])
  }

  var flags: [String: Value] {
    [
      "json": .bool(json), "yes": .bool(yes), "verbose": .bool(verbose),
      "command": .string(commandLine),
    ]
  }

  /// This invocation as a shell command (`belt run cutover.lua dc -- drain_timeout=2m`): what a
  /// journal records as the command that continues an interrupted flow. belt's arguments
  /// never hold a secret (passwords live in the config files).
  var commandLine: String {
    let safe = CharacterSet(
      charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./=:@%+,-")
    let words = CommandLine.arguments.dropFirst().map { a -> String in
      if !a.isEmpty, a.unicodeScalars.allSatisfy({ safe.contains($0) }) { return a }
      return "'" + a.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
    return (["belt"] + words).joined(separator: " ")
  }
}

func eprint(_ s: String) {
  FileHandle.standardError.write(Data((s + "\n").utf8))
}

/// Runs a runbook and prints its result; returns the exit code. Built-in commands run the
/// runbook compiled into belt, never a file from the working directory (`belt run FILE` is the
/// one way to run a file).
func runRunbook(
  file: String, dc: String, db: String?, opts: Value, global: GlobalOptions, spec: OperationSpec?,
  from origin: Session.Source
) -> Int32 {
  let env = global.makeEnvironment()
  let output = OutputSink.standard(stderr: global.json)
  do {
    let session = try Session(env: env, output: output, flags: global.flags)
    let result = try session.run(file: file, dc: dc, db: db, opts: opts, from: origin)
    if global.json {
      print(result.json())
    } else {
      let text = Render.human(result, spec: spec)
      if !text.isEmpty { FileHandle.standardOutput.write(Data(text.utf8)) }
      for f in Render.failures(result) { eprint("belt: " + f) }
    }
    if case .object = result, result["ok"]?.boolValue == false { return 1 }
    return 0
  } catch {
    let e = BeltError.wrap(error)
    if global.json {
      print(
        Value.object([
          ("ok", .bool(false)), ("dc", .string(dc)), ("db", .from(db)), ("error", e.value),
        ]).json())
    }
    eprint("belt: " + e.description)
    return e.code == .badArgument ? 2 : 1
  }
}
