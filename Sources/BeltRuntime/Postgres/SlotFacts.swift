import Foundation

/// What a provider says about a logical replication slot, whichever engine made it.
public enum SlotFacts {
  /// The slot's lag in the connected database: `slot_lag` (src's WAL position against what the
  /// slot confirmed) and `sent`, `write`, `flush`, `replay` from its walsender (nil: no slot).
  public static func lag(_ c: PGConnection, slot: String) throws -> PGRow? {
    try c.query(
      """
      SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint AS slot_lag,
             pg_wal_lsn_diff(pg_current_wal_lsn(), r.sent_lsn)::bigint AS sent,
             pg_wal_lsn_diff(pg_current_wal_lsn(), r.write_lsn)::bigint AS write,
             pg_wal_lsn_diff(pg_current_wal_lsn(), r.flush_lsn)::bigint AS flush,
             pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint AS replay
        FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
       WHERE s.database = current_database() AND s.slot_name = $1
      """, [slot]
    ).rows.first
  }

  /// The sessions whose open transactions a logical slot being created for this database waits
  /// for: a logical slot is created only once every transaction running on the server (in any
  /// database) has ended, and the engine says "initializing" for as long as they last.
  public static func creationWaitsFor(_ c: PGConnection) throws -> [String] {
    try c.query(
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

  /// The slot's confirmed position, whether it has reached `target`, and how many bytes it is
  /// behind (nil: no such slot).
  public static func position(_ c: PGConnection, slot: String, target: String) throws -> PGRow? {
    try c.query(
      """
      SELECT confirmed_flush_lsn::text AS lsn, confirmed_flush_lsn >= $2::pg_lsn AS done,
             pg_wal_lsn_diff($2::pg_lsn, confirmed_flush_lsn)::bigint AS behind
        FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()
      """, [slot, target]
    ).rows.first
  }
}
