import Foundation

/// Tables with a stored generated column and a primary key, for an engine that cannot copy
/// them itself (``EngineCapabilities/lockedCopyForGenerated``).
///
/// pglogical cannot copy them: its initial copy names every column, and a generated one makes
/// the COPY fail, after which the apply worker restarts forever. Adding the table with a column
/// list makes the copy work but crashes the subscriber's apply worker on the first streamed
/// INSERT, and with it the whole dst server. What does work is a table in the set that pglogical
/// never copies: it streams INSERT, UPDATE and DELETE, and dst computes the generated value.
///
/// So belt copies such a table itself, once the forward subscription's initial copy is done, in
/// one transaction on src: `LOCK TABLE ... IN EXCLUSIVE MODE` (reads go on, writes to this table
/// only wait), copy every non-generated column to the empty dst table (committed on dst), then
/// `replication_set_add_table(..., synchronize_data := false)` and `COMMIT`. Logical decoding
/// reads pglogical's set membership with the historic catalog snapshot, so every change
/// committed before that COMMIT is in the copy and every change after it is streamed: nothing is
/// lost and nothing arrives twice. A crash between the dst commit and the src commit leaves the
/// table out of the set with rows on dst; the next run empties it there and copies again.
///
/// A table still pending at cutover (setup not run again) is copied by sync-tables then, like a
/// table without a primary key.
enum LockedCopy {
  /// Copies `tables` (bare names, with a primary key and a generated column, not yet in src's
  /// set) and adds them to the set, one at a time.
  /// - Returns: one record per table: name, rows, and how long writes to it waited on src.
  static func addUnderLock(_ ctx: PairContext, tables: [String]) throws -> [Value] {
    var out: [Value] = []
    for t in tables {
      out.append(try addOne(ctx, table: t))
    }
    return out
  }

  static func addOne(_ ctx: PairContext, table: String) throws -> Value {
    let schema = ctx.schema
    let engine = try ctx.engine
    let q = PGConnection.qualified(schema, table)
    let cache = ConnCache(Connector(ctx), noTimeout: true, onOpen: "SET client_encoding = 'UTF8'")
    defer { cache.closeAll() }
    let d = try cache.get(.dst)
    if try d.query("SELECT EXISTS (SELECT 1 FROM \(q))").scalar == "t" {
      // Left by an earlier run that stopped between its dst and src commits (the table is not
      // in the set, so nothing else writes there). DELETE, not TRUNCATE: other tables may
      // reference it, and with replica role their foreign-key triggers stay quiet.
      try d.exec("BEGIN; SET LOCAL session_replication_role = replica; DELETE FROM \(q); COMMIT")
      ctx.logger.info("emptied \(q) on dst (left by an interrupted copy)")
    }
    let s = try cache.get(.src)
    try s.exec("BEGIN")
    do {
      try s.exec("SET LOCAL lock_timeout = '\(LockWait.timeout)'")
      let t0 = Date()
      do {
        try s.exec("LOCK TABLE \(q) IN EXCLUSIVE MODE")
      } catch let e as PGError where e.sqlState == "55P03" {
        _ = try? s.exec("ROLLBACK")
        let holders = try s.query(
          """
          SELECT DISTINCT a.pid, coalesce(a.usename, '?') AS usename, coalesce(a.state, '?') AS state
            FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.relation = $1::regclass AND l.granted AND a.pid <> pg_backend_pid() ORDER BY 1
          """, [q]
        ).rows.map {
          "pid \($0.string("pid")) (user \($0.string("usename")), \($0.string("state")))"
        }
        throw LockWait.error(
          "copying \(q) (it has a generated column) needs a short write lock on src, which",
          holders: holders,
          then: "run setup again when they are done (or the cutover copies the table)", dc: ctx.dc,
          db: ctx.db)
      }
      if try engine.publishedTables(s, schema: schema)?.contains(table) == true {
        // Another run added it meanwhile.
        try s.exec("ROLLBACK")
        return .object([
          ("name", .string(table)), ("rows", .null), ("lock_ms", .int(0)),
          ("note", .string("already in the \(engine.tableGroup)")),
        ])
      }
      let (cols, binary) = try TableSync.plan(schema: schema, table: table, conns: cache)
      let copied = try TableSync.attempt(
        q, name: table, cols: cols, binary: binary, partitioned: false, conns: cache,
        logger: ctx.logger)
      guard copied.loaded else {
        throw BeltError(
          .preconditionFailed,
          "\(q) on dst is not empty (\(copied.skippedReason ?? "?")); belt did not copy it",
          dc: ctx.dc, db: ctx.db)
      }
      // The same connection, still holding the lock (attempt drops it only when it fails).
      try engine.publishWithoutCopy(s, schema: schema, table: table)
      try s.exec("COMMIT")
      let lockMs = Runner.ms(since: t0)
      ctx.logger.info(
        "\(q): copied \(copied.rows) rows under a write lock held \(lockMs) ms, then added to \(engine.tableGroup)"
      )
      return .object([
        ("name", .string(table)), ("rows", .int(copied.rows)), ("lock_ms", .int(lockMs)),
      ])
    } catch {
      _ = try? s.exec("ROLLBACK")
      throw BeltError.wrap(error, dc: ctx.dc, db: ctx.db)
    }
  }
}
