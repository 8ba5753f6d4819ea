import Foundation

/// revoke-logins and restore-logins: stop and restart application logins on src.
///
/// The roles that could log in are saved in the pair's config file under `revoked_logins`
/// (sorted, unioned with what is already there) *before* anything is revoked, so a second
/// revoke never shrinks the list and restore grants LOGIN back to exactly those roles, never
/// to a group role that never had it (pgbelt's stateless restore does, §8.6). The list is
/// kept after a restore: it is the record of what belt revoked, and restore is idempotent.
///
/// Roles and their LOGIN belong to the server, not to the database (design.md §9). Before the
/// NOLOGIN fence, revoke-logins finds the roles that other databases of the server (outside
/// this cutover) also use, names them and refuses unless told (`lock_out_shared`); the CONNECT
/// fence (`fence = connect`) stops only this database. Which fence was used is recorded beside
/// `revoked_logins` (`login_fence`), so restore-logins undoes exactly that. Every change runs
/// under the server's lock (``ServerWide``).
enum Logins {
  /// The config key holding the saved login roles (`revoked_logins_dst` for a reversed run,
  /// where "src" is the destination server: rollback.lua stops writes on dst that way).
  static func savedKey(_ ctx: PairContext) -> String {
    ctx.reversed ? "revoked_logins_dst" : "revoked_logins"
  }
  /// Never revoked (pgbelt's skip set, plus the configured root and pglogical users).
  static let alwaysSkipped = ["postgres", "pglogical", "datadog", "monitoring"]

  /// Exact names and LIKE patterns that are never touched.
  static func exclusions(_ ctx: PairContext) throws -> (users: [String], patterns: [String]) {
    let src = try ctx.config.server(.src)
    let users =
      alwaysSkipped + [src.root.name, src.replication.name] + ctx.config.excludeUsers
      + ctx.options.strings("exclude_users")
    let patterns = ctx.config.excludePatterns + ctx.options.strings("exclude_patterns")
    return (Array(Set(users)).sorted(), patterns)
  }

  /// The list saved in the config (empty when absent).
  static func saved(_ raw: Value, _ key: String) -> [String] {
    raw[key]?.arrayValue?.compactMap(\.stringValue) ?? []
  }

  /// The SQL condition that keeps a role name in `col` out of reach ($1 names, $2 patterns).
  /// Superusers and replication roles are never revoked: they are administrators or the
  /// replication users of this and other migrations on the same server.
  /// LIKE is matched by the server, so it is exactly PostgreSQL's (case-sensitive) LIKE.
  static func excludedSQL(_ col: String) -> String {
    """
    (\(col) = ANY($1::text[]) OR \(col) LIKE ANY($2::text[]) OR \(col) LIKE 'pg\\_%' OR \(col) LIKE 'rds%' OR \(col) = current_user
     OR \(col) IN (SELECT x.rolname FROM pg_catalog.pg_roles x WHERE x.rolsuper OR x.rolreplication))
    """
  }

  /// The config key recording a database-level CONNECT fence (`login_fence_dst` reversed).
  static func fenceKey(_ ctx: PairContext) -> String {
    ctx.reversed ? "login_fence_dst" : "login_fence"
  }

  /// How revoke-logins stops the application.
  enum Fence: String {
    /// pgbelt's: ALTER ROLE ... NOLOGIN for every login role (server-wide).
    case nologin
    /// REVOKE CONNECT ON DATABASE from PUBLIC and the roles, then terminate their sessions:
    /// only this database is fenced.
    case connect
    /// nologin when no role is shared with a database outside the cutover, else connect.
    case auto
  }

  /// The database names, on the same server as this pair's src, of the pairs this run covers
  /// (the cutover): a role they share is not "shared with a database outside the cutover".
  static func cutoverDatabases(_ ctx: PairContext, _ src: ServerConfig) -> [String] {
    var out = [src.dbname]
    for db in ctx.runDBs where db != ctx.db {
      guard let loaded = try? ctx.env.store.load(dc: ctx.dc, db: db) else { continue }
      let cfg = ctx.reversed ? loaded.reversed() : loaded
      guard let s = try? cfg.server(.src), ServerWide.key(s) == ServerWide.key(src) else {
        continue
      }
      out.append(s.dbname)
    }
    return Array(Set(out)).sorted()
  }

  /// The database names, on the same server as this pair's src, of the dc's other pairs whose
  /// NOLOGIN fence is still up: their cutover holds the server's roles revoked.
  static func fencedDatabases(_ ctx: PairContext, _ src: ServerConfig) throws -> Set<String> {
    var out: Set<String> = []
    for db in try ctx.env.store.dbs(dc: ctx.dc) where db != ctx.db {
      guard let loaded = try? ctx.env.store.load(dc: ctx.dc, db: db) else { continue }
      let cfg = ctx.reversed ? loaded.reversed() : loaded
      guard let s = try? cfg.server(.src), ServerWide.key(s) == ServerWide.key(src),
        loaded.raw[fenceKey(ctx)] == nologinRecord(restored: false),
        !saved(loaded.raw, savedKey(ctx)).isEmpty
      else { continue }
      out.insert(s.dbname)
    }
    return out
  }

  /// One way a role is used by another database of the server.
  struct SharedUse {
    var role: String
    var database: String
    var why: String
  }

  /// Where `roles` are used in connectable databases of the server other than `besides`:
  /// connected there now, owning the database, holding CONNECT on it (directly or through a
  /// role they are members of; PUBLIC's default CONNECT does not count), or owning, holding
  /// privileges on or being named in policies of objects there (pg_shdepend, which covers
  /// every database of the server from any one of them).
  static func sharedUse(_ c: PGConnection, roles: [String], besides: [String]) throws -> [SharedUse]
  {
    if roles.isEmpty { return [] }
    let r = try c.query(
      """
      WITH RECURSIVE r AS (SELECT oid, rolname FROM pg_catalog.pg_roles WHERE rolname = ANY($1::text[])),
      m(login, via) AS (
        SELECT oid, oid FROM r
        UNION SELECT m.login, am.roleid FROM m JOIN pg_catalog.pg_auth_members am ON am.member = m.via),
      d AS (
        SELECT oid, datname, datdba, datacl FROM pg_catalog.pg_database
         WHERE datallowconn AND NOT datistemplate AND datname <> ALL($2::text[])),
      uses(login, dat, why) AS (
        SELECT a.usesysid, a.datid, 'connected now' FROM pg_catalog.pg_stat_activity a
         WHERE a.usesysid IN (SELECT oid FROM r)
        UNION ALL
        SELECT m.login, d.oid, 'owns the database' FROM d JOIN m ON m.via = d.datdba
        UNION ALL
        SELECT m.login, d.oid, 'has CONNECT'
          FROM d CROSS JOIN LATERAL aclexplode(d.datacl) x JOIN m ON m.via = x.grantee
         WHERE x.privilege_type = 'CONNECT'
        UNION ALL
        SELECT m.login, s.dbid,
               CASE s.deptype WHEN 'o' THEN 'owns objects' WHEN 'a' THEN 'has privileges on objects'
                              ELSE 'is named in policies' END
          FROM pg_catalog.pg_shdepend s JOIN m ON m.via = s.refobjid
         WHERE s.refclassid = 'pg_catalog.pg_authid'::regclass AND s.deptype IN ('o', 'a', 'r'))
      SELECT r.rolname, d.datname, string_agg(DISTINCT u.why, ', ') AS why
        FROM uses u JOIN r ON r.oid = u.login JOIN d ON d.oid = u.dat
       GROUP BY 1, 2 ORDER BY r.rolname COLLATE "C", d.datname COLLATE "C"
      """, [PGArray.literal(roles), PGArray.literal(besides)])
    return r.rows.map {
      SharedUse(role: $0.string("rolname"), database: $0.string("datname"), why: $0.string("why"))
    }
  }

  /// "role (database: why; database: why), ..." for messages.
  static func describe(_ uses: [SharedUse], limit: Int = 10) -> String {
    var order: [String] = []
    var by: [String: [String]] = [:]
    for u in uses {
      if by[u.role] == nil { order.append(u.role) }
      by[u.role, default: []].append("\(Value.jsonQuote(u.database)): \(u.why)")
    }
    let shown = order.prefix(limit).map {
      "\(Value.jsonQuote($0)) (\(by[$0]?.joined(separator: "; ") ?? ""))"
    }
    return shown.joined(separator: ", ")
      + (order.count > limit ? " and \(order.count - limit) more role(s)" : "")
  }

  /// The recorded CONNECT fence, when one is recorded and not restored yet.
  struct ConnectFence {
    var database: String
    var revokedFrom: [String]
    var grantedTo: [String]
    var roles: [String]

    init(database: String, revokedFrom: [String], grantedTo: [String], roles: [String]) {
      self.database = database
      self.revokedFrom = revokedFrom
      self.grantedTo = grantedTo
      self.roles = roles
    }

    init?(_ v: Value?) {
      guard let v, v["kind"]?.stringValue == Fence.connect.rawValue,
        v["restored"]?.boolValue != true,
        let db = v["database"]?.stringValue
      else { return nil }
      func list(_ k: String) -> [String] { v[k]?.arrayValue?.compactMap(\.stringValue) ?? [] }
      self.init(
        database: db, revokedFrom: list("revoked_connect"), grantedTo: list("granted_connect"),
        roles: list("roles"))
    }

    func value(restored: Bool) -> Value {
      .object([
        ("kind", .string(Fence.connect.rawValue)), ("database", .string(database)),
        ("revoked_connect", .from(revokedFrom)), ("granted_connect", .from(grantedTo)),
        ("roles", .from(roles)),
        ("restored", .bool(restored)),
      ])
    }
  }

  /// revoke-logins.
  static func revoke(_ ctx: PairContext) throws -> Value {
    let src = try ctx.config.server(.src)
    if src.owner.name == src.root.name {
      throw ctx.refuse(
        "the owner user \"\(src.owner.name)\" is the root user: revoking its login would lock belt out of the source, "
          + "and keeping it would let the application go on writing; use a separate owner role for the application"
      )
    }
    // The revoke_logins spec checks the value.
    let fence = ctx.options.string("fence").flatMap(Fence.init(rawValue:)) ?? .nologin
    let lockOutShared = ctx.options.bool("lock_out_shared")
    let (users, patterns) = try exclusions(ctx)
    let c = try ctx.connect(.src, .root)
    let besides = cutoverDatabases(ctx, src)
    return try ctx.serverWide(.src, "revoke-logins") { memory -> Value in
      let roles = try c.query(
        """
        SELECT rolname FROM pg_catalog.pg_roles
         WHERE rolcanlogin AND NOT \(excludedSQL("rolname"))
         ORDER BY rolname COLLATE "C"
        """, [PGArray.literal(users), PGArray.literal(patterns)]
      ).values.compactMap { $0[0] }
      let shared = fence == .connect ? [] : try sharedUse(c, roles: roles, besides: besides)
      // A CONNECT fence that is up stays the fence: overwriting its record would lose what
      // restore-logins has to undo.
      let up =
        ConnectFence(try ctx.env.store.load(dc: ctx.dc, db: ctx.db).raw[fenceKey(ctx)]) != nil
      let kind: Fence = fence == .auto ? (shared.isEmpty && !up ? .nologin : .connect) : fence
      if kind == .nologin && up {
        throw ctx.refuse(
          "\(Value.jsonQuote(src.dbname)) is fenced with the CONNECT fence (\(fenceKey(ctx)) in \(ctx.config.path)); "
            + "run restore-logins first, or revoke with fence=connect")
      }
      if kind == .connect {
        return try connectFence(ctx, c, users: users, patterns: patterns, chosen: fence)
      }
      if !shared.isEmpty && !lockOutShared {
        let dbs = Array(Set(shared.map(\.database))).sorted()
        throw ctx.refuse(
          "revoking LOGIN on \(ctx.reversed ? "dst" : "src") would also lock \(Set(shared.map(\.role)).count) role(s) out of "
            + "\(dbs.count) database(s) of the same server that are not part of this \(ctx.reversed ? "rollback" : "cutover"): "
            + "\(describe(shared)); "
            + "use fence=connect (--fence connect) to fence only \(Value.jsonQuote(src.dbname)), "
            + "or lock_out_shared=true (--lock-out-shared) to revoke LOGIN anyway")
      }
      var result = try nologinFence(
        ctx, c, roles: roles, users: users, patterns: patterns, memory: &memory)
      if !shared.isEmpty {
        let warning =
          "LOGIN revoked although these roles are also used outside this cutover: \(describe(shared))"
        ctx.logger.warning("\(warning)")
        result = result.setting("warning", .string(warning))
      }
      return
        result
        .setting(
          "shared_roles",
          .array(
            shared.map {
              .object([
                ("role", .string($0.role)), ("database", .string($0.database)),
                ("why", .string($0.why)),
              ])
            }))
    }
  }

  /// The record of the NOLOGIN fence (its roles are the saved `revoked_logins`).
  static func nologinRecord(restored: Bool) -> Value {
    .object([("kind", .string(Fence.nologin.rawValue)), ("restored", .bool(restored))])
  }

  /// pgbelt's fence: NOLOGIN for `roles`, saved in the config first (runs under the server lock).
  static func nologinFence(
    _ ctx: PairContext, _ c: PGConnection, roles: [String], users: [String], patterns: [String],
    memory: inout ServerWide.Memory
  ) throws -> Value {
    let file = ctx.config.path
    var configSaved = false
    // Roles are server-wide: another database of this dc on the same server may just have
    // revoked them; they belong in this config's list too.
    let earlier = try c.query(
      "SELECT rolname FROM pg_catalog.pg_roles WHERE NOT rolcanlogin AND rolname = ANY($3::text[]) AND NOT \(excludedSQL("rolname"))",
      [
        PGArray.literal(users), PGArray.literal(patterns),
        PGArray.literal(Array(memory.revokedLogins)),
      ]
    ).values.compactMap { $0[0] }
    // Save before revoking, re-reading the file so nothing written meanwhile is lost.
    let onDisk = try ctx.env.store.load(dc: ctx.dc, db: ctx.db)
    let union = Array(Set(saved(onDisk.raw, savedKey(ctx))).union(roles).union(earlier)).sorted()
    if union != saved(onDisk.raw, savedKey(ctx)) || onDisk.raw[savedKey(ctx)] == nil {
      try ctx.env.store.setTopLevel(savedKey(ctx), .from(union), file: file)
      configSaved = true
    }
    if onDisk.raw[fenceKey(ctx)] != nologinRecord(restored: false) {
      try ctx.env.store.setTopLevel(fenceKey(ctx), nologinRecord(restored: false), file: file)
      configSaved = true
    }
    try c.transaction {
      for role in roles {
        try c.exec("ALTER ROLE \(PGConnection.quoteIdent(role)) WITH NOLOGIN")
      }
    }
    memory.revokedLogins.formUnion(roles)
    // Sessions in this database of the roles revoked for it (in a dc, each database's record
    // counts its own, also of roles another database of the dc revoked just before).
    let sessions =
      try c.query(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = ANY($1::text[]) AND datname = current_database()",
        [PGArray.literal(roles + earlier)]
      ).scalar.flatMap { Int($0) } ?? 0
    var message =
      roles.isEmpty
      ? "No roles to revoke." : "revoked LOGIN from \(roles.count) role(s): \(Fmt.names(roles))"
    if sessions > 0 {
      message +=
        "; \(sessions) session(s) of these roles are still connected (not terminated; see `belt connections`)"
      ctx.logger.warning(
        "\(sessions) session(s) of revoked roles are still connected to this database on src; they are not terminated"
      )
    }
    ctx.logger.info("\(message)")
    return .object([
      ("fence", .string(Fence.nologin.rawValue)),
      ("revoked", .from(roles)), ("saved_logins", .from(union)),
      ("config_saved", .bool(configSaved)),
      ("config_file", .string(file)), ("active_sessions", .int(sessions)),
      ("message", .string(message)),
    ])
  }

  /// The per-database fence (runs under the server lock): REVOKE CONNECT ON DATABASE from
  /// PUBLIC and from the grantees through which the application's roles connect, an explicit
  /// CONNECT for the excluded login roles that had it only through those (so they keep it),
  /// all in one transaction, recorded in the config first; then the fenced roles' sessions in
  /// this database are terminated. Other databases of the server are not touched.
  static func connectFence(
    _ ctx: PairContext, _ c: PGConnection, users: [String], patterns: [String], chosen: Fence
  ) throws -> Value {
    let file = ctx.config.path
    let params = [PGArray.literal(users), PGArray.literal(patterns)]
    let db = try c.query("SELECT current_database()").scalar ?? ""
    let acl = """
      SELECT x.grantee FROM pg_catalog.pg_database d,
             aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) x
       WHERE d.datname = current_database() AND x.privilege_type = 'CONNECT'
      """
    let roles = try c.query(
      """
      SELECT rolname FROM pg_catalog.pg_roles r
       WHERE rolcanlogin AND NOT \(excludedSQL("r.rolname"))
         AND has_database_privilege(r.oid, current_database(), 'CONNECT')
       ORDER BY rolname COLLATE "C"
      """, params
    ).values.compactMap { $0[0] }
    let revokeFrom = try c.query(
      """
      WITH f AS (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = ANY($3::text[]))
      SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE g.rolname END AS name
        FROM (\(acl)) a LEFT JOIN pg_catalog.pg_roles g ON g.oid = a.grantee
       WHERE a.grantee = 0
          OR (NOT \(excludedSQL("g.rolname")) AND EXISTS (SELECT 1 FROM f WHERE pg_has_role(f.oid, a.grantee, 'MEMBER')))
       ORDER BY 1
      """, params + [PGArray.literal(roles)]
    ).values.compactMap { $0[0] }
    let grantTo = try c.query(
      """
      SELECT rolname FROM pg_catalog.pg_roles r
       WHERE rolcanlogin AND NOT rolsuper AND \(excludedSQL("r.rolname"))
         AND has_database_privilege(r.oid, current_database(), 'CONNECT')
         AND r.oid NOT IN (\(acl))
       ORDER BY rolname COLLATE "C"
      """, params
    ).values.compactMap { $0[0] }
    // Record first, unioned with a fence recorded earlier and not restored yet.
    let onDisk = try ctx.env.store.load(dc: ctx.dc, db: ctx.db)
    var record = ConnectFence(
      database: db, revokedFrom: revokeFrom, grantedTo: grantTo, roles: roles)
    if let earlier = ConnectFence(onDisk.raw[fenceKey(ctx)]), earlier.database == db {
      record.revokedFrom = Array(Set(earlier.revokedFrom).union(revokeFrom)).sorted()
      record.grantedTo = Array(Set(earlier.grantedTo).union(grantTo)).sorted()
      record.roles = Array(Set(earlier.roles).union(roles)).sorted()
    }
    var configSaved = false
    if onDisk.raw[fenceKey(ctx)] != record.value(restored: false) {
      try ctx.env.store.setTopLevel(fenceKey(ctx), record.value(restored: false), file: file)
      configSaved = true
    }
    try c.transaction {
      try setConnect(c, database: db, grant: grantTo, revoke: revokeFrom)
      let still = try c.query(
        """
        SELECT rolname FROM pg_catalog.pg_roles r
         WHERE rolname = ANY($1::text[]) AND has_database_privilege(r.oid, current_database(), 'CONNECT')
         ORDER BY 1
        """, [PGArray.literal(roles)]
      ).values.compactMap { $0[0] }
      if !still.isEmpty {
        throw ctx.refuse(
          "cannot fence database \(Value.jsonQuote(db)): \(Fmt.names(still)) keep CONNECT on it through an excluded role; "
            + "revoke that grant yourself or use the nologin fence")
      }
    }
    let terminated =
      try c.query(
        """
        SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND usename = ANY($1::text[]) AND pid <> pg_backend_pid()
        """, [PGArray.literal(roles)]
      ).scalar.flatMap { Int($0) } ?? 0
    var message =
      "fenced database \(Value.jsonQuote(db)): revoked CONNECT from \(Fmt.names(revokeFrom.isEmpty ? ["nobody"] : revokeFrom))"
    if !grantTo.isEmpty { message += "; kept CONNECT for \(grantTo.count) excluded role(s)" }
    message +=
      "; \(roles.count) role(s) fenced, \(terminated) session(s) terminated; other databases are untouched"
    if chosen == .auto {
      message += " (fence=auto: some roles are used by other databases of the server)"
    }
    ctx.logger.info("\(message)")
    return .object([
      ("fence", .string(Fence.connect.rawValue)), ("database", .string(db)),
      ("revoked", .array([])),
      ("fenced_roles", .from(roles)), ("revoked_connect", .from(revokeFrom)),
      ("granted_connect", .from(grantTo)),
      ("terminated", .int(terminated)), ("config_saved", .bool(configSaved)),
      ("config_file", .string(file)),
      ("active_sessions", .int(0)), ("message", .string(message)),
    ])
  }

  /// GRANT CONNECT ON DATABASE to `grant`, then REVOKE it from `revoke` ("PUBLIC" is the
  /// keyword, other names are quoted).
  static func setConnect(_ c: PGConnection, database: String, grant: [String], revoke: [String])
    throws
  {
    let db = PGConnection.quoteIdent(database)
    func list(_ names: [String]) -> String {
      names.map { $0 == "PUBLIC" ? "PUBLIC" : PGConnection.quoteIdent($0) }.joined(separator: ", ")
    }
    if !grant.isEmpty { try c.exec("GRANT CONNECT ON DATABASE \(db) TO \(list(grant))") }
    if !revoke.isEmpty { try c.exec("REVOKE CONNECT ON DATABASE \(db) FROM \(list(revoke))") }
  }

  /// restore-logins: undoes what is recorded: a CONNECT fence not restored yet, and LOGIN for
  /// the saved roles (idempotent, as before).
  static func restore(_ ctx: PairContext) throws -> Value {
    let raw = try ctx.env.store.load(dc: ctx.dc, db: ctx.db).raw
    let list = saved(raw, savedKey(ctx))
    let fence = ConnectFence(raw[fenceKey(ctx)])
    if list.isEmpty && fence == nil {
      let message =
        "No roles to restore: \(ctx.config.path) has no saved \(savedKey(ctx)) (run revoke-logins first)."
      ctx.logger.warning("\(message)")
      return .object([
        ("restored", .array([])), ("already_login", .array([])), ("missing", .array([])),
        ("excluded", .array([])),
        ("message", .string(message)),
      ])
    }
    let (users, patterns) = try exclusions(ctx)
    let c = try ctx.connect(.src, .root)
    var restored: [String] = []
    var already: [String] = []
    var missing: [String] = []
    var excluded: [String] = []
    var kept: [SharedUse] = []
    var parts: [String] = []
    var fields: [(String, Value)] = []
    let src = try ctx.config.server(.src)
    try ctx.serverWide(.src, "restore-logins") { memory in
      if let fence {
        let present = Set(
          try c.query(
            "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY($1::text[])",
            [PGArray.literal(fence.revokedFrom + fence.grantedTo)]
          ).values.compactMap { $0[0] })
        let grant = fence.revokedFrom.filter { $0 == "PUBLIC" || present.contains($0) }
        let revoke = fence.grantedTo.filter { present.contains($0) }
        try c.transaction {
          try setConnect(c, database: fence.database, grant: grant, revoke: revoke)
        }
        try ctx.env.store.setTopLevel(
          fenceKey(ctx), fence.value(restored: true), file: ctx.config.path)
        parts.append(
          "lifted the CONNECT fence on \(Value.jsonQuote(fence.database)): CONNECT granted back to \(Fmt.names(grant.isEmpty ? ["nobody"] : grant))"
        )
        fields += [
          ("fence", .string(Fence.connect.rawValue)), ("granted_connect", .from(grant)),
          ("revoked_connect", .from(revoke)),
        ]
      }
      if list.isEmpty { return }
      // Roles are server-wide: one that a database still fenced on this server uses (another
      // pair whose cutover went on, say) stays NOLOGIN, or its application could write to src
      // again after that database moved to dst.
      let fenced = try fencedDatabases(ctx, src)
      kept =
        fenced.isEmpty
        ? [] : try sharedUse(c, roles: list, besides: []).filter { fenced.contains($0.database) }
      let keep = Set(kept.map(\.role))
      try c.transaction {
        restored = []
        already = []
        missing = []
        excluded = []
        let r = try c.query(
          """
          SELECT u.name, r.rolname IS NOT NULL AS present, coalesce(r.rolcanlogin, false) AS login,
                 \(excludedSQL("u.name")) AS excluded
            FROM unnest($3::text[]) AS u(name) LEFT JOIN pg_catalog.pg_roles r ON r.rolname = u.name
           ORDER BY u.name COLLATE "C"
          """, [PGArray.literal(users), PGArray.literal(patterns), PGArray.literal(list)])
        for row in r.rows {
          let name = row.string("name")
          if !row.bool("present") {
            missing.append(name)
          } else if row.bool("excluded") {
            excluded.append(name)
          } else if row.bool("login") {
            already.append(name)
          } else if !keep.contains(name) {
            restored.append(name)
          }
        }
        for role in restored {
          try c.exec("ALTER ROLE \(PGConnection.quoteIdent(role)) WITH LOGIN")
        }
      }
      memory.revokedLogins.subtract(restored + already)
      if fence == nil, raw[fenceKey(ctx)] == nologinRecord(restored: false) {
        try ctx.env.store.setTopLevel(
          fenceKey(ctx), nologinRecord(restored: true), file: ctx.config.path)
      }
      parts.append(
        restored.isEmpty
          ? "No roles to restore."
          : "restored LOGIN to \(restored.count) role(s): \(Fmt.names(restored))")
    }
    if !missing.isEmpty {
      ctx.logger.warning(
        "saved roles that no longer exist on src were skipped: \(Fmt.names(missing))")
    }
    if !already.isEmpty { parts.append("\(already.count) already could log in") }
    if !missing.isEmpty { parts.append("\(missing.count) no longer exist: \(Fmt.names(missing))") }
    if !excluded.isEmpty { parts.append("\(excluded.count) excluded: \(Fmt.names(excluded))") }
    if !kept.isEmpty {
      let note =
        "kept NOLOGIN for \(Set(kept.map(\.role)).count) role(s) that databases still fenced on this server use: "
        + "\(describe(kept)) (fence=connect fences one database at a time)"
      ctx.logger.warning("\(note)")
      parts.append(note)
    }
    let message = parts.joined(separator: "; ")
    ctx.logger.info("\(message)")
    return .object(
      [
        ("restored", .from(restored)), ("already_login", .from(already)),
        ("missing", .from(missing)),
        ("excluded", .from(excluded)), ("kept", .from(Array(Set(kept.map(\.role))).sorted())),
        ("message", .string(message)),
      ] + fields)
  }
}
