import Foundation

/// The state of one subscription, as belt reports it.
struct SubscriptionState: Sendable {
  /// `unconfigured`, `initializing`, `replicating` or `down`.
  var state: String
  /// Why it is down, when known.
  var reason: String?
  /// Tables whose initial copy is done (nil when unconfigured).
  var tablesDone: Int?
  /// Tables whose initial copy has not finished.
  var tablesPending: Int
  /// The subscription's slot name on the provider.
  var slotName: String?
  /// Whether pglogical finished the initial copy (every table, and the initial full sync).
  var copyDone: Bool = true
}

/// What status reads on one side.
struct SideSnapshot: Sendable {
  /// The subscription that lives on this side (dst: forward, src: back).
  var subscription: SubscriptionState
  /// src only: tables in the forward set.
  var setTables: Int?
  /// src only: forward lag in bytes (sent, write, flush, replay) from the walsender.
  var lags: [Int?] = [nil, nil, nil, nil]
  /// src only: bytes between src's WAL position and what the forward slot has confirmed.
  var slotLag: Int?
  /// src only: the sessions whose open transactions the forward slot's creation waits for.
  var slotWaitsFor: [String] = []
  /// Total size of the replicated tables.
  var datasetBytes: Int
  /// The same, pretty.
  var datasetPretty: String
}

/// `belt status`: the state of both subscriptions, forward lag and initial-copy progress.
enum ReplicationStatus {
  /// How long a state that passes by itself (a worker between two retries, a manager the
  /// supervisor has not started yet) is shown as it was, before it counts as down.
  static let grace: Double = 15
  /// How long after a server start its pglogical managers may still be starting.
  static let restartGrace: Double = 10

  /// The state of subscription `name` in the connected database.
  ///
  /// pglogical itself says `initializing` whenever the apply worker runs and `down` whenever it
  /// does not, which hides a copy that failed for good and a worker that can never start. So
  /// belt also reads the workers that run for this database, the server's background-worker
  /// budget and, where it may, the server log.
  static func state(_ c: PGConnection, _ name: String, side: Side, server: ServerConfig) throws
    -> SubscriptionState
  {
    guard let sub = try PGL.subscription(c, name) else {
      return SubscriptionState(
        state: "unconfigured", reason: nil, tablesDone: nil, tablesPending: 0, slotName: nil)
    }
    let raw = try PGL.rawStatus(c, name) ?? "unknown"
    let sync = try PGL.syncProgress(c, name)
    let w = try workers(c, subscriptionID: sub.id)
    let clockKey = "\(server.ip):\(server.port)/\(server.dbname)/\(name)"
    var st = SubscriptionState(
      state: "initializing", reason: nil, tablesDone: sync.done, tablesPending: sync.pending,
      slotName: sub.slotName, copyDone: sync.pending == 0 && (sync.fullDone || raw == "replicating"))
    func down(_ why: String) -> SubscriptionState {
      st.state = "down"
      st.reason = why
      return st
    }
    func cause() -> String {
      if let line = ServerLog.latestPglogicalError(
        c, dbOid: w.dbOid, dbName: server.dbname,
        secrets: [server.root.password, server.owner.password, server.pglogical.password]) {
        return "latest pglogical error in the \(side.rawValue) server log: \(line)"
      }
      return "cause unknown; see the \(side.rawValue) server log (\(server.ip):\(server.port))"
    }
    let budget =
      "no free background worker slot on \(side.rawValue): max_worker_processes = \(w.max) and \(w.running) are in use"
    if !sub.enabled || raw == "disabled" {
      return down("subscription \(name) is disabled")
    }
    // pglogical's initial copy marks each step before doing it and refuses to resume from a
    // step that is not restartable: a worker that died while copying (status 'd', or 's'/'c')
    // makes every restart fail at once ("initialization failed during nonrecoverable step").
    if ["s", "d", "c"].contains(sync.fullStatus), !w.apply {
      return down(
        "the initial copy of \(name) failed and pglogical cannot resume it (stopped in step '\(sync.fullStatus)'); "
          + cause() + "; fix the cause, then run reset and setup again")
    }
    if raw == "down" {
      if w.full { return down(budget + "; pglogical cannot start \(w.manager ? "the apply worker" : "this database's manager") (raise max_worker_processes there and restart the server)") }
      if !w.manager {
        // pglogical's supervisor can miss the wake-up for a new subscription (it resets its
        // latch while starting other databases' managers) and then sleeps up to 3 minutes.
        // Touching the subscription (enabled -> enabled) wakes it again; no worker runs here
        // that this could disturb.
        _ = try? c.query("SELECT pglogical.alter_subscription_enable($1, true)", [name])
        let waited = GraceClock.shared.observe(clockKey, "manager")
        if w.serverAge < restartGrace || waited < grace {
          st.state = sync.fullDone ? "replicating" : "initializing"
          st.reason = "pglogical's manager for this database is not running yet (the server started \(Int(w.serverAge)) s ago; "
            + "the pglogical supervisor starts it)"
          return st
        }
        return down(
          "pglogical's manager for this database has not started for \(Int(waited)) s (max_worker_processes = \(w.max), "
            + "\(w.running) background workers running: raise it if they are all pglogical's); " + cause())
      }
      let (why, transient) = diagnose(sub, side: side, server: server)
      if !transient { return down(why) }
      let waited = GraceClock.shared.observe(clockKey, "apply")
      if waited < grace {
        // A worker between two retries (pglogical restarts a failed one after 5 s).
        st.state = sync.fullDone ? "replicating" : "initializing"
        st.reason = why
        return st
      }
      return down("\(why) (for \(Int(waited)) s); " + cause())
    }
    if raw == "replicating" || raw == "initializing" {
      st.state = raw == "replicating" && sync.pending == 0 ? "replicating" : "initializing"
      if sync.pending > 0, sync.fullDone, w.sync == 0 {
        // Tables added later are copied by sync workers, one per table.
        if w.full { return down(budget + "; pglogical cannot start a sync worker for \(sync.pending) table(s)") }
        let waited = GraceClock.shared.observe(clockKey, "sync \(sync.pending)")
        if waited >= 2 * grace {
          return down(
            "the copy of \(sync.pending) table(s) is not progressing: no pglogical sync worker has run for \(Int(waited)) s; "
              + cause())
        }
        return st
      }
    }
    GraceClock.shared.clear(clockKey)
    return st
  }

  /// The background workers of the connected server and database.
  struct WorkerFacts {
    /// max_worker_processes.
    var max: Int
    /// Background workers of any kind running on the server.
    var running: Int
    /// Whether pglogical's manager for this database runs.
    var manager: Bool
    /// Whether the subscription's apply worker runs.
    var apply: Bool
    /// The subscription's sync workers.
    var sync: Int
    /// Seconds since the server started.
    var serverAge: Double
    var dbOid: String
    /// Whether no slot is free for one more worker.
    var full: Bool { running >= max }
  }

  /// Backend types in pg_stat_activity that are not background workers (they do not take a
  /// max_worker_processes slot).
  static let notBackgroundWorkers = [
    "autovacuum launcher", "autovacuum worker", "background writer", "checkpointer", "client backend",
    "startup", "walreceiver", "walsender", "walwriter", "archiver", "standalone backend",
  ]

  /// Reads the workers of the connected database and the server's worker budget.
  static func workers(_ c: PGConnection, subscriptionID: String) throws -> WorkerFacts {
    let r = try c.query(
      """
      SELECT current_setting('max_worker_processes')::int AS max, d.oid::text AS dboid,
             count(a.pid) FILTER (WHERE a.backend_type <> ALL($2::text[])) AS running,
             count(a.pid) FILTER (WHERE a.backend_type = 'pglogical manager ' || d.oid) > 0 AS manager,
             count(a.pid) FILTER (WHERE a.backend_type = 'pglogical apply ' || d.oid || ':' || $1) > 0 AS apply,
             count(a.pid) FILTER (WHERE a.backend_type LIKE 'pglogical sync %'
                                     AND a.backend_type LIKE '% ' || d.oid || ':' || $1) AS sync,
             extract(epoch FROM now() - pg_postmaster_start_time())::float8 AS age
        FROM (SELECT oid FROM pg_database WHERE datname = current_database()) d
        LEFT JOIN pg_stat_activity a ON true
       GROUP BY d.oid
      """, [subscriptionID, PGArray.literal(notBackgroundWorkers)])
    let row = r.rows.first
    return WorkerFacts(
      max: row?.int("max") ?? 8, running: row?.int("running") ?? 0, manager: row?.bool("manager") ?? false,
      apply: row?.bool("apply") ?? false, sync: row?.int("sync") ?? 0,
      serverAge: Double(row?.string("age") ?? "") ?? 1e9, dbOid: row?.string("dboid") ?? "")
  }

  /// Whether pglogical's manager worker for the connected database runs.
  static func managerRunning(_ c: PGConnection) throws -> Bool {
    try c.query(
      """
      SELECT 1 FROM pg_stat_activity
       WHERE backend_type = 'pglogical manager ' || (SELECT oid FROM pg_database WHERE datname = current_database())::text
      """
    ).values.count > 0
  }

  /// Why a subscription's apply worker is not running.
  ///
  /// Tries the provider DSN stored in pglogical's catalog (as pglogical does, over a
  /// replication connection) and checks the provider's output-plugin allow-list and slot. The
  /// password never appears in the text.
  /// - Returns: the reason, and whether it may only mean the worker has not (re)started yet.
  static func diagnose(_ sub: PGL.Subscription, side: Side, server: ServerConfig) -> (
    String, transient: Bool
  ) {
    let logHint =
      "pglogical writes the cause to the \(side.rawValue) server log (\(server.ip):\(server.port))"
    let dsn =
      sub.providerDSN + " "
      + ConnInfo.build([("connect_timeout", "3"), ("replication", "database")])
    let provider: PGConnection
    do {
      provider = try PGConnection(conninfo: dsn, label: "provider of \(sub.name)")
    } catch let e as PGError {
      return ("\(sub.name) cannot connect to its provider: \(e.message)", false)
    } catch {
      return ("\(sub.name) cannot connect to its provider; \(logHint)", false)
    }
    defer { provider.close() }
    // A replication connection only takes the simple query protocol: exec with a literal.
    if let libs = try? provider.exec("SELECT current_setting('output_plugin_libraries', true)")
      .scalar,
      !libs.isEmpty, !libs.contains("pglogical_output")
    {
      return (
        "the provider's output_plugin_libraries (\(libs)) does not allow pglogical_output; "
          + "add it, reload, then disable and enable \(sub.name)", false
      )
    }
    if let lit = try? provider.literal(sub.slotName),
      let r = try? provider.exec(
        "SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = \(lit)")
    {
      if r.rows.isEmpty {
        return (
          "slot \(sub.slotName) is missing on the provider (the subscription must be recreated); \(logHint)",
          true
        )
      }
      if let row = r.rows.first, row.bool("active") {
        return (
          "the apply worker of \(sub.name) is restarting (slot \(sub.slotName) held by pid \(row.string("active_pid"))); \(logHint)",
          true
        )
      }
    }
    return ("the apply worker of \(sub.name) is not running; \(logHint)", true)
  }

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

  /// Reads one side.
  static func snapshot(
    _ side: Side, server: ServerConfig, schema: String, subset: [String]?, connectTimeout: Int,
    audit: AuditContext? = nil
  ) throws
    -> SideSnapshot
  {
    let c = try PGConnection(
      conninfo: server.conninfo(.root, connectTimeout: connectTimeout),
      label: "\(side.rawValue) as root (\(server.ip):\(server.port)/\(server.dbname))")
    c.audit = audit  // status may wake a subscription (alter_subscription_enable)
    defer { c.close() }
    let sub = try state(c, side == .dst ? PGL.forwardSub : PGL.backSub, side: side, server: server)
    let (bytes, pretty) = try datasetSize(c, schema: schema, subset: subset)
    var snap = SideSnapshot(subscription: sub, datasetBytes: bytes, datasetPretty: pretty)
    if side == .src, try PGL.installed(c) {
      snap.setTables = try PGL.setTables(c, schema: schema)?.count
      let slot =
        try c.query(
          "SELECT pglogical.pglogical_gen_slot_name(current_database(), $1, $2)",
          [PGL.srcNode, PGL.forwardSub]
        ).scalar ?? ""
      let r = try c.query(
        """
        SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint AS slot_lag,
               pg_wal_lsn_diff(pg_current_wal_lsn(), r.sent_lsn)::bigint AS sent,
               pg_wal_lsn_diff(pg_current_wal_lsn(), r.write_lsn)::bigint AS write,
               pg_wal_lsn_diff(pg_current_wal_lsn(), r.flush_lsn)::bigint AS flush,
               pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint AS replay
          FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
         WHERE s.database = current_database() AND s.slot_name = $1
        """, [slot])
      if let row = r.rows.first {
        snap.slotLag = row.int("slot_lag")
        snap.lags = ["sent", "write", "flush", "replay"].map { row.int($0).map { max(0, $0) } }
      }
      // A logical slot is created only once every transaction running on the server (in any
      // database) has ended: pglogical then says "initializing" for as long as they last.
      snap.slotWaitsFor = try c.query(
        """
        SELECT b.pid, coalesce(b.usename, '?') AS usename, coalesce(b.datname, '?') AS datname,
               coalesce(b.state, '?') AS state, coalesce(extract(epoch FROM now() - b.xact_start)::bigint, 0) AS secs
          FROM pg_stat_activity w CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS k(pid)
          JOIN pg_stat_activity b ON b.pid = k.pid
         WHERE w.backend_type = 'walsender' AND w.datname = current_database() AND w.wait_event_type = 'Lock'
           AND w.query LIKE 'CREATE_REPLICATION_SLOT%' ORDER BY b.xact_start
        """
      ).rows.map {
        "pid \($0.string("pid")) (user \($0.string("usename")), database \($0.string("datname")), \($0.string("state")), "
          + "transaction open \($0.string("secs")) s)"
      }
    }
    return snap
  }

  /// The status record of one pair.
  static func run(_ ctx: PairContext) throws -> Value {
    let src = try ctx.config.server(.src)
    let dst = try ctx.config.server(.dst)
    let schema = ctx.schema
    let subset = ctx.config.tableSubset
    let timeout = ctx.env.connectTimeout
    let audits = [Side.src, Side.dst].map { try? ctx.auditContext($0, .root) }
    let snaps = Runner.parallelMap([Side.src, Side.dst], width: 2) {
      side -> Result<SideSnapshot, BeltError> in
      do {
        return .success(
          try snapshot(
            side, server: side == .src ? src : dst, schema: schema, subset: subset,
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
          state: "down", reason: "cannot connect to \(which.rawValue): \(e.message)", tablesDone: nil,
          tablesPending: 0, slotName: nil)
        return SideSnapshot(subscription: st, datasetBytes: 0, datasetPretty: "n/a")
      }
    }
    let s = try side(0, .src)
    let d = try side(1, .dst)
    let forward = d.subscription
    let back = s.subscription
    var fields: [(String, Value)] = [
      ("forward", .string(forward.state)), ("back", .string(back.state)),
      ("pg1_pg2", .string(forward.state)), ("pg2_pg1", .string(back.state)),
    ]
    let configured = forward.state != "unconfigured"
    let lags = configured ? s.lags : [nil, nil, nil, nil]
    let lagBytes = configured ? (lags[3] ?? s.slotLag.map { max(0, $0) }) : nil
    fields += [
      ("lag_bytes", .from(lagBytes)), ("sent_lag", .from(lags[0])), ("write_lag", .from(lags[1])),
      ("flush_lag", .from(lags[2])), ("replay_lag", .from(lags[3])),
    ]
    let total = s.setTables
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
    fields += [
      ("src_dataset_size", .string(hidden ? "n/a" : s.datasetPretty)),
      ("dst_dataset_size", .string(hidden ? "n/a" : d.datasetPretty)),
      ("src_dataset_bytes", .int(s.datasetBytes)), ("dst_dataset_bytes", .int(d.datasetBytes)),
      ("progress", .string(progress)), ("progress_pct", hidden ? .null : .double(pct)),
    ]
    if forward.state == "down" { fields.append(("forward_error", .from(forward.reason))) }
    if forward.state == "initializing", !s.slotWaitsFor.isEmpty {
      fields.append((
        "forward_waiting",
        .string(
          "the replication slot on src is created once these transactions end (logical decoding waits for every "
            + "transaction running on the server): \(s.slotWaitsFor.joined(separator: ", "))")))
    }
    if back.state == "down" { fields.append(("back_error", .from(back.reason))) }
    if let which = unreachable.first {
      fields.append(("unreachable", .string(which.rawValue)))
      fields.append(("ok", false))
    }
    fields += CutoverProgress.statusFields(ctx)
    return .object(fields)
  }
}
