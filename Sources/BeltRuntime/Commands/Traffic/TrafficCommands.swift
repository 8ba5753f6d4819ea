import Foundation

/// Switching traffic through pgbouncer (design.md §10): the building blocks a runbook composes
/// into a cutover where clients wait instead of failing. Lua: belt.pgbouncer_show,
/// belt.pgbouncer_pause, belt.pgbouncer_resume, belt.pgbouncer_point_to,
/// belt.pgbouncer_watchdog.
public enum TrafficOps {
  public static let all: [OperationSpec] = [
    pgbouncerShow, pgbouncerPause, pgbouncerResume, pgbouncerPointTo, pgbouncerWatchdog,
  ]

  static func admin(_ ctx: PairContext) throws -> PgBouncerAdmin {
    guard let pgb = ctx.config.pgbouncer else {
      throw BeltError(
        .configInvalid,
        "\(ctx.config.path): no \"pgbouncer\" block; add one to switch traffic through pgbouncer",
        dc: ctx.dc, db: ctx.db)
    }
    return try PgBouncerAdmin(
      pgb, connectTimeout: ctx.env.connectTimeout, audit: (ctx.env.audit, ctx.dc, ctx.db))
  }

  /// Which side of the pair an entry points at.
  static func side(of e: PgBouncerAdmin.Entry, _ ctx: PairContext) -> String {
    for s in Side.allCases {
      if let sv = s == .src ? ctx.config.src : ctx.config.dst, sv.port == e.port,
        sv.dbname == e.database,
        sv.ip == e.host || sv.host == e.host
      {
        return s.rawValue
      }
    }
    return "other"
  }

  static func record(_ e: PgBouncerAdmin.Entry, _ ctx: PairContext, _ extra: [(String, Value)] = [])
    -> Value
  {
    .object(
      [
        ("database", .string(e.name)), ("host", .string(e.host)), ("port", .int(e.port)),
        ("target_db", .string(e.database)),
        ("points_to", .string(side(of: e, ctx))), ("paused", .bool(e.paused)),
      ] + extra)
  }

  static let pgbouncerShow = OperationSpec(
    name: "pgbouncer_show",
    summary:
      "Show where pgbouncer sends the pair's database (src, dst or other) and whether it is paused.",
    sides: .none
  ) { ctx in
    let a = try admin(ctx)
    let e = try a.entry()
    // Clients paused longer than this get an error from pgbouncer: a pause must stay below it.
    let wait = try a.setting("query_wait_timeout").flatMap { Int($0) }
    var problem: Value = .null
    do { _ = try a.databasesFileLines() } catch { problem = .string("\(error)") }
    return record(
      e, ctx,
      [
        ("query_wait_timeout_s", wait.map { .int($0) } ?? .null),
        ("databases_file_problem", problem),
        (
          "message",
          .string(
            "\(e.name) -> \(e.host):\(e.port)/\(e.database) (\(side(of: e, ctx)))\(e.paused ? ", paused" : "")"
          )
        ),
      ])
  }

  static let pgbouncerPause = OperationSpec(
    name: "pgbouncer_pause",
    summary:
      "PAUSE the pair's database in pgbouncer: waits for transactions in flight; new ones wait (bounded by timeout, then resumed).",
    sides: .none,
    options: [
      OptionSpec(
        "timeout", .duration,
        "How long to wait for the transactions in flight before resuming (seconds or e.g. 30s).",
        default: "10s")
    ]
  ) { ctx in
    let a = try admin(ctx)
    let waited = try a.pause(timeout: ctx.options.seconds("timeout") ?? 10)
    return record(
      try a.entry(), ctx,
      [
        ("waited_s", .double((waited * 1000).rounded() / 1000)),
        ("message", .string(String(format: "paused after %.3f s", waited))),
      ])
  }

  static let pgbouncerResume = OperationSpec(
    name: "pgbouncer_resume",
    summary: "RESUME the pair's database in pgbouncer (fine when it is not paused).",
    sides: .none
  ) { ctx in
    let a = try admin(ctx)
    try a.resume()
    return record(try a.entry(), ctx, [("message", "resumed")])
  }

  static let pgbouncerPointTo = OperationSpec(
    name: "pgbouncer_point_to",
    summary:
      "Point the pair's pgbouncer database at src or dst: rewrite its line in databases_file, RELOAD, check SHOW DATABASES.",
    sides: .none,
    options: [
      OptionSpec(
        "side", .string, "Where clients go: src or dst.", choices: ["src", "dst"], required: true)
    ]
  ) { ctx in
    // The spec requires side and accepts only src or dst.
    let which = ctx.options.string("side") ?? ""
    guard let side = Side(rawValue: which) else {
      throw BeltError(.internal, "unchecked side \(Value.jsonQuote(which))")
    }
    let a = try admin(ctx)
    let target = try a.pointTo(try ctx.config.server(side))
    return record(
      try a.entry(), ctx,
      [("message", .string("\(a.config.database) now points at \(which) (\(target))"))])
  }

  static let pgbouncerWatchdog = OperationSpec(
    name: "pgbouncer_watchdog",
    summary:
      "Start the pair's pgbouncer watchdog: a detached process that, if belt is gone when the pause outlasts timeout, resumes pgbouncer at dst (switch done) or at src with logins restored (cutover.lua).",
    details: """
      cutover.lua with switch=pgbouncer starts it before its PAUSE (and a rerun starts a new one). It acts only while the pair's cutover run is in progress, once the timeout plus 2 s has passed and no belt process holds the run anymore; it exits when the run ends. Its log: configs/<dc>/<db>/cutover.watchdog.log.
      """,
    sides: .none,
    options: [
      OptionSpec(
        "timeout", .duration,
        "How long the pause may last from now (pause_timeout); the watchdog acts 2 s later.",
        required: true)
    ]
  ) { ctx in
    try PgBouncerWatchdog.start(ctx, after: ctx.options.seconds("timeout") ?? 30)
  }
}
