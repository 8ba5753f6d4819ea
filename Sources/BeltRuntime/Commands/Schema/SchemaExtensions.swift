import Foundation

/// An extension the migrated schema needs, with the objects that need it (from pg_depend).
public struct NeededExtension: Equatable, Sendable {
  /// The extension's name.
  public var name: String
  /// Schema its objects live in on src.
  public var schema: String
  /// Up to a few of the schema's objects that depend on one of its objects, as
  /// `pg_identify_object` names them (`text search configuration app.mb_simple`; its `schema` is quoted), or why it is
  /// needed otherwise (`installed in schema app`, `required by extension earthdistance`).
  public var neededBy: [String]
  /// How many dependencies of the schema's objects lead to it.
  public var uses: Int

  /// The reference stored in extensions.json.
  public var ref: ExtensionRef { ExtensionRef(name: name, schema: schema) }
}

/// Which extensions a schema needs, found from the catalog's dependencies (pg_depend) of every
/// object kind, not from a list of kinds: a text search configuration mapping an extension's
/// dictionary, a domain over an extension's type, a column default calling its function, a view,
/// an index's operator class, a collation, a cast.
public enum SchemaExtensions {
  /// Extensions src's objects in `schema` depend on, those installed in `schema` itself (pg_dump
  /// -n never dumps their CREATE EXTENSION), those the dump named, and the extensions those
  /// require, recursively. plpgsql and pglogical are left out (built in / set up by replication).
  ///
  /// A dependency counts when an object of the schema (or a sub-object such as a column default,
  /// a trigger, a rule, whose owner is in the schema) depends, normally or automatically, on an
  /// object that is a member of the extension. Dependencies that pg_depend does not record (a
  /// function called inside a PL/pgSQL body) cannot be found this way.
  /// - Parameters:
  ///   - c: a connection to src (any role may read pg_depend).
  ///   - schema: the migrated schema.
  ///   - fromDump: extension names a full dump mentioned (kept even without a dependency).
  /// - Returns: the extensions, sorted by name.
  /// - Throws: `PGError` when a query fails.
  public static func needed(_ c: PGConnection, schema: String, fromDump: [String] = []) throws
    -> [NeededExtension]
  {
    let r = try c.query(
      """
      WITH members AS (
        SELECT d.refobjid AS extoid, d.classid, d.objid FROM pg_catalog.pg_depend d
         WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e'),
      users AS (
        SELECT m.extoid, d.classid, d.objid, d.objsubid
          FROM pg_catalog.pg_depend d JOIN members m ON m.classid = d.refclassid AND m.objid = d.refobjid
         WHERE d.deptype IN ('n', 'a')
           AND NOT EXISTS (SELECT 1 FROM members m2 WHERE m2.classid = d.classid AND m2.objid = d.objid)),
      placed AS (
        SELECT u.extoid, o.type || ' ' || o.identity AS what,
               coalesce(o.schema,
                        (SELECT po.schema FROM pg_catalog.pg_depend pd,
                                LATERAL pg_catalog.pg_identify_object(pd.refclassid, pd.refobjid, 0) po
                          WHERE pd.classid = u.classid AND pd.objid = u.objid AND pd.deptype IN ('a', 'i')
                            AND po.schema IS NOT NULL
                            AND NOT EXISTS (SELECT 1 FROM members m3 WHERE m3.classid = pd.refclassid AND m3.objid = pd.refobjid)
                          LIMIT 1)) AS nsp
          FROM users u, LATERAL pg_catalog.pg_identify_object(u.classid, u.objid, u.objsubid) o),
      used AS (
        SELECT extoid, array_to_json((array_agg(DISTINCT what))[1:3]) AS what, count(*) AS n
          FROM placed WHERE nsp = pg_catalog.quote_ident($1) GROUP BY extoid)
      SELECT e.extname, n.nspname, coalesce(u.what, '[]') AS needed_by, coalesce(u.n, 0) AS uses,
             array_to_json(coalesce((SELECT array_agg(r.extname ORDER BY r.extname) FROM pg_catalog.pg_depend d
                                       JOIN pg_catalog.pg_extension r ON r.oid = d.refobjid
                                      WHERE d.classid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.objid = e.oid
                                        AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass), '{}')) AS requires
        FROM pg_catalog.pg_extension e
        JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
        LEFT JOIN used u ON u.extoid = e.oid
       ORDER BY e.extname COLLATE "C"
      """, [schema])
    struct Row {
      var ext: NeededExtension
      var requires: [String]
    }
    var all: [String: Row] = [:]
    var order: [String] = []
    for row in r.rows {
      let name = row.string("extname")
      var why = row.array("needed_by")
      let nsp = row.string("nspname")
      if nsp == schema { why.insert("installed in schema \(schema)", at: 0) }
      if fromDump.contains(name) && why.isEmpty { why.append("named by the dump") }
      all[name] = Row(
        ext: NeededExtension(name: name, schema: nsp, neededBy: why, uses: row.int("uses") ?? 0),
        requires: row.array("requires"))
      order.append(name)
    }
    let skip: Set<String> = ["plpgsql", "pglogical"]
    var wanted = Set(
      order.filter { !skip.contains($0) && !(all[$0]?.ext.neededBy.isEmpty ?? true) })
    // What the needed ones require (CREATE EXTENSION ... CASCADE creates them; precheck and
    // setup must know dst can).
    var queue = Array(wanted)
    while let next = queue.popLast() {
      for req in all[next]?.requires ?? [] where !skip.contains(req) && !wanted.contains(req) {
        wanted.insert(req)
        all[req]?.ext.neededBy.append("required by extension \(next)")
        queue.append(req)
      }
    }
    return order.filter(wanted.contains).compactMap { all[$0]?.ext }
  }

  /// One needed extension as dst sees it.
  public struct OnDst: Sendable {
    /// The extension and why it is needed.
    public var ext: NeededExtension
    /// Installed in dst's database already.
    public var installed: Bool
    /// Offered by dst's server (pg_available_extensions), so CREATE EXTENSION can install it.
    public var available: Bool

    /// The precheck record: `name`, `schema`, `needed_by`, `installed_on_dst`, `available_on_dst`.
    public var record: Value {
      .object([
        ("name", .string(ext.name)), ("schema", .string(ext.schema)),
        ("needed_by", .from(ext.neededBy)),
        ("installed_on_dst", .bool(installed)), ("available_on_dst", .bool(available || installed)),
      ])
    }
  }

  /// Whether dst has each of `needed` installed or available.
  /// - Parameters:
  ///   - dst: a connection to dst's database.
  ///   - needed: what src's schema needs.
  /// - Returns: one entry per needed extension, in the same order.
  /// - Throws: `PGError` when a query fails.
  public static func onDst(_ dst: PGConnection, _ needed: [NeededExtension]) throws -> [OnDst] {
    if needed.isEmpty { return [] }
    let names = PGArray.literal(needed.map(\.name))
    let installed = Set(
      try dst.query(
        "SELECT extname FROM pg_catalog.pg_extension WHERE extname = ANY($1::text[])", [names]
      ).values.compactMap { $0[0] })
    let available = Set(
      try dst.query(
        "SELECT name FROM pg_catalog.pg_available_extensions WHERE name = ANY($1::text[])", [names]
      ).values.compactMap { $0[0] })
    return needed.map {
      OnDst(ext: $0, installed: installed.contains($0.name), available: available.contains($0.name))
    }
  }

  /// The one-line refusal for extensions dst cannot install, or nil when there are none.
  /// - Parameters:
  ///   - plan: ``onDst(_:_:)``'s answer.
  ///   - schema: the migrated schema (for the message).
  /// - Returns: the sentence, naming each extension and an object that needs it.
  public static func unavailableMessage(_ plan: [OnDst], schema: String) -> String? {
    let missing = plan.filter { !$0.installed && !$0.available }
    guard !missing.isEmpty else { return nil }
    let list = missing.map { m in
      "extension \(m.ext.name) (needed by \(m.ext.neededBy.first ?? "schema \(schema)"))"
    }.joined(separator: ", ")
    return
      "schema \(schema) needs \(list), not available on dst: install the package on the destination server first; nothing was changed"
  }

  /// Refuses, before anything changes, when src's schema needs an extension dst cannot install.
  /// setup calls it before its first change when it is about to load the schema.
  /// - Parameters:
  ///   - ctx: the pair.
  ///   - src: a connection to src.
  ///   - dst: a connection to dst.
  /// - Throws: `BeltError.preconditionFailed` naming the extensions; `PGError` when a query fails.
  public static func refuseUnavailable(_ ctx: PairContext, src: PGConnection, dst: PGConnection)
    throws
  {
    let plan = try onDst(dst, try needed(src, schema: ctx.schema))
    if let msg = unavailableMessage(plan, schema: ctx.schema) { throw ctx.refuse(msg) }
  }
}
