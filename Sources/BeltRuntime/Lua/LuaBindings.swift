import CLua
import CLuaShim
import CSignals
import Foundation
import Logging

/// Builds the `belt._core` table: one entry per operation plus the scripting primitives.
/// This is the one table of specs the Lua layer is generated from (style.md R22).
enum LuaBindings {
  /// `{name = {options = {key = type}, all_dbs = bool, summary = s}}` for the prelude.
  static func operationSpecsValue() -> Value {
    .object(
      OperationRegistry.all.map { op in
        (
          op.name,
          .object([
            ("options", optionTypes(op.options)),
            ("all_dbs", .bool(op.allowsAllDBs)),
            ("summary", .string(op.summary)),
          ])
        )
      })
  }

  /// `{key = type}` of a list of options, as the prelude checks keys against.
  static func optionTypes(_ options: [OptionSpec]) -> Value {
    .object(options.sorted { $0.key < $1.key }.map { ($0.key, .string($0.type.rawValue)) })
  }

  static func specs(for rt: LuaRuntime) -> [LuaFunctionSpec] {
    var specs: [LuaFunctionSpec] = OperationRegistry.all.map { op in
      LuaFunctionSpec(name: op.name) { call in
        let dc = try call.string(1)
        let opts = try call.options(3, op.options)
        var arg2 = call.value(2)
        if case .object(let o) = arg2, o.isEmpty { arg2 = .array([]) }
        if case .array(let list) = arg2 {
          // A list of databases: the dc-wide shape, for just those.
          let dbs = list.compactMap(\.stringValue)
          guard dbs.count == list.count, op.allowsAllDBs else {
            throw call.argError(
              2, op.allowsAllDBs ? "list of db names expected" : "a single db name expected")
          }
          return call.push(try Runner.run(op, dc: dc, dbs: dbs, options: opts, env: rt.env))
        }
        let db = try call.optString(2)
        return call.push(try Runner.run(op, dc: dc, db: db, options: opts, env: rt.env))
      }
    }
    specs += primitives(rt)
    return specs
  }

  static func primitives(_ rt: LuaRuntime) -> [LuaFunctionSpec] {
    [
      LuaFunctionSpec(name: "sleep") { call in
        let secs = try duration(call, 1)
        try interruptibleSleep(secs)
        return call.push(.bool(true))
      },
      LuaFunctionSpec(name: "duration") { call in
        call.push(.double(try duration(call, 1)))
      },
      LuaFunctionSpec(name: "now") { call in
        call.push(.double(Double(DispatchTime.now().uptimeNanoseconds) / 1e9))
      },
      LuaFunctionSpec(name: "write") { call in
        rt.output.write(try call.string(1))
        return 0
      },
      LuaFunctionSpec(name: "log") { call in
        let level = Logger.Level(rawValue: try call.string(1)) ?? .info
        let msg = try call.string(2)
        rt.env.logger.log(level: level, "\(msg)")
        return 0
      },
      LuaFunctionSpec(name: "make_error") { call in
        let e = BeltError(
          BeltError.Code(rawValue: try call.string(1)), try call.string(2),
          dc: try call.optString(3), db: try call.optString(4))
        rt.pushError(e)
        return 1
      },
      LuaFunctionSpec(name: "is_error") { call in
        call.push(.bool(belt_is_error(call.L, 1) != 0))
      },
      LuaFunctionSpec(name: "dbs") { call in
        call.push(.from(try rt.env.store.dbs(dc: try call.string(1))))
      },
      LuaFunctionSpec(name: "config") { call in
        let cfg = try rt.env.store.load(dc: try call.string(1), db: try call.string(2))
        return call.push(redact(cfg.raw))
      },
      LuaFunctionSpec(name: "query") { call in
        let dc = try call.string(1)
        let db = try call.string(2)
        let sideName = try call.string(3)
        guard let side = Side(rawValue: sideName) else {
          throw call.argError(3, "\"src\" or \"dst\" expected")
        }
        let sql = try call.string(4)
        var params: [String?] = []
        if case .array(let a) = call.value(5) {
          params = a.map { $0.isNull ? nil : ($0.stringValue ?? $0.display) }
        }
        let cfg = try rt.env.store.load(dc: dc, db: db)
        let server = try cfg.server(side)
        let c = try PGConnection(
          conninfo: server.conninfo(.root, connectTimeout: rt.env.connectTimeout),
          label: "\(side.rawValue) as root")
        defer { c.close() }
        do {
          try c.exec("BEGIN READ ONLY")
          let r = try c.query(sql, params)
          _ = try? c.exec("ROLLBACK")
          return call.push(
            .array(
              r.rows.map { row in
                .object(zip(row.columns, row.values).map { ($0, Value.from($1)) })
              }))
        } catch {
          throw BeltError.wrap(error, dc: dc, db: db)
        }
      },
      LuaFunctionSpec(name: "confirm") { call in
        let msg = try call.string(1)
        if rt.flags["yes"]?.boolValue == true { return call.push(.bool(true)) }
        guard let ask = rt.confirmer else {
          throw BeltError(
            .preconditionFailed,
            "confirmation needed (\(msg)) but input is not a terminal; pass --yes to run unattended"
          )
        }
        if ask(msg) { return call.push(.bool(true)) }
        throw BeltError(.preconditionFailed, "not confirmed: \(msg)")
      },
      LuaFunctionSpec(name: "interrupted") { call in
        call.push(.bool(belt_interrupted() != 0))
      },
      LuaFunctionSpec(name: "runbook_source") { call in
        let name = try call.string(1)
        guard let src = Runbooks.source(named: name) else {
          throw BeltError(.notFound, "no shipped runbook \(name)")
        }
        return call.push(.string(src))
      },
      LuaFunctionSpec(name: "clear_interrupt") { _ in
        belt_clear_interrupt()
        return 0
      },
      LuaFunctionSpec(name: "exec") { call in
        guard let list = call.value(1).arrayValue, !list.isEmpty,
          list.allSatisfy({ $0.stringValue != nil })
        else {
          throw call.argError(
            1,
            "argv: a non-empty list of strings expected, such as {\"dnsctl\", \"set\", \"db.example\"}"
          )
        }
        let o: Options
        do {
          o = try execOptions.check(try call.options(2, execOptions).values)
        } catch let e as OptionError {
          throw call.argError(2, "option \(e.option.key): \(e.problem)")
        }
        var cmd = ExternalCommand(argv: list.compactMap(\.stringValue))
        if let t = o.seconds("timeout") { cmd.timeout = t }
        cmd.stdin = o.string("stdin")
        if case .object(let env)? = o.values["env"] {
          for (k, v) in env {
            guard let s = v.stringValue ?? (v.intValue.map { String($0) }) else {
              throw call.argError(2, "option env: \(k) must be a string")
            }
            cmd.environment[k] = s
          }
        }
        return call.push(
          try execAudited(
            cmd, check: o.bool("check", default: true), dc: o.string("dc"), db: o.string("db"),
            rt: rt))
      },
      LuaFunctionSpec(name: "exec_options") { call in
        call.push(optionTypes(execOptions))
      },
      LuaFunctionSpec(name: "flags") { call in
        call.push(.object(rt.flags.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }))
      },
    ]
  }

  static let execOptions = [
    OptionSpec("timeout", .duration, "Stop the program after this long (default 60s).", cli: nil),
    OptionSpec(
      "env", .table, "Variables passed besides PATH, HOME, LANG, LC_ALL, TZ and USER.", cli: nil),
    OptionSpec("stdin", .string, "Written to the program's standard input.", cli: nil),
    OptionSpec("check", .bool, "Raise when the program fails (status != 0, timeout).", cli: nil),
    OptionSpec("dc", .string, "With db: the pair whose audit log records the run.", cli: nil),
    OptionSpec("db", .string, "With dc: the pair whose audit log records the run.", cli: nil),
  ]

  static func duration(_ call: LuaCall, _ i: Int32) throws -> Double {
    switch call.value(i) {
    case .int(let n): return Double(n)
    case .double(let d): return d
    case .string(let s): return try Durations.parse(s)
    default: throw call.argError(i, "duration expected (seconds or a string such as \"30s\")")
    }
  }

  /// Sleeps in short ticks, raising `interrupted` on Ctrl-C.
  static func interruptibleSleep(_ secs: Double) throws {
    let end = Date().addingTimeInterval(max(0, secs))
    while Date() < end {
      if belt_interrupted() != 0 {
        throw BeltError(.interrupted, "interrupted by the user (Ctrl-C)")
      }
      usleep(UInt32(min(50_000, max(1000, end.timeIntervalSinceNow * 1_000_000))))
    }
    if belt_interrupted() != 0 { throw BeltError(.interrupted, "interrupted by the user (Ctrl-C)") }
  }

  /// Runs `cmd` for belt.exec (Ctrl-C stops it) and writes its audit line: argv (with the
  /// pair's passwords masked), the names of the variables passed (never their values), the
  /// status and the duration.
  static func execAudited(
    _ cmd: ExternalCommand, check: Bool, dc: String?, db: String?, rt: LuaRuntime
  ) throws -> Value {
    let secrets: [String] =
      (dc.flatMap { dc in db.flatMap { try? rt.env.store.load(dc: dc, db: $0) } }).map { cfg in
        [cfg.src, cfg.dst].compactMap { $0 }.flatMap { s in
          Role.allCases.map { s.credentials($0).password }
        }
      } ?? []
    let clean = { (s: String) in Audit.redact(s, secrets: secrets) }
    let start = Date()
    let shown = clean(cmd.argv.joined(separator: " "))
    var fields: [(String, Value)] = [
      ("argv", .array(cmd.argv.map { .string(clean($0)) })),
      ("env", .from(cmd.environment.keys.sorted())),
    ]
    let r: ExternalCommand.Outcome
    do {
      r = try cmd.run { belt_interrupted() != 0 }
    } catch {
      rt.env.audit.action(
        "exec", fields + [("outcome", "error"), ("error", .string(clean("\(error)")))],
        start: start, dc: dc, db: db)
      throw error
    }
    fields += [
      ("status", r.status.map { .int(Int($0)) } ?? .null),
      ("signal", r.signal.map { .int(Int($0)) } ?? .null),
      ("timed_out", .bool(r.timedOut)), ("outcome", r.ok ? "ok" : "error"),
    ]
    rt.env.audit.action("exec", fields, start: start, dc: dc, db: db)
    let lastLine = clean(r.stderr.split(separator: "\n").last.map(String.init) ?? "")
    if r.interrupted {
      throw BeltError(
        .interrupted, "interrupted by the user (Ctrl-C) while running \(shown); it was killed")
    }
    if check && r.timedOut {
      throw BeltError(
        .timeout,
        "belt.exec: \(shown) did not finish within \(String(format: "%g", cmd.timeout)) s; it was killed"
      )
    }
    if check && !r.ok {
      let how =
        r.status.map { "exited with status \($0)" } ?? "was killed by signal \(r.signal ?? 0)"
      throw BeltError(
        .commandFailed, "belt.exec: \(shown) \(how)" + (lastLine.isEmpty ? "" : ": \(lastLine)"))
    }
    return .object([
      ("ok", .bool(r.ok)), ("status", r.status.map { .int(Int($0)) } ?? .null),
      ("signal", r.signal.map { .int(Int($0)) } ?? .null),
      ("stdout", .string(r.stdout)), ("stderr", .string(r.stderr)),
      ("timed_out", .bool(r.timedOut)),
      ("duration_s", .double((r.seconds * 1000).rounded() / 1000)),
    ])
  }

  /// Replaces every "pw" value with "****".
  static func redact(_ v: Value) -> Value {
    switch v {
    case .object(let o):
      return .object(o.map { ($0.key, $0.key == "pw" ? .string("****") : redact($0.value)) })
    case .array(let a): return .array(a.map(redact))
    default: return v
    }
  }
}
