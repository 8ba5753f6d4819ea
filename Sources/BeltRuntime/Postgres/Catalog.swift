import Foundation

/// A table in the migrated schema.
public struct TableInfo: Sendable, Equatable {
  /// Bare name (unquoted).
  public var name: String
  /// Primary key columns in key order (empty = no primary key).
  public var pkColumns: [String]
  /// `r` table, `p` partitioned parent.
  public var kind: String
  public var owner: String
  /// True for a partition of a partitioned table.
  public var isPartition: Bool
  /// Stored generated columns (`GENERATED ALWAYS AS (...) STORED`), in column order.
  public var generatedColumns: [String] = []
  /// `p` permanent, `u` unlogged.
  public var persistence: String = "p"
  /// `d` default, `n` nothing, `f` full, `i` index.
  public var replicaIdentity: String = "d"
  public var hasPK: Bool { !pkColumns.isEmpty }
  /// Whether it has a stored generated column.
  public var hasGenerated: Bool { !generatedColumns.isEmpty }
}

/// Catalog queries shared by the operations (pg_catalog, not information_schema, so results do
/// not depend on the connecting role's privileges).
public enum Catalog {
  /// Base tables (ordinary and partitioned) of `schema`, with their primary keys, sorted by name.
  public static func tables(_ c: PGConnection, schema: String) throws -> [TableInfo] {
    let r = try c.query(
      """
      SELECT c.relname, c.relkind::text AS kind, pg_get_userbyid(c.relowner) AS owner, c.relispartition,
             array_to_json(coalesce((SELECT array_agg(a.attname ORDER BY k.ord)
                        FROM pg_constraint p
                        CROSS JOIN LATERAL unnest(p.conkey) WITH ORDINALITY AS k(attnum, ord)
                        JOIN pg_attribute a ON a.attrelid = p.conrelid AND a.attnum = k.attnum
                       WHERE p.conrelid = c.oid AND p.contype = 'p'), '{}')) AS pk,
             array_to_json(coalesce((SELECT array_agg(a.attname ORDER BY a.attnum) FROM pg_attribute a
                        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                          AND a.attgenerated <> ''), '{}')) AS generated,
             c.relpersistence::text AS persistence, c.relreplident::text AS replident
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
       ORDER BY c.relname COLLATE "C"
      """, [schema])
    return r.rows.map {
      TableInfo(
        name: $0.string("relname"), pkColumns: $0.array("pk"), kind: $0.string("kind"),
        owner: $0.string("owner"), isPartition: $0.bool("relispartition"),
        generatedColumns: $0.array("generated"), persistence: $0.string("persistence"),
        replicaIdentity: $0.string("replident"))
    }
  }

  /// Sequences of `schema`: name and owner, sorted.
  public static func sequences(_ c: PGConnection, schema: String) throws -> [(
    name: String, owner: String
  )] {
    let r = try c.query(
      """
      SELECT c.relname, pg_get_userbyid(c.relowner) AS owner
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relkind = 'S' ORDER BY c.relname COLLATE "C"
      """, [schema])
    return r.rows.map { ($0.string("relname"), $0.string("owner")) }
  }

  public static func schemaExists(_ c: PGConnection, _ schema: String) throws -> Bool {
    try c.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [schema]).values.count == 1
  }

  /// `names` (tables of `schema`) and every partitioned table they are, directly or not, a
  /// partition of.
  public static func withAncestors(_ c: PGConnection, schema: String, names: [String]) throws
    -> Set<String>
  {
    if names.isEmpty { return [] }
    let r = try c.query(
      """
      WITH RECURSIVE up(oid) AS (
        SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relname = ANY($2::text[])
        UNION SELECT i.inhparent FROM pg_inherits i JOIN up ON i.inhrelid = up.oid)
      SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.oid IN (SELECT oid FROM up) AND n.nspname = $1
      """, [schema, PGArray.literal(names)])
    return Set(r.rows.map { $0.string("relname") })
  }

  /// Applies the config's table subset (bare names; schema-qualified names accepted).
  public static func filter(_ tables: [TableInfo], subset: [String]?, schema: String) -> [TableInfo]
  {
    guard let subset else { return tables }
    let wanted = Set(subset.map { bareName($0, schema: schema) })
    return tables.filter { wanted.contains($0.name) }
  }

  /// `schema.name` or `"schema"."name"` → `name` when the schema matches.
  public static func bareName(_ s: String, schema: String) -> String {
    for prefix in [schema + ".", PGConnection.quoteIdent(schema) + "."] where s.hasPrefix(prefix) {
      return PGConnection.unquoteIdent(String(s.dropFirst(prefix.count)))
    }
    return s
  }
}

/// Array values to bind. Arrays are read as JSON (`array_to_json`, ``PGRow/array(_:)``).
public enum PGArray {
  /// A text[] literal for binding: `{"a","b\"c"}`.
  public static func literal(_ items: [String]) -> String {
    "{"
      + items.map {
        "\""
          + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(
            of: "\"", with: "\\\"") + "\""
      }.joined(separator: ",") + "}"
  }
}

/// One column of a table, as the catalog describes it.
struct ColumnInfo: Sendable, Equatable {
  /// Bare column name.
  var name: String
  /// `format_type` text, usable in a cast (`character varying(255)`).
  var type: String
  /// A generated column (never written by COPY).
  var generated: Bool
  /// The type's OID (below 16384 for built-in types).
  var typeOid: Int = 0
  var quoted: String { PGConnection.quoteIdent(name) }
}

extension Catalog {
  /// The columns of `schema.table` in attnum order; empty when the table does not exist.
  static func columns(_ c: PGConnection, schema: String, table: String) throws -> [ColumnInfo] {
    let r = try c.query(
      """
      SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attgenerated <> '' AS generated,
             a.atttypid::int AS typeoid
        FROM pg_attribute a
        JOIN pg_class cl ON cl.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = cl.relnamespace
       WHERE n.nspname = $1 AND cl.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY a.attnum
      """, [schema, table])
    return r.rows.map {
      ColumnInfo(
        name: $0.string("attname"), type: $0.string("type"), generated: $0.bool("generated"),
        typeOid: $0.int("typeoid") ?? 0)
    }
  }
}
