import Foundation

/// Normalising schema dumps for comparison and a small line-based unified diff.
public enum SchemaDiff {
  /// The comparable form of a `pg_dump --schema-only` script: the statements belt loads, in
  /// pg_dump's order, one blank line apart, with psql meta lines, SETs, extensions, grants and
  /// ownership removed (they are not part of the loaded schema, and `\restrict` keys are random).
  /// Without `full`, only the base schema is kept (no deferred indexes, no NOT VALID
  /// constraints), exactly what `load-schema` loads; with `full`, everything.
  public static func normalize(_ dump: String, full: Bool) -> String {
    statements(dump, full: full).joined(separator: "\n")
  }

  /// The statements of ``normalize(_:full:)``, one string each.
  public static func statements(_ dump: String, full: Bool) -> [String] {
    let files = SchemaScript.partition(SchemaScript.split(dump))
    let kept = (full ? files.full : files.base).filter { $0.kind != .set }
    return kept.map { normalizeText($0.text) }
  }

  /// Trailing whitespace removed from every line, CRLF as LF.
  static func normalizeText(_ s: String) -> String {
    s.replacingOccurrences(of: "\r\n", with: "\n").split(
      separator: "\n", omittingEmptySubsequences: false
    )
    .map { line -> Substring in
      var l = line
      while let c = l.last, c == " " || c == "\t" { l = l.dropLast() }
      return l
    }.joined(separator: "\n")
  }

  /// A unified diff (`---`/`+++` headers, `@@` hunks with `context` lines around changes) of
  /// two texts, or "" when they are equal.
  public static func unified(
    _ a: String, _ b: String, fromFile: String = "source", toFile: String = "destination",
    context: Int = 3
  )
    -> String
  {
    let x = lines(a)
    let y = lines(b)
    if x == y { return "" }
    let ops = editScript(x, y)
    // Group operations into hunks.
    var out = "--- \(fromFile)\n+++ \(toFile)\n"
    var i = 0
    while i < ops.count {
      guard let firstChange = ops[i...].firstIndex(where: { $0.kind != .same }) else { break }
      var start = max(i, firstChange - context)
      if start < i { start = i }
      // Extend the hunk while the next change is within 2*context of same lines.
      var end = firstChange
      var k = firstChange
      while k < ops.count {
        if ops[k].kind != .same {
          end = k
          k += 1
          continue
        }
        var run = k
        while run < ops.count, ops[run].kind == .same { run += 1 }
        if run < ops.count, run - k <= 2 * context {
          k = run
          continue
        }
        break
      }
      let stop = min(ops.count, end + 1 + context)
      let hunk = ops[start..<stop]
      let aStart = hunk.first.map { $0.aIndex } ?? 0
      let bStart = hunk.first.map { $0.bIndex } ?? 0
      let aLen = hunk.filter { $0.kind != .insert }.count
      let bLen = hunk.filter { $0.kind != .delete }.count
      out += "@@ -\(range(aStart, aLen)) +\(range(bStart, bLen)) @@\n"
      for op in hunk {
        switch op.kind {
        case .same: out += " " + op.line + "\n"
        case .delete: out += "-" + op.line + "\n"
        case .insert: out += "+" + op.line + "\n"
        }
      }
      i = stop
    }
    return out
  }

  /// A hunk range `start,len` (1-based; the count is omitted when 1).
  static func range(_ start: Int, _ len: Int) -> String {
    // Unified diff ranges are 1-based; an empty range names the line before it.
    let s = len == 0 ? start : start + 1
    return len == 1 ? "\(s)" : "\(s),\(len)"
  }

  /// The lines of a text (a final newline does not start an empty line).
  static func lines(_ s: String) -> [String] {
    var l = s.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    if l.last == "" { l.removeLast() }
    return l
  }

  /// One line of an edit script.
  struct Op {
    /// Kept, removed from `a`, or added from `b`.
    enum Kind { case same, delete, insert }
    /// What happens to the line.
    var kind: Kind
    var line: String
    /// Position in `a` (for same/delete: the line's index; for insert: lines of `a` before it).
    var aIndex: Int
    /// Position in `b` (for same/insert: the line's index; for delete: lines of `b` before it).
    var bIndex: Int
  }

  /// A minimal edit script turning `a` into `b`, in order.
  static func editScript(_ a: [String], _ b: [String]) -> [Op] {
    // The standard library's diff (Myers, with its own common prefix/suffix trimming): no
    // quadratic table, so no size past which the script degrades.
    var removed = Set<Int>(), inserted = Set<Int>()
    for change in b.difference(from: a) {
      switch change {
      case .remove(let offset, _, _): removed.insert(offset)
      case .insert(let offset, _, _): inserted.insert(offset)
      }
    }
    var ops: [Op] = []
    ops.reserveCapacity(max(a.count, b.count))
    var i = 0, j = 0
    while i < a.count || j < b.count {
      if i < a.count, removed.contains(i) {
        ops.append(Op(kind: .delete, line: a[i], aIndex: i, bIndex: j))
        i += 1
      } else if j < b.count, inserted.contains(j) {
        ops.append(Op(kind: .insert, line: b[j], aIndex: i, bIndex: j))
        j += 1
      } else {
        ops.append(Op(kind: .same, line: a[i], aIndex: i, bIndex: j))
        i += 1
        j += 1
      }
    }
    return ops
  }
}
