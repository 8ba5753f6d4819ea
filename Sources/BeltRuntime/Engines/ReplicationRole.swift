import Foundation

/// The replication role (the config's `pglogical_user`), whichever engine uses it: created with a
/// password hashed by the client, its privileges, and its removal when no database of the server
/// uses it any more. Roles are server-wide: every change runs under the server's lock.
enum ReplicationRole {
  /// Holding the server's lock (``ServerWide``), creates or updates the replication role with a
  /// hashed password, makes it a superuser when the engine needs one (or grants rds_superuser and
  /// rds_replication on RDS), else gives it REPLICATION, and grants it what it needs on `tables`
  /// and the schema's sequences. The grants are made under the same lock as the role: a teardown of
  /// another database on this server decides whether to drop the role by what is granted to it,
  /// so it must not see the role between its creation and its grants.
  /// - Returns: what was done, for the record.
  static func ensure(
    _ ctx: any EngineContext, _ side: Side, root: PGConnection, owner: PGConnection,
    role pgl: Credentials,
    ownerName: String, schema: String, tables: [String], superuser: Bool
  ) throws -> [String] {
    var notes: [String] = []
    let role = PGConnection.quoteIdent(pgl.name)
    let hash = try root.encryptPassword(pgl.password, user: pgl.name)
    let lit = try root.literal(hash)
    try ctx.serverWide(side, "replication role \(pgl.name)") { _ in
      let existed =
        try root.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [pgl.name]).values.count == 1
      if existed {
        try root.execSecret("ALTER ROLE \(role) WITH LOGIN PASSWORD \(lit)")
      } else {
        try root.execSecret("CREATE ROLE \(role) WITH LOGIN PASSWORD \(lit)")
        notes.append("created role \(pgl.name)")
      }
      let rds =
        try root.query("SELECT 1 FROM pg_roles WHERE rolname = 'rdsadmin'").values.count == 1
      if rds {
        for granted in superuser ? ["rds_superuser", "rds_replication"] : ["rds_replication"] {
          let member =
            try root.query(
              "SELECT pg_has_role($1, $2, 'MEMBER')", [pgl.name, granted]
            ).scalar == "t"
          if !member { try root.exec("GRANT \(PGConnection.quoteIdent(granted)) TO \(role)") }
        }
      } else if superuser {
        let sup =
          try root.query("SELECT rolsuper FROM pg_roles WHERE rolname = $1", [pgl.name]).scalar
          == "t"
        if !sup { try root.exec("ALTER ROLE \(role) WITH SUPERUSER") }
      } else {
        let repl =
          try root.query("SELECT rolreplication FROM pg_roles WHERE rolname = $1", [pgl.name])
          .scalar == "t"
        if !repl { try root.exec("ALTER ROLE \(role) WITH REPLICATION") }
      }
      try root.exec("GRANT USAGE ON SCHEMA \(PGConnection.quoteIdent(schema)) TO \(role)")
      if !tables.isEmpty {
        let list = tables.map { PGConnection.qualified(schema, $0) }.joined(separator: ", ")
        try owner.exec("GRANT ALL ON TABLE \(list) TO \(role)")
      }
      try owner.exec(
        "GRANT ALL ON ALL SEQUENCES IN SCHEMA \(PGConnection.quoteIdent(schema)) TO \(role)")
    }
    return notes
  }

  /// Revokes the role's privileges here and drops it unless other databases still use it: the
  /// decision and the DROP ROLE happen under the server's lock (``ServerWide``), so two
  /// databases' teardowns never both decide the role is unused and drop it at once.
  ///
  /// Returns a note (nil when there was nothing to do).
  static func drop(
    _ ctx: any EngineContext, _ side: Side, _ root: PGConnection, name: String, schema: String,
    protected: [String], extraSchemas: [String]
  ) throws -> String? {
    if protected.contains(name) {
      return "kept role \(name): it is also the root or owner user in the config"
    }
    return try ctx.serverWide(side, "dropping role \(name)") { _ -> String? in
      guard try root.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [name]).values.count == 1
      else { return nil }
      let role = PGConnection.quoteIdent(name)
      let s = PGConnection.quoteIdent(schema)
      if try Catalog.schemaExists(root, schema) {
        try root.exec("REVOKE ALL ON ALL TABLES IN SCHEMA \(s) FROM \(role)")
        try root.exec("REVOKE ALL ON ALL SEQUENCES IN SCHEMA \(s) FROM \(role)")
        try root.exec("REVOKE ALL ON SCHEMA \(s) FROM \(role)")
      }
      for extra in extraSchemas where try Catalog.schemaExists(root, extra) {
        try root.exec("REVOKE ALL ON SCHEMA \(PGConnection.quoteIdent(extra)) FROM \(role)")
      }
      let elsewhere = try root.query(
        """
        SELECT DISTINCT datname FROM pg_stat_activity
         WHERE usename = $1 AND datname IS NOT NULL AND datname <> current_database() ORDER BY 1
        """, [name]
      ).rows.map { $0.string("datname") }
      if !elsewhere.isEmpty {
        return
          "kept role \(name): still connected to database(s) \(elsewhere.joined(separator: ", "))"
      }
      do {
        try root.exec("DROP ROLE IF EXISTS \(role)")
        return "dropped role \(name)"
      } catch let e as PGError where e.sqlState == "2BP01" || e.sqlState == "55006" {
        // Privileges or objects in other databases (pg_shdepend), or in use: another migration
        // uses it.
        let why = (e.detail ?? e.message).split(separator: "\n").prefix(3).joined(separator: "; ")
        return "kept role \(name): still used elsewhere (\(why))"
      }
    }
  }
}
