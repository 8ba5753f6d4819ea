import Foundation
import Logging

/// sync: the downtime composite (pgbelt §8.23), in three phases; the parts of a phase run
/// concurrently, each on its own thread with its own connections:
/// 1. sync_sequences ∥ sync_tables ∥ sync_large_objects (the delta since migrate.lua's copy;
///    validate_data's second half compares them)
/// 2. load_constraints ∥ create_indexes (unless no_schema; each skipped when its schema file
///    from dump-schema does not exist)
/// 3. validate_data ∥ analyze (skipped when create_indexes has just analyzed)
/// The first phase with a failed part stops the command; later parts are reported "not run".
enum SyncAll {
  /// One part of a phase.
  struct Part: Sendable {
    /// The step name (the operation's name).
    var name: String
    /// The work, on its own context and thread.
    var body: @Sendable (PairContext) throws -> Value
  }

  /// The outcome of one part.
  struct Step: Sendable {
    var name: String
    /// ok, failed, skipped or not run.
    var status: String
    var durationMs: Int
    /// Its one-line summary or error.
    var message: String?
    /// The operation's record.
    var result: Value?

    var value: Value {
      .object([
        ("name", .string(name)), ("status", .string(status)), ("duration_ms", .int(durationMs)),
        ("message", .from(message)), ("result", result ?? .null),
      ])
    }
  }

  /// A part that does nothing and reports why.
  static func skip(_ name: String, _ why: String) -> Part {
    Part(name: name) { _ in .object([("skipped", true), ("message", .string(why))]) }
  }

  /// sync.
  static func run(_ ctx: PairContext) throws -> Value {
    let start = Date()
    // Both servers answer before any part starts: one that does not is one error, not one per
    // part and table.
    _ = try ctx.connect(.src, .root)
    _ = try ctx.connect(.dst, .root)
    let dir = ctx.env.store.schemaDirectory(dc: ctx.dc, db: ctx.db)
    let noSchema = ctx.options.bool("no_schema")
    func schemaPart(
      _ name: String, file: String, _ body: @escaping @Sendable (PairContext) throws -> Value
    ) -> Part {
      if noSchema { return skip(name, "--no-schema") }
      let path = "\(dir)/\(file)"
      if !FileManager.default.fileExists(atPath: path) {
        return skip(name, "no \(path) (run dump-schema first)")
      }
      return Part(name: name, body: body)
    }
    // Validation in two halves, each as early as it can start: the tables the engine streamed
    // are final once the gate has passed (phase 1, beside the copies; PK-less ones too, where
    // the engine streams them: by samples, as those with a key); those sync_tables copies
    // (PK-less with pglogical, but also unlogged, REPLICA IDENTITY NOTHING or generated-column
    // tables with a primary key, and the partitioned tables above them) once it has copied them
    // (phase 2). They are reported as one step, validate_data.
    let copies = try TableSync.targets(ctx, explicit: [])
    var sample = Validation.Settings(random: 100, latest: 100, full: false)
    let sroot = try ctx.connect(.src, .root)
    sample.afterSync = try Catalog.withAncestors(
      sroot, schema: ctx.schema, names: copies.tables.map(\.name))
    let engine = try ctx.engine
    sample.streamedNoPK = Set(
      try Catalog.tables(sroot, schema: ctx.schema).filter {
        // A partitioned parent is final when its partitions are (else it is in afterSync).
        !$0.hasPK && ($0.kind == "p" || engine.travel($0).how == .streamed)
      }.map(\.name)
    ).subtracting(sample.afterSync)
    var pkSample = sample
    pkSample.withPK = true
    pkSample.wholeUpTo = 10_000  // small tables whole: stronger than a sample, and one query per server
    var noPKSample = sample
    noPKSample.withPK = false
    let phases: [[Part]] = [
      [
        Part(name: "sync_sequences") { try SequenceSync.run($0, stride: nil) },
        Part(name: "sync_tables") { try TableSync.run($0, explicit: [], planned: copies) },
        Part(name: "sync_large_objects") { try LargeObjects.sync($0) },
        Part(name: validatePK) { [pkSample] in try Validation.run($0, settings: pkSample) },
      ],
      [
        schemaPart("load_constraints", file: "invalid_constraints.sql") {
          try SchemaOps.loadConstraints($0)
        },
        schemaPart("create_indexes", file: "indexes.sql") {
          try SchemaOps.createIndexes($0, analyzeWhenNoneCreated: false)
        },
        Part(name: validateNoPK) { [noPKSample] in try Validation.run($0, settings: noPKSample) },
      ],
      [
        Part(name: "analyze") { try SchemaOps.analyze($0) }
      ],
    ]
    let config = ctx.config
    let db = ctx.db
    let env = ctx.env
    let subOptions = Options([:])
    // Inside a runbook step, each part's start and end go to the journal (status shows them;
    // a resumed sync runs every part again: each is idempotent and cheap to re-verify).
    let journal = Journal.openStep(ctx.env.store, dc: ctx.dc, db: ctx.db)
    var steps: [Step] = []
    var failedStep: Step? = nil
    for var phase in phases {
      // create-indexes ends with ANALYZE: do not pay for it twice inside the downtime.
      if steps.contains(where: {
        $0.name == "create_indexes" && $0.result?["analyze_ran"] == .bool(true)
      }),
        let i = phase.firstIndex(where: { $0.name == "analyze" })
      {
        phase[i] = skip("analyze", "already analyzed by create_indexes")
      } else if let ci = steps.first(where: { $0.name == "create_indexes" && $0.status == "ok" }),
        ci.result?["created"]?.intValue == 0, ci.result?["failed"]?.intValue == 0,
        let i = phase.firstIndex(where: { $0.name == "analyze" })
      {
        // Every index was already there (create-indexes ran, and analyzed, before the window):
        // only the tables sync_tables has just loaded need fresh statistics.
        let loaded = (steps.first { $0.name == "sync_tables" }?.result?["tables"]?.arrayValue ?? [])
          .filter { $0["loaded"] == .bool(true) }.compactMap { $0["name"]?.stringValue }
        let schema = ctx.schema
        phase[i] = Part(name: "analyze") { sub in
          if loaded.isEmpty {
            return .object([
              ("analyzed", .from([String]())), ("message", "nothing loaded, nothing to analyze"),
            ])
          }
          let list = loaded.map { PGConnection.qualified(schema, $0) }.joined(separator: ", ")
          try sub.connect(.dst, .root, noTimeout: true).exec("ANALYZE \(list)")
          return .object([
            ("analyzed", .from(loaded)),
            ("message", .string("ANALYZE \(loaded.count) table(s) loaded by sync_tables")),
          ])
        }
      }
      if failedStep != nil {
        steps += phase.map {
          Step(name: $0.name, status: "not run", durationMs: 0, message: nil, result: nil)
        }
        continue
      }
      for part in phase {
        try journal?.note("sync", ["parts", part.name], "started")
        // The two halves also count as the one step validate_data (status, resume, tests).
        if part.name == validatePK
          || (part.name == validateNoPK && !steps.contains { $0.name == validatePK })
        {
          try journal?.note("sync", ["parts", "validate_data"], "started")
        }
      }
      let done = Runner.parallelMap(phase, width: phase.count) { part -> Step in
        let t0 = Date()
        let sub = PairContext(config: config, db: db, env: env, options: subOptions)
        defer { sub.closeAll() }
        do {
          let v = try part.body(sub)
          let message = v["message"]?.stringValue
          if v["skipped"] == .bool(true) {
            return Step(
              name: part.name, status: "skipped", durationMs: Runner.ms(since: t0),
              message: message, result: nil)
          }
          let ok = v["ok"]?.boolValue ?? true
          return Step(
            name: part.name, status: ok ? "ok" : "failed", durationMs: Runner.ms(since: t0),
            message: message, result: v)
        } catch {
          return Step(
            name: part.name, status: "failed", durationMs: Runner.ms(since: t0),
            message: BeltError.wrap(error).message, result: nil)
        }
      }
      for s in done {
        ctx.logger.info(
          "sync: \(s.name) \(s.status) in \(Fmt.duration(ms: s.durationMs))\(s.message.map { ": " + $0 } ?? "")"
        )
      }
      for s in done { try journal?.note("sync", ["parts", s.name], .string(s.status)) }
      steps += done
      failedStep = done.first { $0.status == "failed" }
    }
    steps = mergeValidation(steps)
    if let v = steps.first(where: { $0.name == "validate_data" }), v.status != "not run" {
      try journal?.note("sync", ["parts", "validate_data"], .string(v.status))
    }
    let downtime = Runner.ms(since: start)
    let timings = steps.map { s -> String in
      switch s.status {
      case "ok": return "\(s.name) \(Fmt.duration(ms: s.durationMs))"
      case "failed": return "\(s.name) FAILED after \(Fmt.duration(ms: s.durationMs))"
      default: return "\(s.name) \(s.status)"
      }
    }.joined(separator: ", ")
    var message = "\(timings); total \(Fmt.duration(ms: downtime))"
    if let f = failedStep {
      message = "failed at \(f.name): \(f.message ?? "failed") — \(message)"
      ctx.logger.error("sync stopped at \(f.name): \(f.message ?? "failed")")
    }
    return .object([
      ("steps", .array(steps.map(\.value))), ("downtime_ms", .int(downtime)),
      ("failed_step", .from(failedStep?.name)),
      ("message", .string(message)), ("ok", .bool(failedStep == nil)),
    ])
  }

  /// The part names of the two halves of validate_data.
  static let validatePK = "validate_data_pk"
  static let validateNoPK = "validate_data_no_pk"

  /// The two halves of the validation as one step `validate_data`, after create_indexes and
  /// before analyze: failed when a half failed, not run when a half did not run, its time the
  /// longer half's (they ran beside other parts); the record lists the tables of both.
  static func mergeValidation(_ steps: [Step]) -> [Step] {
    let halves = steps.filter { $0.name == validatePK || $0.name == validateNoPK }
    var rest = steps.filter { $0.name != validatePK && $0.name != validateNoPK }
    if halves.isEmpty { return steps }
    let status =
      halves.contains { $0.status == "failed" }
      ? "failed" : halves.contains { $0.status == "not run" } ? "not run" : "ok"
    let ran = halves.compactMap(\.result)
    var result: Value? = nil
    if !ran.isEmpty {
      let tables = ran.flatMap { $0["tables"]?.arrayValue ?? [] }
      let failed = ran.flatMap { $0["failed_tables"]?.arrayValue ?? [] }
      let rows = ran.reduce(0) { $0 + ($1["rows_compared"]?.intValue ?? 0) }
      result = .object([
        ("mode", "sample"), ("sample", 100), ("tables", .array(tables)),
        ("rows_compared", .int(rows)),
        ("failed_tables", .array(failed)),
        ("large_objects", ran.compactMap { $0["large_objects"] }.first ?? .null),
        ("message", .string(halves.compactMap(\.message).joined(separator: "; "))),
        ("ok", .bool(status == "ok")),
      ])
    }
    let messages = halves.filter { $0.status != "ok" || status == "ok" }.compactMap(\.message)
    let merged = Step(
      name: "validate_data", status: status, durationMs: halves.map(\.durationMs).max() ?? 0,
      message: messages.isEmpty ? nil : messages.joined(separator: "; "),
      result: status == "not run" ? nil : result)
    let at = rest.firstIndex { $0.name == "analyze" } ?? rest.count
    rest.insert(merged, at: at)
    return rest
  }
}
