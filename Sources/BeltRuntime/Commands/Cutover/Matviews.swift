import Foundation

/// refresh-matviews: fills the materialized views of the pair's schema on dst (the schema load
/// creates them WITH NO DATA; logical replication does not carry them). cutover.lua runs it
/// after the window, and an operator can run it again at any time.
///
/// Views are refreshed in dependency order (one over another, also through plain views), each
/// timed; one that fails is reported and the ones built on it are skipped, the others go on.
/// A view that is already populated and has a unique index is refreshed CONCURRENTLY, so a
/// rerun after the switch does not block the application's reads.
enum Matviews {
  /// One materialized view of dst.
  struct View {
    var oid: String
    var name: String
    var populated: Bool
    var concurrent: Bool
  }

  static func run(_ ctx: PairContext) throws -> Value {
    let dst = try ctx.connect(.dst, .root, noTimeout: true)
    let views = try dst.query(
      """
      SELECT c.oid::text AS oid, c.relname, c.relispopulated,
             EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique
                        AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL) AS uniq
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relkind = 'm' ORDER BY c.relname
      """, [ctx.schema]
    ).rows.map {
      View(
        oid: $0.string("oid"), name: $0.string("relname"),
        populated: $0.string("relispopulated") == "t",
        concurrent: $0.string("relispopulated") == "t" && $0.string("uniq") == "t")
    }
    // What each view or materialized view reads (its rewrite rule's dependencies).
    var reads: [String: Set<String>] = [:]
    for row in try dst.query(
      """
      SELECT DISTINCT r.ev_class::text AS rel, d.refobjid::text AS dep
        FROM pg_rewrite r
        JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
         AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class
        JOIN pg_class c ON c.oid = r.ev_class AND c.relkind IN ('v', 'm')
      """
    ).rows {
      reads[row.string("rel"), default: []].insert(row.string("dep"))
    }
    let byOid = Dictionary(uniqueKeysWithValues: views.map { ($0.oid, $0) })
    // The materialized views each one reads, directly or through plain views.
    func under(_ oid: String) -> Set<String> {
      var seen: Set<String> = []
      var stack = Array(reads[oid] ?? [])
      var found: Set<String> = []
      while let o = stack.popLast() {
        guard seen.insert(o).inserted else { continue }
        if byOid[o] != nil { found.insert(o) } else { stack += reads[o] ?? [] }
      }
      return found
    }
    var order: [View] = []
    var placed: Set<String> = []
    func place(_ v: View, _ path: Set<String>) {
      guard !placed.contains(v.oid), !path.contains(v.oid) else { return }
      for d in under(v.oid).sorted() { if let dv = byOid[d] { place(dv, path.union([v.oid])) } }
      placed.insert(v.oid)
      order.append(v)
    }
    for v in views { place(v, []) }

    var records: [Value] = []
    var failedNames: [String: String] = [:]
    var refreshed = 0
    var total = 0.0
    for v in order {
      let qname = PGConnection.qualified(ctx.schema, v.name)
      let blocked = under(v.oid).compactMap { byOid[$0] }.filter { failedNames[$0.name] != nil }
      if let b = blocked.first {
        let why = "not refreshed: it reads \(b.name), which failed"
        failedNames[v.name] = why
        records.append(
          .object([
            ("name", .string(v.name)), ("status", "skipped"), ("duration_s", .double(0)),
            ("error", .string(why)),
          ]))
        continue
      }
      let t0 = Date()
      var error: String?
      do {
        _ = try dst.exec(
          "REFRESH MATERIALIZED VIEW \(v.concurrent ? "CONCURRENTLY " : "")\(qname)")
      } catch let e as PGError {
        error = e.message
      }
      let took = (Date().timeIntervalSince(t0) * 1000).rounded() / 1000
      total += took
      if let error {
        failedNames[v.name] = error
      } else {
        refreshed += 1
      }
      records.append(
        .object([
          ("name", .string(v.name)), ("status", error == nil ? "refreshed" : "failed"),
          ("duration_s", .double(took)), ("concurrently", .bool(v.concurrent)),
          ("was_populated", .bool(v.populated)), ("error", .from(error)),
        ]))
    }
    let failures = order.compactMap { v in failedNames[v.name].map { "\(v.name): \($0)" } }
    var message =
      views.isEmpty
      ? "no materialized view in schema \(ctx.schema)"
      : String(
        format: "refreshed %d of %d materialized view(s) in %.3f s", refreshed, views.count, total)
    if !failures.isEmpty { message += "; failed: " + failures.joined(separator: "; ") }
    return .object([
      ("matviews", .array(records)), ("refreshed", .int(refreshed)),
      ("failed", .int(failures.count)), ("duration_s", .double((total * 1000).rounded() / 1000)),
      ("message", .string(message)), ("ok", .bool(failures.isEmpty)),
    ])
  }
}
