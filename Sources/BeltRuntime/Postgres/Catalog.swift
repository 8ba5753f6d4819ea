import Foundation

/// A table in the migrated schema.
public struct TableInfo: Sendable, Equatable {
  /// Bare name (unquoted).
  public var name: String
  /// Primary key columns in key order (empty = no primary key).
  public var pkColumns: [String]
  /// `r` table, `p` partitioned parent.
  public var kind: String
  /// Owning role.
  public var owner: String
  /// True for a partition of a partitioned table.
  public var isPartition: Bool
  /// Whether it has a primary key.
  public var hasPK: Bool { !pkColumns.isEmpty }
}

/// Catalog queries shared by the operations (pg_catalog, not information_schema, so results do
/// not depend on the connecting role's privileges).
public enum Catalog {
  /// Base tables (ordinary and partitioned) of `schema`, with their primary keys, sorted by name.
  public static func tables(_ c: PGConnection, schema: String) throws -> [TableInfo] {
    let r = try c.query(
      """
      SELECT c.relname, c.relkind::text AS kind, pg_get_userbyid(c.relowner) AS owner, c.relispartition,
             coalesce((SELECT array_agg(a.attname ORDER BY k.ord)
                        FROM pg_constraint p
                        CROSS JOIN LATERAL unnest(p.conkey) WITH ORDINALITY AS k(attnum, ord)
                        JOIN pg_attribute a ON a.attrelid = p.conrelid AND a.attnum = k.attnum
                       WHERE p.conrelid = c.oid AND p.contype = 'p'), '{}') AS pk
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
       ORDER BY c.relname COLLATE "C"
      """, [schema])
    return r.rows.map {
      TableInfo(
        name: $0.string("relname"), pkColumns: $0.array("pk"), kind: $0.string("kind"),
        owner: $0.string("owner"), isPartition: $0.bool("relispartition"))
    }
  }

  /// Sequences of `schema`: name and owner, sorted.
  public static func sequences(_ c: PGConnection, schema: String) throws -> [(name: String, owner: String)] {
    let r = try c.query(
      """
      SELECT c.relname, pg_get_userbyid(c.relowner) AS owner
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relkind = 'S' ORDER BY c.relname COLLATE "C"
      """, [schema])
    return r.rows.map { ($0.string("relname"), $0.string("owner")) }
  }

  /// Whether a schema exists.
  public static func schemaExists(_ c: PGConnection, _ schema: String) throws -> Bool {
    try c.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [schema]).values.count == 1
  }

  /// Applies the config's table subset (bare names; schema-qualified names accepted).
  public static func filter(_ tables: [TableInfo], subset: [String]?, schema: String) -> [TableInfo] {
    guard let subset else { return tables }
    let wanted = Set(subset.map { bareName($0, schema: schema) })
    return tables.filter { wanted.contains($0.name) }
  }

  /// `schema.name` or `"schema"."name"` → `name` when the schema matches.
  public static func bareName(_ s: String, schema: String) -> String {
    for prefix in [schema + ".", PGConnection.quoteIdent(schema) + "."] where s.hasPrefix(prefix) {
      let rest = String(s.dropFirst(prefix.count))
      if rest.hasPrefix("\""), rest.hasSuffix("\""), rest.count >= 2 {
        return String(rest.dropFirst().dropLast()).replacingOccurrences(of: "\"\"", with: "\"")
      }
      return rest
    }
    return s
  }
}

extension PGArray {
  /// A text[] literal for binding: `{"a","b\"c"}`.
  public static func literal(_ items: [String]) -> String {
    "{" + items.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }.joined(separator: ",") + "}"
  }
}
