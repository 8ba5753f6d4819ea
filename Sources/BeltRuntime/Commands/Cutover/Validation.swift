import Foundation
import Logging

/// validate-data: compares src and dst row by row, never only by counts (pgbelt §9.2's
/// comparison never reported a differing value).
///
/// Sample mode (default), per table with a primary key: keys of a random sample of src
/// (`TABLESAMPLE SYSTEM`, sized from reltuples, shuffled and cut to n) and the latest n keys of
/// both src and dst (`ORDER BY pk DESC`, which catches extra rows at the end of dst); the rows
/// with exactly those keys are fetched from both servers with the same query and compared
/// column by column. Sampling is random across runs, but both sides are always compared on
/// the same keys, so equal data can never fail. Tables without a primary key: compared whole
/// (count and a hash of every row); one that streamed (``Settings/streamedNoPK``) and is larger
/// than ``Settings/wholeUpTo`` like a table with a key, by samples: equal row counts, and each
/// sampled src row as often on dst.
///
/// `--full`: every table in chunks of primary-key ranges (boundaries from src), hashed on each
/// server (sum of 64-bit slices of `md5(row)`, see ``FullCompare``), both servers in parallel; a chunk that
/// differs is drilled into by per-row hashes, and the differing keys are compared column by
/// column. Tables without a primary key are compared as whole multisets of row hashes.
///
/// Values are compared as text rendered losslessly: `extra_float_digits = 3`, UTC time zone,
/// ISO dates, hex bytea; NULL is distinct from an empty string and `NaN` equals `NaN`.
enum Validation {
  /// What to compare.
  struct Settings: Sendable {
    /// Rows in the random sample (0 = none).
    var random: Int
    /// Latest rows (0 = none).
    var latest: Int
    /// Whole tables by chunks.
    var full: Bool
    /// Rows per chunk in full mode.
    var chunkRows = 10_000
    /// Mismatches reported per table.
    var maxReported = 50
    /// Only the tables with (true) or without (false) a primary key; nil: all.
    var withPK: Bool? = nil
    /// Tables that sync_tables copies (and their partitioned ancestors): they count as
    /// without a primary key for `withPK`, being final only once that copy is done.
    var afterSync: Set<String> = []
    /// Tables without a primary key that the engine streamed: final once the gate has passed,
    /// like those with one, they count as with a key for `withPK`, and in sample mode one larger
    /// than `wholeUpTo` is compared by samples (``presenceDetail``) instead of whole.
    var streamedNoPK: Set<String> = []
    /// Tables with a primary key and at most this many rows (src's estimate) are compared
    /// whole, by count and row-hash sum in one query per server for all of them (both servers
    /// at once), and key by key only when that differs; 0: every table by samples.
    var wholeUpTo = 0
  }

  /// Session settings that make the text form of every value lossless and identical on both
  /// servers for equal values.
  static let sessionSetup =
    "SET extra_float_digits = 3; SET TIME ZONE 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; "
    + "SET bytea_output = 'hex'; SET lc_monetary = 'C'; SET client_encoding = 'UTF8'"

  /// A table to compare.
  struct Shape: Sendable {
    var schema: String
    var name: String
    /// Primary-key columns in key order (empty: none).
    var pk: [ColumnInfo]
    /// Every column, in src order.
    var columns: [ColumnInfo]

    /// `"schema"."table"`.
    var q: String { PGConnection.qualified(schema, name) }
    /// `"k1", "k2"`.
    var pkList: String { pk.map(\.quoted).joined(separator: ", ") }
    /// `"k1" DESC, "k2" DESC`.
    var pkDesc: String { pk.map { $0.quoted + " DESC" }.joined(separator: ", ") }
    /// The key as text, aliased so that an `ORDER BY` on the key columns never binds to
    /// these text outputs (which would sort numbers as strings).
    var pkText: String {
      pk.enumerated().map { "\($1.quoted)::text AS belt_k\($0)" }.joined(separator: ", ")
    }
    /// The row as text, by column name (independent of physical column order).
    var rowText: String { "ROW(" + columns.map(\.quoted).joined(separator: ", ") + ")::text" }
    /// The key, then every column, as text.
    var selectAll: String { (pk + columns).map { "\($0.quoted)::text" }.joined(separator: ", ") }
  }

  struct TableResult: Sendable {
    var name: String
    /// How it was compared.
    var strategy: String
    /// Rows (keys) compared.
    var rowsCompared = 0
    /// Reported differences.
    var mismatches: [Value] = []
    /// Differences beyond the reporting cap.
    var more = 0
    /// Why it could not be compared.
    var error: String? = nil
    /// No difference and no error.
    var passed: Bool { mismatches.isEmpty && more == 0 && error == nil }

    var value: Value {
      .object([
        ("name", .string(name)), ("strategy", .string(strategy)),
        ("rows_compared", .int(rowsCompared)),
        ("passed", .bool(passed)), ("mismatches", .array(mismatches)),
        ("more_mismatches", .int(more)),
        ("error", .from(error)),
      ])
    }

    /// Records a difference (counted only, past the cap).
    mutating func add(_ m: Value, cap: Int) {
      if mismatches.count < cap { mismatches.append(m) } else { more += 1 }
    }
  }

  /// The tables of the schema to compare (∩ the config's subset; partitions are covered by
  /// their parent unless a subset names them), those of one half only when `settings.withPK`
  /// says so (their columns are read only for those).
  static func shapes(_ ctx: PairContext, settings: Settings) throws -> [Shape] {
    let src = try ctx.connect(.src, .root)
    let all = try Catalog.tables(src, schema: ctx.schema)
    var tables = Catalog.filter(all, subset: ctx.config.tableSubset, schema: ctx.schema)
    if ctx.config.tableSubset == nil { tables = tables.filter { !$0.isPartition } }
    if let withPK = settings.withPK {
      tables = tables.filter {
        ((!$0.hasPK && !settings.streamedNoPK.contains($0.name))
          || settings.afterSync.contains($0.name)) != withPK
      }
    }
    return try tables.map { t in
      let cols = try Catalog.columns(src, schema: ctx.schema, table: t.name)
      let byName = Dictionary(cols.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
      return Shape(
        schema: ctx.schema, name: t.name, pk: t.pkColumns.compactMap { byName[$0] }, columns: cols)
    }
  }

  /// validate-data: the tables, then (unless only tables with a primary key are asked for)
  /// the large objects, whose record is `large_objects` (see ``LargeObjects/validate(_:)``).
  static func run(_ ctx: PairContext, settings: Settings) throws -> Value {
    let tables = try runTables(ctx, settings: settings)
    guard settings.withPK != true, let lo = try LargeObjects.validate(ctx) else { return tables }
    let ok = tables["ok"]?.boolValue != false && lo["ok"]?.boolValue == true
    let message = [tables["message"]?.stringValue, lo["message"]?.stringValue].compactMap { $0 }
    return tables.setting("large_objects", lo).setting("ok", .bool(ok))
      .setting("message", .string(message.joined(separator: "; ")))
  }

  /// validate-data of the tables.
  static func runTables(_ ctx: PairContext, settings: Settings) throws -> Value {
    let start = Date()
    var shapes = try shapes(ctx, settings: settings)
    if let withPK = settings.withPK {
      if shapes.isEmpty {
        let message =
          withPK
          ? "no tables with a primary key (or streamed without one) to compare"
          : "no tables without a primary key (or copied by sync_tables) to compare"
        return .object([
          ("mode", .string(settings.full ? "full" : "sample")), ("tables", .array([])),
          ("rows_compared", 0), ("message", .string(message)), ("ok", true),
        ])
      }
    }
    if shapes.isEmpty {
      let message =
        "no tables to compare in schema \(ctx.schema) on the source; check schema_name and tables in \(ctx.config.path)"
      ctx.logger.error("\(message)")
      return .object([
        ("mode", .string(settings.full ? "full" : "sample")), ("tables", .array([])),
        ("message", .string(message)), ("ok", false),
      ])
    }
    // dst answers before any table is compared: a server that does not is one error, not one
    // per table (each reported as a "mismatch").
    _ = try ctx.connect(.dst, .root)
    let connector = Connector(ctx)
    var whole: [TableResult] = []
    if !settings.full && settings.wholeUpTo > 0 {
      let small = try smallTables(
        shapes, upTo: settings.wholeUpTo, src: try ctx.connect(.src, .root))
      if !small.isEmpty {
        whole = try compareWhole(
          shapes.filter { small.contains($0.name) }, settings: settings, connector: connector)
        shapes = shapes.filter { !small.contains($0.name) }
      }
    }
    let results =
      whole
      + (settings.full
        ? FullCompare.run(shapes, settings: settings, connector: connector, width: ctx.env.jobs)
        : Workers.map(shapes, width: ctx.env.jobs, connector: connector, onOpen: sessionSetup) {
          shape, conns in
          sample(shape, settings: settings, conns: conns, connector: connector)
        })
    let elapsed = Date().timeIntervalSince(start)
    let rows = results.reduce(0) { $0 + $1.rowsCompared }
    let failed = results.filter { !$0.passed }
    for r in failed {
      if let e = r.error { ctx.logger.error("validate-data \(r.name): \(e)") }
      for m in r.mismatches.prefix(10) {
        ctx.logger.error("validate-data \(r.name): \(describe(m))")
      }
      let hidden = r.mismatches.count - min(10, r.mismatches.count) + r.more
      if hidden > 0 {
        ctx.logger.error("validate-data \(r.name): \(hidden) more mismatch(es) (see --json)")
      }
    }
    let rate = elapsed > 0 ? Int(Double(rows) / elapsed) : rows
    var message: String
    if failed.isEmpty {
      message = "\(results.count) table(s) match (\(rows) rows compared"
      message += settings.full ? ", \(rate) rows/s)" : ")"
    } else {
      // Tables that differ, and tables that could not be compared (an error is not a mismatch).
      let differ = failed.filter { $0.error == nil }
      let errored = failed.filter { $0.error != nil }
      var parts: [String] = []
      if !differ.isEmpty {
        parts.append(
          "MISMATCH in \(differ.count) of \(results.count) table(s): "
            + differ.map { r in
              let shown = r.mismatches.prefix(3).map(describe).joined(separator: "; ")
              let extra = r.mismatches.count + r.more - min(3, r.mismatches.count)
              return "\(r.name): \(shown)" + (extra > 0 ? " (+\(extra) more)" : "")
            }.joined(separator: " | "))
      }
      if !errored.isEmpty {
        parts.append(
          "could not compare \(errored.count) of \(results.count) table(s): "
            + errored.map { "\($0.name): \($0.error ?? "")" }.joined(separator: " | "))
      }
      message = parts.joined(separator: "; ")
    }
    return .object([
      ("mode", .string(settings.full ? "full" : "sample")), ("sample", .int(settings.random)),
      ("tables", .array(results.map(\.value))), ("rows_compared", .int(rows)),
      ("rows_per_s", .int(rate)),
      ("failed_tables", .from(failed.map(\.name))), ("message", .string(message)),
      ("ok", .bool(failed.isEmpty)),
    ])
  }

  /// One line for a mismatch.
  static func describe(_ m: Value) -> String {
    let key =
      m["key"].map { k -> String in
        if case .object(let pairs) = k {
          return pairs.map { "\($0.0)=\($0.1.display)" }.joined(separator: ", ")
        }
        return k.display
      } ?? ""
    switch m["kind"]?.stringValue ?? "" {
    case "differs": return "key (\(key)): columns differ: \(m["columns"]?.display ?? "")"
    case "missing_on_dst": return "key (\(key)): missing on destination"
    case "extra_on_dst": return "key (\(key)): extra row on destination"
    case "row_count_differs":
      return
        "row count differs: source \(m["src_count"]?.display ?? "?"), destination \(m["dst_count"]?.display ?? "?")"
    case "content_differs":
      return
        "rows differ (count and hash of every row's text; no sampled row shows it): source \(m["src_count"]?.display ?? "?") rows, destination \(m["dst_count"]?.display ?? "?")"
    case "multiplicity_differs":
      return
        "row \(m["row"]?.display ?? "") occurs \(m["src_count"]?.display ?? "?") time(s) on source, \(m["dst_count"]?.display ?? "?") on destination"
    default: return m.display
    }
  }

  // MARK: - Sample mode

  /// Compares one table by samples; never throws.
  static func sample(_ shape: Shape, settings: Settings, conns: ConnCache, connector: Connector)
    -> TableResult
  {
    do {
      let src = try conns.get(.src)
      let dst = try conns.get(.dst)
      if shape.pk.isEmpty {
        if settings.streamedNoPK.contains(shape.name),
          try estimatedRows(shape, src) > Double(settings.wholeUpTo),
          let lookup = try lookupColumn(shape, src)
        {
          return try presenceDetail(
            shape, settings: settings, src: src, connector: connector, lookup: lookup)
        }
        return try presence(shape, settings: settings, src: src, connector: connector)
      }
      var result = TableResult(
        name: shape.name, strategy: "random_\(settings.random)+latest_\(settings.latest)")
      var keys: [[String]] = []
      var seen = Set<[String]>()
      func add(_ ks: [[String]]) { for k in ks where seen.insert(k).inserted { keys.append(k) } }
      if settings.random > 0 { add(try randomKeys(shape, n: settings.random, src)) }
      if settings.latest > 0 {
        add(try latestKeys(shape, n: settings.latest, src))
        add(try latestKeys(shape, n: settings.latest, dst))
      }
      result.rowsCompared = try compareKeys(
        shape, keys: keys, src: src, dst: dst, into: &result, cap: settings.maxReported)
      return result
    } catch {
      return TableResult(
        name: shape.name, strategy: shape.pk.isEmpty ? "no_pkey_presence" : "sample",
        error: BeltError.wrap(error).message)
    }
  }

  /// The tables with a primary key that src estimates at most `upTo` rows (a never-analyzed
  /// table counts by its size, at 100 bytes a row).
  static func smallTables(_ shapes: [Shape], upTo: Int, src: PGConnection) throws -> Set<String> {
    let names = shapes.filter { !$0.pk.isEmpty }.map(\.q)
    if names.isEmpty { return [] }
    let rows = try src.query(
      """
      SELECT c.relname FROM pg_class c JOIN unnest($1::text[]) AS u(q) ON c.oid = u.q::regclass
       WHERE CASE WHEN c.reltuples >= 0 THEN c.reltuples ELSE pg_relation_size(c.oid) / 100 END <= $2::float8
      """, [PGArray.literal(names), String(upTo)]
    ).values.compactMap { $0[0] }
    return Set(rows)
  }

  /// Small tables with a primary key, whole: count and row-hash sum of every table, in one query
  /// per 100 tables on each server (both at once); a table whose pair differs is compared key by
  /// key over every key of both sides, so each difference is named.
  static func compareWhole(_ shapes: [Shape], settings: Settings, connector: Connector) throws
    -> [TableResult]
  {
    var sums: [[String]] = [[], []]
    let both = Runner.parallelMap(Side.allCases, width: 2) { side -> Result<[String], BeltError> in
      do {
        let c = try connector.open(side, .root, noTimeout: true)
        defer { c.close() }
        try c.exec(sessionSetup)
        var out: [String] = Array(repeating: "", count: shapes.count)
        var at = 0
        while at < shapes.count {
          let batch = Array(at..<min(at + 100, shapes.count))
          let sql = batch.map { i in
            "SELECT \(i) AS i, count(*) || ':' || coalesce(sum(hashtextextended(\(shapes[i].rowText), 0)), 0) AS h FROM \(shapes[i].q)"
          }.joined(separator: " UNION ALL ")
          for row in try c.query(sql).rows { if let i = row.int("i") { out[i] = row.string("h") } }
          at += batch.count
        }
        return .success(out)
      } catch {
        return .failure(BeltError(.sqlError, "\(side.rawValue): \(BeltError.wrap(error).message)"))
      }
    }
    sums = try both.map { try $0.get() }
    var results: [TableResult] = []
    var differ: [Int] = []
    for (i, shape) in shapes.enumerated() {
      if sums[0][i] == sums[1][i] {
        var r = TableResult(name: shape.name, strategy: "whole_hash")
        r.rowsCompared = Int(sums[0][i].split(separator: ":").first ?? "") ?? 0
        results.append(r)
      } else {
        differ.append(i)
      }
    }
    if differ.isEmpty { return results }
    let src = try connector.open(.src, .root, noTimeout: true)
    let dst = try connector.open(.dst, .root, noTimeout: true)
    defer {
      src.close()
      dst.close()
    }
    try src.exec(sessionSetup)
    try dst.exec(sessionSetup)
    for i in differ {
      let shape = shapes[i]
      var r = TableResult(name: shape.name, strategy: "whole_hash+keys")
      do {
        func keys(_ c: PGConnection) throws -> [[String]] {
          try c.query("SELECT \(shape.pkText) FROM \(shape.q)").values.map { $0.map { $0 ?? "" } }
        }
        var all: [[String]] = []
        var seen = Set<[String]>()
        for k in try keys(src) + keys(dst) where seen.insert(k).inserted { all.append(k) }
        r.rowsCompared = try compareKeys(
          shape, keys: all, src: src, dst: dst, into: &r, cap: settings.maxReported)
        if r.passed {
          r.add(
            .object([
              ("kind", "content_differs"), ("src_count", .string(sums[0][i])),
              ("dst_count", .string(sums[1][i])),
            ]), cap: settings.maxReported)
        }
      } catch {
        r.error = BeltError.wrap(error).message
      }
      results.append(r)
    }
    return results
  }

  /// TABLESAMPLE percentage aiming at ~10·n rows.
  static func samplePercent(_ shape: Shape, n: Int, _ c: PGConnection) throws -> Double {
    let est = try estimatedRows(shape, c)
    if est <= 0 { return 100 }
    return min(100, max(0.0001, 100 * Double(10 * n) / est))
  }

  /// The table's rows as the server estimates them (a never-analyzed table by its size, at 100
  /// bytes a row).
  static func estimatedRows(_ shape: Shape, _ c: PGConnection) throws -> Double {
    let r = try c.query(
      "SELECT c.reltuples::float8 AS t, pg_relation_size(c.oid) AS b FROM pg_class c WHERE c.oid = $1::regclass",
      [shape.q]
    ).rows.first
    let est = Double(r?["t"] ?? "") ?? -1
    return est > 0 ? est : Double(r?.int("b") ?? 0) / 100
  }

  /// The column that finds sampled rows of a table without a primary key on both servers: the
  /// leading column of one of its indexes on src (a unique one first), not an array (nil: none).
  static func lookupColumn(_ shape: Shape, _ c: PGConnection) throws -> ColumnInfo? {
    let names = try c.query(
      """
      SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
       WHERE i.indrelid = $1::regclass AND i.indkey[0] > 0 AND i.indpred IS NULL
       ORDER BY i.indisunique DESC, i.indnatts, i.indexrelid
      """, [shape.q]
    ).values.compactMap { $0[0] }
    return names.lazy.compactMap { n in shape.columns.first { $0.name == n } }
      .first { !$0.type.hasSuffix("]") }
  }

  /// Keys of a random sample of about n rows of src.
  static func randomKeys(_ shape: Shape, n: Int, _ c: PGConnection) throws -> [[String]] {
    var pct = try samplePercent(shape, n: n, c)
    var keys: [[String]] = []
    for _ in 0..<3 {
      keys = try c.query(
        "SELECT \(shape.pkText) FROM \(shape.q) TABLESAMPLE SYSTEM ($1::float8) ORDER BY random() LIMIT $2",
        [String(pct), String(n)]
      ).values.map { $0.map { $0 ?? "" } }
      if keys.count >= n || pct >= 100 { break }
      pct = min(100, pct * 10)
    }
    return keys
  }

  /// The n highest keys.
  static func latestKeys(_ shape: Shape, n: Int, _ c: PGConnection) throws -> [[String]] {
    try c.query(
      "SELECT \(shape.pkText) FROM \(shape.q) ORDER BY \(shape.pkDesc) LIMIT $1", [String(n)]
    )
    .values.map { $0.map { $0 ?? "" } }
  }

  /// `(pk) IN (SELECT * FROM unnest($1::t1[], ...))` and its parameters.
  static func keyFilter(_ shape: Shape, keys: [[String]]) -> (String, [String?]) {
    let arrays = shape.pk.enumerated().map { i, c in "$\(i + 1)::\(c.type)[]" }
    let params: [String?] = shape.pk.indices.map { i in PGArray.literal(keys.map { $0[i] }) }
    return (
      "(\(shape.pkList)) IN (SELECT * FROM unnest(\(arrays.joined(separator: ", "))))", params
    )
  }

  /// Fetches the rows with `keys` from both servers and compares every column.
  /// - Returns: the number of keys compared.
  static func compareKeys(
    _ shape: Shape, keys: [[String]], src: PGConnection, dst: PGConnection,
    into result: inout TableResult, cap: Int
  ) throws -> Int {
    if keys.isEmpty { return 0 }
    var compared = 0
    var start = 0
    while start < keys.count {
      let batch = Array(keys[start..<min(start + 1000, keys.count)])
      start += batch.count
      let (filter, params) = keyFilter(shape, keys: batch)
      let sql = "SELECT \(shape.selectAll) FROM \(shape.q) WHERE \(filter)"
      let k = shape.pk.count
      func rows(_ c: PGConnection) throws -> [[String]: [String?]] {
        var out: [[String]: [String?]] = [:]
        for v in try c.query(sql, params).values {
          out[v.prefix(k).map { $0 ?? "" }] = Array(v.dropFirst(k))
        }
        return out
      }
      let s = try rows(src)
      let d = try rows(dst)
      for key in batch {
        let sv = s[key]
        let dv = d[key]
        if sv == nil && dv == nil { continue }
        compared += 1
        let keyValue = Value.object(zip(shape.pk, key).map { ($0.name, Fmt.short($1)) })
        switch (sv, dv) {
        case (.some, nil):
          result.add(.object([("kind", "missing_on_dst"), ("key", keyValue)]), cap: cap)
        case (nil, .some):
          result.add(.object([("kind", "extra_on_dst"), ("key", keyValue)]), cap: cap)
        case (.some(let a), .some(let b)):
          let diff = shape.columns.indices.filter { a[$0] != b[$0] }
          if !diff.isEmpty {
            result.add(
              .object([
                ("kind", "differs"), ("key", keyValue),
                ("columns", .from(diff.map { shape.columns[$0].name })),
                ("src", .object(diff.map { (shape.columns[$0].name, Fmt.short(a[$0])) })),
                ("dst", .object(diff.map { (shape.columns[$0].name, Fmt.short(b[$0])) })),
              ]), cap: cap)
          }
        default: break
        }
      }
    }
    return compared
  }

  /// Row counts of a PK-less table: for each sampled row text, and in total.
  struct Counts: Sendable {
    /// Occurrences of each sampled row.
    var rows: [String: Int] = [:]
    /// Rows in the table.
    var total = 0
    /// Why the count failed.
    var error: String? = nil
  }

  /// The row count and the sum of a 64-bit hash of every row's text, one scan on each server,
  /// both at once: equal multisets of rows give equal pairs; a missing, extra, duplicated or
  /// changed row changes the count or (but for a 2^-64 chance) the sum. `hashtextextended`
  /// costs about 60 % of an md5 of the row text on this kind of table (the row's text form is
  /// most of the work either way); the sum is exact (numeric).
  static func aggregateHashes(_ shape: Shape, connector: Connector) throws -> [(
    count: Int, sum: String
  )] {
    let sql =
      "SELECT count(*) AS n, coalesce(sum(hashtextextended(\(shape.rowText), 0)), 0)::text AS h FROM \(shape.q)"
    let both = Runner.parallelMap(Side.allCases, width: 2) {
      side -> Result<(count: Int, sum: String), BeltError> in
      do {
        let c = try connector.open(side, .root, noTimeout: true)
        defer { c.close() }
        try c.exec(sessionSetup)
        guard let row = try c.query(sql).rows.first else {
          throw BeltError(.sqlError, "\(side.rawValue): no result")
        }
        return .success((row.int("n") ?? -1, row.string("h")))
      } catch {
        return .failure(BeltError(.sqlError, "\(side.rawValue): \(BeltError.wrap(error).message)"))
      }
    }
    return try both.map { try $0.get() }
  }

  /// Tables without a primary key: first the aggregate hashes of both sides
  /// (``aggregateHashes(_:connector:)``, the whole table); when they differ, the detail: sampled src
  /// rows must occur equally often on dst and the totals must match (a difference the sample
  /// misses is still reported, as `content_differs`).
  static func presence(_ shape: Shape, settings: Settings, src: PGConnection, connector: Connector)
    throws -> TableResult
  {
    let agg = try aggregateHashes(shape, connector: connector)
    if agg[0] == agg[1] {
      var ok = TableResult(name: shape.name, strategy: "no_pkey_hash")
      ok.rowsCompared = agg[0].count
      return ok
    }
    var detail = try presenceDetail(shape, settings: settings, src: src, connector: connector)
    if detail.passed {
      detail.add(
        .object([
          ("kind", "content_differs"), ("src_count", .int(agg[0].count)),
          ("dst_count", .int(agg[1].count)),
        ]),
        cap: settings.maxReported)
    }
    return detail
  }

  /// Sampled src rows of a PK-less table occur equally often on dst, and the totals match.
  /// Without `lookup` (the detail of a table whose whole hash differs), both servers scan the
  /// table once, at the same time (each on its own connection). With it (a streamed table
  /// compared by samples), each server counts the table and renders only the rows whose
  /// `lookup` value is one of the sample's: a difference in the number of rows is always
  /// caught, a changed, missing or duplicated row when the sample holds it.
  static func presenceDetail(
    _ shape: Shape, settings: Settings, src: PGConnection, connector: Connector,
    lookup: ColumnInfo? = nil
  ) throws -> TableResult {
    var result = TableResult(
      name: shape.name,
      strategy: lookup == nil ? "no_pkey_presence" : "no_pkey_count+random_\(settings.random)")
    let n = max(settings.random, settings.latest)
    let pct = try samplePercent(shape, n: n, src)
    let drawn = try src.query(
      "SELECT \(shape.rowText), \(lookup.map { $0.quoted + "::text" } ?? "NULL") FROM \(shape.q) TABLESAMPLE SYSTEM ($1::float8) ORDER BY random() LIMIT $2",
      [String(pct), String(n)]
    ).values
    let sampled = Array(Set(drawn.compactMap { $0[0] })).sorted()
    // Each query: its SQL and parameters, whether its counts add up to the table's total, and
    // whether its rows are sampled ones.
    let queries: [(sql: String, params: [String?], total: Bool, rows: Bool)] =
      lookup.map { lookup in
        let values = Array(Set(drawn.compactMap { $0[1] })).sorted()
        let orNull = drawn.contains { $0[1] == nil } ? " OR \(lookup.quoted) IS NULL" : ""
        return [
          ("SELECT NULL AS r, count(*) AS n FROM \(shape.q)", [], true, false),
          (
            """
            SELECT \(shape.rowText) AS r, count(*) AS n FROM \(shape.q)
             WHERE \(lookup.quoted) = ANY($1::\(lookup.type)[])\(orNull) GROUP BY 1
            """, [PGArray.literal(values)], false, true
          ),
        ]
      } ?? [
        (
          """
          SELECT CASE WHEN r = ANY($1::text[]) THEN r END AS r, count(*) AS n
            FROM (SELECT \(shape.rowText) AS r FROM \(shape.q)) s GROUP BY 1
          """, [PGArray.literal(sampled)], true, true
        )
      ]
    let both = Runner.parallelMap(Side.allCases, width: 2) { side -> Counts in
      do {
        let c = try connector.open(side, .root, noTimeout: true)
        defer { c.close() }
        try c.exec(sessionSetup)
        var out = Counts()
        for q in queries {
          for row in try c.query(q.sql, q.params).rows {
            let k = row.int("n") ?? 0
            if q.total { out.total += k }
            if q.rows, let r = row["r"] { out.rows[r] = k }
          }
        }
        return out
      } catch {
        return Counts(error: "\(side.rawValue): \(BeltError.wrap(error).message)")
      }
    }
    let s = both[0]
    let d = both[1]
    if let e = s.error ?? d.error { throw BeltError(.sqlError, e) }
    result.rowsCompared = sampled.count
    if s.total != d.total {
      result.add(
        .object([
          ("kind", "row_count_differs"), ("src_count", .int(s.total)), ("dst_count", .int(d.total)),
        ]), cap: settings.maxReported)
    }
    for r in sampled where (s.rows[r] ?? 0) != (d.rows[r] ?? 0) {
      result.add(
        .object([
          ("kind", "multiplicity_differs"), ("row", Fmt.short(r, 120)),
          ("src_count", .int(s.rows[r] ?? 0)), ("dst_count", .int(d.rows[r] ?? 0)),
        ]),
        cap: settings.maxReported)
    }
    return result
  }
}
