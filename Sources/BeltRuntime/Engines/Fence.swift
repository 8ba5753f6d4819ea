import Foundation

/// The exact fence of the cutover's gate: a marker row written on src after the drain, in a
/// table that both sides have and the forward replication carries (whatever the engine).
///
/// Why it is exact: the engine's apply worker applies src's transactions on dst one by one, in
/// src's commit order. The marker is committed on src after every transaction the
/// application committed (the fence has stopped the application), so once dst can read the
/// marker, dst has applied every one of them. The marker commits with `synchronous_commit = on`,
/// which flushes src's WAL up to it: commits the application made with
/// `synchronous_commit = off` are below it and leave src at once instead of after the WAL
/// writer's next round. Once the marker is on dst, a commit with `synchronous_commit = on` on
/// dst flushes dst's WAL up to it, so what was applied is also durable there (an apply worker
/// commits asynchronously), which is what the old gate got from the slot's confirmed position.
///
/// The gate polls dst for the marker every few milliseconds on a connection that is already
/// open, instead of waiting about a second for the engine's feedback to move src's slot.
///
/// The table lives in belt's own schema `belt` (no application's namespace is touched, schema
/// dumps and diffs of the application's schema never see it, and it does not depend on an
/// engine's schema); teardown drops it. Pairs set up by belt before this schema existed have
/// the table in `pglogical` (``legacySchema``): the gate makes the new one, teardown drops both.
enum Fence {
  static let schema = "belt"
  static let legacySchema = "pglogical"
  static let table = "belt_fence"
  /// `"belt"."belt_fence"`.
  static var qualified: String { PGConnection.qualified(schema, table) }

  static var createSQL: String {
    """
    CREATE SCHEMA IF NOT EXISTS \(PGConnection.quoteIdent(schema));
    GRANT USAGE ON SCHEMA \(PGConnection.quoteIdent(schema)) TO PUBLIC;
    CREATE TABLE IF NOT EXISTS \(qualified) (token text PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT now());
    GRANT SELECT ON \(qualified) TO PUBLIC
    """
  }

  /// Creates the fence table on dst, then on src, and has the engine publish it (without a data
  /// copy: it only ever holds markers). dst first: a replicated row for a table dst lacks would
  /// stop the apply worker. Idempotent; cheap when done (two catalog lookups).
  /// - Returns: what was done ("ready", or "created and published").
  @discardableResult
  static func ensure(
    src sroot: PGConnection, dst droot: PGConnection, engine: any ReplicationEngine
  ) throws -> String {
    if try engine.fencePublished(sroot, qualified: qualified),
      try droot.query("SELECT to_regclass($1) IS NOT NULL", [qualified]).scalar == "t"
    {
      return "ready"
    }
    try droot.exec("SET client_min_messages = warning; " + createSQL)
    try sroot.exec("SET client_min_messages = warning; " + createSQL)
    try engine.publishFence(sroot, qualified: qualified)
    return "created and added to \(engine.tableGroup)"
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

  /// Drops the fence table (teardown), and belt's schema once empty, tolerating their absence;
  /// also the table of pairs set up before the schema existed.
  static func drop(_ c: PGConnection) throws {
    let legacy = PGConnection.qualified(legacySchema, table)
    if try c.query("SELECT to_regclass($1) IS NOT NULL", [legacy]).scalar == "t" {
      try c.exec("SET client_min_messages = warning; DROP TABLE IF EXISTS \(legacy)")
    }
    guard try Catalog.schemaExists(c, schema) else { return }
    try c.exec("SET client_min_messages = warning; DROP TABLE IF EXISTS \(qualified)")
    let empty =
      try c.query(
        "SELECT NOT EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = $1::regnamespace)", [schema]
      ).scalar == "t"
    if empty { try c.exec("DROP SCHEMA IF EXISTS \(PGConnection.quoteIdent(schema))") }
  }
}
