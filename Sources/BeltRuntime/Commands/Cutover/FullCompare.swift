import Foundation

/// validate-data --full: whole tables compared by hashes computed on each server.
///
/// 1. Chunk boundaries: every `chunkRows`-th primary key of src (one index scan).
/// 2. Per chunk `(lo, hi]` (first and last chunks open-ended, so extra dst rows before the
///    first or after the last src key are counted too), each server computes the row count and
///    an order-independent multiset hash: the (exact, numeric) sum of the first 64 bits of
///    `md5(ROW(cols)::text)` over its rows — no sort, and the same on any platform.
///    Chunks are spread over worker threads; src and dst run in parallel.
/// 3. A chunk whose hashes differ is drilled into: per-row md5 by key on both servers names
///    the missing, extra and changed keys, which are then compared column by column.
/// Tables without a primary key are one chunk, drilled into by multiplicity of row hashes.
enum FullCompare {
  /// A table to compare.
  typealias Shape = Validation.Shape

  /// A key range `(lo, hi]`; nil bounds are open.
  struct Range: Sendable {
    /// Exclusive lower bound (key as text).
    var lo: [String]?
    /// Inclusive upper bound.
    var hi: [String]?
  }

  /// What one server says about one chunk.
  struct Hash: Sendable, Equatable {
    /// Rows in the chunk.
    var count: Int
    /// The multiset hash (a numeric, as text).
    var sum: String
  }

  /// The chunks of one table (one open range for a table without a primary key).
  struct Plan: Sendable {
    /// The key ranges, in key order.
    var ranges: [Range] = [Range(lo: nil, hi: nil)]
    /// Why the chunks could not be computed.
    var error: String? = nil
  }

  /// The hashes one server computed for a group of chunks.
  struct Part: Sendable {
    /// One per chunk, in order.
    var hashes: [Hash] = []
    /// Why the server could not compute them.
    var error: String? = nil
  }

  /// Chunks per unit of parallel work.
  static let groupSize = 8

  /// Compares `shapes` in full; never throws (errors are per table).
  static func run(
    _ shapes: [Shape], settings: Validation.Settings, connector: Connector, width: Int
  ) -> [Validation.TableResult] {
    // 1. Boundaries (src only).
    let plans: [Plan] = Workers.map(
      shapes, width: width, connector: connector, noTimeout: true, onOpen: Validation.sessionSetup
    ) { shape, conns in
      guard !shape.pk.isEmpty else { return Plan() }
      do {
        let bounds = try conns.get(.src).query(
          """
          SELECT \(shape.pkText) FROM (SELECT \(shape.pkList), row_number() OVER (ORDER BY \(shape.pkList)) AS belt_rn__
                                         FROM \(shape.q)) s
           WHERE belt_rn__ % $1 = 0 ORDER BY belt_rn__
          """, [String(settings.chunkRows)]
        ).values.map { $0.map { $0 ?? "" } }
        var ranges: [Range] = []
        var lo: [String]? = nil
        for b in bounds {
          ranges.append(Range(lo: lo, hi: b))
          lo = b
        }
        ranges.append(Range(lo: lo, hi: nil))
        return Plan(ranges: ranges)
      } catch {
        return Plan(error: BeltError.wrap(error).message)
      }
    }
    // 2. Hashes: (table, side, group of ranges) spread over the workers.
    struct Item: Sendable {
      var table: Int
      var side: Side
      var group: Int
    }
    var items: [Item] = []
    for (t, plan) in plans.enumerated() where plan.error == nil {
      let groups = (plan.ranges.count + groupSize - 1) / groupSize
      for g in 0..<groups {
        for side in Side.allCases { items.append(Item(table: t, side: side, group: g)) }
      }
    }
    let parts: [Part] = Workers.map(
      items, width: max(2, 2 * width), connector: connector, noTimeout: true,
      onOpen: Validation.sessionSetup
    ) { item, conns in
      let shape = shapes[item.table]
      let ranges = plans[item.table].ranges
      let slice = ranges[(item.group * groupSize)..<min(ranges.count, (item.group + 1) * groupSize)]
      do {
        let c = try conns.get(item.side)
        return Part(hashes: try slice.map { try hash(shape, $0, c) })
      } catch {
        return Part(error: "\(item.side.rawValue): \(BeltError.wrap(error).message)")
      }
    }
    var hashes: [[Side: [Hash]]] = Array(repeating: [.src: [], .dst: []], count: shapes.count)
    var errors: [String?] = plans.map(\.error)
    for (item, part) in zip(items, parts) {
      if let e = part.error, errors[item.table] == nil { errors[item.table] = e }
      hashes[item.table][item.side, default: []] += part.hashes
    }
    // 3. Compare, drilling into differing chunks.
    let inputs = shapes.indices.map { i in
      (i, errors[i], hashes[i][.src] ?? [], hashes[i][.dst] ?? [])
    }
    struct Input: Sendable {
      var index: Int
      var error: String?
      var src: [Hash]
      var dst: [Hash]
    }
    let work = inputs.map { Input(index: $0.0, error: $0.1, src: $0.2, dst: $0.3) }
    return Workers.map(
      work, width: width, connector: connector, noTimeout: true, onOpen: Validation.sessionSetup
    ) { input, conns in
      let shape = shapes[input.index]
      var result = Validation.TableResult(
        name: shape.name, strategy: shape.pk.isEmpty ? "full_multiset_hash" : "full_chunk_hash")
      if let e = input.error {
        result.error = e
        return result
      }
      result.rowsCompared = input.src.reduce(0) { $0 + $1.count }
      let ranges = plans[input.index].ranges
      do {
        for (i, (s, d)) in zip(input.src, input.dst).enumerated() where s != d {
          if shape.pk.isEmpty {
            try drillMultiset(
              shape, src: conns.get(.src), dst: conns.get(.dst), into: &result,
              cap: settings.maxReported)
          } else if result.mismatches.count >= settings.maxReported {
            result.more += max(1, abs(s.count - d.count))
          } else {
            try drillRange(
              shape, ranges[i], src: conns.get(.src), dst: conns.get(.dst), into: &result,
              cap: settings.maxReported)
          }
        }
      } catch {
        result.error = "drilling into differing chunks failed: \(BeltError.wrap(error).message)"
      }
      return result
    }
  }

  /// `WHERE` text and parameters for a range.
  static func condition(_ shape: Shape, _ r: Range) -> (String, [String?]) {
    var parts: [String] = []
    var params: [String?] = []
    for (bound, op) in [(r.lo, ">"), (r.hi, "<=")] {
      guard let bound else { continue }
      let ph = shape.pk.enumerated().map { i, c in "$\(params.count + i + 1)::\(c.type)" }
      params += bound.map { Optional($0) }
      parts.append("(\(shape.pkList)) \(op) (\(ph.joined(separator: ", ")))")
    }
    return (parts.isEmpty ? "true" : parts.joined(separator: " AND "), params)
  }

  /// Count and multiset hash of one chunk on one server.
  static func hash(_ shape: Shape, _ r: Range, _ c: PGConnection) throws -> Hash {
    let (cond, params) = condition(shape, r)
    let row = try c.query(
      """
      SELECT count(*) AS n, coalesce(sum(('x' || left(md5(\(shape.rowText)), 16))::bit(64)::bigint), 0)::text AS h
        FROM \(shape.q) WHERE \(cond)
      """, params
    ).rows.first
    return Hash(count: row?.int("n") ?? 0, sum: row?.string("h") ?? "")
  }

  /// Names the keys that differ in one chunk, then compares them column by column.
  static func drillRange(
    _ shape: Shape, _ r: Range, src: PGConnection, dst: PGConnection,
    into result: inout Validation.TableResult, cap: Int
  ) throws {
    let (cond, params) = condition(shape, r)
    let sql = "SELECT \(shape.pkText), md5(\(shape.rowText)) FROM \(shape.q) WHERE \(cond)"
    let k = shape.pk.count
    func rows(_ c: PGConnection) throws -> [[String]: String] {
      var out: [[String]: String] = [:]
      for v in try c.query(sql, params).values { out[v.prefix(k).map { $0 ?? "" }] = v[k] ?? "" }
      return out
    }
    let s = try rows(src)
    let d = try rows(dst)
    var keys = Set(s.keys).union(d.keys).filter { s[$0] != d[$0] }.sorted {
      $0.lexicographicallyPrecedes($1)
    }
    let room = max(0, cap - result.mismatches.count)
    if keys.count > room {
      result.more += keys.count - room
      keys = Array(keys.prefix(room))
    }
    _ = try Validation.compareKeys(shape, keys: keys, src: src, dst: dst, into: &result, cap: cap)
  }

  /// Tables without a primary key: rows whose multiplicity differs.
  static func drillMultiset(
    _ shape: Shape, src: PGConnection, dst: PGConnection, into result: inout Validation.TableResult,
    cap: Int
  ) throws {
    let sql =
      "SELECT md5(r) AS h, count(*) AS n, min(r) AS r FROM (SELECT \(shape.rowText) AS r FROM \(shape.q)) s GROUP BY 1"
    func counts(_ c: PGConnection) throws -> [String: (Int, String)] {
      var out: [String: (Int, String)] = [:]
      for row in try c.query(sql).rows {
        out[row.string("h")] = (row.int("n") ?? 0, row.string("r"))
      }
      return out
    }
    let s = try counts(src)
    let d = try counts(dst)
    let st = s.values.reduce(0) { $0 + $1.0 }
    let dt = d.values.reduce(0) { $0 + $1.0 }
    if st != dt {
      result.add(
        .object([("kind", "row_count_differs"), ("src_count", .int(st)), ("dst_count", .int(dt))]),
        cap: cap)
    }
    for h in Set(s.keys).union(d.keys).sorted() where s[h]?.0 != d[h]?.0 {
      result.add(
        .object([
          ("kind", "multiplicity_differs"), ("row", Fmt.short(s[h]?.1 ?? d[h]?.1, 120)),
          ("src_count", .int(s[h]?.0 ?? 0)), ("dst_count", .int(d[h]?.0 ?? 0)),
        ]), cap: cap)
    }
  }
}
