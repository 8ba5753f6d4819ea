import Foundation

/// What a whole dc's migration needs of each server, against what the server has free.
///
/// A dc is usually a few servers holding many databases each, and pglogical takes its workers,
/// slots and WAL senders out of per-server limits. When they run out, nothing fails: the server
/// logs "worker registration failed" every few seconds and the subscriptions never leave
/// `initializing`. So precheck groups the dc's pairs by server (host and port) and counts:
/// - background workers (max_worker_processes): pglogical's supervisor, one manager per database
///   with the extension (this dc's and any that already run pglogical), one apply worker per
///   subscription (forward on dst, back on src). pglogical's initial copy runs inside the apply
///   worker; only tables added later take a sync worker each, one at a time.
/// - replication slots (max_replication_slots) and WAL senders (max_wal_senders) on the
///   provider side of each subscription: src for forward, dst for back.
///
/// What already runs for this dc (a re-run after setup) is not counted twice.
enum PglogicalBudget {
  /// The checks of one server.
  static func check(_ c: PGConnection, key: String, uses: [BudgetUse], dc: String) throws
    -> [ServerCheck]
  {
    let dbnames = Array(Set(uses.map(\.dbname))).sorted()
    let r = try c.query(
      """
      SELECT current_setting('max_worker_processes')::int AS max_workers,
             current_setting('max_replication_slots')::int AS max_slots,
             current_setting('max_wal_senders')::int AS max_senders,
             (SELECT count(*) FROM pg_stat_activity WHERE backend_type <> ALL($2::text[])) AS workers,
             (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pglogical supervisor') AS supervisor,
             (SELECT count(*) FROM pg_replication_slots) AS slots,
             (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender') AS senders,
             (SELECT count(*) FROM pg_stat_activity a
               WHERE a.backend_type LIKE 'pglogical manager %'
                 AND NOT EXISTS (SELECT 1 FROM pg_database d
                                  WHERE d.datname = ANY($1::text[]) AND a.backend_type = 'pglogical manager ' || d.oid)
             ) AS other_managers
      """, [PGArray.literal(dbnames), PGArray.literal(PglogicalStatus.notBackgroundWorkers)])
    guard let row = r.rows.first else { return [] }
    // Per database of this dc on this server: whether its manager, and how many apply
    // workers, already run; which of this migration's slots exist and are in use.
    let per = try c.query(
      """
      SELECT d.datname,
             EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.backend_type = 'pglogical manager ' || d.oid) AS manager,
             (SELECT count(*) FROM pg_stat_activity a WHERE a.backend_type LIKE 'pglogical apply ' || d.oid || ':%') AS applies,
             (SELECT count(*) FROM pg_replication_slots s WHERE s.database = d.datname
                AND (s.slot_name LIKE '%\\_pg1\\_pg2' OR s.slot_name LIKE '%\\_pg2\\_pg1')) AS slots,
             (SELECT count(*) FROM pg_replication_slots s WHERE s.database = d.datname AND s.active
                AND (s.slot_name LIKE '%\\_pg1\\_pg2' OR s.slot_name LIKE '%\\_pg2\\_pg1')) AS active_slots
        FROM pg_database d WHERE d.datname = ANY($1::text[])
      """, [PGArray.literal(dbnames)])
    let byName = Dictionary(
      per.rows.map { ($0.string("datname"), $0) }, uniquingKeysWith: { a, _ in a })
    var workersNeeded = row.int("supervisor") ?? 0 > 0 ? 0 : 1
    var slotsNeeded = 0
    var sendersNeeded = 0
    var subsHere = 0
    var providerSubs = 0
    for name in dbnames {
      let mine = uses.filter { $0.dbname == name }
      let facts = byName[name]
      if facts?.bool("manager") != true { workersNeeded += 1 }
      // Every pair has a subscription on each side: forward on dst, back on src; each one's
      // provider is the other side, so this server also serves one slot per pair.
      let subs = mine.count
      subsHere += subs
      providerSubs += subs
      workersNeeded += max(0, subs - (facts?.int("applies") ?? 0))
      slotsNeeded += max(0, subs - (facts?.int("slots") ?? 0))
      sendersNeeded += max(0, subs - (facts?.int("active_slots") ?? 0))
    }
    let roles =
      "\(key) (\(uses.filter { $0.side == .src }.count) src and \(uses.filter { $0.side == .dst }.count) dst database(s) of dc \(dc))"
    func item(_ name: String, max: Int, used: Int, needed: Int, what: String) -> ServerCheck {
      let free = Swift.max(0, max - used)
      let ok = needed <= free
      return ServerCheck(
        name: "\(name) \(key)", value: "\(max)", ok: ok,
        why: ok
          ? "\(needed) needed, \(free) free (\(used) in use)"
          : "server \(roles) needs \(needed) more \(what) but only \(free) of \(name) = \(max) are free (\(used) in use); "
            + "set \(name) to at least \(used + needed) there and restart it")
    }
    return [
      item(
        "max_worker_processes", max: row.int("max_workers") ?? 0, used: row.int("workers") ?? 0,
        needed: workersNeeded,
        what:
          "background workers (pglogical's supervisor, a manager per database, an apply worker per subscription: "
          + "\(dbnames.count) database(s), \(subsHere) subscription(s), \(row.int("other_managers") ?? 0) other database(s) already running pglogical)"
      ),
      item(
        "max_replication_slots", max: row.int("max_slots") ?? 0, used: row.int("slots") ?? 0,
        needed: slotsNeeded,
        what: "replication slots (one per subscription this server provides: \(providerSubs))"),
      item(
        "max_wal_senders", max: row.int("max_senders") ?? 0, used: row.int("senders") ?? 0,
        needed: sendersNeeded,
        what: "WAL senders (one per subscription this server provides: \(providerSubs))"),
    ]
  }
}
