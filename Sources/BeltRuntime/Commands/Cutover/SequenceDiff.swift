import Foundation

/// diff-sequences (pgbelt 0.20): each targeted sequence's `last_value` on src and dst.
///
/// The targets are the config's `sequences`, or every sequence of `schema_name` on either side.
/// dst is fine when it is at or past src (at or below for a descending sequence), and when a
/// sequence is missing on src only. Unlike pgbelt, a mismatch makes the command fail.
enum SequenceDiff {
  static func run(_ ctx: PairContext) throws -> Value {
    let schema = ctx.schema
    let src = try ctx.connect(.src, .root)
    let dst = try ctx.connect(.dst, .root)
    let srcNames = Set(try Catalog.sequences(src, schema: schema).map(\.name))
    let dstNames = Set(try Catalog.sequences(dst, schema: schema).map(\.name))
    var names = srcNames.union(dstNames).sorted()
    if let subset = ctx.config.sequenceSubset {
      names = Array(Set(subset.map { Catalog.bareName($0, schema: schema) })).sorted()
    }
    let s = try SequenceSync.states(src, schema: schema, names: names.filter(srcNames.contains))
    let d = try SequenceSync.states(dst, schema: schema, names: names.filter(dstNames.contains))
    var rows: [Value] = []
    var bad: [String] = []
    for name in names {
      let sv = s[name]
      let dv = d[name]
      let ok: Bool
      switch (sv, dv) {
      case (let a?, let b?): ok = a.increment < 0 ? b.last <= a.last : b.last >= a.last
      case (nil, _): ok = true
      case (_?, nil): ok = false
      }
      if !ok {
        bad.append(
          "\(name) (src \(sv.map { String($0.last) } ?? "missing"), dst \(dv.map { String($0.last) } ?? "missing"))"
        )
      }
      rows.append(
        .object([
          ("name", .string(name)), ("source_value", .from(sv?.last)),
          ("destination_value", .from(dv?.last)),
          ("destination_ok", .bool(ok)),
        ]))
    }
    let message =
      bad.isEmpty
      ? "\(names.count) sequence(s): dst is at or past src for every one"
      : "\(bad.count) of \(names.count) sequence(s) behind or missing on dst: \(bad.prefix(10).joined(separator: ", "))"
        + (bad.count > 10 ? " and \(bad.count - 10) more" : "")
    return .object([
      ("schema_name", .string(schema)), ("sequences", .array(rows)),
      ("result", .string(bad.isEmpty ? "match" : "mismatch")),
      ("message", .string(message)), ("ok", .bool(bad.isEmpty)),
    ])
  }

  /// pgbelt's output: per database its name, then `sequence | SRC | DST`, missing values `—`,
  /// DST red when dst is behind.
  static func render(_ recs: [Value]) -> String {
    var out = ""
    for r in recs.sorted(by: { ($0["db"]?.display ?? "") < ($1["db"]?.display ?? "") }) {
      out += Render.green(r["db"]?.display ?? "") + "\n"
      if let e = r["error"]?["message"]?.stringValue {
        out += Render.red("  " + e) + "\n\n"
        continue
      }
      let seqs = r["sequences"]?.arrayValue ?? []
      out += Render.table(
        ["sequence", "SRC", "DST"],
        seqs.map {
          [
            $0["name"]?.display ?? "", $0["source_value"]?.intValue.map(String.init) ?? "—",
            $0["destination_value"]?.intValue.map(String.init) ?? "—",
          ]
        },
        bad: seqs.map { [false, false, $0["destination_ok"]?.boolValue == false] })
      out += "\n"
    }
    return out
  }
}
