import CSignals
import Foundation

/// Runs an operation for one pair or fans it out over every pair of a dc (design.md §4).
public enum Runner {
  /// Runs `spec`. With a db: returns that pair's record or throws. Without: returns
  /// `{command, dc, ok, duration_ms, databases = {record...}}`; one pair's failure does not
  /// stop the others and is recorded as `ok=false, error={...}`.
  public static func run(
    _ spec: OperationSpec, dc: String, db: String?, options: Options, env: Environment
  )
    throws -> Value
  {
    let options = try checked(spec, options)
    if let db {
      return try runOne(spec, dc: dc, db: db, options: options, env: env)
    }
    guard spec.allowsAllDBs else {
      throw BeltError(.badArgument, "\(spec.cliName) needs a db name", dc: dc)
    }
    let dbs = try env.store.dbs(dc: dc)
    return fanOut(spec, dc: dc, dbs: dbs, options: options, env: env)
  }

  /// Runs `spec` for the listed pairs of a dc (a runbook resuming each database from its own
  /// step passes the ones that still need this step); the result has the dc-wide shape.
  public static func run(
    _ spec: OperationSpec, dc: String, dbs: [String], options: Options, env: Environment
  )
    throws -> Value
  {
    fanOut(spec, dc: dc, dbs: dbs, options: try checked(spec, options), env: env)
  }

  /// The options after ``OperationSpec/checkOptions(_:)``: every caller's options pass here once.
  static func checked(_ spec: OperationSpec, _ options: Options) throws -> Options {
    do {
      return try spec.checkOptions(options.values)
    } catch {
      throw BeltError(
        .badArgument,
        "bad argument #3 to 'belt.\(spec.name)' (option \(error.option.key): \(error.problem))")
    }
  }

  static func fanOut(
    _ spec: OperationSpec, dc: String, dbs: [String], options: Options, env: Environment
  ) -> Value {
    let start = Date()
    let records = parallelMap(dbs, width: env.jobs) { db -> Value in
      if belt_interrupted() != 0 {
        return failureRecord(
          spec, dc: dc, db: db, BeltError(.interrupted, "not started: interrupted", dc: dc, db: db),
          start: Date())
      }
      let t0 = Date()
      do {
        return try runOne(spec, dc: dc, db: db, options: options, env: env, runDBs: dbs)
      } catch {
        let e = BeltError.wrap(error, dc: dc, db: db)
        env.logger.error("\(e.description)")
        return failureRecord(spec, dc: dc, db: db, e, start: t0)
      }
    }
    let ok = records.allSatisfy { $0["ok"]?.boolValue ?? false }
    return .object([
      ("command", .string(spec.cliName)), ("dc", .string(dc)), ("db", .null), ("ok", .bool(ok)),
      ("duration_ms", .int(ms(since: start))), ("databases", .array(records)),
    ])
  }

  static func failureRecord(
    _ spec: OperationSpec, dc: String, db: String, _ e: BeltError, start: Date
  ) -> Value {
    .object([
      ("command", .string(spec.cliName)), ("dc", .string(dc)), ("db", .string(db)),
      ("ok", .bool(false)),
      ("duration_ms", .int(ms(since: start))), ("error", e.value),
    ])
  }

  /// Runs for one pair and returns its record.
  static func runOne(
    _ spec: OperationSpec, dc: String, db: String, options: Options, env: Environment,
    runDBs: [String]? = nil
  ) throws -> Value {
    let start = Date()
    do {
      // reverse = true swaps src and dst (rollback.lua copies from dst back to src).
      let reversed = options.bool("reverse")
      let loaded = try env.store.load(dc: dc, db: db)
      let config = reversed ? loaded.reversed() : loaded
      switch spec.sides {
      case .both:
        _ = try config.server(.src)
        _ = try config.server(.dst)
      case .srcOnly: _ = try config.server(.src)
      case .dstOnly: _ = try config.server(.dst)
      case .none: break
      }
      let ctx = PairContext(
        config: config, db: db, env: env, options: options, reversed: reversed, runDBs: runDBs)
      defer { ctx.closeAll() }
      let fields = try spec.body(ctx)
      var pairs: [(String, Value)] = [
        ("command", .string(spec.cliName)), ("dc", .string(dc)), ("db", .string(db)),
      ]
      var ok = true
      if case .object(let f) = fields {
        for (k, v) in f where k != "ok" { pairs.append((k, v)) }
        ok = fields["ok"]?.boolValue ?? true
      }
      if ctx.serverLockChanges > 0 {
        pairs.append(("server_lock_wait_ms", .int(ctx.serverLockWaitMS)))
      }
      pairs.insert(("ok", .bool(ok)), at: 3)
      pairs.insert(("duration_ms", .int(ms(since: start))), at: 4)
      return .object(pairs)
    } catch {
      throw BeltError.wrap(error, dc: dc, db: db)
    }
  }

  /// Milliseconds since `d`.
  public static func ms(since d: Date) -> Int { Int(Date().timeIntervalSince(d) * 1000) }

  /// Maps `items` on up to `width` threads, preserving order.
  public static func parallelMap<T: Sendable, R: Sendable>(
    _ items: [T], width: Int, _ f: @escaping @Sendable (T) -> R
  ) -> [R] {
    if items.count <= 1 || width <= 1 { return items.map(f) }
    let box = ResultBox<R>(count: items.count)
    let group = DispatchGroup()
    let workers = min(width, items.count)
    for _ in 0..<workers {
      group.enter()
      let t = Thread {
        while let i = box.nextIndex() {
          box.set(i, f(items[i]))
        }
        group.leave()
      }
      t.stackSize = 8 << 20
      t.start()
    }
    group.wait()
    return box.results()
  }
}

/// Lock-protected result slots for ``Runner/parallelMap(_:width:_:)``.
final class ResultBox<R>: @unchecked Sendable {
  private let lock = NSLock()
  private var slots: [R?]
  private var next = 0
  init(count: Int) { slots = Array(repeating: nil, count: count) }
  func nextIndex() -> Int? {
    lock.lock()
    defer { lock.unlock() }
    guard next < slots.count else { return nil }
    next += 1
    return next - 1
  }
  func set(_ i: Int, _ r: R) {
    lock.lock()
    slots[i] = r
    lock.unlock()
  }
  func results() -> [R] {
    lock.lock()
    defer { lock.unlock() }
    return slots.compactMap { $0 }
  }
}
