import Foundation

/// What status reads on one side.
struct SideSnapshot: Sendable {
  /// The subscription that lives on this side (dst: forward, src: back).
  var subscription: SubscriptionState
  /// src only: what src says about forward replication.
  var source: SourceFacts?
  /// dst only: back replication is armed there, to be attached at the cutover.
  var backArmed = false
  /// Total size of the replicated tables.
  var datasetBytes: Int
  /// The same, pretty.
  var datasetPretty: String
  /// How long the subscription's apply worker has waited for a lock, and on whom.
  var lockWait: (seconds: Double, text: String)? = nil
}

/// `belt status`: the state of both subscriptions, forward lag and initial-copy progress.
enum ReplicationStatus {
  /// Size of the tables with a primary key in the schema (or the subset).
  static func datasetSize(_ c: PGConnection, schema: String, subset: [String]?) throws -> (
    Int, String
  ) {
    let names: String? = subset.map {
      PGArray.literal($0.map { Catalog.bareName($0, schema: schema) })
    }
    let r = try c.query(
      """
      SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint AS bytes,
             pg_size_pretty(coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint) AS pretty
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relkind = 'r'
         AND EXISTS (SELECT 1 FROM pg_constraint p WHERE p.conrelid = c.oid AND p.contype = 'p')
         AND ($2::text[] IS NULL OR c.relname = ANY($2::text[]))
      """, [schema, names])
    return (r.rows.first?.int("bytes") ?? 0, r.rows.first?.string("pretty") ?? "0 bytes")
  }

  /// The size of the same tables from the catalog (pages as of the last VACUUM or ANALYZE),
  /// without taking any lock on them.
  static func estimatedSize(_ c: PGConnection, schema: String, subset: [String]?) throws -> (
    Int, String
  ) {
    let names: String? = subset.map {
      PGArray.literal($0.map { Catalog.bareName($0, schema: schema) })
    }
    let r = try c.query(
      """
      WITH s AS (
        SELECT coalesce(sum(x.relpages), 0)::bigint * current_setting('block_size')::bigint AS bytes
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_class x ON x.oid = c.oid OR x.oid = c.reltoastrelid
                          OR x.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = c.oid)
         WHERE n.nspname = $1 AND c.relkind = 'r'
           AND EXISTS (SELECT 1 FROM pg_constraint p WHERE p.conrelid = c.oid AND p.contype = 'p')
           AND ($2::text[] IS NULL OR c.relname = ANY($2::text[])))
      SELECT bytes, pg_size_pretty(bytes) || ' (estimate)' AS pretty FROM s
      """, [schema, names])
    return (r.rows.first?.int("bytes") ?? 0, r.rows.first?.string("pretty") ?? "0 bytes")
  }

  /// Reads one side.
  static func snapshot(
    _ side: Side, engine: any ReplicationEngine, server: ServerConfig, schema: String,
    subset: [String]?,
    connectTimeout: Int, audit: AuditContext? = nil
  ) throws
    -> SideSnapshot
  {
    let c = try PGConnection(
      conninfo: server.conninfo(.root, connectTimeout: connectTimeout),
      label: "\(side.rawValue) as root (\(server.ip):\(server.port)/\(server.dbname))")
    c.audit = audit  // status may wake a subscription
    defer { c.close() }
    let sub = try engine.state(c, side == .dst ? .forward : .back, server: server)
    // A session holding a table locked (ACCESS EXCLUSIVE) must not hang status: the exact size
    // waits at most a second for the table's lock, then the planner's estimate stands in.
    var bytes = 0, pretty = ""
    do {
      try c.exec("SET lock_timeout = '1s'")
      (bytes, pretty) = try datasetSize(c, schema: schema, subset: subset)
      try c.exec("RESET lock_timeout")
    } catch let e as PGError where e.sqlState == "55P03" {
      try c.exec("RESET lock_timeout")
      (bytes, pretty) = try estimatedSize(c, schema: schema, subset: subset)
    }
    let source = side == .src ? try engine.sourceFacts(c, schema: schema) : nil
    var snap = SideSnapshot(
      subscription: sub, source: source, datasetBytes: bytes, datasetPretty: pretty,
      lockWait: try lockWait(c, sub, name: engine.name(side == .dst ? .forward : .back)))
    if side == .dst { snap.backArmed = try engine.backArmed(c) }
    return snap
  }

  /// How long a subscription's running apply worker has waited for a lock on its side, with a
  /// sentence naming the sessions that hold it (nil: it waits for none).
  static func lockWait(_ c: PGConnection, _ st: SubscriptionState, name: String) throws -> (
    seconds: Double, text: String
  )? {
    guard let pid = st.workerPid, let w = try LockWait.waiting(c, pid: pid) else { return nil }
    let who = w.holders.isEmpty ? "another session" : w.holders.joined(separator: ", ")
    return (
      w.seconds,
      "the apply worker of \(name) (pid \(pid)) has waited \(Int(w.seconds)) s for a lock held by \(who)"
    )
  }

  /// The status record of one pair.
  static func run(_ ctx: PairContext) throws -> Value {
    let src = try ctx.config.server(.src)
    let dst = try ctx.config.server(.dst)
    let schema = ctx.schema
    let subset = ctx.config.tableSubset
    let timeout = ctx.env.connectTimeout
    let engine = try ctx.engine
    let audits = [Side.src, Side.dst].map { try? ctx.auditContext($0, .root) }
    let snaps = Runner.parallelMap([Side.src, Side.dst], width: 2) {
      side -> Result<SideSnapshot, BeltError> in
      do {
        return .success(
          try snapshot(
            side, engine: engine, server: side == .src ? src : dst, schema: schema, subset: subset,
            connectTimeout: timeout, audit: audits[side == .src ? 0 : 1]))
      } catch {
        return .failure(BeltError.wrap(error))
      }
    }
    // One side unreachable is a state to show (the other side still says something useful:
    // src's slot lag keeps growing while dst is down), not a reason to hide the pair.
    // Both unreachable: the pair fails with src's error.
    var unreachable: [Side] = []
    func side(_ i: Int, _ which: Side) throws -> SideSnapshot {
      switch snaps[i] {
      case .success(let snap): return snap
      case .failure(let e):
        if case .failure = snaps[1 - i] { throw e }
        unreachable.append(which)
        let st = SubscriptionState(
          state: "down", reason: "cannot connect to \(which.rawValue): \(e.message)",
          tablesDone: nil,
          tablesPending: 0, slotName: nil)
        return SideSnapshot(subscription: st, datasetBytes: 0, datasetPretty: "n/a")
      }
    }
    let s = try side(0, .src)
    let d = try side(1, .dst)
    var forward = d.subscription
    var back = s.subscription
    if back.state == "unconfigured", d.backArmed {
      // Back replication waits on dst for the cutover, which attaches it when forward is dropped.
      back.state = "armed"
    }
    // Schema drift on what forward replication carries, from both sides' catalogs: a column
    // src has and dst lacks stops dst's apply worker on the next change to that table, and
    // only the dst server log would say why.
    if let lock = d.lockWait, lock.seconds >= SubscriptionState.lockGrace, forward.state != "down" {
      forward.state = "down"
      forward.reason = lock.text
    }
    var drift: [SchemaDrift.Difference] = []
    var driftError: String? = nil
    if unreachable.isEmpty, forward.state != "unconfigured" {
      do { drift = try SchemaDrift.differences(ctx) } catch {
        driftError = BeltError.wrap(error).message
      }
      if let why = SchemaDrift.summary(drift.filter(\.breaks)) {
        forward.state = "down"
        forward.reason = why + (forward.reason.map { "; \($0)" } ?? "")
      }
    }
    var fields: [(String, Value)] = [
      ("forward", .string(forward.state)), ("back", .string(back.state)),
      ("pg1_pg2", .string(forward.state)), ("pg2_pg1", .string(back.state)),
    ]
    let configured = forward.state != "unconfigured"
    let lags = configured ? (s.source?.lags ?? [nil, nil, nil, nil]) : [nil, nil, nil, nil]
    let lagBytes = configured ? (lags[3] ?? s.source?.slotLag.map { max(0, $0) }) : nil
    fields += [
      ("lag_bytes", .from(lagBytes)), ("sent_lag", .from(lags[0])), ("write_lag", .from(lags[1])),
      ("flush_lag", .from(lags[2])), ("replay_lag", .from(lags[3])),
    ]
    let total = s.source?.publishedTables
    var done: Int? = nil
    if configured, let total {
      done = forward.state == "replicating" ? total : min(total, forward.tablesDone ?? 0)
    }
    fields += [("tables_done", .from(done)), ("tables_total", .from(configured ? total : nil))]
    let hidden =
      !unreachable.isEmpty || forward.state == "replicating"
      || (forward.state == "unconfigured" && back.state == "replicating")
    var pct: Double = 0
    if s.datasetBytes > 0 {
      pct = (Double(d.datasetBytes) / Double(s.datasetBytes) * 1000).rounded() / 10
    } else if d.datasetBytes > 0 {
      pct = 100
    }
    var progress = hidden ? "n/a" : (pct == 0 ? "0 %" : String(format: "%.1f %%", pct))
    if !hidden, forward.state == "initializing", let done, let total {
      progress += " (\(done)/\(total) tables)"
    }
    let copyFields = SnapshotCopy.statusFields(ctx, progress: &progress)
    fields += [
      ("src_dataset_size", .string(hidden ? "n/a" : s.datasetPretty)),
      ("dst_dataset_size", .string(hidden ? "n/a" : d.datasetPretty)),
      ("src_dataset_bytes", .int(s.datasetBytes)), ("dst_dataset_bytes", .int(d.datasetBytes)),
      ("progress", .string(progress)), ("progress_pct", hidden ? .null : .double(pct)),
    ]
    fields += copyFields
    if forward.state == "down" { fields.append(("forward_error", .from(forward.reason))) }
    if forward.state != "unconfigured" {
      // Whether the application may be fenced now (cutover.lua waits for this before its first
      // revoke or pause): replicating, the apply worker running and settled, no schema drift.
      var unhealthy = forward.unhealthy.map { "forward replication is not healthy: \($0)" }
      if unhealthy == nil, let why = SchemaDrift.summary(drift) { unhealthy = why }

      if unhealthy == nil, let driftError {
        unhealthy = "the schema drift check failed: \(driftError)"
      }
      fields += [
        ("forward_healthy", .bool(unhealthy == nil)), ("forward_unhealthy", .from(unhealthy)),
        ("schema_drift", .from(drift.map(\.text))),
      ]
      // A shorter wait is shown, not counted: a lock held for a moment on dst is not a reason to
      // refuse a cutover; from lockGrace on, forward is down (above) and the gate stops.
      if let lock = d.lockWait { fields.append(("forward_lock_wait", .string(lock.text))) }
    }
    if forward.state == "initializing", let waits = s.source?.slotWaitsFor, !waits.isEmpty {
      fields.append(
        (
          "forward_waiting",
          .string(
            "the replication slot on src is created once these transactions end (logical decoding waits for every "
              + "transaction running on the server): \(waits.joined(separator: ", "))")
        ))
    }
    if back.state == "down" { fields.append(("back_error", .from(back.reason))) }
    // The back subscription's slot on dst (rollback.lua waits for it to pass dst's writes).
    fields.append(("back_slot", .from(back.slotName)))
    if let which = unreachable.first {
      fields.append(("unreachable", .string(which.rawValue)))
      fields.append(("ok", false))
    }
    fields += CutoverProgress.statusFields(ctx)
    return .object(fields)
  }
}
