import Foundation

/// The inspection commands: src-dsn, dst-dsn, check-pkeys, check-connectivity, connections,
/// precheck.
public enum InspectionOps {
  /// All specs of this family.
  public static let all: [OperationSpec] = [
    dsn(.src), dsn(.dst), checkPkeys, checkConnectivity, connections, precheck,
    terminateConnections,
  ]

  /// The check-connectivity table, then one line per failed check with its reason.
  static func renderConnectivity(_ recs: [Value]) -> String {
    let columns = checkConnectivity.columns
    let rows = recs.map { r in columns.map { r[$0.1]?.display ?? "" } }
    let bad = recs.map { r in columns.map { r[$0.1] == .bool(false) } }
    var out = Render.table(columns.map(\.0), rows, bad: bad)
    for r in recs {
      guard case .object(let reasons) = r["reasons"] else { continue }
      for (key, why) in reasons {
        out += Render.red("\(r["db"]?.display ?? ""): \(key): \(why.display)") + "\n"
      }
    }
    return out
  }

  /// `-e/--exclude-user` and `-p/--exclude-pattern`: the login and session commands take them.
  static let excludeOptions = [
    OptionSpec(
      "exclude_users", .strings,
      "Additional usernames to exclude (can be repeated). Always excludes rdsadmin and postgres.",
      cli: CLISpelling("exclude-user", short: "e")),
    OptionSpec(
      "exclude_patterns", .strings,
      "LIKE patterns to exclude usernames (e.g. '%%repuser%%'). Can be repeated.",
      cli: CLISpelling("exclude-pattern", short: "p")),
  ]

  /// rollback.lua's `reverse = true`: src and dst swap roles.
  static let reverseOption = OptionSpec(
    "reverse", .bool,
    "Swap src and dst: work on the destination as if it were the source (rollback.lua).", cli: nil)

  /// Ends application sessions on src (the cutover's last resort after draining).
  static let terminateConnections = OperationSpec(
    name: "terminate_connections",
    summary: "Terminate application sessions on the source database.",
    details: """
      Ends every client session on the source database except the root, postgres, rdsadmin and pglogical users and the excluded users/patterns (config exclude_users/exclude_patterns plus -e/-p). Used by cutover.lua after revoke-logins when sessions do not drain.
      """,
    sides: .srcOnly, options: excludeOptions + [reverseOption],
    columns: [("database", "db"), ("terminated", "terminated"), ("users", "users")]
  ) { ctx in
    let server = try ctx.config.server(.src)
    let users =
      ["rdsadmin", "postgres", server.root.name, server.replication.name] + ctx.config.excludeUsers
      + ctx.options.strings("exclude_users")
    let patterns = ctx.config.excludePatterns + ctx.options.strings("exclude_patterns")
    let r = try ctx.connect(.src, .root).query(
      """
      SELECT usename, pg_terminate_backend(pid) AS done FROM pg_stat_activity
       WHERE backend_type = 'client backend' AND usename IS NOT NULL AND pid <> pg_backend_pid()
         AND datname = current_database()
         AND usename <> ALL($1::text[]) AND NOT (usename LIKE ANY($2::text[]))
      """, [PGArray.literal(users), PGArray.literal(patterns)])
    let done = r.rows.filter { $0.bool("done") }
    return [
      "terminated": .int(done.count),
      "users": .from(Array(Set(done.map { $0.string("usename") })).sorted()),
    ]
  }

  static func dsn(_ side: Side) -> OperationSpec {
    OperationSpec(
      name: "\(side.rawValue)_dsn",
      summary:
        "Print a dsn to stdout that you can use to connect to the \(side == .src ? "source" : "destination") db.",
      details: """
        psql "$(belt \(side.rawValue)-dsn scribble prod-use1-pg-1)"

        Pass --owner to log in as the owner or --pglogical to log in as pglogical.
        """,
      sides: side == .src ? .srcOnly : .dstOnly,
      options: [
        OptionSpec("owner", .bool, "Use the owner credentials", cli: .inverted),
        OptionSpec("pglogical", .bool, "Use the pglogical credentials.", cli: .inverted),
      ],
      allowsAllDBs: false,
      render: { recs in recs.compactMap { $0["dsn"]?.stringValue }.map { $0 + "\n" }.joined() }
    ) { ctx in
      let server = try ctx.config.server(side)
      let role: Role =
        ctx.options.bool("owner") ? .owner : ctx.options.bool("pglogical") ? .replication : .root
      let c = server.credentials(role)
      // The user asked for the DSN: this is the one place a password is printed.
      var pairs: [(String, String)] = []
      if ServerConfig.isNumericAddress(server.ip) {
        pairs.append(("hostaddr", server.ip))
      } else {
        pairs.append(("host", server.ip))
      }
      pairs += [
        ("port", String(server.port)), ("dbname", server.dbname), ("user", c.name),
        ("password", c.password),
      ]
      return ["dsn": .string(ConnInfo.build(pairs)), "role": .string(role.rawValue)]
    }
  }

  static let checkPkeys = OperationSpec(
    name: "check_pkeys", summary: "Print out lists of tables with and without primary keys",
    sides: .srcOnly, allowsAllDBs: false,
    render: { recs in
      recs.map { r in
        "Analyzed table pkeys for \(r["db"]?.display ?? "") in \(r["dc"]?.display ?? ""):\n"
          + "    has pkey: \(r["has_pkey"]?.display ?? "")\n    no pkey: \(r["no_pkey"]?.display ?? "")\n"
      }.joined()
    }
  ) { ctx in
    let tables = try Catalog.tables(ctx.connect(.src, .root), schema: ctx.schema)
    return [
      "schema_name": .string(ctx.schema),
      "has_pkey": .from(tables.filter(\.hasPK).map(\.name)),
      "no_pkey": .from(tables.filter { !$0.hasPK }.map(\.name)),
    ]
  }

  /// Opens a TCP connection with a timeout.
  static func tcpCheck(host: String, port: Int, timeout: Double) -> (Bool, String?) {
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var res: UnsafeMutablePointer<addrinfo>? = nil
    guard getaddrinfo(host, String(port), &hints, &res) == 0, let first = res else {
      return (false, "cannot resolve \(host)")
    }
    defer { freeaddrinfo(res) }
    let fd = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
    guard fd >= 0 else { return (false, "socket failed") }
    defer { close(fd) }
    let flags = fcntl(fd, F_GETFL, 0)
    _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    let r = connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen)
    if r == 0 { return (true, nil) }
    guard errno == EINPROGRESS else { return (false, String(cString: strerror(errno))) }
    var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
    let n = poll(&pfd, 1, Int32(timeout * 1000))
    if n == 0 { return (false, "timed out after \(Int(timeout)) s") }
    var err: Int32 = 0
    var len = socklen_t(MemoryLayout<Int32>.size)
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
    return err == 0 ? (true, nil) : (false, String(cString: strerror(err)))
  }

  static let checkConnectivity = OperationSpec(
    name: "check_connectivity",
    summary:
      "Returns exit code 0 if belt can connect to all databases in a datacenter (if db is not specified), or to both src and dst of a database.",
    details: """
      This is done by checking network access to the database ports and logging in as the root and owner users.

      If any connection times out, the command will exit 1. It will test ALL connections before returning exit code 1 or 0, and output which connections passed/failed.
      """,
    sides: .both,
    columns: [
      ("database", "db"), ("src tcp ok", "src_tcp"), ("src query ok", "src_query"),
      ("src owner ok", "src_owner_query"), ("dst tcp ok", "dst_tcp"), ("dst query ok", "dst_query"),
      ("dst owner ok", "dst_owner_query"),
    ],
    render: renderConnectivity
  ) { ctx in
    var fields: [(String, Value)] = []
    var failed: [String] = []
    var reasons: [(String, Value)] = []
    for side in Side.allCases {
      let s = try ctx.config.server(side)
      let (tcp, why) = tcpCheck(
        host: s.ip, port: s.port, timeout: Double(min(ctx.env.connectTimeout, 5)))
      fields.append(("\(side.rawValue)_tcp", .bool(tcp)))
      if let why { reasons.append(("\(side.rawValue)_tcp", .string(why))) }
      // A server that never answered the root login (a connect timeout) is not asked again as
      // the owner: that would wait out the timeout twice.
      var silent: String? = nil
      for (role, key) in [(Role.root, "query"), (Role.owner, "owner_query")] {
        var ok = false
        if let silent {
          reasons.append(("\(side.rawValue)_\(key)", .string("not tried: \(silent)")))
        } else if tcp {
          do {
            let c = try ctx.connect(side, role)
            ok = try c.query("SELECT 1").scalar == "1"
          } catch {
            let e = BeltError.wrap(error)
            reasons.append(("\(side.rawValue)_\(key)", .string(e.message)))
            if (error as? PGError)?.serverUnreachable == true { silent = e.message }
          }
        }
        fields.append(("\(side.rawValue)_\(key)", .bool(ok)))
      }
    }
    for (k, v) in fields where v == .bool(false) { failed.append(k) }
    fields.append(("failed_checks", .from(failed)))
    fields.append(("reasons", .object(reasons)))
    fields.append(("ok", .bool(failed.isEmpty)))
    return .object(fields)
  }

  static let connections = OperationSpec(
    name: "connections",
    summary: "Print out a table showing active database connections for each database pair.",
    details: """
      Displays the connection count and list of connected usernames for both source and destination databases.

      Always excludes 'rdsadmin' and 'postgres' users from the count. Use --exclude-user to exclude additional specific usernames. Use --exclude-pattern to exclude usernames matching LIKE patterns (e.g. '%%repuser%%').
      """,
    sides: .both, options: excludeOptions,
    columns: [
      ("database", "db"), ("src_count", "src_count"), ("src_users", "src_users"),
      ("dst_count", "dst_count"), ("dst_users", "dst_users"),
    ]
  ) { ctx in
    let users =
      ["rdsadmin", "postgres"] + ctx.config.excludeUsers + ctx.options.strings("exclude_users")
    let patterns = ctx.config.excludePatterns + ctx.options.strings("exclude_patterns")
    var fields: [(String, Value)] = []
    for side in Side.allCases {
      let r = try ctx.connect(side, .root).query(
        """
        SELECT usename, count(*) AS n FROM pg_stat_activity
         WHERE backend_type = 'client backend' AND usename IS NOT NULL AND pid <> pg_backend_pid()
           AND datname = current_database()
           AND usename <> ALL($1::text[]) AND NOT (usename LIKE ANY($2::text[]))
         GROUP BY usename ORDER BY usename
        """, [PGArray.literal(users), PGArray.literal(patterns)])
      let byUser = r.rows.map { ($0.string("usename"), Value.int($0.int("n") ?? 0)) }
      let total = byUser.reduce(0) { $0 + ($1.1.intValue ?? 0) }
      fields.append(("\(side.rawValue)_count", .int(total)))
      fields.append(
        (
          "\(side.rawValue)_users",
          byUser.isEmpty
            ? "none" : .string(byUser.map { "\($0.0): \($0.1.display)" }.joined(separator: ", "))
        ))
      fields.append(("\(side.rawValue)_by_user", .object(byUser)))
    }
    return .object(fields)
  }

  typealias Check = ServerCheck

  static func sideChecks(_ ctx: PairContext, _ side: Side) throws -> [Check] {
    let c = try ctx.connect(side, .root)
    let server = try ctx.config.server(side)
    func setting(_ name: String) throws -> String? {
      try c.query("SELECT setting FROM pg_settings WHERE name = $1", [name]).scalar
    }
    var checks: [Check] = []
    let version = try c.query("SHOW server_version").scalar ?? "?"
    let major = Int(version.split(separator: ".").first ?? "0") ?? 0
    checks.append(
      Check(
        name: "server_version", value: version, ok: major >= 10,
        why: major >= 10 ? nil : "PostgreSQL 10 or later is required"))
    let wal = try setting("wal_level") ?? "?"
    checks.append(
      Check(
        name: "wal_level", value: wal, ok: wal == "logical",
        why: wal == "logical" ? nil : "set wal_level = logical and restart"))
    for (name, min) in [
      ("max_replication_slots", 2), ("max_worker_processes", 2), ("max_wal_senders", 10),
    ] {
      let v = try setting(name) ?? "0"
      let ok = (Int(v) ?? 0) >= min
      checks.append(Check(name: name, value: v, ok: ok, why: ok ? nil : "needs at least \(min)"))
    }
    if let rds = try setting("rds.logical_replication") {
      checks.append(
        Check(
          name: "rds.logical_replication", value: rds, ok: rds == "on",
          why: rds == "on" ? nil : "set rds.logical_replication = 1"))
    }
    // What the pair's engine needs of this server (libraries, settings, its extension).
    checks += try ctx.engine.serverChecks(c, side: side)
    let roles = try c.query(
      """
      SELECT r.rolname, r.rolsuper, r.rolcanlogin, r.rolcreaterole, r.rolinherit,
             pg_has_role(r.rolname, 'rds_superuser', 'MEMBER') IS TRUE AS rds_super,
             has_schema_privilege(r.rolname, $2, 'CREATE') AS can_create
        FROM pg_roles r WHERE r.rolname = ANY($1::text[])
      """.replacingOccurrences(
        of: "pg_has_role(r.rolname, 'rds_superuser', 'MEMBER') IS TRUE",
        with:
          "EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid AND g.rolname = 'rds_superuser')"
      ),
      [
        PGArray.literal([server.root.name, server.owner.name]),
        try Catalog.schemaExists(c, ctx.schema) ? ctx.schema : "public",
      ])
    let byName = Dictionary(
      roles.rows.map { ($0.string("rolname"), $0) }, uniquingKeysWith: { a, _ in a })
    if let r = byName[server.root.name] {
      let ok = r.bool("rolcanlogin") && (r.bool("rolsuper") || r.bool("rds_super"))
      checks.append(
        Check(
          name: "root_user", value: server.root.name, ok: ok,
          why: ok ? nil : "root user must be a superuser (or rds_superuser) that can log in"))
    } else {
      checks.append(
        Check(name: "root_user", value: server.root.name, ok: false, why: "role does not exist"))
    }
    if let r = byName[server.owner.name] {
      var why: String? = r.bool("rolcanlogin") ? nil : "owner cannot log in"
      let schemaThere = try Catalog.schemaExists(c, ctx.schema)
      if side == .dst, schemaThere, !r.bool("can_create") {
        why = "owner lacks CREATE on schema \(ctx.schema)"
      }
      if side == .src, !schemaThere { why = "schema \(ctx.schema) does not exist" }
      checks.append(Check(name: "owner_user", value: server.owner.name, ok: why == nil, why: why))
    } else {
      checks.append(
        Check(
          name: "owner_user", value: server.owner.name, ok: false,
          why: "role does not exist on \(side.rawValue)"))
    }
    return checks
  }

  static let precheck = OperationSpec(
    name: "precheck",
    summary: "Report whether your source database meets the basic requirements for belt.",
    details: """
      Any red item in a row in the table indicates a requirement not satisfied by your db. This command can not check network connectivity between your source and destination!

      If a dbname is given this will also show whether the configuration of the root and owner users seems ok and a summary of whether each table and sequence in the database can be replicated.

      It also says when a root user cannot keep the pglogical user's password out of the server's log (setup then refuses unless --accept-logged-secrets is given; with it, this is a warning).
      """,
    sides: .both, options: [LoggedSecrets.option],
    render: Render.precheck
  ) { ctx in
    var fields: [(String, Value)] = [
      ("schema_name", .string(ctx.schema)), ("engine", .string(try ctx.engine.kind.rawValue)),
      ("initial_copy", .string(try SnapshotCopy.describe(ctx, try ctx.engine))),
    ]
    var ok = true
    var extensions: [String: [String]] = [:]
    for side in Side.allCases {
      let checks = try sideChecks(ctx, side)
      ok = ok && checks.allSatisfy(\.ok)
      fields.append((side.rawValue, .array(checks.map(\.v))))
      extensions[side.rawValue] = try ctx.connect(side, .root).query(
        "SELECT extname FROM pg_extension ORDER BY 1"
      ).values.compactMap { $0[0] }
    }
    // Which engines each server can run, and why not: the pair's engine is the config's.
    fields.append(("engines", try ReplicationSupport.engineSupport(ctx)))
    // Whether back replication may run beside forward on these servers (native: both 16+).
    let caps = try ctx.engine.capabilities(
      src: ctx.connect(.src, .root), dst: ctx.connect(.dst, .root))
    fields.append(("both_directions_at_once", .bool(caps.bothDirectionsAtOnce)))
    fields.append(("both_directions_why_not", .from(caps.bothDirectionsWhyNot)))
    let srcExt = Set(extensions["src"] ?? []).subtracting(["pglogical", "dblink"])
    let dstExt = Set(extensions["dst"] ?? [])
    let missingExt = srcExt.subtracting(dstExt).sorted()
    let dstAvail = Set(
      try ctx.connect(.dst, .root).query("SELECT name FROM pg_available_extensions").values
        .compactMap { $0[0] })
    let unavailable = missingExt.filter { !dstAvail.contains($0) }
    fields.append(("extensions_missing_on_dst", .from(missingExt)))
    fields.append(("extensions_unavailable_on_dst", .from(unavailable)))
    // What the schema's objects depend on (pg_depend), each with an object needing it.
    let extPlan = try SchemaExtensions.onDst(
      ctx.connect(.dst, .root),
      try SchemaExtensions.needed(ctx.connect(.src, .root), schema: ctx.schema))
    fields.append(("extensions_needed", .array(extPlan.map(\.record))))
    let extRefusal = SchemaExtensions.unavailableMessage(extPlan, schema: ctx.schema)
    if extRefusal != nil { ok = false }
    let neededNames = Set(extPlan.map(\.ext.name))
    // Per-table strategy: how belt moves each table with the pair's engine, and why.
    let engine = try ctx.engine
    let src = try ctx.connect(.src, .root)
    let server = try ctx.config.server(.src)
    let allTables = try Catalog.tables(src, schema: ctx.schema)
    let tables = Catalog.filter(allTables, subset: ctx.config.tableSubset, schema: ctx.schema)
    var alerts: [String] = []
    var warnings: [String] = []
    var rows: [Value] = []
    for t in tables {
      let travel = engine.travel(t)
      var why = travel.why
      let method = travel.label
      if t.owner != server.owner.name {
        why = (why.map { $0 + "; " } ?? "") + "owned by \(t.owner), not \(server.owner.name)"
      }
      rows.append(
        .object([
          ("name", .string(t.name)), ("replication", .string(method)), ("owner", .string(t.owner)),
          ("generated_columns", .from(t.generatedColumns)), ("why", .from(why)),
        ]))
    }
    let foreign = tables.filter { $0.owner != server.owner.name }
    if !foreign.isEmpty {
      ok = false
      alerts.append(
        "\(foreign.count) table(s) not owned by the owner user \(server.owner.name) (\(Fmt.quoted(foreign.map { "\($0.name) (\($0.owner))" }))): "
          + "setup refuses them; change their owner or leave them out with the config's tables")
    }
    // A streamed table without a primary key is applied on dst by looking each changed row up:
    // without any index on the table, by a scan of the whole table per row.
    let scanned = try src.query(
      """
      SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname = ANY($2::text[])
         AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid) ORDER BY 1
      """,
      [
        ctx.schema,
        PGArray.literal(
          tables.filter { !$0.hasPK && engine.travel($0).how == .streamed }.map(\.name)),
      ]
    ).rows.map { $0.string("relname") }
    if !scanned.isEmpty {
      warnings.append(
        "table(s) \(Fmt.quoted(scanned)) have no primary key and no index: dst applies each UPDATE or DELETE of them "
          + "by a scan of the whole table (1,000 updates of a 200k-row table: 17 s instead of 0.4 s); "
          + "add an index on them (CREATE INDEX on src is dumped to dst) before the migration")
    }
    let unlogged = tables.filter { $0.persistence == "u" }.map(\.name)
    if !unlogged.isEmpty {
      warnings.append(
        "unlogged table(s) \(Fmt.quoted(unlogged)): not replicated, copied during cutover by sync-tables"
      )
    }
    let nothing = tables.filter { $0.hasPK && $0.replicaIdentity == "n" }.map(\.name)
    if !nothing.isEmpty {
      warnings.append(
        "table(s) \(Fmt.quoted(nothing)) have REPLICA IDENTITY NOTHING: not replicated, copied during cutover by sync-tables"
      )
    }
    let generated = tables.filter(\.hasGenerated).map(\.name)
    if !generated.isEmpty {
      warnings.append(
        "table(s) with a stored generated column (\(Fmt.quoted(generated))): never copied by \(engine.kind.rawValue); see each table's strategy"
      )
    }
    // The pg_dump that dump-schema and diff-schemas will run: new enough for both servers.
    do {
      let tools = try SchemaOps.dumpTool(ctx)
      fields.append(
        ("pg_dump", .object([("path", .string(tools.path)), ("major", .int(tools.major))])))
    } catch let e as BeltError where e.code == .preconditionFailed {
      ok = false
      fields.append(("pg_dump", .null))
      alerts.append(e.message)
    }
    let largeObjects =
      Int(try src.query("SELECT count(*) FROM pg_largeobject_metadata").scalar ?? "0") ?? 0
    fields.append(("large_objects", .int(largeObjects)))
    if largeObjects > 0 {
      let strategy =
        "\(largeObjects) large object(s): copied by belt before the window (migrate.lua runs sync-large-objects), delta in the window (sync)"
      fields.append(("large_objects_strategy", .string(strategy)))
    }
    let matviews = try src.query(
      """
      SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relkind = 'm' ORDER BY 1
      """, [ctx.schema]
    ).rows.map { $0.string("relname") }
    fields.append(("materialized_views", .from(matviews)))
    if !matviews.isEmpty {
      warnings.append(
        "materialized view(s) \(Fmt.quoted(matviews)): created WITH NO DATA on dst (not replicated); "
          + "cutover.lua refreshes them on dst after the switch, outside the window (refresh_matviews=false turns it off; "
          + "belt refresh-matviews \(ctx.dc) \(ctx.db) does it by hand)")
    }
    if let extRefusal { alerts.append(extRefusal) }
    let unneeded = unavailable.filter { !neededNames.contains($0) }
    if !unneeded.isEmpty {
      warnings.append(
        "extension(s) \(unneeded.joined(separator: ", ")) installed on src are not available on dst; no object of schema \(ctx.schema) depends on them"
      )
    }
    for line in try LoggedSecrets.exposures(ctx, Side.allCases) {
      if ctx.options.bool("accept_logged_secrets") {
        warnings.append(line)
      } else {
        ok = false; alerts.append(line)
      }
    }
    if let left = try engine.leftovers(onSource: src) {
      ok = false
      alerts.append(left)
    }
    // What the whole dc needs of each server this pair uses.
    let budget = try ServerBudget.checks(ctx)
    fields.append(("server_budget", .array(budget.map(\.v))))
    for b in budget where !b.ok {
      ok = false
      alerts.append(b.why ?? b.name)
    }
    let seqs = try Catalog.sequences(src, schema: ctx.schema)
    let wantedSeqs = ctx.config.sequenceSubset.map(Set.init)
    // A configured name that matches nothing (a typo, other capitals, quotes) would be left out
    // of the migration without a word: names are exact and unquoted.
    let unknownTables = (ctx.config.tableSubset ?? []).filter { name in
      !allTables.contains { $0.name == Catalog.bareName(name, schema: ctx.schema) }
    }
    let unknownSeqs = (ctx.config.sequenceSubset ?? []).filter { name in
      !seqs.contains { $0.name == Catalog.bareName(name, schema: ctx.schema) }
    }
    for (what, names) in [("tables", unknownTables), ("sequences", unknownSeqs)]
    where !names.isEmpty {
      ok = false
      alerts.append(
        "the config's \(what) name(s) \(Fmt.quoted(names)) not found in schema \(ctx.schema) on src "
          + "(names are exact, case-sensitive and unquoted); fix them in \(ctx.config.path)")
    }
    let seqRows: [Value] = seqs.filter { wantedSeqs?.contains($0.name) ?? true }.map {
      .object([
        ("name", .string($0.name)), ("replication", "sync_sequences"), ("owner", .string($0.owner)),
        (
          "why",
          $0.owner == server.owner.name
            ? .null : .string("owned by \($0.owner), not \(server.owner.name)")
        ),
      ])
    }
    fields.append(("tables", .array(rows)))
    fields.append(("sequences", .array(seqRows)))
    if tables.isEmpty {
      // A database of the dc that has no tables yet is worth a word, not a failed dc.
      warnings.append(
        "no tables found to replicate in schema \(ctx.schema); check the config's schema_name and tables"
      )
    }
    fields.append(("alerts", .from(alerts)))
    fields.append(("warnings", .from(warnings)))
    if !alerts.isEmpty {
      fields.append(("alert", .string(alerts.joined(separator: "; "))))
      fields.append(("message", .string(alerts.joined(separator: "; "))))
    }
    if !warnings.isEmpty { fields.append(("warning", .string(warnings.joined(separator: "; ")))) }
    fields.append(("ok", .bool(ok)))
    return .object(fields)
  }
}
