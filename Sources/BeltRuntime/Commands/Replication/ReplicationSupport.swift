import Foundation

/// What the replication commands share: the pair's target tables, emptiness and size checks,
/// the engine the pair's config asks for.
enum ReplicationSupport {
  /// Refuses when the replication role would be the root or owner user (belt makes it a
  /// superuser and drops it at teardown).
  static func checkReplicationRole(_ ctx: PairContext, _ server: ServerConfig, _ side: Side) throws
  {
    let name = server.replication.name
    if name.isEmpty {
      throw BeltError(
        .configInvalid, "\(ctx.config.path): \(side.rawValue).pglogical_user.name is empty",
        dc: ctx.dc, db: ctx.db)
    }
    if name == server.root.name || name == server.owner.name {
      throw ctx.refuse(
        "\(side.rawValue).pglogical_user \"\(name)\" is also the root or owner user; belt makes the pglogical user a "
          + "superuser and drops it at teardown, so it must be a role of its own")
    }
  }

  /// Leaf tables (ordinary tables and partitions, not partitioned parents) of the schema on one
  /// side, filtered by the config's subset.
  static func targetTables(_ ctx: PairContext, _ c: PGConnection) throws -> [TableInfo] {
    Catalog.filter(
      try Catalog.tables(c, schema: ctx.schema), subset: ctx.config.tableSubset, schema: ctx.schema)
  }

  /// The tables of `names` that hold at least one row.
  static func nonEmpty(_ c: PGConnection, schema: String, _ names: [String]) throws -> [String] {
    var out: [String] = []
    var i = 0
    while i < names.count {
      let chunk = Array(names[i..<min(i + 200, names.count)])
      let probes = chunk.map { "EXISTS (SELECT 1 FROM \(PGConnection.qualified(schema, $0)))" }
        .joined(separator: ", ")
      let flags = try JSONParser.parse(
        try c.query("SELECT array_to_json(ARRAY[\(probes)])").scalar ?? "[]")
      for (n, f) in zip(chunk, flags.arrayValue ?? []) where f == true { out.append(n) }
      i += 200
    }
    return out
  }

  /// Refuses when any of `names` (tables of dst that the initial copy fills) holds rows.
  static func refuseFilled(
    _ ctx: PairContext, _ droot: PGConnection, schema: String, _ names: [String]
  ) throws {
    let filled = try nonEmpty(droot, schema: schema, names)
    guard filled.isEmpty else {
      throw ctx.refuse(
        "dst table(s) \(Fmt.quoted(filled)) already hold rows; the initial copy needs them empty "
          + "(run reset first, or empty them)")
    }
  }

  /// Total size of the named tables (those that exist).
  static func tablesSize(_ c: PGConnection, schema: String, _ names: [String]) throws -> Int {
    let r = try c.query(
      """
      SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname = ANY($2::text[])
      """, [schema, PGArray.literal(names)])
    return Int(r.scalar ?? "0") ?? 0
  }
}

extension ReplicationSupport {
  /// For each side, which engines its server can run and why not (precheck's `engines`).
  static func engineSupport(_ ctx: PairContext) throws -> Value {
    var out: [(String, Value)] = []
    for side in Side.allCases {
      let c = try ctx.connect(side, .root)
      var per: [(String, Value)] = []
      for engine in Engines.all {
        let failed = try engine.serverChecks(c, side: side).filter { !$0.ok }
        per.append(
          (
            engine.kind.rawValue,
            .object([
              ("ok", .bool(failed.isEmpty)),
              (
                "why",
                failed.isEmpty
                  ? .null
                  : .string(
                    failed.map { "\($0.name): \($0.why ?? $0.value)" }.joined(separator: "; "))
              ),
            ])
          ))
      }
      out.append((side.rawValue, .object(per)))
    }
    return .object(out)
  }

  /// Refuses, before anything changes, a pair whose engine a server cannot run, naming what is
  /// missing and which engine the servers could run instead.
  static func requireEngine(_ ctx: PairContext) throws {
    let engine = try ctx.engine
    var missing: [String] = []
    for side in Side.allCases {
      let failed = try engine.serverChecks(ctx.connect(side, .root), side: side).filter { !$0.ok }
      missing += failed.map { "\(side.rawValue) \($0.name) (\($0.why ?? $0.value))" }
    }
    guard !missing.isEmpty else { return }
    let others = try Engines.all.filter { $0.kind != engine.kind }.filter { other in
      try Side.allCases.allSatisfy {
        try other.serverChecks(ctx.connect($0, .root), side: $0).allSatisfy(\.ok)
      }
    }.map { "\"\($0.kind.rawValue)\"" }
    throw ctx.refuse(
      "engine \"\(engine.kind.rawValue)\" cannot run on these servers: \(missing.joined(separator: "; "))"
        + (others.isEmpty
          ? ""
          : "; both servers can run engine \(others.joined(separator: " or ")) (\"engine\" in \(ctx.config.path))")
    )
  }
}

extension PairContext: EngineContext {
  func remember(_ key: String, _ value: Value) throws {
    try env.store.setTopLevel(key, value, file: config.path)
  }

  /// The pair's replication engine (its config's `"engine"`).
  var engine: any ReplicationEngine {
    get throws { try Engines.of(config) }
  }
}
