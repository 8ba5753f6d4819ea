import Foundation
import Testing

@testable import BeltRuntime

/// The seed's command surface plus pgbelt 0.20's two new commands (diff-sequences,
/// cleanup-previous-config): every command, its arguments and options, in --help, in pgbelt's order.
let seedCommands: [(String, String, [String])] = [
  ("connections", "<dc> [<db>]", ["--exclude-user", "-e", "--exclude-pattern", "-p"]),
  ("src-dsn", "<dc> <db>", ["--owner", "--no-owner", "--pglogical", "--no-pglogical"]),
  ("dst-dsn", "<dc> <db>", ["--owner", "--no-owner", "--pglogical", "--no-pglogical"]),
  ("check-pkeys", "<dc> <db>", []),
  ("check-connectivity", "<dc> [<db>]", []),
  ("revoke-logins", "<dc> [<db>]", ["--exclude-user", "--exclude-pattern"]),
  ("restore-logins", "<dc> [<db>]", ["--exclude-user", "--exclude-pattern"]),
  ("precheck", "<dc> [<db>]", []),
  ("reset", "<dc> [<db>]", ["--force"]),
  ("dump-schema", "<dc> [<db>]", []),
  ("load-schema", "<dc> [<db>]", []),
  ("load-constraints", "<dc> [<db>]", []),
  ("remove-constraints", "<dc> [<db>]", []),
  ("remove-indexes", "<dc> [<db>]", []),
  ("create-indexes", "<dc> [<db>]", []),
  ("diff-schemas", "<dc> [<db>]", ["--full"]),
  ("setup", "<dc> [<db>]", ["--schema", "--no-schema"]),
  ("setup-back-replication", "<dc> [<db>]", []),
  ("status", "<dc> [<db>]", ["--watch"]),
  ("sync-sequences", "<dc> [<db>]", ["--stride"]),
  ("sync-tables", "<dc> [<db>]", ["--table"]),
  ("analyze", "<dc> [<db>]", []),
  ("validate-data", "<dc> [<db>]", ["--full"]),
  ("sync", "<dc> [<db>]", ["--no-schema", "--no-no-schema"]),
  ("diff-sequences", "<dc> [<db>]", []),
  ("teardown-back-replication", "<dc> [<db>]", []),
  ("teardown-forward-replication", "<dc> [<db>]", ["--timeout", "--no-wait"]),
  ("teardown", "<dc> [<db>]", ["--full", "--no-full"]),
  ("cleanup-previous-config", "<dc> [<db>]", ["--full", "--no-full"]),
]

@Suite struct CLITests {
  /// CLI.run drains stdout and stderr at once: a child that writes far more than a pipe buffer
  /// (64 KB) to stderr before closing stdout finishes instead of blocking the test forever.
  @Test func runReadsBothPipesAtOnce() throws {
    let dc = try TestDC()
    let script = dc.root + "/loud.lua"
    try """
    for i = 1, 4000 do io.stderr:write(string.rep("e", 99), "\\n") end
    print("done")
    """.write(toFile: script, atomically: true, encoding: .utf8)
    // On a thread of its own, so that a CLI.run that blocks fails this test instead of hanging the run.
    final class Box: @unchecked Sendable { var result: Swift.Result<CLI.Result, any Error>? }
    let box = Box()
    let finished = DispatchSemaphore(value: 0)
    let args = ["run", script, dc.dc, "--config-dir", dc.root]
    Thread.detachNewThread {
      box.result = Swift.Result { try CLI.run(args) }
      finished.signal()
    }
    guard finished.wait(timeout: .now() + 60) == .success, let result = box.result else {
      Issue.record("CLI.run did not return within 60 s: it blocks on a full stderr pipe")
      return
    }
    let r = try result.get()
    #expect(r.code == 0, "\(r.err.suffix(300))")
    #expect(r.err.utf8.count >= 400_000, "\(r.err.utf8.count) bytes of stderr")
    #expect(r.out == "done\n")
  }

  @Test func rootHelpListsEveryCommandAndCompletionFlags() throws {
    let r = try CLI.run(["--help"])
    #expect(r.code == 0)
    let listed = Set(
      r.out.split(separator: "\n").compactMap {
        $0.hasPrefix("  ") ? $0.split(separator: " ").first.map(String.init) : nil
      })
    for (cmd, _, _) in seedCommands { #expect(listed.contains(cmd), "\(cmd) in belt --help") }
    // In pgbelt's order.
    let order = r.out.split(separator: "\n").compactMap {
      $0.hasPrefix("  ") ? $0.split(separator: " ").first.map(String.init) : nil
    }
    .filter { c in seedCommands.contains { $0.0 == c } }
    #expect(order == seedCommands.map(\.0), "\(order)")
    #expect(r.out.contains("--install-completion") && r.out.contains("--show-completion"))
    let comp = try CLI.run(["--show-completion"], env: ["SHELL": "/bin/bash"])
    #expect(comp.code == 0 && comp.out.contains("complete") && comp.out.contains("sync-sequences"))
  }

  @Test(arguments: seedCommands.map(\.0))
  func everyCommandHasHelpWithItsArgumentsAndOptions(_ cmd: String) throws {
    let (_, args, options) = try #require(seedCommands.first(where: { $0.0 == cmd }))
    let r = try CLI.run([cmd, "--help"])
    #expect(r.code == 0)
    let usage =
      r.out.split(separator: "\n").first { $0.hasPrefix("USAGE: belt \(cmd) ") }.map(String.init)
      ?? ""
    #expect(usage.contains(args), "usage of \(cmd): \(usage)")
    for o in options + ["--json", "--config-dir", "--jobs", "--verbose"] {
      #expect(r.out.contains(o), "\(cmd) --help mentions \(o)")
    }
    // Every command is bound to an operation and a shipped runbook.
    let op = OperationRegistry.find(cmd)
    #expect(op != nil, "operation for \(cmd)")
    #expect(Runbooks.source(named: cmd + ".lua") != nil)
  }

  @Test func badInputExitsNonZeroWithOneLine() throws {
    let root = NSTemporaryDirectory() + "belt-cli-\(UUID().uuidString)"
    try FileManager.default.createDirectory(
      atPath: root + "/configs/dc/broken", withIntermediateDirectories: true)
    try "{\"db\": \"broken\", \"dc\": ".write(
      toFile: root + "/configs/dc/broken/config.json", atomically: true, encoding: .utf8)
    let usage = try CLI.run(["precheck"])
    #expect(usage.code == 64)
    let unknownOption = try CLI.run(["precheck", "dc", "--bogus"])
    #expect(unknownOption.code == 64)
    let malformed = try CLI.run(["check-pkeys", "dc", "broken", "--config-dir", root])
    #expect(malformed.code == 1)
    #expect(
      malformed.err
        == "belt: dc/broken: \(root)/configs/dc/broken/config.json: invalid JSON at line 1, column 24: unexpected end of input\n"
    )
    let json = try CLI.run(["precheck", "dc", "broken", "--config-dir", root, "--json"])
    #expect(json.code == 1)
    let doc = try JSONParser.parse(json.out)
    #expect(doc["ok"] == false && doc["error"]?["code"] == "config_invalid")
    let script = try CLI.run(["run", root + "/missing.lua", "dc", "--config-dir", root])
    #expect(script.code == 1 && script.err.contains("runbook \(root)/missing.lua not found"))
    let badScript = root + "/bad.lua"
    try "local x = = 1".write(toFile: badScript, atomically: true, encoding: .utf8)
    let syntax = try CLI.run(["run", badScript, "dc", "--config-dir", root])
    #expect(
      syntax.code == 1 && syntax.err.contains("bad.lua:1:")
        && syntax.err.split(separator: "\n").count == 1)
    let rtErr = root + "/rt.lua"
    try "local t = nil\nreturn t.x".write(toFile: rtErr, atomically: true, encoding: .utf8)
    let runtime = try CLI.run(["run", rtErr, "dc", "--config-dir", root])
    #expect(runtime.code == 1 && runtime.err.contains("rt.lua:2: attempt to index a nil value"))
    // repl with a dc that does not exist (a typo) is refused before the prompt
    let repl = try CLI.run(
      ["repl", "no-such-dc", "--config-dir", root], stdin: "print('started')\n")
    #expect(repl.code == 1 && repl.out.isEmpty, "\(repl.out)")
    #expect(
      repl.err
        == "belt: no-such-dc: unknown dc \"no-such-dc\": no directory \(root)/configs/no-such-dc (nor \(root)/remote-configs/no-such-dc)\n"
    )
    let traversal = try CLI.run(["repl", "../dc", "--config-dir", root], stdin: "")
    #expect(traversal.code == 1 && traversal.err.contains("invalid dc name"), "\(traversal.err)")
    // The same for every command: exit 1 like an unknown dc (2 is a bad Lua argument).
    let badName = try CLI.run(["status", "..", "--config-dir", root])
    #expect(
      badName.code == 1 && badName.err.contains("invalid dc name \"..\": a name, not a path"),
      "\(badName.err)")
    // A runbook raising a table without a message: its fields, not "table: 0x...".
    let bare = root + "/bare.lua"
    try "error({code = \"custom_fail\", detail = 3})".write(
      toFile: bare, atomically: true, encoding: .utf8)
    let bareErr = try CLI.run(["run", bare, "dc", "--config-dir", root])
    #expect(
      bareErr.code == 1
        && bareErr.err.contains(
          "error object without a message: {\"code\":\"custom_fail\",\"detail\":3}"),
      "\(bareErr.err)")
    // the config file was not touched
    #expect(
      try String(contentsOfFile: root + "/configs/dc/broken/config.json", encoding: .utf8)
        == "{\"db\": \"broken\", \"dc\": ")
  }

  /// `belt.error(code, msg)` in a script: one line on stderr naming the script line, and with
  /// --json the error keeps its code, dc, db and traceback.
  @Test func scriptErrorReachesTheJSONOutputWithItsFields() throws {
    let root = NSTemporaryDirectory() + "belt-cli-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    let script = root + "/raise.lua"
    try "local dc, db = ...\nerror(belt.error('timeout', 'drain took too long'))\n".write(
      toFile: script, atomically: true, encoding: .utf8)
    let human = try CLI.run(["run", script, "mydc", "app", "--config-dir", root])
    #expect(human.code == 1)
    #expect(human.err == "belt: mydc/app: drain took too long (at \(script):2)\n")
    let json = try CLI.run(["run", script, "mydc", "app", "--config-dir", root, "--json"])
    #expect(json.code == 1)
    let error = try JSONParser.parse(json.out)["error"]
    #expect(error?["code"] == "timeout" && error?["message"] == "drain took too long")
    #expect(error?["dc"] == "mydc" && error?["db"] == "app")
    #expect(error?["position"] == .string("\(script):2"))
    #expect(error?["traceback"]?.stringValue?.hasPrefix("stack traceback:") == true)
  }

  @Test func runPassesArgumentsToTheScript() throws {
    let root = NSTemporaryDirectory() + "belt-cli-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    let script = root + "/args.lua"
    try
      "local dc, db, opts = ...\nprint(dc, db, opts.lag, opts.n + 1, opts.args[1])\nreturn {ok = true}"
      .write(toFile: script, atomically: true, encoding: .utf8)
    let r = try CLI.run([
      "run", script, "mydc", "mydb", "--config-dir", root, "--", "lag=1MB", "n=41", "extra",
    ])
    #expect(r.code == 0)
    #expect(r.out.hasPrefix("mydc\tmydb\t1MB\t42\textra\n"))
    let fail = root + "/fail.lua"
    try "return {ok = false}".write(toFile: fail, atomically: true, encoding: .utf8)
    #expect(try CLI.run(["run", fail, "mydc", "--config-dir", root]).code == 1)
  }

  /// A runbook-named file in the working directory never replaces a built-in command (it
  /// would run with every password of the configs at hand); `belt run FILE` runs a file.
  @Test func builtInCommandsNeverRunAFileFromTheWorkingDirectory() throws {
    let root = NSTemporaryDirectory() + "belt-cli-\(UUID().uuidString)"
    try FileManager.default.createDirectory(
      atPath: root + "/configs/dc1", withIntermediateDirectories: true)
    for name in ["status", "setup", "revoke-logins", "check-connectivity"] {
      try "print('PLANTED'); return {ok = true}".write(
        toFile: "\(root)/\(name).lua", atomically: true, encoding: .utf8)
    }
    for cmd in ["status", "setup", "revoke-logins", "check-connectivity"] {
      let r = try CLI.run([cmd, "dc1"], cwd: root)
      #expect(
        !r.out.contains("PLANTED") && !r.err.contains("PLANTED"), "\(cmd) ran the planted file")
      #expect(r.code != 0, "\(cmd): a dc without databases is an error")
    }
    // belt run: a path runs the file; a bare name that is also a shipped runbook is refused
    // (the shipped flows are run by name, so a planted cutover.lua would stand in for them).
    try "print('PLANTED'); return {ok = true}".write(
      toFile: "\(root)/cutover.lua", atomically: true, encoding: .utf8)
    for name in ["status.lua", "cutover.lua"] {
      let ambiguous = try CLI.run(["run", name, "dc1"], cwd: root)
      #expect(
        ambiguous.code == 64 && !ambiguous.out.contains("PLANTED")
          && !ambiguous.err.contains("PLANTED"))
      #expect(
        ambiguous.err.contains(
          "\(name) is both a file in the working directory and a shipped runbook"),
        "\(ambiguous.err)")
      let file = try CLI.run(["run", "./\(name)", "dc1"], cwd: root)
      #expect(
        file.code == 0 && file.out.contains("PLANTED"), "belt run ./FILE runs the file it names")
      let shipped = try CLI.run(["run", "--shipped", name, "dc1"], cwd: root)
      #expect(
        shipped.code == 1 && !shipped.out.contains("PLANTED") && !shipped.err.contains("PLANTED"))
      // A dc without databases is an error for the flows too, never "nothing to do".
      #expect(shipped.err.contains("dc \"dc1\" has no databases"), "\(shipped.err)")
    }
    try "print('MINE'); return {ok = true}".write(
      toFile: "\(root)/my-flow.lua", atomically: true, encoding: .utf8)
    #expect(
      try CLI.run(["run", "my-flow.lua", "dc1"], cwd: root).out.contains("MINE"),
      "an operator's own name runs")
    let notShipped = try CLI.run(["run", "--shipped", "my-flow.lua", "dc1"], cwd: root)
    #expect(notShipped.code == 1 && notShipped.err.contains("my-flow.lua is not a shipped runbook"))
    let missing = try CLI.run(["run", "./nofile.lua", "dc1"], cwd: root)
    #expect(
      missing.code == 1 && missing.err == "belt: runbook ./nofile.lua not found: no such file\n",
      "\(missing.err)")
  }

  /// `belt run NAME --help` shows run's help and the options the flow runbook declares, with
  /// their defaults (the ones the runbook uses); help-lua shows them too.
  @Test func runHelpShowsAFlowRunbooksOptions() throws {
    let r = try CLI.run(["run", "cutover.lua", "--help"])
    #expect(r.code == 0, "\(r.err)")
    #expect(
      r.out.contains("USAGE: belt run") && r.out.contains("OPTIONS OF cutover.lua"), "\(r.out)")
    #expect(
      r.out.contains("drain_timeout=auto") && r.out.contains("or 0s with switch=pgbouncer"),
      "\(r.out)")
    let rollback = try CLI.run(["run", "--shipped", "rollback.lua", "dc", "-h"])
    #expect(
      rollback.code == 0 && rollback.out.contains("drain_timeout=1m")
        && rollback.out.contains("catchup_timeout=5m"), "\(rollback.out)")
    // A runbook without declared options: run's help alone.
    let plain = try CLI.run(["run", "status.lua", "--help"])
    #expect(
      plain.code == 0 && plain.out.contains("USAGE: belt run") && !plain.out.contains("OPTIONS OF"),
      "\(plain.out)")
    let lua = try CLI.run(["help-lua"])
    for name in ["migrate.lua", "cutover.lua", "rollback.lua"] {
      #expect(lua.out.contains("OPTIONS OF \(name)"), "help-lua lists \(name)'s options")
    }
  }

  @Test func helpLuaDocumentsTheApi() throws {
    let r = try CLI.run(["help-lua"])
    #expect(r.code == 0)
    #expect(
      r.out.contains("belt.wait_for(")
        && r.out.contains("belt.precheck(dc[, db][, {accept_logged_secrets=bool}])"))
    // Every option of every operation is documented with its help, in the text and the LuaCATS file.
    let meta = try CLI.run(["help-lua", "--meta"])
    for op in OperationRegistry.all {
      for o in op.options {
        #expect(r.out.contains("      \(o.key): \(o.help)"), "help-lua: \(op.name).\(o.key)")
        #expect(
          meta.out.contains("---@field \(o.key) ") && meta.out.contains(o.help),
          "meta: \(op.name).\(o.key)")
      }
    }
    #expect(r.out.contains("(default \"nologin\"; one of nologin, connect, auto)"))
    #expect(meta.out.contains("---@field fence \"nologin\"|\"connect\"|\"auto\"? "))
  }
}

@Suite struct ReplTests {
  @Test func replEvaluatesExpressionsAndPrintsTablesThroughAPty() throws {
    let root = NSTemporaryDirectory() + "belt-repl-\(UUID().uuidString)"
    try FileManager.default.createDirectory(
      atPath: root + "/configs/mydc", withIntermediateDirectories: true)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/script")
    p.arguments = ["-qfec", "\(CLI.binary) repl mydc --config-dir \(root)", "/dev/null"]
    var env = ProcessInfo.processInfo.environment
    env["HOME"] = root
    p.environment = env
    let input = Pipe()
    let out = Pipe()
    p.standardInput = input
    p.standardOutput = out
    p.standardError = out
    try p.run()
    input.fileHandleForWriting.write(
      Data(
        "1 + 41\n{name = dc, list = {1, 2}}\nfor i = 1, 2 do\nprint('line' .. i)\nend\nbelt.db\t('nope')\ntostr\t(42) .. 'x'\n"
          .utf8))
    try input.fileHandleForWriting.close()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\r", with: "")
    #expect(text.contains("\n42\n"))
    #expect(text.contains("name = \"mydc\""))
    #expect(text.contains("list = { 1, 2 }"))
    #expect(text.contains("line1\nline2"))
    // Tab completes `belt.db` to `belt.dbs` and `tostr` to `tostring`.
    #expect(text.contains("unknown dc \"nope\""), "\(text)")
    #expect(text.contains("\n\"42x\"\n"), "\(text)")
    // history is kept across sessions
    let hist = (try? String(contentsOfFile: root + "/.belt_history", encoding: .utf8)) ?? ""
    #expect(hist.contains("41"))  // libedit stores "1\\040+\\04041"
  }
}
