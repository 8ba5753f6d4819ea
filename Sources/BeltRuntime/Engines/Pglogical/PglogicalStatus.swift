import Foundation

/// The state of a pglogical subscription with its cause: pglogical's status word, its workers,
/// the server's worker budget and, where readable, the server log.
enum PglogicalStatus {
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
    guard let sub = try PGL.subscription(c, name) else { return .unconfigured }
    let raw = try PGL.rawStatus(c, name) ?? "unknown"
    let sync = try PGL.syncProgress(c, name)
    let w = try workers(c, subscriptionID: sub.id)
    let clockKey = "\(server.ip):\(server.port)/\(server.dbname)/\(name)"
    var st = SubscriptionState(
      state: "initializing", reason: nil, tablesDone: sync.done, tablesPending: sync.pending,
      slotName: sub.slotName, copyDone: sync.pending == 0 && (sync.fullDone || raw == "replicating")
    )
    st.workerRunning = w.apply
    st.workerUptime = w.apply ? w.applyAge : nil
    st.workerPid = w.apply ? w.applyPid : nil
    func down(_ why: String) -> SubscriptionState {
      st.state = "down"
      st.reason = why
      return st
    }
    func cause() -> String {
      if let line = ServerLog.latestPglogicalError(
        c, dbOid: w.dbOid, dbName: server.dbname,
        secrets: [server.root.password, server.owner.password, server.replication.password])
      {
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
      if w.full {
        return down(
          budget
            + "; pglogical cannot start \(w.manager ? "the apply worker" : "this database's manager") (raise max_worker_processes there and restart the server)"
        )
      }
      if !w.manager {
        // pglogical's supervisor can miss the wake-up for a new subscription (it resets its
        // latch while starting other databases' managers) and then sleeps up to 3 minutes.
        // Touching the subscription (enabled -> enabled) wakes it again; no worker runs here
        // that this could disturb.
        _ = try? c.query("SELECT pglogical.alter_subscription_enable($1, true)", [name])
        let waited = GraceClock.shared.observe(clockKey, "manager")
        if w.serverAge < restartGrace || waited < grace {
          st.state = sync.fullDone ? "replicating" : "initializing"
          st.reason =
            "pglogical's manager for this database is not running yet (the server started \(Int(w.serverAge)) s ago; "
            + "the pglogical supervisor starts it)"
          return st
        }
        return down(
          "pglogical's manager for this database has not started for \(Int(waited)) s (max_worker_processes = \(w.max), "
            + "\(w.running) background workers running: raise it if they are all pglogical's); "
            + cause())
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
        if w.full {
          return down(
            budget + "; pglogical cannot start a sync worker for \(sync.pending) table(s)")
        }
        let waited = GraceClock.shared.observe(clockKey, "sync \(sync.pending)")
        if waited >= 2 * grace {
          return down(
            "the copy of \(sync.pending) table(s) is not progressing: no pglogical sync worker has run for \(Int(waited)) s; "
              + cause())
        }
        return st
      }
    }
    let settled = w.apply && (w.applyAge ?? .infinity) >= SubscriptionState.settledAfter
    if !settled, let waited = GraceClock.shared.peek(clockKey, "apply") {
      // Back after being seen down, but not up long enough to count: a worker that fails on
      // every change (a missing column, a conflicting row) is restarted every 5 s and runs for
      // a moment each time, so the clock started when it was first seen down keeps running.
      if waited >= grace {
        return down(
          "the apply worker of \(name) keeps restarting: none has stayed up \(Int(SubscriptionState.settledAfter)) s "
            + "in the last \(Int(waited)) s; " + cause())
      }
      st.reason =
        w.apply
        ? String(format: "the apply worker of %@ restarted %.0f s ago", name, w.applyAge ?? 0)
        : "the apply worker of \(name) is restarting"
      return st
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
    /// Seconds since the running apply worker started.
    var applyAge: Double?
    /// Its process id.
    var applyPid: Int?
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
    "autovacuum launcher", "autovacuum worker", "background writer", "checkpointer",
    "client backend",
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
             min(a.pid) FILTER (WHERE a.backend_type = 'pglogical apply ' || d.oid || ':' || $1) AS apply_pid,
             extract(epoch FROM now() - min(a.backend_start) FILTER (
               WHERE a.backend_type = 'pglogical apply ' || d.oid || ':' || $1))::float8 AS apply_age,
             count(a.pid) FILTER (WHERE a.backend_type LIKE 'pglogical sync %'
                                     AND a.backend_type LIKE '% ' || d.oid || ':' || $1) AS sync,
             extract(epoch FROM now() - pg_postmaster_start_time())::float8 AS age
        FROM (SELECT oid FROM pg_database WHERE datname = current_database()) d
        LEFT JOIN pg_stat_activity a ON true
       GROUP BY d.oid
      """, [subscriptionID, PGArray.literal(notBackgroundWorkers)])
    let row = r.rows.first
    return WorkerFacts(
      max: row?.int("max") ?? 8, running: row?.int("running") ?? 0,
      manager: row?.bool("manager") ?? false,
      apply: row?.bool("apply") ?? false, applyAge: row?["apply_age"].flatMap { Double($0) },
      applyPid: row?.int("apply_pid"), sync: row?.int("sync") ?? 0,
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
}
