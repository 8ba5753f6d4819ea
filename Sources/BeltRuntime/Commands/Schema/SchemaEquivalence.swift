import Foundation

/// Tells real schema differences from PostgreSQL re-printing an object after a dump and reload.
///
/// PostgreSQL stores parsed expressions, not text, and prints them back from the parse tree: a
/// `varchar IN (...)` CHECK written by hand prints as `ANY ((ARRAY[...])::text[])`, reloaded it
/// prints as `ANY (ARRAY[(...)::text, ...])`; a typed NULL in a sub-select prints without a
/// column alias, reloaded with `AS int4`. Both texts mean the same to the server.
///
/// How two definitions are judged equal: only statements whose text differs between src and
/// dst are looked at. Each is paired with the other side's statement for the same object (same
/// kind, same name). On dst, in one transaction that is always rolled back, both texts are run
/// into two scratch schemas (the object's own name moved into the scratch schema, everything it
/// refers to left where it is; for a constraint, index, trigger, default or policy the table is
/// first copied there with `CREATE TABLE ... (LIKE ...)`), and dst's catalog prints both back
/// (`pg_get_constraintdef`, `pg_get_viewdef`, `pg_get_indexdef`, `pg_get_triggerdef`,
/// `pg_get_expr`, `format_type`). Identical prints are the same definition: the pair is
/// re-printing. Anything else, a statement that cannot be paired, or one that fails to run, stays
/// a difference and is reported exactly as the dumps print it.
public enum SchemaEquivalence {
  /// The kinds of object whose definitions can be re-created and printed back.
  enum Kind: String {
    case table, view, materializedView = "materialized view", constraint, index, trigger,
      columnDefault = "default",
      policy, domain
    /// Whether the statement changes a table that must be copied into the scratch schema first.
    var onTable: Bool { [.constraint, .index, .trigger, .columnDefault, .policy].contains(self) }
  }

  /// What a statement defines: its kind, a key naming the object, and where in the text the
  /// qualified name to move into the scratch schema is.
  struct Target {
    var kind: Kind
    /// `kind schema.name[.sub]`, equal on both sides for the same object.
    var key: String
    /// The range of the qualified name (the object's own, or its table's) in the statement.
    var nameRange: Range<String.Index>
    /// The unqualified name (as printed, possibly quoted).
    var bareName: String
    /// The qualified name as printed.
    var qualified: String
  }

  /// An identifier as pg_dump prints it.
  static let ident = #"(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)"#
  /// A schema-qualified name as pg_dump prints it (both parts captured).
  static var qualifiedName: String { "(\(ident)\\.(\(ident)))" }

  /// The statement patterns: the kind, the regex, which capture group holds the qualified name
  /// and which (if any) a sub-object name for the key.
  static let patterns: [(Kind, String, Int, Int?)] = [
    (.table, "^CREATE (?:UNLOGGED )?TABLE \(qualifiedName) ", 1, nil),
    (.view, "^CREATE (?:OR REPLACE )?VIEW \(qualifiedName)", 1, nil),
    (.materializedView, "^CREATE MATERIALIZED VIEW \(qualifiedName)", 1, nil),
    (.constraint, "^ALTER TABLE (?:ONLY )?\(qualifiedName)\\s+ADD CONSTRAINT (\(ident)) ", 1, 3),
    (
      .columnDefault,
      "^ALTER TABLE (?:ONLY )?\(qualifiedName) ALTER COLUMN (\(ident)) SET DEFAULT ", 1, 3
    ),
    (.index, "^CREATE (?:UNIQUE )?INDEX (\(ident)) ON (?:ONLY )?\(qualifiedName) ", 2, 1),
    (.trigger, "^CREATE (?:CONSTRAINT )?TRIGGER (\(ident)) [^;]*? ON \(qualifiedName) ", 2, 1),
    (.policy, "^CREATE POLICY (\(ident)) ON \(qualifiedName)", 2, 1),
    (.domain, "^CREATE DOMAIN \(qualifiedName) ", 1, nil),
  ]

  /// What `statement` defines, or nil for a kind that is not compared this way.
  static func target(_ statement: String) -> Target? {
    let ns = statement as NSString
    for (kind, pattern, nameGroup, subGroup) in patterns {
      guard
        let re = try? NSRegularExpression(pattern: pattern, options: [.dotMatchesLineSeparators]),
        let m = re.firstMatch(in: statement, range: NSRange(location: 0, length: ns.length)),
        let range = Range(m.range(at: nameGroup), in: statement),
        // The bare name is the second part of the qualified name.
        let bareRange = Range(m.range(at: nameGroup + 1), in: statement)
      else { continue }
      let qualified = String(statement[range])
      var key = "\(kind.rawValue) \(qualified)"
      if let sub = subGroup, let r = Range(m.range(at: sub), in: statement) {
        key += " \(statement[r])"
      }
      return Target(
        kind: kind, key: key, nameRange: range, bareName: String(statement[bareRange]),
        qualified: qualified)
    }
    return nil
  }

  /// A src statement and a dst statement that define the same object differently.
  struct Pair {
    var key: String
    var src: String
    var dst: String
  }

  /// The statements of `src` not in `dst` and those of `dst` not in `src` (as multisets: a
  /// statement twice on one side and once on the other is once on one side only), in order.
  static func oneSided(src: [String], dst: [String]) -> (src: [String], dst: [String]) {
    var counts: [String: Int] = [:]
    for s in dst { counts[s, default: 0] += 1 }
    var srcOnly: [String] = []
    for s in src {
      if let n = counts[s], n > 0 { counts[s] = n - 1 } else { srcOnly.append(s) }
    }
    var dstOnly: [String] = []
    for s in dst where (counts[s] ?? 0) > 0 {
      counts[s] = (counts[s] ?? 0) - 1
      dstOnly.append(s)
    }
    return (srcOnly, dstOnly)
  }

  /// Pairs the statements that appear on one side only by the object they define. Statements
  /// of an object defined more than once on a side, or on one side only, are left unpaired.
  static func pairs(src: [String], dst: [String]) -> [Pair] {
    let (srcOnly, dstOnly) = oneSided(src: src, dst: dst)
    func byKey(_ list: [String]) -> [String: [String]] {
      var out: [String: [String]] = [:]
      for s in list {
        if let t = target(s.trimmingCharacters(in: .whitespacesAndNewlines)) {
          out[t.key, default: []].append(s)
        }
      }
      return out
    }
    let a = byKey(srcOnly)
    let b = byKey(dstOnly)
    return a.keys.sorted().compactMap { key in
      guard let x = a[key], let y = b[key], x.count == 1, y.count == 1 else { return nil }
      return Pair(key: key, src: x[0], dst: y[0])
    }
  }

  /// The statement with its object (or its table) moved into `scratch` (renamed `name` when
  /// given), and the SQL that prepares the scratch schema for it (the table copy).
  static func scratchSQL(_ statement: String, _ t: Target, scratch: String, as name: String? = nil)
    -> (prepare: String?, run: String, object: String)
  {
    let moved = "\(scratch).\(name ?? t.bareName)"
    var text = statement
    text.replaceSubrange(t.nameRange, with: moved)
    let prepare = t.kind.onTable ? "CREATE TABLE \(moved) (LIKE \(t.qualified))" : nil
    return (prepare, text, moved)
  }

  /// The catalog's print of a relation: columns, constraints, indexes, triggers, policies, the
  /// view's query, partitioning, inheritance.
  static let relationPrint = """
    json_build_object(
      'kind', c.relkind, 'persistence', c.relpersistence, 'options', c.reloptions,
      'columns', (SELECT json_agg(json_build_array(a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
                                                   pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attgenerated, a.attidentity,
                                                   CASE WHEN a.attcollation <> t.typcollation THEN a.attcollation::regcollation::text END)
                                  ORDER BY a.attnum)
                    FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                    LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
      'constraints', (SELECT json_agg(json_build_array(co.conname, pg_catalog.pg_get_constraintdef(co.oid), co.condeferrable, co.condeferred)
                                      ORDER BY co.conname)
                        FROM pg_catalog.pg_constraint co WHERE co.conrelid = c.oid),
      'indexes', (SELECT json_agg(pg_catalog.pg_get_indexdef(i.indexrelid) ORDER BY 1)
                    FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid),
      'triggers', (SELECT json_agg(pg_catalog.pg_get_triggerdef(tg.oid) ORDER BY tg.tgname)
                     FROM pg_catalog.pg_trigger tg WHERE tg.tgrelid = c.oid AND NOT tg.tgisinternal),
      'policies', (SELECT json_agg(json_build_array(p.polname, p.polcmd, p.polpermissive, p.polroles::text,
                                                    pg_catalog.pg_get_expr(p.polqual, p.polrelid),
                                                    pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)) ORDER BY p.polname)
                     FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid),
      'view', CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END,
      'partition_key', CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END,
      'inherits', (SELECT json_agg(h.inhparent::regclass::text ORDER BY h.inhseqno) FROM pg_catalog.pg_inherits h WHERE h.inhrelid = c.oid)
    )
    """

  /// The catalog's print of a domain: base type, NOT NULL, default, collation, constraints.
  static let domainPrint = """
    json_build_object(
      'base', pg_catalog.format_type(t.typbasetype, t.typtypmod), 'not_null', t.typnotnull, 'default', t.typdefault,
      'collation', t.typcollation,
      'constraints', (SELECT json_agg(json_build_array(co.conname, pg_catalog.pg_get_constraintdef(co.oid)) ORDER BY co.conname)
                        FROM pg_catalog.pg_constraint co WHERE co.contypid = t.oid)
    )
    """

  /// dst's print of each named object (relations, or domains), by name; nil for one not found.
  static func prints(_ names: [String], domains: Bool, dst: PGConnection) throws -> [String: String]
  {
    if names.isEmpty { return [:] }
    let one =
      domains
      ? "SELECT (\(domainPrint))::text FROM pg_catalog.pg_type t WHERE t.oid = pg_catalog.to_regtype(u.n)"
      : "SELECT (\(relationPrint))::text FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass(u.n)"
    let r = try dst.query(
      "SELECT u.n, (\(one)) AS p FROM unnest($1::text[]) AS u(n)", [PGArray.literal(names)])
    var out: [String: String] = [:]
    for row in r.rows where row["p"] != nil { out[row.string("n")] = row.string("p") }
    return out
  }

  /// The keys of the pairs whose two definitions dst stores the same way.
  ///
  /// Runs on `dst` (a connection of its own, as root, not audited: nothing it does is kept; the
  /// definitions run as `role`, the owner, as load-schema runs them) in
  /// one transaction that is always rolled back, every statement in one batch and every print
  /// in one query; when the batch fails, one pair at a time under its own savepoint, so that a
  /// pair that cannot be judged (a lock not granted in time, a statement dst rejects) stays a
  /// difference and the others are still judged. Lock and statement timeouts are short.
  /// - Parameters:
  ///   - pairs: from ``pairs(src:dst:)``.
  ///   - dst: a connection to dst's database (as root: it creates the scratch schemas).
  ///   - role: the role the definitions are re-created as (the owner), nil for the connection's.
  /// - Returns: the keys judged equal.
  /// - Throws: `PGError` when the transaction itself cannot start.
  static func equalKeys(_ pairs: [Pair], dst: PGConnection, runAs role: String? = nil) throws
    -> Set<String>
  {
    if pairs.isEmpty { return [] }
    let pid = try dst.query("SELECT pg_catalog.pg_backend_pid()").scalar ?? "0"
    let scratch = ["belt_cmp_src_\(pid)", "belt_cmp_dst_\(pid)"]
    // Each pair's two objects, renamed o<i> in their scratch schema: no two collide, so every
    // statement can go in one batch.
    struct Job {
      var pair: Pair
      var kind: Kind
      var sql: [String]
      var objects: [String]
    }
    var jobs: [Job] = []
    for (i, pair) in pairs.enumerated() {
      var sql: [String] = []
      var objects: [String] = []
      var kind: Kind?
      for (text, schema) in zip([pair.src, pair.dst], scratch) {
        let statement = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let t = target(statement) else { break }
        let s = scratchSQL(statement, t, scratch: schema, as: "o\(i)")
        if let prepare = s.prepare { sql.append(prepare + ";") }
        sql.append(s.run.hasSuffix(";") ? s.run : s.run + ";")
        objects.append(s.object)
        kind = t.kind
      }
      if let kind, objects.count == 2 {
        jobs.append(Job(pair: pair, kind: kind, sql: sql, objects: objects))
      }
    }
    try dst.exec("BEGIN")
    defer { _ = try? dst.exec("ROLLBACK") }
    try dst.exec(
      "SET LOCAL lock_timeout = '2s'; SET LOCAL statement_timeout = '60s'; SET LOCAL search_path = ''; "
        + "SET LOCAL check_function_bodies = false")
    // src's text runs as the owner (as load-schema does), never as root.
    let authorization = role.map { " AUTHORIZATION \(PGConnection.quoteIdent($0))" } ?? ""
    try dst.exec(
      "CREATE SCHEMA \(scratch[0])\(authorization); CREATE SCHEMA \(scratch[1])\(authorization)")
    if let role { try dst.exec("SET LOCAL ROLE \(PGConnection.quoteIdent(role))") }
    func judge(_ list: [Job]) throws -> Set<String> {
      let rel = try prints(
        list.filter { $0.kind != .domain }.flatMap(\.objects), domains: false, dst: dst)
      let dom = try prints(
        list.filter { $0.kind == .domain }.flatMap(\.objects), domains: true, dst: dst)
      var equal: Set<String> = []
      for job in list {
        let p = job.objects.enumerated().map { (k, name) in
          (job.kind == .domain ? dom[name] : rel[name])?.replacingOccurrences(
            of: scratch[k], with: "<scratch>")
        }
        if let a = p[0], let b = p[1], a == b { equal.insert(job.pair.key) }
      }
      return equal
    }
    // Fast path: every statement in one round trip, every print in one query.
    _ = try dst.exec("SAVEPOINT belt_cmp_all")
    do {
      _ = try dst.exec(jobs.flatMap(\.sql).joined(separator: "\n"))
      return try judge(jobs)
    } catch let e as PGError where e.kind == .server && !e.isCancel {
      _ = try dst.exec("ROLLBACK TO SAVEPOINT belt_cmp_all")
    }
    // Some statement was rejected (or a lock not granted in time): one pair at a time, each
    // under its own savepoint; a pair that fails stays a difference.
    var equal: Set<String> = []
    for job in jobs {
      _ = try dst.exec("SAVEPOINT belt_cmp")
      do {
        _ = try dst.exec(job.sql.joined(separator: "\n"))
        equal.formUnion(try judge([job]))
      } catch let e as PGError where e.kind == .server && !e.isCancel {}
      _ = try dst.exec("ROLLBACK TO SAVEPOINT belt_cmp")
    }
    return equal
  }

  /// For pairs that differ for real, the dst statement with each line that is only re-printed
  /// replaced by src's line, so that the diff shows the real change alone (a table whose CHECK
  /// is re-printed and whose column changed type shows the column).
  ///
  /// Only pairs with as many lines on both sides are refined: for each line that differs, src's
  /// statement with that one line taken from dst is judged against src's statement.
  /// - Parameters:
  ///   - pairs: pairs judged different.
  ///   - dst: a connection to dst's database.
  ///   - role: as in ``equalKeys(_:dst:runAs:)``.
  /// - Returns: dst statement → the statement with its re-printed lines replaced.
  /// - Throws: `PGError` when the transaction itself cannot start.
  static func refine(_ pairs: [Pair], dst: PGConnection, runAs role: String? = nil) throws
    -> [String: String]
  {
    var probes: [Pair] = []
    var lines: [String: ([String], [String])] = [:]
    for p in pairs {
      let a = p.src.components(separatedBy: "\n")
      let b = p.dst.components(separatedBy: "\n")
      guard a.count == b.count, a.count > 1 else { continue }
      lines[p.key] = (a, b)
      for k in a.indices where a[k] != b[k] {
        var hybrid = a
        hybrid[k] = b[k]
        probes.append(Pair(key: "\(p.key)\n\(k)", src: p.src, dst: hybrid.joined(separator: "\n")))
      }
    }
    if probes.isEmpty { return [:] }
    let equal = try equalKeys(probes, dst: dst, runAs: role)
    var out: [String: String] = [:]
    for p in pairs {
      guard let (a, b) = lines[p.key] else { continue }
      var fixed = b
      for k in a.indices where a[k] != b[k] && equal.contains("\(p.key)\n\(k)") { fixed[k] = a[k] }
      if fixed != b { out[p.dst] = fixed.joined(separator: "\n") }
    }
    return out
  }

  /// The name of each object that still differs between `src` and `dst` (statements on one
  /// side only, after re-printed ones were replaced): `table public.orders` for the kinds
  /// compared here, else the statement's first line. Stable from run to run, so an operator
  /// can accept a difference by name.
  static func differenceNames(src: [String], dst: [String]) -> [String] {
    let (srcOnly, dstOnly) = oneSided(src: src, dst: dst)
    var names: [String] = []
    for s in srcOnly + dstOnly {
      let text = s.trimmingCharacters(in: .whitespacesAndNewlines)
      let name = target(text)?.key ?? String((text.split(separator: "\n").first ?? "").prefix(120))
      if !names.contains(name) { names.append(name) }
    }
    return names
  }
}
