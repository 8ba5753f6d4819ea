import BeltRunbooks
import CSignals
import Foundation
import Logging
import Testing

@testable import BeltRuntime

/// Collects what scripts print.
final class Captured: @unchecked Sendable {
  var text = ""
}

func makeRuntime(_ extra: [LuaFunctionSpec] = [], root: String = "/nonexistent-belt-root") throws
  -> (LuaRuntime, Captured)
{
  let cap = Captured()
  let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
  let env = Environment(store: ConfigStore(root: root), logger: logger)
  let rt = try LuaRuntime(env: env, output: OutputSink { cap.text += $0 }, extraFunctions: extra)
  return (rt, cap)
}

/// Counts Swift cleanups that ran.
final class Counter: @unchecked Sendable {
  var n = 0
}

@Suite(.serialized)
struct LuaBoundaryTests {
  @Test func swiftErrorArrivesInPcallAsErrorTable() throws {
    let (rt, _) = try makeRuntime()
    let r = try rt.run(
      source: """
        local ok, err = pcall(belt.dbs, "nosuchdc")
        return ok, type(err), err.code, err.dc, tostring(err), belt.is_error(err)
        """, chunkName: "=t", args: [])
    #expect(r[0] == false)
    #expect(r[1] == "table")
    #expect(r[2] == "not_found")
    #expect(r[3] == "nosuchdc")
    #expect(r[4].stringValue?.contains("unknown dc \"nosuchdc\"") == true)
    #expect(r[4].stringValue?.hasSuffix("[not_found]") == true)
    #expect(r[5] == true)
    #expect(rt.stackTop == 0)
  }

  @Test func swiftCleanupRunsWhenAnErrorIsRaised() throws {
    let counter = Counter()
    let fail = LuaFunctionSpec(name: "fail_after_defer") { call in
      defer { counter.n += 1 }
      let holder = [String](repeating: "x", count: 100)  // a Swift value that must be released
      _ = holder.count
      throw BeltError(.sqlError, "boom", sqlstate: "XX000", retryable: true)
    }
    let (rt, _) = try makeRuntime([fail])
    for _ in 0..<1000 {
      let r = try rt.run(
        source:
          "local ok, e = pcall(belt._core.fail_after_defer); return ok, e.code, e.sqlstate, e.retryable",
        chunkName: "=t", args: [])
      #expect(r == [false, "sql_error", "XX000", true])
    }
    #expect(counter.n == 1000)
    #expect(rt.stackViolations == 0)
    #expect(rt.stackTop == 0)
  }

  @Test func stackStaysBalancedForEveryPrimitive() throws {
    let (rt, _) = try makeRuntime()
    _ = try rt.run(
      source: """
        for i = 1, 50 do
          belt.now(); belt.duration("1m30s"); belt.sleep(0); belt.interrupted()
          pcall(belt.dbs, "x"); pcall(belt.config, "x", "y"); pcall(belt.query, "x", "y", "src", "select 1")
          pcall(belt.connections, "x"); pcall(belt.precheck, "x", "y", {}); pcall(belt._core.dbs, 42)
          print(i)
        end
        """, chunkName: "=t", args: [])
    #expect(rt.stackViolations == 0)
    #expect(rt.stackTop == 0)
  }

  @Test func argumentErrorsUseLuaWording() throws {
    let (rt, _) = try makeRuntime()
    let r = try rt.run(
      source: """
        local _, a = pcall(belt._core.dbs, 42)
        local _, b = pcall(belt.check_pkeys, nil)
        local _, c = pcall(belt.connections, "dc", nil, {timout = 5})
        local _, d = pcall(belt.connections, "dc", nil, {exclude_users = 7})
        return a.message, b.message, c.message, d.message, c.code
        """, chunkName: "=t", args: [])
    #expect(r[0] == "bad argument #1 to 'belt.dbs' (string expected, got number)")
    #expect(r[1] == "bad argument #1 to 'belt.check_pkeys' (dc: string expected, got nil)")
    #expect(
      r[2].stringValue?.hasPrefix("bad argument #3 to 'belt.connections' (unknown option 'timout'")
        == true)
    #expect(
      r[3]
        == "bad argument #3 to 'belt.connections' (option exclude_users: list of strings expected)")
    #expect(r[4] == "bad_argument")
  }

  @Test func nestedPcallWorks() throws {
    let (rt, _) = try makeRuntime()
    let r = try rt.run(
      source: """
        local ok1, v = pcall(function()
          local ok2, e = pcall(belt.dbs, "none")
          assert(not ok2 and e.code == "not_found")
          local ok3, e3 = pcall(error, belt.error("timeout", "inner"))
          return e3.code .. "/" .. e.code
        end)
        return ok1, v
        """, chunkName: "=t", args: [])
    #expect(r == [true, "timeout/not_found"])
  }

  @Test func interruptStopsAnInfiniteLoop() throws {
    let (rt, _) = try makeRuntime()
    let pid = getpid()
    DispatchQueue.global().asyncAfter(deadline: .now() + 0.3) { kill(pid, SIGINT) }
    let start = Date()
    #expect {
      _ = try rt.run(source: "while true do end", chunkName: "=loop", args: [])
    } throws: { error in
      (error as? BeltError)?.code == .interrupted
    }
    #expect(Date().timeIntervalSince(start) < 5)
    belt_clear_interrupt()
    // The runtime is still usable afterwards.
    #expect(try rt.run(source: "return 1 + 1", chunkName: "=t", args: []) == [2])
  }

  @Test func interruptStopsASleepInSwift() throws {
    let (rt, _) = try makeRuntime()
    let pid = getpid()
    DispatchQueue.global().asyncAfter(deadline: .now() + 0.3) { kill(pid, SIGINT) }
    // pcall cannot swallow Ctrl-C: the script stops at its next instruction.
    let start = Date()
    #expect {
      _ = try rt.run(
        source: "local ok, e = pcall(belt.sleep, 30); return 'swallowed'", chunkName: "=t", args: []
      )
    } throws: { error in
      (error as? BeltError)?.code == .interrupted
    }
    #expect(Date().timeIntervalSince(start) < 5)
    belt_clear_interrupt()
  }

  @Test func closeRunsGcFinalisers() throws {
    let (rt, cap) = try makeRuntime()
    _ = try rt.run(
      source: "keep = setmetatable({}, {__gc = function() print('finalised') end})",
      chunkName: "=t", args: [])
    #expect(!cap.text.contains("finalised"))
    rt.close()
    rt.close()  // idempotent
    #expect(cap.text.contains("finalised"))
  }

  @Test func waitForTimesOutAndRetryRetries() throws {
    let (rt, _) = try makeRuntime()
    let r = try rt.run(
      source: """
        local t0 = belt.now()
        local ok, e = pcall(belt.wait_for, function() return false end, {timeout = 0.3, interval = 0.05, desc = "never"})
        local waited = belt.now() - t0
        local v, why = belt.wait_for(function() return false end, {timeout = "100ms", on_timeout = "return"})
        local n = 0
        local got = belt.retry(function() n = n + 1; if n < 3 then error("flaky") end; return "done" end, {attempts = 5, backoff = 0.01})
        local ok2, e2 = pcall(belt.wait_for, function() return true end, {timout = 1})
        return ok, e.code, waited >= 0.3 and waited < 2, v, why, got, n, e2.code
        """, chunkName: "=t", args: [])
    #expect(r == [false, "timeout", true, false, "timeout", "done", 3, "bad_argument"])
  }

  @Test func valuesRoundTripThroughLua() throws {
    let (rt, _) = try makeRuntime()
    let input: Value = .object([
      ("list", .array([1, 2, 3])), ("name", "x\0y"),
      ("nested", .object([("ok", true), ("f", .double(1.5))])),
      ("empty", .object([])),
    ])
    let r = try rt.run(source: "local t = ...; return t", chunkName: "=t", args: [input])
    #expect(r.first?["list"] == .array([1, 2, 3]))
    #expect(r.first?["name"] == "x\0y")
    #expect(r.first?["nested"]?["f"] == .double(1.5))
  }

  @Test func sandboxHasNoProcessControl() throws {
    let (rt, _) = try makeRuntime()
    let r = try rt.run(
      source:
        "return os.execute == nil, io.popen == nil, package == nil or package.loadlib == nil, loadfile == nil",
      chunkName: "=t", args: [])
    #expect(r == [true, true, true, true])
  }
}

@Suite struct SessionTests {
  func tempScript(_ body: String) throws -> String {
    let p = NSTemporaryDirectory() + "belt-script-\(UUID().uuidString).lua"
    try body.write(toFile: p, atomically: true, encoding: .utf8)
    return p
  }

  @Test func syntaxErrorNamesFileAndLine() throws {
    let root = NSTemporaryDirectory() + "belt-sess-\(UUID().uuidString)"
    let session = try Session(
      env: Environment(
        store: ConfigStore(root: root), logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() }
      ), output: OutputSink { _ in }, flags: [:])
    let path = try tempScript("local x = \n  = 3\n")
    #expect {
      _ = try session.run(file: path, dc: "dc", db: nil, opts: .object([]), from: .fileOrShipped)
    } throws: { e in
      let b = e as? BeltError
      return b?.code == .scriptError && (b?.message.contains(":2:") ?? false)
        && (b?.message.contains(path) ?? false)
    }
  }

  @Test func runtimeErrorRunsCompensationHooksAndReportsLine() throws {
    let root = NSTemporaryDirectory() + "belt-sess-\(UUID().uuidString)"
    let cap = Captured()
    let session = try Session(
      env: Environment(
        store: ConfigStore(root: root), logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() }
      ), output: OutputSink { cap.text += $0 }, flags: [:])
    let path = try tempScript(
      """
      local dc, db, opts = ...
      belt.on_failure(function(err) print("compensating for " .. err.code) end)
      print("dc=" .. dc .. " n=" .. tostring(opts.n))
      belt.precheck(dc, "nosuchdb")
      """)
    #expect {
      _ = try session.run(
        file: path, dc: "mydc", db: nil, opts: .object([("n", 3)]), from: .fileOrShipped)
    } throws: { e in
      let b = e as? BeltError
      return b?.code == .notFound && b?.position == "\(path):4"
        && (b?.description.contains("(at \(path):4)") ?? false)
    }
    #expect(cap.text.contains("dc=mydc n=3"))
    #expect(cap.text.contains("compensating for not_found"))
  }

  /// The error table a script raises reaches Swift as it was: its code and message, the dc and
  /// db it names, a traceback and the script line; the JSON form carries them too.
  @Test func beltErrorRaisedInAScriptKeepsItsFields() throws {
    let root = NSTemporaryDirectory() + "belt-sess-\(UUID().uuidString)"
    let cap = Captured()
    let session = try Session(
      env: Environment(
        store: ConfigStore(root: root), logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() }
      ), output: OutputSink { cap.text += $0 }, flags: [:])
    let path = try tempScript(
      """
      local dc, db = ...
      belt.on_failure(function(err) print("hook saw " .. err.code .. " " .. type(err.traceback)) end)
      local function step() error(belt.error("replication_down", "forward replication is down: slot gone")) end
      step()
      """)
    var caught: BeltError?
    do {
      _ = try session.run(
        file: path, dc: "mydc", db: "app", opts: .object([]), from: .fileOrShipped)
    } catch { caught = error as? BeltError }
    let e = try #require(caught)
    #expect(e.code.rawValue == "replication_down")
    #expect(e.message == "forward replication is down: slot gone")
    #expect(e.dc == "mydc" && e.db == "app")
    #expect(e.position == "\(path):3")
    #expect(e.traceback?.hasPrefix("stack traceback:") == true)
    #expect(e.traceback?.contains("in local 'step'") == true, "\(e.traceback ?? "")")
    #expect(e.description == "mydc/app: forward replication is down: slot gone (at \(path):3)")
    #expect(
      e.value["code"] == "replication_down" && e.value["traceback"] == .string(e.traceback ?? ""))
    #expect(cap.text.contains("hook saw replication_down string"))
    #expect(session.lua.stackTop == 0)

    // A plain Lua error keeps its own "file:line:" text and becomes a script_error.
    let plain = try tempScript("local t = nil\nreturn t.x")
    #expect {
      _ = try session.run(file: plain, dc: "mydc", db: nil, opts: .object([]), from: .fileOrShipped)
    } throws: { e in
      let b = e as? BeltError
      return b?.code == .scriptError && b?.position == nil && b?.traceback != nil
        && (b?.description.hasPrefix("mydc: \(plain):2: attempt to index a nil value") ?? false)
    }
  }

  @Test func editorDefinitionsAreCurrent() throws {
    let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .deletingLastPathComponent().deletingLastPathComponent()
    let meta = try String(
      contentsOf: dir.appendingPathComponent("runbooks/belt.meta.lua"), encoding: .utf8)
    #expect(
      meta == LuaDocs.meta() + "\n", "regenerate: belt help-lua --meta > runbooks/belt.meta.lua")
  }

  @Test func shippedRunbooksResolveByName() throws {
    #expect(try Session.resolve("status.lua").1 == "@runbooks/status.lua")
    #expect(try Session.resolve("status").0.contains("belt.status(dc, db, opts)"))
    #expect(throws: BeltError.self) { try Session.resolve("no-such-runbook.lua") }
  }

  @Test func everyOperationHasItsRunbookAndEveryRunbookItsOperation() throws {
    for op in OperationRegistry.all where !["src_dsn", "dst_dsn"].contains(op.name) || true {
      let src = Runbooks.source(named: op.cliName + ".lua")
      #expect(
        src?.contains("return belt.\(op.name)(dc, db, opts)") == true, "runbook for \(op.name)")
    }
  }

  @Test func embeddedRunbooksMatchTheFilesOnDisk() throws {
    let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("runbooks")
    let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter {
      $0.hasSuffix(".lua") && !$0.hasSuffix(".meta.lua")
    }
    // The build (EmbedRunbooks) embeds runbooks/*.lua: an added, edited or removed runbook is
    // in the next build, so this holds after any `swift build`.
    #expect(
      files.count == RunbookSources.files.count,
      "runbooks/ and the embedded runbooks differ: the build did not regenerate them")
    for f in files {
      let disk = try String(contentsOf: dir.appendingPathComponent(f), encoding: .utf8)
      #expect(
        RunbookSources.files[f] == disk,
        "runbooks/\(f) differs from its embedded copy: the build did not regenerate it")
    }
  }
}
