import Foundation

/// revoke-logins and restore-logins: stop and restart application logins on src.
///
/// The roles that could log in are saved in the pair's config file under `revoked_logins`
/// (sorted, unioned with what is already there) *before* anything is revoked, so a second
/// revoke never shrinks the list and restore grants LOGIN back to exactly those roles, never
/// to a group role that never had it (pgbelt's stateless restore does, §8.6). The list is
/// kept after a restore: it is the record of what belt revoked, and restore is idempotent.
enum Logins {
  /// The config key holding the saved login roles (`revoked_logins_dst` for a reversed run,
  /// where "src" is the destination server: rollback.lua stops writes on dst that way).
  static func savedKey(_ ctx: PairContext) -> String { ctx.reversed ? "revoked_logins_dst" : "revoked_logins" }
  /// Never revoked (pgbelt's skip set, plus the configured root and pglogical users).
  static let alwaysSkipped = ["postgres", "pglogical", "datadog", "monitoring"]

  /// Exact names and LIKE patterns that are never touched.
  static func exclusions(_ ctx: PairContext) throws -> (users: [String], patterns: [String]) {
    let src = try ctx.config.server(.src)
    let users = alwaysSkipped + [src.root.name, src.pglogical.name] + ctx.config.excludeUsers
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

  /// Runs `body` in a transaction, retrying when a concurrent ALTER ROLE on the same role
  /// (another database of the same cluster) makes it fail.
  static func withRetry<T>(_ c: PGConnection, _ body: () throws -> T) throws -> T {
    var attempt = 0
    while true {
      do {
        return try c.transaction(body)
      } catch let e as PGError where e.message.contains("tuple concurrently updated") && attempt < 5 {
        attempt += 1
        usleep(UInt32(50_000 * attempt))
      }
    }
  }

  /// Identifies a server for ``LoginRegistry``.
  static func clusterKey(_ s: ServerConfig) -> String { "\(s.ip):\(s.port)" }

  /// revoke-logins.
  static func revoke(_ ctx: PairContext) throws -> Value {
    let src = try ctx.config.server(.src)
    if src.owner.name == src.root.name {
      throw ctx.refuse(
        "the owner user \"\(src.owner.name)\" is the root user: revoking its login would lock belt out of the source, "
          + "and keeping it would let the application go on writing; use a separate owner role for the application")
    }
    let (users, patterns) = try exclusions(ctx)
    let c = try ctx.connect(.src, .root)
    let file = ctx.config.path
    var revoked: [String] = []
    var savedList = saved(ctx.config.raw, savedKey(ctx))
    var configSaved = false
    try LoginRegistry.shared.withCluster(clusterKey(src)) { byThisProcess in
      try withRetry(c) {
        let r = try c.query(
          """
          SELECT rolname FROM pg_catalog.pg_roles
           WHERE rolcanlogin AND NOT \(excludedSQL("rolname"))
           ORDER BY rolname COLLATE "C"
          """, [PGArray.literal(users), PGArray.literal(patterns)])
        let roles = r.values.compactMap { $0[0] }
        // Roles are cluster-wide: another database of this dc on the same server may just have
        // revoked them; they belong in this config's list too.
        let earlier = try c.query(
          "SELECT rolname FROM pg_catalog.pg_roles WHERE NOT rolcanlogin AND rolname = ANY($3::text[]) AND NOT \(excludedSQL("rolname"))",
          [PGArray.literal(users), PGArray.literal(patterns), PGArray.literal(Array(byThisProcess))]
        ).values.compactMap { $0[0] }
        // Save before revoking, re-reading the file so nothing written meanwhile is lost.
        let onDisk = try ctx.env.store.load(dc: ctx.dc, db: ctx.db)
        let union = Array(Set(saved(onDisk.raw, savedKey(ctx))).union(roles).union(earlier)).sorted()
        if union != saved(onDisk.raw, savedKey(ctx)) || onDisk.raw[savedKey(ctx)] == nil {
          try ConfigEdit.setTopLevel(savedKey(ctx), .from(union), file: file, store: ctx.env.store)
          configSaved = true
        }
        savedList = union
        for role in roles {
          try c.exec("ALTER ROLE \(PGConnection.quoteIdent(role)) WITH NOLOGIN")
        }
        revoked = roles
      }
      byThisProcess.formUnion(revoked)
    }
    let sessions = try c.query(
      "SELECT count(*) FROM pg_stat_activity WHERE usename = ANY($1::text[])", [PGArray.literal(revoked)]
    ).scalar.flatMap { Int($0) } ?? 0
    var message = revoked.isEmpty ? "No roles to revoke." : "revoked LOGIN from \(revoked.count) role(s): \(Fmt.names(revoked))"
    if sessions > 0 {
      message += "; \(sessions) session(s) of these roles are still connected (not terminated; see `belt connections`)"
      ctx.logger.warning("\(sessions) session(s) of revoked roles are still connected to src; they are not terminated")
    }
    ctx.logger.info("\(message)")
    return .object([
      ("revoked", .from(revoked)), ("saved_logins", .from(savedList)), ("config_saved", .bool(configSaved)),
      ("config_file", .string(file)), ("active_sessions", .int(sessions)), ("message", .string(message)),
    ])
  }

  /// restore-logins.
  static func restore(_ ctx: PairContext) throws -> Value {
    let list = saved(try ctx.env.store.load(dc: ctx.dc, db: ctx.db).raw, savedKey(ctx))
    if list.isEmpty {
      let message = "No roles to restore: \(ctx.config.path) has no saved \(savedKey(ctx)) (run revoke-logins first)."
      ctx.logger.warning("\(message)")
      return .object([
        ("restored", .array([])), ("already_login", .array([])), ("missing", .array([])), ("excluded", .array([])),
        ("message", .string(message)),
      ])
    }
    let (users, patterns) = try exclusions(ctx)
    let c = try ctx.connect(.src, .root)
    var restored: [String] = []
    var already: [String] = []
    var missing: [String] = []
    var excluded: [String] = []
    try withRetry(c) {
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
        if !row.bool("present") { missing.append(name) }
        else if row.bool("excluded") { excluded.append(name) }
        else if row.bool("login") { already.append(name) }
        else { restored.append(name) }
      }
      for role in restored {
        try c.exec("ALTER ROLE \(PGConnection.quoteIdent(role)) WITH LOGIN")
      }
    }
    let server = try ctx.config.server(.src)
    LoginRegistry.shared.withCluster(clusterKey(server)) { $0.subtract(restored + already) }
    if !missing.isEmpty {
      ctx.logger.warning("saved roles that no longer exist on src were skipped: \(Fmt.names(missing))")
    }
    var parts: [String] = [restored.isEmpty ? "No roles to restore." : "restored LOGIN to \(restored.count) role(s): \(Fmt.names(restored))"]
    if !already.isEmpty { parts.append("\(already.count) already could log in") }
    if !missing.isEmpty { parts.append("\(missing.count) no longer exist: \(Fmt.names(missing))") }
    if !excluded.isEmpty { parts.append("\(excluded.count) excluded: \(Fmt.names(excluded))") }
    let message = parts.joined(separator: "; ")
    ctx.logger.info("\(message)")
    return .object([
      ("restored", .from(restored)), ("already_login", .from(already)), ("missing", .from(missing)),
      ("excluded", .from(excluded)), ("message", .string(message)),
    ])
  }
}

/// The roles this process has revoked, per server, and a lock per server.
///
/// Roles belong to the server, not to one database: when `revoke-logins` runs for every
/// database of a dc, the databases sharing a server are handled one after the other, and each
/// config records every role belt revoked on that server, so restoring any of them (or all)
/// gives the logins back.
final class LoginRegistry: @unchecked Sendable {
  /// The process-wide registry.
  static let shared = LoginRegistry()
  private let lock = NSLock()
  private var locks: [String: NSLock] = [:]
  private var revoked: [String: Set<String>] = [:]

  /// Runs `body` holding the server's lock, with the set of roles revoked on it.
  func withCluster<T>(_ key: String, _ body: (inout Set<String>) throws -> T) rethrows -> T {
    lock.lock()
    let l = locks[key] ?? NSLock()
    locks[key] = l
    lock.unlock()
    l.lock()
    defer { l.unlock() }
    lock.lock()
    var set = revoked[key] ?? []
    lock.unlock()
    defer {
      lock.lock()
      revoked[key] = set
      lock.unlock()
    }
    return try body(&set)
  }
}
