import CSignals
import Foundation
import Logging

/// belt's own initial copy, for an engine that can start from an exported snapshot
/// (``EngineCapabilities/startsFromExportedSnapshot``; issue 25, native-replication.md §3).
///
/// The engine creates the forward slot on src and exports the snapshot of its consistent point;
/// `jobs` sessions on src import it (`REPEATABLE READ`, `SET TRANSACTION SNAPSHOT`) before the
/// replication connection is closed, and copy the tables in parallel, each `COPY … TO STDOUT`
/// piped through libpq into `COPY … FROM STDIN` on dst (binary where both sides' column types
/// allow it, else text: see ``formats(_:_:schema:tables:)``). Tables above the split size are copied as ctid
/// block ranges (`ctid >= '(a,0)' AND ctid < '(b,0)'`, a TID range scan on PostgreSQL 14+):
/// a range reads only its own pages whatever the table's keys are, and the ranges of a heap
/// are known from its size alone. dst's primary keys are dropped before the copy (recorded
/// first) and every index is built after it; then the engine subscribes on the slot without a
/// copy.
///
/// Every finished table range is recorded (``path``, written atomically) before its worker
/// takes the next. The snapshot dies with belt's process, so a later run cannot go on copying
/// from it; instead it keeps what finished: the unfinished tables are emptied on dst and taken
/// out of the publication, the subscription is created on the slot (the finished tables
/// stream from the snapshot's point; changes of tables the subscription does not list are
/// skipped by its apply worker), then the unfinished tables are published again and the
/// subscription copies them itself (`REFRESH PUBLICATION WITH (copy_data = true)`).
enum SnapshotCopy {
  /// The record's flow name: `configs/<dc>/<db>/initial-copy.journal.json`.
  static let flow = "initial-copy"
  /// COPY's format, per table: binary when every copied column has the same type on both
  /// sides (by name, `format_type`) and that type (and an array's element type) has binary
  /// send/receive functions; text otherwise. Binary was 1.7× faster here on a table of
  /// numbers, timestamps and jsonb (15 → 18), and exact for every type of the test schemas
  /// (enum arrays and composites included, though their OIDs differ between the servers);
  /// binary cannot load into a column of another type (int into bigint) or of a type without
  /// binary I/O, where text can.
  static func formats(
    _ sroot: PGConnection, _ droot: PGConnection, schema: String, tables: [String]
  ) throws -> [String: String] {
    let sql = """
      SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type,
             t.typsend::oid <> 0 AND t.typreceive::oid <> 0
               AND (e.oid IS NULL OR (e.typsend::oid <> 0 AND e.typreceive::oid <> 0)) AS binary_io
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typlen = -1 AND t.typelem <> 0
       WHERE n.nspname = $1 AND c.relname = ANY($2::text[])
      """
    func read(_ c: PGConnection) throws -> [String: [String: (String, Bool)]] {
      var out: [String: [String: (String, Bool)]] = [:]
      for r in try c.query(sql, [schema, PGArray.literal(tables)]).rows {
        out[r.string("relname"), default: [:]][r.string("attname")] = (
          r.string("type"), r.bool("binary_io")
        )
      }
      return out
    }
    let s = try read(sroot)
    let d = try read(droot)
    var out: [String: String] = [:]
    for t in tables {
      let cols = s[t] ?? [:]
      let same = cols.allSatisfy { name, v in
        guard let w = d[t]?[name] else { return false }
        return v.1 && w.1 && v.0 == w.0
      }
      out[t] = same && !cols.isEmpty ? "binary" : "text"
    }
    return out
  }

  static func path(_ ctx: PairContext) -> String {
    Journal.path(ctx.env.store, dc: ctx.dc, db: ctx.db, flow: flow)
  }

  /// The record of the latest copy (nil: none).
  static func record(_ ctx: PairContext) throws -> Value? { try Journal.read(path(ctx)) }

  /// Whether a copy of this pair stopped before its subscription was created.
  static func interrupted(_ ctx: PairContext) throws -> Bool {
    guard let s = try record(ctx)?["state"]?.stringValue else { return false }
    return s != "done"
  }

  /// Whether belt copies this pair's data (the engine can start from a snapshot, and the
  /// `copy` option or the config's `"initial_copy"` does not ask for the engine's own copy).
  static func wanted(_ ctx: PairContext, _ engine: any ReplicationEngine) throws -> Bool {
    if let v = ctx.config.raw["initial_copy"], v != .null,
      !["belt", "engine"].contains(v.stringValue ?? "")
    {
      throw BeltError(
        .configInvalid,
        "\(ctx.env.store.path(dc: ctx.dc, db: ctx.db)): \"initial_copy\" must be \"belt\" or \"engine\", not \(v.json(indent: 0))",
        dc: ctx.dc, db: ctx.db)
    }
    guard engine.capabilities.startsFromExportedSnapshot else { return false }
    let how =
      ctx.options.string("copy") ?? ctx.config.raw["initial_copy"]?.stringValue ?? "belt"
    return how != "engine"
  }

  /// Marks an interrupted copy's record done once the subscription exists (belt stopped after
  /// creating it: the subscription has everything from there).
  static func settle(_ ctx: PairContext) throws {
    guard let r = try record(ctx), r["state"]?.stringValue != "done" else { return }
    let (at, epoch) = Journal.stamp()
    try Journal.update(path(ctx)) { _ in
      r.setting("state", "done").setting("finished_at", .string(at)).setting(
        "finished_epoch", .double(epoch)
      ).setting("eta_s", .int(0))
    }
  }

  /// Marks an unfinished copy's record abandoned once teardown has dropped its slot: it can no
  /// longer be resumed (status stops saying "run setup again to finish it"); a later setup
  /// starts a new copy, restoring the primary keys the abandoned one had dropped.
  static func abandon(_ ctx: PairContext) throws {
    guard let r = try record(ctx), !["done", "abandoned"].contains(r["state"]?.stringValue ?? "")
    else { return }
    let (at, epoch) = Journal.stamp()
    try Journal.update(path(ctx)) { _ in
      r.setting("state", "abandoned").setting("abandoned_at", .string(at)).setting(
        "updated_epoch", .double(epoch)
      ).setting("eta_s", .null)
    }
  }

  /// What precheck shows: which copy the pair gets.
  static func describe(_ ctx: PairContext, _ engine: any ReplicationEngine) throws -> String {
    guard try wanted(ctx, engine) else {
      return engine.capabilities.startsFromExportedSnapshot
        ? "the subscription's own copy (one COPY per table, max_sync_workers_per_subscription at a time)"
        : "\(engine.kind.rawValue)'s own copy (one COPY per table)"
    }
    let s = settings(ctx)
    return
      "belt's copy from an exported snapshot (\(s.jobs) job(s), tables over \(Fmt.bytes(s.splitBytes)) split into ctid ranges, "
      + "indexes built after the copy, resumable table by table)"
  }

  struct Settings {
    var jobs: Int
    var splitBytes: Int
  }

  /// `copy_jobs` (option, else the config's `"copy_jobs"`, else 4 bounded by `--jobs`) and
  /// `copy_split_mb` (option, else config, else 256).
  static func settings(_ ctx: PairContext) -> Settings {
    func number(_ v: Value?) -> Double? {
      switch v {
      case .int(let i): return Double(i)
      case .double(let d): return d
      case .string(let s): return Double(s)
      default: return nil
      }
    }
    let jobs =
      ctx.options.int("copy_jobs") ?? ctx.config.raw["copy_jobs"]?.intValue ?? min(4, ctx.env.jobs)
    let mb = number(ctx.options.values["copy_split_mb"]) ?? number(ctx.config.raw["copy_split_mb"])
    return Settings(jobs: max(1, jobs), splitBytes: max(8192, Int((mb ?? 256) * 1_048_576)))
  }

  // MARK: the plan

  struct Chunk: Sendable {
    var table: Int
    var index: Int
    /// First block (nil: the whole table).
    var from: Int?
    /// Block after the last (nil: to the end of the table).
    var to: Int?
    var heapBytes: Int
  }

  struct TablePlan: Sendable {
    var name: String
    var columns: [String]
    var heapBytes: Int
    /// pg_class.reltuples (nil: never analyzed).
    var estRows: Int?
    var ranges: [(from: Int?, to: Int?)]
    /// `text` or `binary` (``formats(_:_:schema:tables:)``).
    var format = "text"
  }

  static func plan(_ sroot: PGConnection, schema: String, tables: [String], splitBytes: Int) throws
    -> [TablePlan]
  {
    let rows = try sroot.query(
      """
      SELECT c.relname, pg_relation_size(c.oid) AS bytes, c.reltuples::bigint AS est,
             current_setting('block_size')::int AS bs,
             array_to_json(array(SELECT a.attname FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
                ORDER BY a.attnum)) AS cols
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND c.relkind = 'r'
       ORDER BY pg_relation_size(c.oid) DESC, c.relname
      """, [schema, PGArray.literal(tables)]
    ).rows
    return rows.map { r in
      let bytes = r.int("bytes") ?? 0
      let bs = r.int("bs") ?? 8192
      let pages = bytes / bs
      var ranges: [(from: Int?, to: Int?)] = [(nil, nil)]
      // Before PostgreSQL 14 a ctid range is a filter on a whole-table scan: no split there.
      if bytes > splitBytes, pages >= 2, sroot.serverVersion >= 14 {
        let n = min(pages, (bytes + splitBytes - 1) / splitBytes)
        let step = (pages + n - 1) / n
        ranges = stride(from: 0, to: pages, by: step).map { a in
          (a, a + step >= pages ? nil : a + step)
        }
      }
      let est = r.int("est") ?? -1
      return TablePlan(
        name: r.string("relname"), columns: r.array("cols"), heapBytes: bytes,
        estRows: est > 0 ? est : nil, ranges: ranges)
    }
  }

  // MARK: running

  /// Copies `tables`, builds dst's keys and indexes, and subscribes; or finishes a copy that
  /// was interrupted. - Returns: what was done to the subscription, and the copy's record.
  static func run(
    _ ctx: PairContext, engine: any ReplicationEngine, sroot: PGConnection, droot: PGConnection,
    tables: [String]
  ) throws -> (subscription: String, record: Value) {
    let schema = ctx.schema
    if let old = try record(ctx), old["state"]?.stringValue != "done",
      try engine.snapshotSlot(ctx, sroot) != nil,
      old["slot"]?.stringValue != nil
    {
      let tables = old["tables"]?.arrayValue ?? []
      let finished = tables.filter { $0["state"] == "done" }
      if !finished.isEmpty {
        return try resume(ctx, engine: engine, sroot: sroot, droot: droot, old: old)
      }
    }
    // A new copy: a slot left by an interrupted one that finished no table goes.
    let old = try record(ctx)
    if try engine.snapshotSlot(ctx, sroot) != nil {
      _ = try engine.dropProviderSlots(sroot, .forward)
    }
    let s = settings(ctx)
    var plans = try plan(sroot, schema: schema, tables: tables, splitBytes: s.splitBytes)
    let fmt = try formats(sroot, droot, schema: schema, tables: plans.map(\.name))
    for i in plans.indices { plans[i].format = fmt[plans[i].name] ?? "text" }
    let filled = try ReplicationSupport.nonEmpty(droot, schema: schema, plans.map(\.name))
    if !filled.isEmpty {
      // Rows left by an interrupted copy whose snapshot is gone (Setup refused rows of any
      // other origin before this point).
      try empty(droot, schema: schema, filled)
    }
    // dst's primary keys go before the copy and come back with the indexes after it; recorded
    // first (an interrupted copy's list is kept: those keys are already dropped).
    var keys = old?["state"] == "done" ? [] : old?["primary_keys"]?.arrayValue ?? []
    let known = Set(keys.compactMap { $0["table"]?.stringValue })
    for k in try droppablePrimaryKeys(droot, schema: schema, plans.map(\.name))
    where !known.contains(k.table) {
      keys.append(
        .object([
          ("table", .string(k.table)), ("name", .string(k.name)), ("def", .string(k.def)),
          ("index_def", .string(k.indexDef)),
        ]))
    }
    let progress = Progress(
      path: path(ctx), plans: plans, keys: keys, jobs: s.jobs, splitBytes: s.splitBytes,
      run: (old?["run"]?.intValue ?? 0) + 1)
    try progress.write()
    for k in keys {
      guard let t = k["table"]?.stringValue, let name = k["name"]?.stringValue else { continue }
      try droot.exec(
        "ALTER TABLE \(PGConnection.qualified(schema, t)) DROP CONSTRAINT IF EXISTS \(PGConnection.quoteIdent(name))"
      )
    }

    let snapshot = try engine.exportSnapshot(ctx)
    progress.set(slot: snapshot.slot, snapshot: snapshot.id, lsn: snapshot.lsn)
    try progress.write()
    let connector = Connector(ctx)
    // Every copy session imports the snapshot before it is released.
    var sessions: [PGConnection] = []
    do {
      for _ in 0..<min(s.jobs, max(1, progress.chunks.count)) {
        let c = try connector.open(.src, .root, noTimeout: true)
        try c.exec("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        try c.exec("SET TRANSACTION SNAPSHOT \(try c.literal(snapshot.id))")
        sessions.append(c)
      }
    } catch {
      sessions.forEach { $0.close() }
      throw error
    }
    snapshot.release()
    ctx.logger.notice(
      "initial copy: \(plans.count) table(s) in \(progress.chunks.count) part(s), \(Fmt.bytes(progress.totalHeap)), \(sessions.count) job(s), from slot \(snapshot.slot) at \(snapshot.lsn)"
    )
    try copy(ctx, plans: plans, progress: progress, sessions: sessions, connector: connector)
    progress.setState(
      "building",
      extra: [("copy_s", .double((Date().timeIntervalSince(progress.started) * 10).rounded() / 10))]
    )
    try progress.write()
    let (sub, indexes) = try finish(ctx, engine: engine, droot: droot, keys: keys, jobs: s.jobs)
    progress.setState("done", extra: [("indexes", indexes), ("subscription", .string(sub))])
    try progress.write()
    return (sub, progress.document())
  }

  /// Restores dst's primary keys, builds the indexes, and subscribes on the slot.
  ///
  /// A key whose index can be built on its own (recorded `index_def`) is built as that unique
  /// index in create-indexes' parallel pass, beside the other indexes (their SHARE locks do not
  /// conflict, where `ADD PRIMARY KEY` would lock its table for the whole build), then attached
  /// with `ADD CONSTRAINT … PRIMARY KEY USING INDEX` (catalog only: the columns are still NOT
  /// NULL). The others (DEFERRABLE, a tablespace, INCLUDE) are added back first, in parallel.
  static func finish(
    _ ctx: PairContext, engine: any ReplicationEngine, droot: PGConnection, keys: [Value],
    jobs: Int
  ) throws -> (String, Value) {
    let schema = ctx.schema
    let missing = keys.filter { k in
      guard let t = k["table"]?.stringValue else { return false }
      return
        (try? droot.query(
          "SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'p'",
          [PGConnection.qualified(schema, t)]
        ).values.isEmpty) ?? true
    }
    let viaIndex = missing.filter { ($0["index_def"]?.stringValue ?? "") != "" }
    let direct = missing.filter { ($0["index_def"]?.stringValue ?? "") == "" }
    let t0 = Date()
    let failures = Workers.map(direct, width: jobs, connector: Connector(ctx), noTimeout: true) {
      k, cache -> String? in
      do {
        let c = try cache.get(.dst)
        try c.exec(
          "ALTER TABLE \(PGConnection.qualified(schema, k["table"]?.stringValue ?? "")) ADD CONSTRAINT "
            + "\(PGConnection.quoteIdent(k["name"]?.stringValue ?? "")) \(k["def"]?.stringValue ?? "")"
        )
        return nil
      } catch {
        return "\(k["table"]?.stringValue ?? ""): \(error)"
      }
    }.compactMap { $0 }
    if let first = failures.first {
      throw ctx.refuse("could not restore a primary key on dst after the copy: \(first)")
    }
    let extra = viaIndex.map { k -> SQLStatement in
      let info = IndexInfo(
        name: QualifiedName(schema: schema, name: k["name"]?.stringValue ?? ""),
        table: QualifiedName(schema: schema, name: k["table"]?.stringValue ?? ""), unique: true,
        onOnly: false, columns: nil, isPartial: false)
      return SQLStatement(text: (k["index_def"]?.stringValue ?? "") + ";\n", kind: .index(info))
    }
    let indexes = try SchemaOps.createIndexes(
      ctx, analyzeWhenNoneCreated: true, analyze: false, extra: extra)
    let failedBuilds = Dictionary(
      (indexes["indexes"]?.arrayValue ?? []).filter { $0["status"] == "failed" }.map {
        ($0["name"]?.stringValue ?? "", $0["error"]?.stringValue ?? "failed")
      }, uniquingKeysWith: { a, _ in a })
    for k in viaIndex {
      let (key, table) = (k["name"]?.stringValue ?? "", k["table"]?.stringValue ?? "")
      func lost(_ why: String) -> BeltError {
        ctx.refuse(
          "could not restore the primary key \(key) of \(table) on dst after the copy: \(why)")
      }
      if let why = failedBuilds["\(schema).\(key)"] { throw lost(why) }
      let name = PGConnection.quoteIdent(key)
      do {
        try droot.exec(
          "ALTER TABLE \(PGConnection.qualified(schema, table)) ADD CONSTRAINT \(name) PRIMARY KEY USING INDEX \(name)"
        )
      } catch let e as PGError where e.kind == .server && !e.isCancel {
        throw lost(e.message)
      }
    }
    if !missing.isEmpty {
      ctx.logger.notice(
        "initial copy: \(missing.count) primary key(s) restored on dst (\(viaIndex.count) built beside the other indexes), keys and indexes in \(Runner.ms(since: t0)) ms"
      )
    }
    if indexes["ok"]?.boolValue == false {
      ctx.logger.warning(
        "initial copy: some indexes failed on dst (create-indexes builds them again): \(indexes["message"]?.stringValue ?? "")"
      )
    }
    let sub = try engine.subscribeFromSnapshot(ctx, on: droot)
    return (
      sub,
      .object([("created", indexes["created"] ?? .null), ("failed", indexes["failed"] ?? .null)])
    )
  }

  /// The interrupted copy's finished tables stream from the slot; the others are emptied and
  /// copied by the subscription itself.
  static func resume(
    _ ctx: PairContext, engine: any ReplicationEngine, sroot: PGConnection, droot: PGConnection,
    old: Value
  ) throws -> (subscription: String, record: Value) {
    let schema = ctx.schema
    let tables = old["tables"]?.arrayValue ?? []
    let unfinished = tables.filter { $0["state"] != "done" }.compactMap { $0["name"]?.stringValue }
    let kept = tables.count - unfinished.count
    ctx.logger.notice(
      "initial copy: resuming; \(kept) table(s) finished before are kept, \(unfinished.count) unfinished one(s) are emptied and copied by the subscription"
    )
    var doc = old.setting("state", "resuming").setting("handed_over", .from(unfinished))
    try Journal.update(path(ctx)) { _ in doc }
    if !unfinished.isEmpty {
      try empty(droot, schema: schema, unfinished)
      try engine.withdraw(sroot, schema: schema, tables: unfinished)
    }
    let jobs = old["jobs"]?.intValue ?? settings(ctx).jobs
    let (sub, indexes) = try finish(
      ctx, engine: engine, droot: droot, keys: old["primary_keys"]?.arrayValue ?? [], jobs: jobs)
    if !unfinished.isEmpty {
      _ = try engine.publish(ctx, .src, root: sroot, schema: schema, tables: unfinished)
      try engine.copyAdded(droot, schema: schema, tables: unfinished)
    }
    let (at, epoch) = Journal.stamp()
    doc = doc.setting("state", "done").setting("finished_at", .string(at)).setting(
      "finished_epoch", .double(epoch)
    ).setting("indexes", indexes).setting("subscription", .string(sub))
    try Journal.update(path(ctx)) { _ in doc }
    return (
      sub + (unfinished.isEmpty ? "" : ", copying \(unfinished.count) unfinished table(s) itself"),
      doc
    )
  }

  /// Empties tables on dst: TRUNCATE, or DELETE (triggers and foreign keys off) when another
  /// table's foreign key refers to one of them.
  static func empty(_ droot: PGConnection, schema: String, _ tables: [String]) throws {
    guard !tables.isEmpty else { return }
    let list = tables.map { PGConnection.qualified(schema, $0) }.joined(separator: ", ")
    do {
      try droot.exec("TRUNCATE \(list)")
    } catch let e as PGError where e.sqlState == "0A000" {
      try droot.transaction {
        try droot.exec("SET LOCAL session_replication_role = replica")
        for t in tables { try droot.exec("DELETE FROM \(PGConnection.qualified(schema, t))") }
      }
    }
  }

  /// dst's primary keys that can be dropped for the copy: not inherited (a partition's) and
  /// not referred to by a foreign key.
  static func droppablePrimaryKeys(_ droot: PGConnection, schema: String, _ tables: [String])
    throws -> [(table: String, name: String, def: String, indexDef: String)]
  {
    // index_def: the key's own index, to build beside the other indexes and attach with ADD
    // CONSTRAINT … USING INDEX ("" when the constraint has options USING INDEX cannot give:
    // DEFERRABLE, a tablespace, INCLUDE columns).
    try droot.query(
      """
      SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) AS def,
             CASE WHEN k.condeferrable OR i.reltablespace <> 0 OR x.indnkeyatts <> x.indnatts THEN ''
                  ELSE pg_get_indexdef(k.conindid) END AS index_def
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_class i ON i.oid = k.conindid JOIN pg_index x ON x.indexrelid = k.conindid
       WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND c.relkind = 'r' AND k.contype = 'p'
         AND k.conislocal AND k.coninhcount = 0
         AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = k.conindid)
      """, [schema, PGArray.literal(tables)]
    ).rows.map {
      ($0.string("relname"), $0.string("conname"), $0.string("def"), $0.string("index_def"))
    }
  }

  /// The parallel copy: each worker owns one src session holding the snapshot.
  static func copy(
    _ ctx: PairContext, plans: [TablePlan], progress: Progress, sessions: [PGConnection],
    connector: Connector
  ) throws {
    let schema = ctx.schema
    let box = Sessions(sessions)
    let queue = ChunkQueue(progress.chunks.sorted { $0.heapBytes > $1.heapBytes })
    let logger = ctx.logger
    let reporter = Reporter(progress: progress, logger: logger)
    reporter.start()
    defer {
      reporter.stop()
      sessions.forEach { $0.close() }
    }
    let errors = Runner.parallelMap(Array(0..<sessions.count), width: sessions.count) {
      w -> String? in
      let src = box.get(w)
      var dst: PGConnection? = nil
      defer { dst?.close() }
      do {
        let d = try connector.open(.dst, .root, noTimeout: true)
        dst = d
        try d.exec("SET session_replication_role = replica")
        while let chunk = queue.next() {
          if belt_interrupted() != 0 { throw BeltError(.interrupted, "interrupted") }
          let t = plans[chunk.table]
          try copyChunk(chunk, t, schema: schema, src: src, dst: d, progress: progress)
        }
        return nil
      } catch {
        queue.stop()
        return "\(error)"
      }
    }.compactMap { $0 }
    if let first = errors.first {
      try? progress.write()
      throw BeltError(
        .sqlError,
        "initial copy failed: \(first); run the same command again to finish it (finished tables are kept)",
        dc: ctx.dc, db: ctx.db)
    }
  }

  /// One table or range: src's COPY TO piped into dst's COPY FROM, then recorded.
  static func copyChunk(
    _ chunk: Chunk, _ t: TablePlan, schema: String, src: PGConnection, dst: PGConnection,
    progress: Progress
  ) throws {
    let q = PGConnection.qualified(schema, t.name)
    let cols = t.columns.map(PGConnection.quoteIdent).joined(separator: ", ")
    let out: String
    let with = t.format == "binary" ? " (FORMAT binary)" : ""
    if let from = chunk.from {
      out =
        "COPY (SELECT \(cols) FROM \(q) WHERE ctid >= '(\(from),0)'::tid"
        + (chunk.to.map { " AND ctid < '(\($0),0)'::tid" } ?? "") + ") TO STDOUT\(with)"
    } else {
      out = "COPY \(q) (\(cols)) TO STDOUT\(with)"
    }
    let t0 = Date()
    try dst.beginCopyIn("COPY \(q) (\(cols)) FROM STDIN\(with)")
    var rows = 0
    var bytes = 0
    var pendingRows = 0
    var pendingBytes = 0
    do {
      try src.copyOut(out) { buf in
        // libpq hands over one row per message (binary: the header comes with the first row, the
        // trailer alone).
        try dst.putCopyData(buf)
        pendingRows += 1
        pendingBytes += buf.count
        if pendingBytes >= 1 << 20 {
          progress.add(chunk, rows: pendingRows, bytes: pendingBytes)
          rows += pendingRows
          bytes += pendingBytes
          pendingRows = 0
          pendingBytes = 0
        }
      }
      try dst.endCopy()
    } catch {
      try? dst.endCopy(error: "belt: the copy stopped")
      throw error
    }
    progress.add(chunk, rows: pendingRows - (t.format == "binary" ? 1 : 0), bytes: pendingBytes)
    try progress.finish(chunk, seconds: Date().timeIntervalSince(t0))
  }

  // MARK: progress

  /// The copy's progress, shared by the workers; written to the record as a whole.
  final class Progress: @unchecked Sendable {
    private let lock = NSLock()
    let path: String
    let plans: [TablePlan]
    let chunks: [Chunk]
    private var rows: [Int]
    private var bytes: [Int]
    private var done: [Bool]
    private var seconds: [Double]
    private var meta: [(String, Value)]
    private var state = "copying"
    private var extra: [(String, Value)] = []
    let started = Date()
    let totalHeap: Int

    init(path: String, plans: [TablePlan], keys: [Value], jobs: Int, splitBytes: Int, run: Int) {
      self.path = path
      self.plans = plans
      var list: [Chunk] = []
      for (ti, t) in plans.enumerated() {
        let bs = 8192
        for (i, r) in t.ranges.enumerated() {
          let heap: Int
          if let from = r.from {
            heap = r.to.map { ($0 - from) * bs } ?? max(0, t.heapBytes - from * bs)
          } else {
            heap = t.heapBytes
          }
          list.append(Chunk(table: ti, index: i, from: r.from, to: r.to, heapBytes: heap))
        }
      }
      chunks = list
      rows = Array(repeating: 0, count: list.count)
      bytes = rows
      done = Array(repeating: false, count: list.count)
      seconds = Array(repeating: 0, count: list.count)
      totalHeap = plans.reduce(0) { $0 + $1.heapBytes }
      let (at, epoch) = Journal.stamp()
      meta = [
        ("flow", .string(SnapshotCopy.flow)), ("run", .int(run)), ("started_at", .string(at)),
        ("started_epoch", .double(epoch)), ("jobs", .int(jobs)),
        ("split_mb", .double(Double(splitBytes) / 1_048_576)),
        ("primary_keys", .array(keys)), ("slot", .null), ("snapshot", .null),
        ("consistent_point", .null),
      ]
    }

    private func position(_ c: Chunk) -> Int {
      chunks.firstIndex { $0.table == c.table && $0.index == c.index } ?? 0
    }

    func set(slot: String, snapshot: String, lsn: String) {
      lock.withLock {
        meta = meta.filter { !["slot", "snapshot", "consistent_point"].contains($0.0) }
        meta += [
          ("slot", .string(slot)), ("snapshot", .string(snapshot)),
          ("consistent_point", .string(lsn)),
        ]
      }
    }

    func setState(_ s: String, extra more: [(String, Value)] = []) {
      lock.withLock {
        state = s
        extra += more
      }
    }

    func add(_ c: Chunk, rows r: Int, bytes b: Int) {
      let i = position(c)
      lock.withLock {
        rows[i] += r
        bytes[i] += b
      }
    }

    /// Marks a part finished and writes the record before the worker goes on.
    func finish(_ c: Chunk, seconds s: Double) throws {
      let i = position(c)
      lock.withLock {
        done[i] = true
        seconds[i] = s
      }
      try write()
    }

    func write() throws {
      let doc = document()
      try Journal.update(path) { _ in doc }
    }

    /// The record: the run's settings, each table with its parts, and the totals with the
    /// rate and the time left.
    func document() -> Value {
      lock.lock()
      defer { lock.unlock() }
      var tables: [Value] = []
      var heapDone = 0.0
      var rowsTotal = 0
      var bytesTotal = 0
      var tablesDone = 0
      for (ti, t) in plans.enumerated() {
        var parts: [Value] = []
        var tr = 0
        var tb = 0
        var all = true
        for (i, c) in chunks.enumerated() where c.table == ti {
          tr += rows[i]
          tb += bytes[i]
          all = all && done[i]
          if done[i] {
            heapDone += Double(c.heapBytes)
          } else if let est = t.estRows, t.heapBytes > 0 {
            let expected = Double(est) * Double(c.heapBytes) / Double(t.heapBytes)
            if expected > 0 {
              heapDone += Double(c.heapBytes) * min(0.99, Double(rows[i]) / expected)
            }
          }
          parts.append(
            .object([
              ("from_block", .from(c.from)), ("to_block", .from(c.to)),
              ("state", .string(done[i] ? "done" : rows[i] > 0 ? "copying" : "pending")),
              ("rows", .int(rows[i])), ("bytes", .int(bytes[i])),
              ("seconds", .double((seconds[i] * 1000).rounded() / 1000)),
            ]))
        }
        rowsTotal += tr
        bytesTotal += tb
        if all { tablesDone += 1 }
        tables.append(
          .object([
            ("name", .string(t.name)),
            ("state", .string(all ? "done" : tr > 0 ? "copying" : "pending")),
            ("format", .string(t.format)),
            ("heap_bytes", .int(t.heapBytes)), ("est_rows", .from(t.estRows)), ("rows", .int(tr)),
            ("bytes", .int(tb)), ("parts", .array(parts)),
          ]))
      }
      let elapsed = max(0.001, Date().timeIntervalSince(started))
      let rate = heapDone / elapsed
      let left = Double(totalHeap) - heapDone
      let eta: Value =
        state != "copying" ? .int(0) : rate > 0 ? .double((left / rate * 10).rounded() / 10) : .null
      let (at, epoch) = Journal.stamp()
      return .object(
        [("state", .string(state))] + meta + [
          ("updated_at", .string(at)), ("updated_epoch", .double(epoch)),
          ("elapsed_s", .double((elapsed * 10).rounded() / 10)),
          ("tables_total", .int(plans.count)), ("tables_done", .int(tablesDone)),
          ("rows", .int(rowsTotal)), ("bytes", .int(bytesTotal)),
          ("heap_bytes_total", .int(totalHeap)), ("heap_bytes_done", .int(Int(heapDone))),
          (
            "pct",
            .double(totalHeap > 0 ? (heapDone / Double(totalHeap) * 1000).rounded() / 10 : 100)
          ),
          ("rate_bytes_s", .int(Int(Double(bytesTotal) / elapsed))),
          ("rate_heap_bytes_s", .int(Int(rate))), ("eta_s", eta), ("tables", .array(tables)),
        ] + extra)
    }
  }

  /// Writes the record every second and logs a progress line every five.
  final class Reporter: @unchecked Sendable {
    private let progress: Progress
    private let logger: Logger
    private let lock = NSLock()
    private var stopped = false
    private let done = DispatchSemaphore(value: 0)

    init(progress: Progress, logger: Logger) {
      self.progress = progress
      self.logger = logger
    }

    func start() {
      let t = Thread { [self] in
        var n = 0
        while !lock.withLock({ stopped }) {
          Thread.sleep(forTimeInterval: 1)
          n += 1
          try? progress.write()
          if n % 5 == 0 { logger.notice("initial copy: \(SnapshotCopy.line(progress.document()))") }
        }
        done.signal()
      }
      t.start()
    }

    func stop() {
      lock.withLock { stopped = true }
      done.wait()
    }
  }

  /// One line: tables, rows, MB, percent, rate and time left.
  static func line(_ r: Value) -> String {
    let pct = r["pct"]?.doubleValue ?? 0
    var s =
      "\(r["tables_done"]?.intValue ?? 0)/\(r["tables_total"]?.intValue ?? 0) tables, "
      + "\(r["rows"]?.intValue ?? 0) rows, \(Fmt.bytes(r["bytes"]?.intValue ?? 0)) copied, "
      + String(format: "%.1f %%", pct)
    if let rate = r["rate_bytes_s"]?.intValue, rate > 0 { s += ", \(Fmt.bytes(rate))/s" }
    if let eta = r["eta_s"]?.doubleValue, r["state"] == "copying" {
      s += String(format: ", %.0f s left", eta)
    }
    return s
  }

  /// status: the copy's record (tables with rows, bytes and state; totals, rate, time left),
  /// and while belt copies, the progress column says so.
  static func statusFields(_ ctx: PairContext, progress: inout String) -> [(String, Value)] {
    guard let r = try? record(ctx) else { return [] }
    let state = r["state"]?.stringValue ?? "?"
    var summary = r
    summary = summary.setting(
      "tables",
      .array(
        (r["tables"]?.arrayValue ?? []).map { t in
          .object(
            ["name", "state", "rows", "est_rows", "bytes", "heap_bytes"].map {
              ($0, t[$0] ?? .null)
            }
              + [("parts", .int(t["parts"]?.arrayValue?.count ?? 0))])
        }))
    var fields: [(String, Value)] = [
      ("initial_copy", summary), ("copy_state", .string(state)),
      ("copy_eta_s", r["eta_s"] ?? .null), ("copy_rate_bytes_s", r["rate_bytes_s"] ?? .null),
      ("copy_pct", r["pct"] ?? .null),
    ]
    if state == "copying" {
      let age = Date().timeIntervalSince1970 - (r["updated_epoch"]?.doubleValue ?? 0)
      if age > 10 {
        fields.append(
          (
            "copy_interrupted",
            .string(
              "belt's initial copy stopped \(Int(age)) s ago at \(line(r)); run setup (or migrate.lua) again to finish it"
            )
          ))
        progress = String(format: "copy stopped at %.1f %%", r["pct"]?.doubleValue ?? 0)
      } else {
        progress = "copy " + line(r)
      }
    } else if state != "done" {
      progress = "copy: \(state)"
    }
    return fields
  }

  final class Sessions: @unchecked Sendable {
    private let list: [PGConnection]
    init(_ list: [PGConnection]) { self.list = list }
    func get(_ i: Int) -> PGConnection { list[i] }
  }

  final class ChunkQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Chunk]
    private var stopped = false
    init(_ items: [Chunk]) { self.items = items }
    func next() -> Chunk? {
      lock.withLock { stopped || items.isEmpty ? nil : items.removeFirst() }
    }
    func stop() { lock.withLock { stopped = true } }
  }
}
