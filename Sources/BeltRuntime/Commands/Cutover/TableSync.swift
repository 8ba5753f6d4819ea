import Foundation
import Logging

/// sync-tables: copies tables without a primary key from src to dst inside belt.
///
/// Per table, on its own pair of connections: on dst `BEGIN; SET LOCAL
/// session_replication_role = replica` (user and FK triggers off), `LOCK TABLE ... IN EXCLUSIVE
/// MODE`, check the table is empty (else skip with a warning), `COPY t (cols) FROM STDIN`; on src
/// `COPY t (cols) TO STDOUT` (binary when safe, else text), each chunk handed straight to the dst connection (constant
/// memory, no temp file, no client process, no password on a command line), then `COMMIT`.
/// Any failure rolls the table back and makes the command fail.
enum TableSync {
  /// The outcome for one table.
  struct Outcome: Sendable {
    var name: String
    /// binary or text COPY.
    var format: String? = nil
    var loaded = false
    /// Why it was not loaded (not an error).
    var skippedReason: String? = nil
    /// Rows copied.
    var rows = 0
    /// Bytes of COPY data streamed.
    var bytes = 0
    var durationMs = 0
    /// Why it failed.
    var error: String? = nil

    var value: Value {
      let mbps = durationMs > 0 ? Double(bytes) / 1_048_576 / (Double(durationMs) / 1000) : 0
      return .object([
        ("name", .string(name)), ("format", .from(format)), ("loaded", .bool(loaded)),
        ("skipped_reason", .from(skippedReason)),
        ("rows", .int(rows)), ("bytes", .int(bytes)), ("duration_ms", .int(durationMs)),
        ("mb_per_s", .double((mbps * 10).rounded() / 10)), ("error", .from(error)),
      ])
    }
  }

  /// A quoted bare name (`"Odd ""Name"""`) or schema-qualified name → the table's name.
  static func tableName(_ raw: String, schema: String) -> String {
    PGConnection.unquoteIdent(Catalog.bareName(raw, schema: schema))
  }

  /// The tables to copy: explicit names as given, else the PK-less base tables (partitions
  /// included, partitioned parents excluded) of the schema ∩ the config's table subset.
  static func targets(_ ctx: PairContext, explicit: [String]) throws -> (
    mode: String, tables: [TableInfo], unknown: [String]
  ) {
    let all = try Catalog.tables(ctx.connect(.src, .root), schema: ctx.schema)
    if !explicit.isEmpty {
      let known = Dictionary(all.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
      var tables: [TableInfo] = []
      var unknown: [String] = []
      for raw in explicit {
        let name = known[raw] != nil ? raw : tableName(raw, schema: ctx.schema)
        if let t = known[name] {
          if !tables.contains(where: { $0.name == name }) { tables.append(t) }
        } else {
          unknown.append(raw)
        }
      }
      return ("explicit", tables, unknown)
    }
    // Also a table with a generated column that setup never added to the set (it waits for
    // the initial copy; see GeneratedColumns): nothing streamed it, so it is copied now.
    let engine = try ctx.engine
    let inSet = Set(try engine.publishedTables(ctx.connect(.src, .root), schema: ctx.schema) ?? [])
    let noPK = all.filter {
      let how = engine.travel($0).how
      return how == .copiedAtCutover || (how == .lockedCopy && !inSet.contains($0.name))
    }
    return ("auto", Catalog.filter(noPK, subset: ctx.config.tableSubset, schema: ctx.schema), [])
  }

  /// The skip reason of a table that the journal says this run already copied.
  static let copiedEarlier = "copied earlier in this run (journal)"

  /// sync-tables. `planned`: the targets when the caller has them already (sync, which also
  /// validates them after the copy).
  static func run(
    _ ctx: PairContext, explicit: [String],
    planned: (mode: String, tables: [TableInfo], unknown: [String])? = nil
  ) throws -> Value {
    let (mode, tables, unknown) = try planned ?? targets(ctx, explicit: explicit)
    var outcomes = unknown.map {
      Outcome(name: $0, error: "table \($0) does not exist in schema \(ctx.schema) on the source")
    }
    let schema = ctx.schema
    let logger = ctx.logger
    let replace = ctx.options.bool("replace")
    // Inside a runbook step (cutover.lua's sync), the journal says which tables this run
    // already copied (skipped) and which copy was under way when belt stopped: that one is
    // emptied and copied again in one transaction, never refused as "not empty".
    let journal = replace ? nil : Journal.openStep(ctx.env.store, dc: ctx.dc, db: ctx.db)
    let marks = journal?.noted("sync_tables")?["tables"]
    // dst answers before any copy starts: a server that does not is one error, not one per table.
    if !tables.isEmpty { _ = try ctx.connect(.dst, .root) }
    outcomes += Workers.map(
      tables, width: ctx.env.jobs, connector: Connector(ctx), noTimeout: true,
      onOpen: "SET client_encoding = 'UTF8'"
    ) { table, conns in
      let mark = marks?[table.name]?.stringValue
      if mark == "copied" {
        return Outcome(name: table.name, skippedReason: copiedEarlier)
      }
      do {
        try journal?.note("sync_tables", ["tables", table.name], "copying")
      } catch {
        return Outcome(
          name: table.name,
          error: "cannot record the copy in the journal: \(BeltError.wrap(error).message)")
      }
      let out = copy(
        schema: schema, table: table.name, partitioned: table.kind == "p", conns: conns,
        logger: logger,
        replace: replace || mark == "copying")
      if out.loaded { try? journal?.note("sync_tables", ["tables", table.name], "copied") }
      return out
    }
    let loaded = outcomes.filter(\.loaded)
    let resumed = outcomes.filter { $0.skippedReason == copiedEarlier }
    let skipped = outcomes.filter { $0.skippedReason != nil && $0.skippedReason != copiedEarlier }
    let failed = outcomes.filter { $0.error != nil }
    let rows = loaded.reduce(0) { $0 + $1.rows }
    let bytes = loaded.reduce(0) { $0 + $1.bytes }
    var parts: [String] = []
    if outcomes.isEmpty { parts.append("No tables without a primary key to sync.") }
    if !loaded.isEmpty {
      parts.append("loaded \(loaded.count) table(s), \(rows) rows, \(Fmt.bytes(bytes))")
    }
    if !resumed.isEmpty {
      parts.append(
        "\(resumed.count) copied before the interruption: \(Fmt.names(resumed.map(\.name)))")
    }
    if !skipped.isEmpty {
      parts.append("skipped \(skipped.count) not empty: \(Fmt.names(skipped.map(\.name)))")
    }
    if !failed.isEmpty {
      parts.append(
        "FAILED \(failed.count): " + failed.map { $0.error ?? $0.name }.joined(separator: "; "))
    }
    return .object([
      ("mode", .string(mode)), ("tables", .array(outcomes.map(\.value))),
      ("loaded", .int(loaded.count)),
      ("skipped", .int(skipped.count)), ("failed", .int(failed.count)), ("rows", .int(rows)),
      ("bytes", .int(bytes)),
      ("message", .string(parts.joined(separator: "; "))), ("ok", .bool(failed.isEmpty)),
    ])
  }

  /// Copies one table; never throws (the outcome carries the error).
  static func copy(
    schema: String, table: String, partitioned: Bool, conns: ConnCache, logger: Logger,
    replace: Bool = false
  ) -> Outcome {
    let start = Date()
    let q = PGConnection.qualified(schema, table)
    var out = Outcome(name: table)
    do {
      let (cols, binaryOK) = try plan(schema: schema, table: table, conns: conns)
      do {
        out = try attempt(
          q, name: table, cols: cols, binary: binaryOK, partitioned: partitioned, conns: conns,
          logger: logger, replace: replace)
      } catch  where binaryOK {
        // Binary COPY is only a speed-up: if dst rejects it, the same load in text format decides.
        logger.warning(
          "binary COPY of \(q) failed (\(BeltError.wrap(error).message)); retrying in text format")
        out = try attempt(
          q, name: table, cols: cols, binary: false, partitioned: partitioned, conns: conns,
          logger: logger, replace: replace)
      }
    } catch {
      let e = BeltError.wrap(error)
      out.error = e.message.contains(q) ? e.message : "\(q): \(e.message)"
      logger.error("sync-tables \(q) failed: \(e.message)")
    }
    out.durationMs = Runner.ms(since: start)
    return out
  }

  /// The column list (src order, generated columns left out) and whether binary COPY is safe.
  ///
  /// Binary COPY is faster to produce and to parse, and exact. It is used only when every
  /// column is of a built-in type (user types, and arrays of them, carry server-specific OIDs
  /// in the binary format) that is the same type on dst; both sessions use UTF8 as client
  /// encoding, so text travels correctly between databases of different encodings either way.
  static func plan(schema: String, table: String, conns: ConnCache) throws -> (String, Bool) {
    let q = PGConnection.qualified(schema, table)
    let src = try conns.get(.src)
    let d = try conns.get(.dst)
    let srcCols = try Catalog.columns(src, schema: schema, table: table).filter { !$0.generated }
    guard !srcCols.isEmpty else {
      throw BeltError(.notFound, "table \(q) has no columns on the source")
    }
    let dstCols = try Catalog.columns(d, schema: schema, table: table)
    guard !dstCols.isEmpty else {
      throw BeltError(.notFound, "table \(q) does not exist on the destination")
    }
    let writable = Set(dstCols.filter { !$0.generated }.map(\.name))
    let missing = srcCols.map(\.name).filter { !writable.contains($0) }
    guard missing.isEmpty else {
      throw BeltError(
        .preconditionFailed, "table \(q) on the destination lacks column(s) \(Fmt.names(missing))")
    }
    let dstTypes = Dictionary(
      dstCols.map { ($0.name, $0.typeOid) }, uniquingKeysWith: { a, _ in a })
    let binary =
      src.serverVersion >= 10 && d.serverVersion >= 10
      && srcCols.allSatisfy {
        $0.typeOid > 0 && $0.typeOid < 16384 && dstTypes[$0.name] == $0.typeOid
      }
    return (srcCols.map(\.quoted).joined(separator: ", "), binary)
  }

  /// One load of one table in one transaction on dst; rolls back and throws on failure.
  static func attempt(
    _ q: String, name: String, cols: String, binary: Bool, partitioned: Bool, conns: ConnCache,
    logger: Logger,
    replace: Bool = false
  ) throws -> Outcome {
    var out = Outcome(name: name)
    out.format = binary ? "binary" : "text"
    let format = binary ? " (FORMAT binary)" : ""
    let src = try conns.get(.src)
    let d = try conns.get(.dst)
    try d.exec("BEGIN")
    do {
      try d.exec("SET LOCAL session_replication_role = replica; SET LOCAL lock_timeout = '60s'")
      try d.exec("LOCK TABLE \(q) IN EXCLUSIVE MODE")
      if replace {
        // rollback.lua: the copy on the other side is the truth; replace in one transaction.
        try d.exec("TRUNCATE \(q)")
      } else if try d.query("SELECT EXISTS (SELECT 1 FROM \(q))").scalar == "t" {
        try d.exec("ROLLBACK")
        out.skippedReason = "destination table not empty"
        logger.warning(
          "Not loading \(q), table not empty. If this is unexpected please investigate.")
        return out
      }
      // A partitioned parent cannot be copied directly; its rows can (and dst routes them).
      // The src connection may be left mid-COPY when reading it failed: drop it.
      let source = partitioned ? "(SELECT \(cols) FROM \(q))" : "\(q) (\(cols))"
      let piped = try PGConnection.pipeCopy(
        from: src, out: "COPY \(source) TO STDOUT\(format)", into: d,
        in: "COPY \(q) (\(cols)) FROM STDIN\(format)", sourceBroken: { conns.discard(.src) })
      out.bytes = piped.bytes
      let messages = piped.messages
      try d.exec("COMMIT")
      // The server sends one CopyData message per row; in binary format the trailer is one
      // more (the header travels with the first row, or with the trailer when there is none).
      out.rows = binary ? max(0, messages - 1) : messages
      out.loaded = true
      logger.info("loaded \(q): \(out.rows) rows, \(Fmt.bytes(out.bytes))")
      return out
    } catch {
      if (error as? PGError)?.kind == .client {
        conns.discard(.dst)  // broken: a retry gets a fresh connection (the server rolls back)
      } else {
        _ = try? d.exec("ROLLBACK")
      }
      throw error
    }
  }
}
