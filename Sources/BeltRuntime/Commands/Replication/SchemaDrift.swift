import Foundation

/// Schema drift between src and dst on what forward replication carries (issue 24), read from
/// the catalogs of both sides, so no server log is needed: the published tables' columns (name,
/// type, nullability, generated expression), the set of published tables, and enum labels.
/// Engine-neutral: the engine only says which tables src publishes.
enum SchemaDrift {
  /// One difference between src and dst.
  struct Difference: Sendable, Equatable {
    /// One line naming the object and both sides ("dst lacks column orders.extra text, which src has").
    var text: String
    /// Whether dst cannot apply src's changes while it lasts (src has what dst lacks); such a
    /// difference makes status call forward replication down. Every difference stops a cutover
    /// before its fence.
    var breaks: Bool
  }

  /// One column as both sides compare it.
  struct Column: Equatable {
    var name: String
    var type: String
    var notNull: Bool
    /// The expression of a stored generated column.
    var generated: String?
    var hasDefault: Bool
    var display: String { "\(type)\(notNull ? " NOT NULL" : "")" }
  }

  /// The columns of `tables` of `schema`, by table, in column order.
  static func columns(_ c: PGConnection, schema: String, tables: [String]) throws -> [String:
    [Column]]
  {
    let r = try c.query(
      """
      SELECT c.relname AS t, a.attname AS col, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull,
             CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END AS generated,
             a.atthasdef AS hasdef
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
       WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND c.relkind IN ('r', 'p')
       ORDER BY c.relname, a.attnum
      """, [schema, PGArray.literal(tables)])
    var out: [String: [Column]] = [:]
    for row in r.rows {
      out[row.string("t"), default: []].append(
        Column(
          name: row.string("col"), type: row.string("type"), notNull: row.bool("notnull"),
          generated: row["generated"],
          hasDefault: row.bool("hasdef")))
    }
    return out
  }

  /// The labels of the enum types of `schema` and of those the columns of `tables` use, by type
  /// name (qualified when outside `schema`), in sort order.
  static func enums(_ c: PGConnection, schema: String, tables: [String]) throws -> [String:
    [String]]
  {
    let r = try c.query(
      """
      SELECT CASE WHEN tn.nspname = $1 THEN t.typname ELSE tn.nspname || '.' || t.typname END AS type, e.enumlabel AS label
        FROM pg_type t JOIN pg_namespace tn ON tn.oid = t.typnamespace
        JOIN pg_enum e ON e.enumtypid = t.oid
       WHERE tn.nspname = $1
          OR t.oid IN (SELECT coalesce(nullif(ty.typelem, 0), ty.oid) FROM pg_attribute a
                         JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                         JOIN pg_type ty ON ty.oid = a.atttypid
                        WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND a.attnum > 0 AND NOT a.attisdropped)
       ORDER BY 1, e.enumsortorder
      """, [schema, PGArray.literal(tables)])
    var out: [String: [String]] = [:]
    for row in r.rows { out[row.string("type"), default: []].append(row.string("label")) }
    return out
  }

  /// Every difference between src and dst on what src publishes for forward replication (in a
  /// stable order: tables, then columns, then enums). Empty when forward replication is not set up.
  /// - Parameters:
  ///   - targets: the tables of the schema that should stream (engine's view), to find those
  ///     src does not publish; nil skips that check.
  static func differences(
    src sroot: PGConnection, dst droot: PGConnection, engine: any ReplicationEngine, schema: String,
    targets: [TableInfo]?
  ) throws -> [Difference] {
    guard let published = try engine.publishedTables(sroot, schema: schema) else { return [] }
    var out: [Difference] = []
    let dstTables = Set(try Catalog.tables(droot, schema: schema).map(\.name))
    let shown = { (t: String) in schema == "public" ? t : "\(schema).\(t)" }
    let missing = published.filter { !dstTables.contains($0) }.sorted()
    for t in missing {
      out.append(
        Difference(
          text: "dst lacks table \(shown(t)), which src publishes in \(engine.tableGroup)",
          breaks: true))
    }
    if let targets {
      let pub = Set(published)
      for t in targets
      where t.kind == "r" && engine.travel(t).how == .streamed && !pub.contains(t.name) {
        out.append(
          Difference(
            text:
              "table \(shown(t.name)) on src is not in \(engine.tableGroup) (created after setup?): its rows do not reach dst; "
              + "belt apply-ddl publishes the tables it creates, or run setup again",
            breaks: false))
      }
    }
    let both = published.filter { dstTables.contains($0) }.sorted()
    let sc = try columns(sroot, schema: schema, tables: both)
    let dc = try columns(droot, schema: schema, tables: both)
    for t in both {
      let s = sc[t] ?? []
      let d = dc[t] ?? []
      let dByName = Dictionary(d.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
      let sNames = Set(s.map(\.name))
      for col in s {
        let name = "\(shown(t)).\(col.name)"
        guard let other = dByName[col.name] else {
          out.append(
            Difference(text: "dst lacks column \(name) \(col.type), which src has", breaks: true))
          continue
        }
        if col.type != other.type {
          out.append(
            Difference(
              text: "column \(name) is \(col.type) on src but \(other.type) on dst", breaks: true))
        }
        if !col.notNull && other.notNull {
          out.append(
            Difference(
              text:
                "column \(name) is NOT NULL on dst but not on src (a NULL from src cannot be applied)",
              breaks: true))
        } else if col.notNull && !other.notNull {
          out.append(
            Difference(text: "column \(name) is NOT NULL on src but not on dst", breaks: false))
        }
        if col.generated != other.generated {
          func g(_ e: String?) -> String { e.map { "generated as \($0)" } ?? "not generated" }
          out.append(
            Difference(
              text: "column \(name) is \(g(col.generated)) on src but \(g(other.generated)) on dst",
              breaks: false))
        }
      }
      for col in d where !sNames.contains(col.name) {
        let name = "\(shown(t)).\(col.name)"
        if col.notNull && !col.hasDefault && col.generated == nil {
          out.append(
            Difference(
              text:
                "dst has column \(name) \(col.display) without a default, which src lacks (src's rows cannot be applied)",
              breaks: true))
        } else {
          out.append(
            Difference(text: "dst has column \(name) \(col.type), which src lacks", breaks: false))
        }
      }
    }
    let se = try enums(sroot, schema: schema, tables: both)
    let de = try enums(droot, schema: schema, tables: both)
    for (type, labels) in se.sorted(by: { $0.key < $1.key }) {
      guard let other = de[type] else {
        out.append(Difference(text: "dst lacks enum type \(type), which src has", breaks: true))
        continue
      }
      let lacking = labels.filter { !other.contains($0) }
      if !lacking.isEmpty {
        out.append(
          Difference(
            text:
              "dst's enum \(type) lacks label(s) \(lacking.map { "'\($0)'" }.joined(separator: ", ")), which src has",
            breaks: true))
      }
      let extra = other.filter { !labels.contains($0) }
      if !extra.isEmpty {
        out.append(
          Difference(
            text:
              "dst's enum \(type) has label(s) \(extra.map { "'\($0)'" }.joined(separator: ", ")), which src lacks",
            breaks: false))
      } else if lacking.isEmpty && labels != other {
        out.append(
          Difference(
            text: "enum \(type) orders its labels differently on src and dst", breaks: false))
      }
    }
    return out
  }

  /// The differences for a pair, through its context's root connections.
  static func differences(_ ctx: PairContext) throws -> [Difference] {
    let engine = try ctx.engine
    let sroot = try ctx.connect(.src, .root)
    let droot = try ctx.connect(.dst, .root)
    let targets = try ReplicationSupport.targetTables(ctx, sroot)
    return try differences(
      src: sroot, dst: droot, engine: engine, schema: ctx.schema, targets: targets)
  }

  /// One line for a list of differences: the first that breaks replication (else the first),
  /// and how many more.
  static func summary(_ diffs: [Difference]) -> String? {
    guard let first = diffs.first(where: \.breaks) ?? diffs.first else { return nil }
    return "schema drift: " + first.text
      + (diffs.count > 1 ? " (and \(diffs.count - 1) more difference(s))" : "")
  }
}
