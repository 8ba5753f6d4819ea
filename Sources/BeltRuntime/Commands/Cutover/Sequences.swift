import Foundation

/// sync-sequences (pgbelt §9.1, without its bugs).
///
/// - Sequences backing primary-key columns on dst (serial/bigserial and identity through
///   pg_depend 'a'/'i', and `DEFAULT nextval(...)` through pg_attrdef) are set from max(pk) on
///   dst; when the src sequence has already handed out a higher value, that value wins, so an
///   id src gave out (rows deleted or rolled back there) is never handed out again.
/// - Other sequences take the src value (+ stride), copied with its `is_called` flag.
/// - No sequence ever moves backwards (compared by the next value it would hand out, so
///   descending sequences work too); a sequence ahead on dst is kept and reported.
enum SequenceSync {
  struct State {
    /// `last_value`.
    var last: Int
    /// `is_called`.
    var called: Bool
    /// The increment (negative for descending sequences).
    var increment: Int
    var min: Int
    var max: Int
    /// The value nextval would return.
    var next: Int { called ? last &+ increment : last }
  }

  /// A column a sequence feeds.
  struct PKColumn {
    var schema: String
    var table: String
    var column: String
  }

  /// PK-backed sequences of `schema` on a server: name → the PK columns it feeds.
  static func pkBacked(_ c: PGConnection, schema: String) throws -> [String: [PKColumn]] {
    let r = try c.query(
      """
      WITH pk AS (
        SELECT con.conrelid AS relid, k.attnum
          FROM pg_constraint con CROSS JOIN LATERAL unnest(con.conkey) AS k(attnum)
         WHERE con.contype = 'p'
      ), fed AS (
        SELECT s.relname AS seq, d.refobjid AS relid, d.refobjsubid AS attnum
          FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace
          JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid
                          AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
         WHERE s.relkind = 'S' AND n.nspname = $1
        UNION
        SELECT s.relname, ad.adrelid, ad.adnum
          FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace
          JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = s.oid
                          AND d.classid = 'pg_attrdef'::regclass
          JOIN pg_attrdef ad ON ad.oid = d.objid
         WHERE s.relkind = 'S' AND n.nspname = $1
      )
      SELECT f.seq, tn.nspname AS tschema, t.relname AS tbl, a.attname AS col
        FROM fed f
        JOIN pk ON pk.relid = f.relid AND pk.attnum = f.attnum
        JOIN pg_class t ON t.oid = f.relid JOIN pg_namespace tn ON tn.oid = t.relnamespace
        JOIN pg_attribute a ON a.attrelid = f.relid AND a.attnum = f.attnum
       ORDER BY 1, 2, 3, 4
      """, [schema])
    var out: [String: [PKColumn]] = [:]
    for row in r.rows {
      out[row.string("seq"), default: []].append(
        PKColumn(schema: row.string("tschema"), table: row.string("tbl"), column: row.string("col"))
      )
    }
    return out
  }

  /// The state of the named sequences of `schema` (missing ones are absent from the result).
  static func states(_ c: PGConnection, schema: String, names: [String]) throws -> [String: State] {
    if names.isEmpty { return [:] }
    let meta = try c.query(
      """
      SELECT c.relname, s.seqincrement, s.seqmin, s.seqmax
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname = ANY($2::text[])
      """, [schema, PGArray.literal(names)])
    var bounds: [String: (Int, Int, Int)] = [:]
    for row in meta.rows {
      bounds[row.string("relname")] = (
        row.int("seqincrement") ?? 1, row.int("seqmin") ?? 1, row.int("seqmax") ?? Int.max
      )
    }
    let present = names.filter { bounds[$0] != nil }
    var out: [String: State] = [:]
    var start = 0
    while start < present.count {
      let batch = Array(present[start..<min(start + 200, present.count)])
      let sql = batch.enumerated().map { i, n in
        "SELECT \(i) AS i, last_value, is_called FROM \(PGConnection.qualified(schema, n))"
      }.joined(separator: " UNION ALL ")
      for row in try c.query(sql).rows {
        guard let i = row.int("i"), let last = row.int("last_value"),
          let (inc, mn, mx) = bounds[batch[i]]
        else { continue }
        out[batch[i]] = State(
          last: last, called: row.bool("is_called"), increment: inc, min: mn, max: mx)
      }
      start += 200
    }
    return out
  }

  /// sync-sequences. `stride` pads non-PK sequences.
  static func run(_ ctx: PairContext, stride: Int?) throws -> Value {
    let schema = ctx.schema
    let src = try ctx.connect(.src, .root)
    let dst = try ctx.connect(.dst, .root)
    let srcNames = try Catalog.sequences(src, schema: schema).map(\.name)
    let dstNames = Set(try Catalog.sequences(dst, schema: schema).map(\.name))
    let pk = try pkBacked(dst, schema: schema)
    var names = Array(Set(srcNames).union(pk.keys)).sorted()
    if let subset = ctx.config.sequenceSubset {
      let wanted = Set(subset.map { Catalog.bareName($0, schema: schema) })
      names = names.filter { wanted.contains($0) }
    }
    if names.isEmpty {
      ctx.logger.info("No sequences to sync.")
      return .object([
        ("sequences", .array([])), ("synced", 0), ("skipped", 0), ("failed", 0),
        ("message", "No sequences to sync."),
      ])
    }
    let srcStates = try states(
      src, schema: schema, names: names.filter { Set(srcNames).contains($0) })
    let stride = stride ?? 0
    var details: [Value] = []
    var synced = 0
    var skipped = 0
    var failed = 0
    var fromPK = 0
    try dst.transaction {
      let dstStates = try states(dst, schema: schema, names: names.filter { dstNames.contains($0) })
      // max (or min, for descending sequences) of every PK column fed by a sequence: one round
      // trip per 200 columns instead of one per column (this runs inside the downtime window).
      let fed = names.flatMap { name in (pk[name] ?? []).map { (name, $0) } }.filter {
        dstStates[$0.0] != nil
      }
      var extremes: [String: String?] = [:]
      func colKey(_ name: String, _ col: PKColumn) -> String {
        "\(name)\u{0}\(col.schema)\u{0}\(col.table)\u{0}\(col.column)"
      }
      var at = 0
      while at < fed.count {
        let batch = Array(fed[at..<min(at + 200, fed.count)])
        let sql = batch.enumerated().map { i, e in
          let agg = (dstStates[e.0]?.increment ?? 1) > 0 ? "max" : "min"
          return
            "SELECT \(i) AS i, \(agg)(\(PGConnection.quoteIdent(e.1.column)))::text AS v FROM \(PGConnection.qualified(e.1.schema, e.1.table))"
        }.joined(separator: " UNION ALL ")
        for row in try dst.query(sql).rows {
          guard let i = row.int("i") else { continue }
          extremes[colKey(batch[i].0, batch[i].1)] = .some(row["v"])
        }
        at += batch.count
      }
      var setvals: [(String, Int, Bool)] = []
      for name in names {
        let srcState = srcStates[name]
        var fields: [(String, Value)] = [
          ("name", .string(name)), ("source_value", .from(srcState?.last)),
        ]
        guard let cur = dstStates[name] else {
          failed += 1
          fields += [
            ("old_value", .null), ("new_value", .null), ("method", .null), ("synced", false),
            ("skipped_reason", "sequence does not exist on the destination"),
          ]
          ctx.logger.error(
            "sequence \(PGConnection.qualified(schema, name)) does not exist on the destination")
          details.append(.object(fields))
          continue
        }
        let up = cur.increment > 0
        func better(_ a: Int, _ b: Int) -> Int { up ? Swift.max(a, b) : Swift.min(a, b) }
        var target: (last: Int, called: Bool)? = nil
        var method: String
        var reason: String? = nil
        if let cols = pk[name] {
          method = "pk_max"
          var best: Int? = nil
          for col in cols {
            guard let v = extremes[colKey(name, col)] ?? nil else { continue }
            guard let n = Int(v) else {
              reason = "primary key column \(col.table).\(col.column) is not an integer"
              continue
            }
            best = best.map { better($0, n) } ?? n
          }
          fields.append(("pk_max", .from(best)))
          if let s = srcState, s.called { best = best.map { better($0, s.last) } ?? s.last }
          if let best {
            target = (best, true)
          } else if reason == nil {
            reason = "the table is empty and the source sequence was never used"
          }
        } else if let s = srcState {
          method = stride != 0 ? "source_value_with_stride" : "source_value"
          if stride != 0 {
            let (v, overflow) = s.last.addingReportingOverflow(up ? stride : -stride)
            target = overflow ? nil : (v, true)
            if overflow { reason = "source value + stride overflows" }
          } else {
            target = (s.last, s.called)
          }
        } else {
          method = "source_value"
          reason = "sequence does not exist on the source"
        }
        fields.append(("old_value", .int(cur.last)))
        guard let t = target else {
          skipped += 1
          fields += [
            ("new_value", .int(cur.last)), ("method", .string(method)), ("synced", false),
            ("skipped_reason", .from(reason)),
          ]
          details.append(.object(fields))
          continue
        }
        if t.last > cur.max || t.last < cur.min {
          failed += 1
          let why = "value \(t.last) is outside the sequence's range [\(cur.min), \(cur.max)]"
          ctx.logger.error("sequence \(PGConnection.qualified(schema, name)): \(why)")
          fields += [
            ("new_value", .int(cur.last)), ("method", .string(method)), ("synced", false),
            ("skipped_reason", .string(why)),
          ]
          details.append(.object(fields))
          continue
        }
        let tNext = t.called ? t.last &+ cur.increment : t.last
        let forward = up ? tNext >= cur.next : tNext <= cur.next
        if !forward {
          skipped += 1
          let why =
            method == "pk_max"
            ? "destination value is ahead of max(pk)" : "destination value is ahead of source"
          ctx.logger.warning(
            "Skipping sequence \(PGConnection.qualified(schema, name)): target \(t.last) is behind the current destination value \(cur.last). Keeping destination value."
          )
          fields += [
            ("new_value", .int(cur.last)), ("method", .string(method)), ("synced", false),
            ("skipped_reason", .string(why)),
          ]
          details.append(.object(fields))
          continue
        }
        if tNext != cur.next {
          setvals.append((PGConnection.qualified(schema, name), t.last, t.called))
        }
        synced += 1
        if method == "pk_max" { fromPK += 1 }
        fields += [
          ("new_value", .int(tNext == cur.next ? cur.last : t.last)), ("method", .string(method)),
          ("synced", true), ("skipped_reason", .null),
        ]
        details.append(.object(fields))
      }
      // Every setval in one statement.
      if !setvals.isEmpty {
        try dst.query(
          """
          SELECT pg_catalog.setval(u.s::regclass, u.v, u.c)
            FROM unnest($1::text[], $2::bigint[], $3::boolean[]) AS u(s, v, c)
          """,
          [
            PGArray.literal(setvals.map(\.0)), PGArray.literal(setvals.map { String($0.1) }),
            PGArray.literal(setvals.map { $0.2 ? "true" : "false" }),
          ])
      }
    }
    var message = "synced \(synced) sequence(s) (\(fromPK) from max(pk))"
    if skipped > 0 { message += ", skipped \(skipped)" }
    if failed > 0 { message += ", \(failed) failed" }
    ctx.logger.info("\(message)")
    return .object([
      ("sequences", .array(details)), ("synced", .int(synced)), ("skipped", .int(skipped)),
      ("failed", .int(failed)),
      ("message", .string(message)), ("ok", .bool(failed == 0)),
    ])
  }
}
