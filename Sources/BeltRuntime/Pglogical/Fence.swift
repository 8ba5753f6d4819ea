import Foundation

/// The exact fence of the cutover's gate: a marker row written on src after the drain, in a
/// table that both sides have and the replication set `pgbelt` carries.
///
/// Why it is exact: pglogical applies src's transactions on dst one by one, in src's commit
/// order, in one apply worker. The marker is committed on src after every transaction the
/// application committed (the fence has stopped the application), so once dst can read the
/// marker, dst has applied every one of them. The marker commits with `synchronous_commit = on`,
/// which flushes src's WAL up to it: commits the application made with
/// `synchronous_commit = off` are below it and leave src at once instead of after the WAL
/// writer's next round. Once the marker is on dst, a commit with `synchronous_commit = on` on
/// dst flushes dst's WAL up to it, so what was applied is also durable there (pglogical's apply
/// commits asynchronously), which is what the old gate got from the slot's confirmed position.
///
/// The gate polls dst for the marker every few milliseconds on a connection that is already
/// open, instead of waiting about a second for pglogical's feedback to move src's slot.
///
/// The table lives in the `pglogical` schema (no application's namespace is touched, schema
/// dumps and diffs of the application's schema never see it); teardown drops it.
enum Fence {
  static let schema = "pglogical"
  static let table = "belt_fence"
  /// `"pglogical"."belt_fence"`.
  static var qualified: String { PGConnection.qualified(schema, table) }

  static var createSQL: String {
    """
    CREATE TABLE IF NOT EXISTS \(qualified) (token text PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT now());
    GRANT SELECT ON \(qualified) TO PUBLIC
    """
  }

  /// Whether the fence table is in src's set `pgbelt`.
  static func inSet(_ sroot: PGConnection) throws -> Bool {
    try sroot.query(
      """
      SELECT 1 FROM pglogical.replication_set_table t
        JOIN pglogical.replication_set rs ON rs.set_id = t.set_id
        JOIN pglogical.local_node l ON l.node_id = rs.set_nodeid
       WHERE rs.set_name = $1 AND t.set_reloid = to_regclass($2)
      """, [PGL.setName, qualified]
    ).values.count == 1
  }

  /// Creates the fence table on dst, then on src, and adds it to src's set (without a data
  /// copy: it only ever holds markers). dst first: a replicated row for a table dst lacks would
  /// stop the apply worker. Idempotent; cheap when done (two catalog lookups).
  /// - Returns: what was done ("ready", or "created and added to set pgbelt").
  @discardableResult
  static func ensure(src sroot: PGConnection, dst droot: PGConnection) throws -> String {
    if try inSet(sroot), try droot.query("SELECT to_regclass($1) IS NOT NULL", [qualified]).scalar == "t" {
      return "ready"
    }
    try droot.exec("SET client_min_messages = warning; " + createSQL)
    try sroot.exec("SET client_min_messages = warning; " + createSQL)
    try PGL.withLockTimeout(sroot, side: .src, what: "adding \(qualified) to set \(PGL.setName)") {
      do {
        try sroot.query("SELECT pglogical.replication_set_add_table($1, $2::regclass, false)", [PGL.setName, qualified])
      } catch let e as PGError where e.sqlState == "23505" {}
    }
    return "created and added to set \(PGL.setName)"
  }

  /// Writes a new marker on src (committed with `synchronous_commit = on`).
  /// - Returns: the marker's token and src's WAL insert position just after it.
  static func write(_ sroot: PGConnection) throws -> (token: String, lsn: String) {
    let token = "belt-" + UUID().uuidString.lowercased()
    try sroot.exec("BEGIN; SET LOCAL synchronous_commit = on")
    do {
      try sroot.query("INSERT INTO \(qualified) (token) VALUES ($1)", [token])
      try sroot.exec("COMMIT")
    } catch {
      _ = try? sroot.exec("ROLLBACK")
      throw error
    }
    let lsn = try sroot.query("SELECT pg_current_wal_insert_lsn()::text").scalar ?? "0/0"
    return (token, lsn)
  }

  /// Whether dst has applied the marker.
  static func arrived(_ droot: PGConnection, token: String) throws -> Bool {
    try droot.query("SELECT 1 FROM \(qualified) WHERE token = $1", [token]).values.count == 1
  }

  /// Flushes dst's WAL up to now (a commit with `synchronous_commit = on` that wrote WAL).
  static func flush(_ droot: PGConnection) throws {
    try droot.exec("BEGIN; SET LOCAL synchronous_commit = on")
    do {
      // A row written and deleted: WAL of its own, so the commit flushes (a commit that only
      // took an xid would not).
      let token = "belt-flush-" + UUID().uuidString.lowercased()
      try droot.query("INSERT INTO \(qualified) (token) VALUES ($1)", [token])
      try droot.query("DELETE FROM \(qualified) WHERE token = $1", [token])
      try droot.exec("COMMIT")
    } catch {
      _ = try? droot.exec("ROLLBACK")
      throw error
    }
  }

  /// Drops the fence table (teardown), tolerating its absence.
  static func drop(_ c: PGConnection) throws {
    try c.exec("SET client_min_messages = warning; DROP TABLE IF EXISTS \(qualified)")
  }
}
