import CSignals
import Foundation

/// Statements that take locks the application may hold: a short `lock_timeout`, and when it
/// runs out, an error naming the sessions in the way instead of a wait that would also queue
/// the application's writes behind belt's.
public enum LockWait {
  /// How long a step waits for a lock before naming the sessions that hold it.
  public static let timeout = "5s"

  /// Runs `body` with `lock_timeout` set; a lock timeout becomes an error naming the sessions
  /// that hold locks on objects of `schemas` (or, when none does, those idle in a transaction).
  public static func run(
    _ c: PGConnection, side: Side, what: @autoclosure () -> String, schemas: [String] = [],
    _ body: () throws -> Void
  ) throws {
    try c.exec("SET lock_timeout = '\(timeout)'")
    defer { _ = try? c.exec("RESET lock_timeout") }
    do {
      try body()
    } catch let e as PGError where e.sqlState == "55P03" {
      let holders = try blockers(c, schemas: schemas)
      let list =
        holders.isEmpty ? "no session could be identified" : holders.joined(separator: "; ")
      throw BeltError(
        .preconditionFailed,
        "\(what()) on \(side.rawValue) gave up after waiting \(timeout) for a lock held by: \(list); "
          + "end those sessions (commit, roll back or pg_terminate_backend) and run the command again",
        sqlstate: "55P03", retryable: true)
    }
  }

  /// A lock wait that ran out of `timeout` (55P03, retryable): what waited, for whom, and what
  /// to do.
  public static func error(
    _ what: String, holders: [String], then: String, dc: String?, db: String?
  ) -> BeltError {
    BeltError(
      .preconditionFailed,
      "\(what) waited \(timeout) for locks held by: "
        + (holders.isEmpty
          ? "sessions that could not be identified" : holders.joined(separator: "; "))
        + "; \(then)",
      dc: dc, db: db, sqlstate: "55P03", retryable: true)
  }

  /// Sessions of this database that hold locks on objects of `schemas`, or else those idle in a
  /// transaction.
  public static func blockers(_ c: PGConnection, schemas: [String] = []) throws -> [String] {
    let r = try c.query(
      """
      SELECT a.pid, coalesce(a.usename, '?') AS usename, coalesce(a.state, '?') AS state,
             coalesce(to_char(a.xact_start, 'YYYY-MM-DD HH24:MI:SS'), '?') AS since,
             coalesce(a.application_name, '') AS app,
             EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                       JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE l.pid = a.pid AND l.granted AND n.nspname = ANY($1::text[])) AS holds
        FROM pg_stat_activity a
       WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
         AND a.backend_type = 'client backend'
       ORDER BY a.pid
      """, [PGArray.literal(schemas)])
    let rows = r.rows
    let holding = rows.filter { $0.bool("holds") }
    let chosen =
      holding.isEmpty
      ? rows.filter { $0.string("state").hasPrefix("idle in transaction") } : holding
    return chosen.map {
      var s =
        "pid \($0.string("pid")) (user \($0.string("usename")), \($0.string("state")) since \($0.string("since"))"
      if !$0.string("app").isEmpty { s += ", application \($0.string("app"))" }
      return s + ")"
    }
  }

  /// How long backend `pid` has waited for a lock, and the sessions holding it (nil: it waits
  /// for none). Used for a replication apply worker stuck behind an application's lock.
  public static func waiting(_ c: PGConnection, pid: Int) throws -> (
    seconds: Double, holders: [String]
  )? {
    // pg_locks.waitstart exists from PostgreSQL 14 on; read through jsonb so older servers answer too.
    let r = try c.query(
      """
      SELECT coalesce(extract(epoch FROM now() - min((to_jsonb(l) ->> 'waitstart')::timestamptz)), 0)::float8 AS waited,
             (SELECT coalesce(json_agg(json_build_object('pid', b.pid, 'user', coalesce(b.usename, '?'),
                                 'state', coalesce(b.state, '?'), 'app', coalesce(b.application_name, ''))), '[]')::text
                FROM pg_stat_activity b WHERE b.pid = ANY(pg_blocking_pids($1::int))) AS holders
        FROM pg_locks l WHERE l.pid = $1::int AND NOT l.granted
      HAVING count(*) > 0
      """, [String(pid)])
    guard let row = r.rows.first else { return nil }
    let holders = (try? JSONParser.parse(row.string("holders")))?.arrayValue ?? []
    return (
      Double(row.string("waited")) ?? 0,
      holders.map {
        var s =
          "pid \($0["pid"]?.display ?? "?") (user \($0["user"]?.display ?? "?"), \($0["state"]?.display ?? "?")"
        if let app = $0["app"]?.stringValue, !app.isEmpty { s += ", application \(app)" }
        return s + ")"
      }
    )
  }

  /// Sleeps, honouring Ctrl-C.
  public static func pause(_ seconds: Double) throws {
    if belt_interrupted() != 0 { throw BeltError(.interrupted, "interrupted by the user (Ctrl-C)") }
    Thread.sleep(forTimeInterval: seconds)
  }
}
