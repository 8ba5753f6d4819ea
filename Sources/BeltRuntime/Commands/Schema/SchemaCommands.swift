import Foundation
import Logging

/// The schema pipeline: dump-schema, load-schema, load-constraints, remove-constraints,
/// remove-indexes, create-indexes, diff-schemas, analyze.
///
/// Files live in `schemas/<dc>/<db>/` (pgbelt's names): `schema.sql` (everything),
/// `no_invalid_constraints_no_indexes.sql` (loaded before the initial copy), `indexes.sql`
/// (created before cutover), `invalid_constraints.sql` (NOT VALID constraints, loaded after the
/// data), plus `extensions.json` (extensions the schema needs, created on dst by root).
public enum SchemaOps {
  public static let all: [OperationSpec] = [
    spec(
      "dump_schema",
      "Dumps and sanitizes the schema from the source database, then saves it to a file.",
      """
      Four files will be generated:
      1. The entire sanitized schema
      2. The schema with all NOT VALID constraints and CREATE INDEX statements removed,
      3. A file that contains only the CREATE INDEX statements
      4. A file that contains only the NOT VALID constraints
      These files will be saved in the schemas directory.
      """, .both, dumpSchema),
    spec(
      "load_schema",
      "Loads the sanitized schema from the file schemas/dc/db/no_invalid_constraints_no_indexes.sql into the destination as the owner user.",
      """
      Invalid constraints are omitted because the source database may contain data that was created before the constraint was added. Loading the constraints into the destination before the data will cause replication to fail.
      """, .dstOnly, loadSchema),
    spec(
      "load_constraints",
      "Loads the NOT VALID constraints from the file schemas/dc/db/invalid_constraints.sql into the destination as the owner user.",
      "This must only be done after all data is synchronized from the source to the destination database.",
      .dstOnly, loadConstraints),
    spec(
      "remove_constraints", "Removes NOT VALID constraints from the target database.",
      """
      This must be done before setting up replication, and should only be used if the schema in the target database was loaded outside of belt.
      """, .dstOnly, removeConstraints),
    spec(
      "remove_indexes", "Removes indexes from the target database.",
      """
      This must be done before setting up replication, and should only be used if the schema in the target database was loaded outside of belt.
      """, .dstOnly, removeIndexes),
    OperationSpec(
      name: "create_indexes",
      summary:
        "Creates indexes from the file schemas/dc/db/indexes.sql into the destination as the owner user.",
      details: """
        This must only be done after most data is synchronized (at minimum after the initializing phase) from the source to the destination database.

        Indexes are built several at once (--index-jobs); the indexes of partitioned parents first, then the others, then what attaches or comments them, in the file's order.

        After creating indexes, the destination database is analyzed so the query planner has up-to-date statistics for the indexes.

        An index left INVALID on the destination (by a concurrent build that failed) is named, dropped and built again.
        """,
      sides: .dstOnly,
      options: [
        OptionSpec(
          "concurrently", .bool,
          "Build each index with CREATE INDEX CONCURRENTLY, so the destination stays writable while indexes build (slower, one at a time; indexes of partitioned parents are built without it)."
        ),
        OptionSpec(
          "index_jobs", .int,
          "Indexes built at once, each on its own connection, the largest tables' first (default: the config's \"index_jobs\", else 4 bounded by --jobs; 1 builds one at a time).",
          minimum: 1),
      ]
    ) { ctx in
      try createIndexes(
        ctx, analyzeWhenNoneCreated: true, concurrently: ctx.options.bool("concurrently"))
    },
    OperationSpec(
      name: "diff_schemas", summary: "Compare source and destination schemas.",
      details: """
        By default, NOT VALID constraints and CREATE INDEX statements are excluded from the comparison since belt loads those in separate steps. Use --full to include them.

        DBs with a table list configured are skipped since they represent subset migrations where schemas will naturally differ.

        Objects printed differently by the destination but stored the same way (a re-printed CHECK or view) are not differences. Each real difference is named (e.g. "table public.orders"); --accept NAME (repeatable) accepts one: when every difference is accepted the command succeeds, and the acceptance is written to the audit log.
        """,
      sides: .both,
      options: [
        OptionSpec(
          "full", .bool,
          "Include NOT VALID constraints and CREATE INDEX statements in the diff. Without this flag, those are excluded since they are loaded in separate steps."
        ),
        OptionSpec(
          "accept", .strings,
          "A difference to accept, by the name diff-schemas gives it (can be repeated)."),
      ]
    ) { ctx in try diffSchemas(ctx, full: ctx.options.bool("full")) },
    spec(
      "analyze", "Run ANALYZE in the destination database.",
      "This should be run after data is completely replicated and before applications are allowed to use the new db.",
      .dstOnly, analyze),
  ]

  /// A spec without options or columns.
  static func spec(
    _ name: String, _ summary: String, _ details: String, _ sides: SidesNeeded,
    _ body: @escaping @Sendable (PairContext) throws -> Value
  ) -> OperationSpec {
    OperationSpec(name: name, summary: summary, details: details, sides: sides, body: body)
  }

  /// The pair's schema files.
  static func store(_ ctx: PairContext) -> SchemaStore {
    SchemaStore(directory: ctx.env.store.schemaDirectory(dc: ctx.dc, db: ctx.db))
  }

  /// Statements other than SET/meta (what a file "contains" for counting).
  static func count(_ s: [SQLStatement]) -> Int {
    s.filter { $0.kind != .set && $0.kind != .meta }.count
  }

  // MARK: dump-schema

  /// Dumps src's schema and writes the four files under schemas/<dc>/<db>/.
  ///
  /// The dump is made with a pg_dump able to dump both servers (``dumpTool(_:)``); SETs of
  /// settings dst does not have (a newer pg_dump's `transaction_timeout` on an older dst) are
  /// left out of the files, so that psql of dst's version loads them too.
  /// Record: `directory`, `schema_name`, `files` {schema, base, indexes, invalid_constraints},
  /// `statements`, `base_statements`, `indexes` (CREATE INDEX count), `invalid_constraints`,
  /// `extensions` (names), `fk_required_unique_indexes`, `grants_skipped`, `pg_dump`
  /// {path, major}, `dropped_settings`, `message`.
  public static func dumpSchema(_ ctx: PairContext) throws -> Value {
    let src = try ctx.config.server(.src)
    let tools = try dumpTool(ctx)
    let dump = try PGTools.dumpSchema(
      server: src, role: .root, schema: ctx.schema, side: .src, tools: tools,
      connectTimeout: ctx.env.connectTimeout,
      environment: ctx.env.toolEnvironment)
    let dumped = SchemaScript.split(dump)
    let unknown = try unknownSettings(ctx.connect(.dst, .root), SchemaScript.settingNames(dumped))
    if !unknown.isEmpty {
      ctx.logger.info(
        "leaving out SET \(unknown.joined(separator: ", ")): dst does not have the setting(s)")
    }
    let statements = SchemaScript.removingSettings(Set(unknown), from: dumped)
    let files = SchemaScript.partition(statements)
    // Every kept statement lands in exactly one of the three loadable files.
    guard
      count(files.full) == count(files.base) + count(files.indexes)
        + count(files.invalidConstraints)
    else {
      throw BeltError(
        .internal,
        "splitting the schema of \(ctx.schema) lost or duplicated a statement; no file was written",
        dc: ctx.dc,
        db: ctx.db)
    }
    let extensions = try neededExtensions(
      ctx.connect(.src, .root), schema: ctx.schema, fromDump: files.extensions)
    // The grants belt (or pgbelt) gave its own replication role are set up again by setup on
    // dst and dropped with the role: they are no business of the operator's.
    let replicationRole = src.replication.name
    let allGrants = statements.filter { $0.kind == .grantOrRevoke }
    let grants = allGrants.filter { grantee($0.text) != replicationRole }
    let st = store(ctx)
    let grantsPath = st.path(grantsFileName)
    if !grants.isEmpty {
      try SchemaStore.atomicWrite(
        grantsPath,
        "-- GRANT/REVOKE statements of schema \(ctx.schema) on src, not loaded by belt (roles differ between servers).\n"
          + "-- Review them, then apply on dst as a superuser: psql -f \(grantsFileName)\n"
          + grants.map { $0.text.trimmingCharacters(in: .whitespacesAndNewlines) }.joined(
            separator: "\n") + "\n")
      let grantees = Array(Set(grants.compactMap { grantee($0.text) })).sorted()
      ctx.logger.notice(
        "\(grants.count) GRANT/REVOKE statement(s) of schema \(ctx.schema) (to \(Fmt.quoted(grantees, limit: 5))) are not part of the schema files (roles differ between servers): written to \(grantsPath); review and apply them on dst, e.g. \(SchemaLoader.excerpt(grants[0].text))"
      )
    } else if FileManager.default.fileExists(atPath: grantsPath) {
      try? FileManager.default.removeItem(atPath: grantsPath)
    }
    if !extensions.isEmpty {
      ctx.logger.notice(
        "the schema needs extension(s) \(extensions.map(\.name).joined(separator: ", ")); load-schema creates them on dst as root"
      )
    }
    try st.write(files, extensions: extensions)
    let indexCount = files.indexes.filter {
      if case .index = $0.kind { return true } else { return false }
    }.count
    let message =
      "\(count(files.full)) statements: \(count(files.base)) in the base schema, \(indexCount) indexes deferred, "
      + "\(count(files.invalidConstraints)) NOT VALID constraints deferred"
      + (extensions.isEmpty
        ? "" : "; needs extensions \(extensions.map(\.name).joined(separator: ", "))")
    return .object([
      ("directory", .string(st.directory)),
      ("schema_name", .string(ctx.schema)),
      (
        "files",
        .object([
          ("schema", .string(st.path(SchemaFiles.fullFileName))),
          ("base", .string(st.path(SchemaFiles.baseFileName))),
          ("indexes", .string(st.path(SchemaFiles.indexesFileName))),
          ("invalid_constraints", .string(st.path(SchemaFiles.invalidConstraintsFileName))),
          ("extensions", .string(st.path(SchemaStore.extensionsFileName))),
        ])
      ),
      ("statements", .int(count(files.full))),
      ("base_statements", .int(count(files.base))),
      ("indexes", .int(indexCount)),
      ("invalid_constraints", .int(count(files.invalidConstraints))),
      ("extensions", .from(extensions.map(\.name))),
      ("fk_required_unique_indexes", .from(files.fkRequiredUniqueIndexes.map(\.description))),
      ("grants_skipped", .int(grants.count)),
      ("grants", .from(grants.map { $0.text.trimmingCharacters(in: .whitespacesAndNewlines) })),
      ("grants_file", grants.isEmpty ? .null : .string(grantsPath)),
      ("grants_to_replication_role", .int(allGrants.count - grants.count)),
      ("pg_dump", .object([("path", .string(tools.path)), ("major", .int(tools.major))])),
      ("dropped_settings", .from(unknown)),
      ("message", .string(message)),
    ])
  }

  /// The pg_dump for this pair: the newest found, when it can dump both servers (see
  /// ``PGTools/dumpTool(servers:environment:)``). Connects to both as root.
  /// - Throws: ``BeltError`` `precondition_failed` (one line: the versions found and needed)
  ///   when none is new enough.
  public static func dumpTool(_ ctx: PairContext) throws -> PGTools.ToolDirectory {
    let servers = [
      ("src", try ctx.connect(.src, .root).serverVersion),
      ("dst", try ctx.connect(.dst, .root).serverVersion),
    ]
    do {
      let tools = try PGTools.dumpTool(servers: servers, environment: ctx.env.toolEnvironment)
      ctx.logger.debug("using \(tools) for src \(servers[0].1) and dst \(servers[1].1)")
      return tools
    } catch let e as BeltError {
      throw ctx.refuse(e.message)
    }
  }

  /// The names among `names` that `conn`'s server has no setting of (a qualified `a.b` name is
  /// a custom setting every server takes).
  static func unknownSettings(_ conn: PGConnection, _ names: [String]) throws -> [String] {
    let plain = names.filter { !$0.contains(".") }
    guard !plain.isEmpty else { return [] }
    let r = try conn.query(
      "SELECT n FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS u(n, i) WHERE pg_catalog.current_setting(n, true) IS NULL ORDER BY i",
      [PGArray.literal(plain)])
    return r.rows.map { $0.string("n") }
  }

  /// The GRANT/REVOKE statements of src's schema that belt does not load, written by dump-schema.
  public static let grantsFileName = "grants.sql"

  /// The role a GRANT (`... TO role`) or REVOKE (`... FROM role`) statement names, unquoted
  /// (`PUBLIC` for the pseudo-role); nil when the text has no such clause.
  static func grantee(_ text: String) -> String? {
    let pattern =
      #"\s(?:TO|FROM)\s+("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)(?:\s+WITH GRANT OPTION)?(?:\s+GRANTED BY\s+\S+)?\s*;?\s*$"#
    guard let re = try? NSRegularExpression(pattern: pattern, options: [.caseInsensitive]),
      let m = re.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)),
      let r = Range(m.range(at: 1), in: text)
    else { return nil }
    return PGConnection.unquoteIdent(String(text[r]))
  }

  /// Extensions the schema needs (see ``SchemaExtensions/needed(_:schema:fromDump:)``).
  static func neededExtensions(_ c: PGConnection, schema: String, fromDump: [String]) throws
    -> [ExtensionRef]
  {
    try SchemaExtensions.needed(c, schema: schema, fromDump: fromDump).map(\.ref)
  }

  // MARK: load-schema / load-constraints

  /// Applies no_invalid_constraints_no_indexes.sql to dst as the owner (idempotent).
  ///
  /// Before loading, as root: creates the extensions listed by dump-schema (failing with the
  /// extension's name when dst does not offer it), and the schema itself when missing (owned by
  /// the owner). Record: `file`, `statements`, `applied`, `already_present`, `extensions`
  /// [{name, status}], `schema_created`, `skipped_settings`, `message`.
  public static func loadSchema(_ ctx: PairContext) throws -> Value {
    let st = store(ctx)
    let (file, statements) = try st.readBase()
    let extensions = try st.readExtensions()
    let dst = try ctx.config.server(.dst)
    let root = try ctx.connect(.dst, .root, noTimeout: true)
    var extensionRecords: [Value] = []
    // Every one is checked before any is created: a missing one changes nothing.
    let plan = try SchemaExtensions.onDst(
      root,
      extensions.map { NeededExtension(name: $0.name, schema: $0.schema, neededBy: [], uses: 0) })
    if let msg = SchemaExtensions.unavailableMessage(plan, schema: ctx.schema) {
      throw ctx.refuse(msg)
    }
    for ext in extensions {
      let status = try ensureExtension(ext, root: root, ctx: ctx)
      extensionRecords.append(
        .object([
          ("name", .string(ext.name)), ("schema", .string(ext.schema)), ("status", .string(status)),
        ]))
    }
    // The schema object itself (CREATE SCHEMA, COMMENT ON SCHEMA) is handled as root: the owner
    // may have no CREATE privilege on the database, and `public` belongs to pg_database_owner.
    var schemaCreated: [String] = []
    var ownerStatements: [SQLStatement] = []
    var rootStatements: [SQLStatement] = []
    for s in statements {
      if case .createSchema(let name) = s.kind {
        if try !Catalog.schemaExists(root, name) {
          try root.exec(
            "CREATE SCHEMA IF NOT EXISTS \(PGConnection.quoteIdent(name)) AUTHORIZATION \(PGConnection.quoteIdent(dst.owner.name))"
          )
          schemaCreated.append(name)
        }
        ownerStatements.append(s)  // now "already present"; kept so counts cover every statement
      } else if isCommentOnSchema(s) {
        rootStatements.append(s)
      } else {
        ownerStatements.append(s)
      }
    }
    var result = SchemaLoader.Result()
    if !rootStatements.isEmpty {
      let rootLoad = try ctx.newConnection(.dst, .root, noTimeout: true)
      defer { rootLoad.close() }
      let sets = statements.filter { $0.kind == .set }
      let r = try SchemaLoader.apply(
        sets + rootStatements, file: file, conn: rootLoad, logger: ctx.logger)
      result.applied += r.applied
      result.alreadyPresent += r.alreadyPresent
    }
    let owner = try ctx.newConnection(.dst, .owner, noTimeout: true)
    defer { owner.close() }
    let r = try SchemaLoader.apply(ownerStatements, file: file, conn: owner, logger: ctx.logger)
    result.applied += r.applied
    result.alreadyPresent += r.alreadyPresent
    result.skippedSettings = r.skippedSettings
    return loadRecord(
      file: file, statements: statements, result: result,
      extra: [
        ("extensions", .array(extensionRecords)), ("schema_created", .from(schemaCreated)),
      ])
  }

  /// `COMMENT ON SCHEMA ...` (run as root: the owner may not own the schema).
  static func isCommentOnSchema(_ s: SQLStatement) -> Bool {
    s.kind == .other
      && s.text.range(
        of: #"^COMMENT\s+ON\s+SCHEMA\s"#, options: [.regularExpression, .caseInsensitive]) != nil
  }

  /// Creates one extension on dst as root when missing. Returns "already_present" or "created".
  static func ensureExtension(_ ext: ExtensionRef, root: PGConnection, ctx: PairContext) throws
    -> String
  {
    let have = try root.query(
      "SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = $1",
      [ext.name])
    if let row = have.rows.first {
      if row.string("nspname") != ext.schema {
        ctx.logger.warning(
          "extension \(ext.name) is installed in schema \(row.string("nspname")) on dst but in \(ext.schema) on src; statements that name its objects in \(ext.schema) will fail to load"
        )
      }
      return "already_present"
    }
    let available = try root.query(
      "SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = $1", [ext.name])
    guard available.values.count == 1 else {
      throw ctx.refuse(
        "the schema needs extension \(ext.name), which is not available on dst (install its package on the destination server, then run load-schema again)"
      )
    }
    if try !Catalog.schemaExists(root, ext.schema) {
      var sql = "CREATE SCHEMA IF NOT EXISTS \(PGConnection.quoteIdent(ext.schema))"
      if ext.schema == ctx.schema {
        sql += " AUTHORIZATION \(PGConnection.quoteIdent(try ctx.config.server(.dst).owner.name))"
      }
      try root.exec(sql)
    }
    do {
      try root.exec(
        "CREATE EXTENSION IF NOT EXISTS \(PGConnection.quoteIdent(ext.name)) WITH SCHEMA \(PGConnection.quoteIdent(ext.schema)) CASCADE"
      )
    } catch let e as PGError {
      throw BeltError(
        .sqlError, "cannot create extension \(ext.name) on dst: \(e.message)", sqlstate: e.sqlState)
    }
    ctx.logger.notice("created extension \(ext.name) on dst")
    return "created"
  }

  /// The record of a load: counts and a one-line message.
  static func loadRecord(
    file: String, statements: [SQLStatement], result: SchemaLoader.Result, extra: [(String, Value)]
  )
    -> Value
  {
    var msg = "\(result.applied) statement(s) applied, \(result.alreadyPresent) already present"
    if !result.skippedSettings.isEmpty {
      msg += ", \(result.skippedSettings.count) unknown setting(s) skipped"
    }
    msg += " (\((file as NSString).lastPathComponent))"
    return .object(
      [
        ("file", .string(file)), ("statements", .int(count(statements))),
        ("applied", .int(result.applied)),
        ("already_present", .int(result.alreadyPresent)),
      ] + extra + [("skipped_settings", .from(result.skippedSettings)), ("message", .string(msg))])
  }

  /// Applies invalid_constraints.sql to dst as the owner (idempotent).
  /// Record: `file`, `statements`, `applied`, `already_present`, `skipped_settings`, `message`.
  public static func loadConstraints(_ ctx: PairContext) throws -> Value {
    let (file, statements) = try store(ctx).read([SchemaFiles.invalidConstraintsFileName])
    let owner = try ctx.newConnection(.dst, .owner, noTimeout: true)
    defer { owner.close() }
    let result = try SchemaLoader.apply(statements, file: file, conn: owner, logger: ctx.logger)
    return loadRecord(file: file, statements: statements, result: result, extra: [])
  }

  // MARK: remove-constraints / remove-indexes

  /// Whether a table (from a schema file) is in the config's table subset (all when none).
  static func inSubset(_ table: QualifiedName, _ ctx: PairContext) -> Bool {
    guard let subset = ctx.config.tableSubset else { return true }
    if let s = table.schema, s != ctx.schema { return false }
    return subset.contains { Catalog.bareName($0, schema: ctx.schema) == table.name }
  }

  /// Drops the NOT VALID constraints listed in invalid_constraints.sql from dst (one transaction).
  ///
  /// Constraints on tables outside the config's `tables` subset are left alone; domain
  /// constraints are always removed (they would reject the same old rows).
  /// Record: `file`, `dropped`, `already_absent`, `skipped` (outside the subset), `message`.
  public static func removeConstraints(_ ctx: PairContext) throws -> Value {
    let (file, statements) = try store(ctx).read([SchemaFiles.invalidConstraintsFileName])
    let owner = try ctx.connect(.dst, .owner, noTimeout: true)
    var dropped: [String] = []
    var absent: [String] = []
    var skipped: [String] = []
    try owner.transaction {
      for s in statements {
        guard case .notValidConstraint(let c) = s.kind else { continue }
        let label = "\(c.table.description).\(c.name)"
        if !c.onDomain && !inSubset(c.table, ctx) {
          skipped.append(label)
          continue
        }
        let exists =
          try owner.query(
            c.onDomain
              ? "SELECT 1 FROM pg_catalog.pg_constraint WHERE contypid = pg_catalog.to_regtype($1) AND conname = $2"
              : "SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = pg_catalog.to_regclass($1) AND conname = $2",
            [c.table.quoted, c.name]
          ).values.count == 1
        guard exists else {
          absent.append(label)
          continue
        }
        do {
          try owner.exec(SchemaScript.dropConstraintSQL(c))
        } catch let e as PGError {
          throw BeltError(
            .sqlError, "cannot drop constraint \(label) (listed in \(file)): \(e.message)",
            sqlstate: e.sqlState)
        }
        dropped.append(label)
      }
    }
    if dropped.isEmpty && absent.isEmpty && skipped.isEmpty {
      ctx.logger.info("No NOT VALID constraints listed in \(file).")
    }
    return .object([
      ("file", .string(file)), ("dropped", .from(dropped)), ("already_absent", .from(absent)),
      ("skipped", .from(skipped)),
      (
        "message",
        .string(
          "\(dropped.count) dropped, \(absent.count) already absent, \(skipped.count) outside the table subset"
        )
      ),
    ])
  }

  /// Drops the indexes listed in indexes.sql from dst (statement timeout off).
  ///
  /// Partitioned parents (`ON ONLY`) go first: dropping one drops its attached partition indexes.
  /// Indexes on tables outside the config's `tables` subset are left alone.
  /// Record: `file`, `dropped`, `already_absent`, `skipped`, `message`.
  public static func removeIndexes(_ ctx: PairContext) throws -> Value {
    let (file, statements) = try store(ctx).read([SchemaFiles.indexesFileName])
    let owner = try ctx.connect(.dst, .owner, noTimeout: true)
    var infos: [IndexInfo] = []
    for s in statements { if case .index(let i) = s.kind { infos.append(i) } }
    infos = infos.filter(\.onOnly) + infos.filter { !$0.onOnly }
    var skipped: [String] = []
    var existing: [(IndexInfo, Bool)] = []
    for i in infos {
      guard inSubset(i.table, ctx) else {
        skipped.append(i.name.description)
        continue
      }
      let r = try owner.query(
        "SELECT c.relkind::text FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)",
        [i.name.quoted])
      if let kind = r.scalar, kind != "i" && kind != "I" {
        throw ctx.refuse(
          "\(i.name.description) (listed in \(file)) exists on dst but is not an index; nothing was dropped"
        )
      }
      existing.append((i, r.scalar != nil))
    }
    var dropped: [String] = []
    var absent: [String] = []
    for (i, exists) in existing {
      guard exists else {
        absent.append(i.name.description)
        continue
      }
      do {
        try owner.exec(SchemaScript.dropIndexSQL(i))
      } catch let e as PGError {
        throw BeltError(
          .sqlError, "cannot drop index \(i.name.description) (listed in \(file)): \(e.message)",
          sqlstate: e.sqlState)
      }
      dropped.append(i.name.description)
    }
    return .object([
      ("file", .string(file)), ("dropped", .from(dropped)), ("already_absent", .from(absent)),
      ("skipped", .from(skipped)),
      (
        "message",
        .string(
          "\(dropped.count) dropped, \(absent.count) already absent, \(skipped.count) outside the table subset"
        )
      ),
    ])
  }

  // MARK: create-indexes

  /// Creates the indexes of indexes.sql on dst as the owner with statement_timeout off,
  /// tolerating existing ones, then ANALYZE as root. Every index is attempted; failures are
  /// reported per index and make the record `ok=false` (ANALYZE is then skipped).
  ///
  /// Record: `file`, `indexes` [{name, table, status created|rebuilt|already_present|failed|attached,
  /// duration_ms, error?}], `created`, `already_present`, `failed`, `analyze_ran`, `concurrently`, `message`.
  public static func createIndexes(_ ctx: PairContext) throws -> Value {
    try createIndexes(
      ctx, analyzeWhenNoneCreated: true, concurrently: ctx.options.bool("concurrently"))
  }

  /// create-indexes; with `analyzeWhenNoneCreated` false (sync, inside the downtime window), the
  /// ANALYZE of the whole database is skipped when every index was already there: the
  /// create-indexes that built them analyzed then, and sync analyzes what it loaded itself.
  /// `CREATE [UNIQUE] INDEX` → `CREATE [UNIQUE] INDEX CONCURRENTLY`.
  static func concurrentSQL(_ text: String) -> String {
    text.replacingOccurrences(
      of: #"^(\s*CREATE\s+(?:UNIQUE\s+)?INDEX)\s+(?!CONCURRENTLY\s)"#, with: "$1 CONCURRENTLY ",
      options: [.regularExpression, .caseInsensitive])
  }

  /// Indexes built at once: the `index_jobs` option, else the config's `index_jobs`, else 4
  /// (at most `--jobs`).
  static func indexJobs(_ ctx: PairContext) -> Int {
    max(
      1,
      ctx.options.int("index_jobs") ?? ctx.config.raw["index_jobs"]?.intValue
        ?? min(4, ctx.env.jobs))
  }

  /// - Parameters:
  ///   - analyze: false leaves the ANALYZE to the caller (the initial copy's own build:
  ///     create-indexes, run next by migrate.lua, analyzes).
  ///   - extra: `CREATE UNIQUE INDEX` statements built with the file's (the initial copy's
  ///     primary keys, attached as constraints by the caller).
  static func createIndexes(
    _ ctx: PairContext, analyzeWhenNoneCreated: Bool, concurrently: Bool = false,
    analyze: Bool = true, extra: [SQLStatement] = []
  ) throws -> Value {
    let (file, fromFile) = try store(ctx).read([SchemaFiles.indexesFileName])
    let statements = extra + fromFile
    let owner = try ctx.connect(.dst, .owner, noTimeout: true)
    let dst = try ctx.config.server(.dst)
    let monitor = IndexBuildMonitor(
      conninfo: dst.conninfo(.owner, connectTimeout: ctx.env.connectTimeout),
      label: "dst as owner (progress)",
      logger: ctx.logger, interval: IndexBuildMonitor.defaultInterval)
    monitor.start()
    defer { monitor.stop() }
    var tableBytes: [String: Int] = [:]
    let tables = Set(
      statements.compactMap { s -> String? in
        if case .index(let i) = s.kind, !i.onOnly { return i.table.quoted }
        return nil
      })
    let jobs = concurrently ? 1 : indexJobs(ctx)
    if jobs > 1 && tables.count > 1 {
      for row in try owner.query(
        """
        SELECT t AS name, coalesce(pg_catalog.pg_relation_size(pg_catalog.to_regclass(t)), 0) AS bytes
          FROM unnest($1::text[]) t
        """, [PGArray.literal(Array(tables))]
      ).rows {
        tableBytes[row.string("name")] = row.int("bytes") ?? 0
      }
    }
    let builder = IndexBuilder(
      file: file, concurrently: concurrently, logger: ctx.logger,
      sets: fromFile.filter { $0.kind == .set }.map(\.text))
    let t0 = Date()
    let outcomes = try builder.run(
      statements, main: owner, jobs: jobs, connector: Connector(ctx), monitor: monitor,
      tableBytes: tableBytes)
    monitor.stop()
    let records = outcomes.compactMap(\.record)
    var lines = outcomes.compactMap(\.line)
    let created = outcomes.reduce(0) { $0 + $1.created }
    let present = outcomes.reduce(0) { $0 + $1.present }
    let failed = outcomes.reduce(0) { $0 + $1.failed }
    let failedNames = outcomes.compactMap(\.failedName)
    if created > 0 {
      ctx.logger.notice(
        "create-indexes: \(created) index(es) built in \(Runner.ms(since: t0)) ms, \(jobs) at a time"
      )
    }
    var analyzeRan = false
    if !analyze {
      lines.insert("  ANALYZE left to create-indexes", at: 0)
    } else if failed == 0 && created == 0 && !analyzeWhenNoneCreated {
      lines.insert("  ANALYZE left to sync (every index was already there)", at: 0)
    } else if failed == 0 {
      try ctx.connect(.dst, .root, noTimeout: true).exec("ANALYZE")
      analyzeRan = true
    } else {
      ctx.logger.error(
        "\(failed) index statement(s) failed (\(failedNames.joined(separator: ", "))); ANALYZE was not run"
      )
    }
    let summary =
      "\(created) created\(concurrently ? " concurrently" : ""), \(present) already present, \(failed) failed"
      + (analyzeRan ? "; ANALYZE done" : "; ANALYZE skipped")
    return .object([
      ("ok", .bool(failed == 0)),
      ("file", .string(file)), ("indexes", .array(records)), ("created", .int(created)),
      ("already_present", .int(present)), ("failed", .int(failed)),
      ("analyze_ran", .bool(analyzeRan)),
      ("concurrently", .bool(concurrently)), ("jobs", .int(jobs)),
      ("message", .string(([summary] + lines).joined(separator: "\n"))),
    ])
  }

  // MARK: diff-schemas

  /// Compares src and dst schema dumps normalised the same way (see ``SchemaDiff/normalize(_:full:)``).
  /// Pairs with a `tables` subset are skipped. A failing pg_dump is an error.
  /// Record: `result` match|mismatch|skipped, `full`, `diff` (unified, "" on match), `message`;
  /// `ok=false` on mismatch.
  public static func diffSchemas(_ ctx: PairContext, full: Bool) throws -> Value {
    if ctx.config.tableSubset != nil {
      return .object([
        ("result", "skipped"), ("full", .bool(full)), ("diff", ""),
        ("message", "skipped: a table subset is configured"),
      ])
    }
    let servers = [try ctx.config.server(.src), try ctx.config.server(.dst)]
    let schema = ctx.schema
    let timeout = ctx.env.connectTimeout
    let tools = try dumpTool(ctx)
    let environment = ctx.env.toolEnvironment
    let dumps = Runner.parallelMap([Side.src, Side.dst], width: 2) {
      side -> Swift.Result<String, BeltError> in
      do {
        let server = servers[side == .src ? 0 : 1]
        return .success(
          try PGTools.dumpSchema(
            server: server, role: .root, schema: schema, side: side, tools: tools,
            connectTimeout: timeout,
            environment: environment))
      } catch {
        return .failure(BeltError.wrap(error))
      }
    }
    let a = SchemaDiff.statements(try dumps[0].get(), full: full)
    var b = SchemaDiff.statements(try dumps[1].get(), full: full)
    let diff = SchemaDiff.unified(a.joined(separator: "\n"), b.joined(separator: "\n"))
    if diff.isEmpty {
      return .object([
        ("result", "match"), ("full", .bool(full)), ("diff", ""), ("message", "schemas match"),
      ])
    }
    // Objects whose text differs: are they the same definition printed differently by dst?
    let pairs = SchemaEquivalence.pairs(src: a, dst: b)
    var reprinted: [String] = []
    if !pairs.isEmpty {
      let t0 = Date()
      let conn = try ctx.newConnection(.dst, .root)
      defer { conn.close() }
      conn.audit = nil  // scratch objects in a transaction that is always rolled back
      let owner = try ctx.config.server(.dst).owner.name
      let equal = try SchemaEquivalence.equalKeys(pairs, dst: conn, runAs: owner)
      let same = pairs.filter { equal.contains($0.key) }
      reprinted = same.map(\.key)
      var replace = Dictionary(same.map { ($0.dst, $0.src) }, uniquingKeysWith: { x, _ in x })
      // The others differ for real: leave out of the diff the lines that are only re-printed.
      for (k, v) in try SchemaEquivalence.refine(
        pairs.filter { !equal.contains($0.key) }, dst: conn, runAs: owner)
      { replace[k] = v }
      b = b.map { replace[$0] ?? $0 }
      ctx.logger.info(
        "compared \(pairs.count) differently printed object(s) on dst in \(Runner.ms(since: t0)) ms: \(same.count) re-printed, \(pairs.count - same.count) different"
      )
    }
    let real = SchemaDiff.unified(a.joined(separator: "\n"), b.joined(separator: "\n"))
    let differences = SchemaEquivalence.differenceNames(src: a, dst: b)
    if !real.isEmpty, differences.isEmpty {
      // Same statements in another order: still a difference, named as such.
      return try mismatch(
        ctx, full: full, diff: real, differences: ["statement order"], reprinted: reprinted)
    }
    if real.isEmpty {
      // PostgreSQL prints a reloaded expression its own way (an IN list on a varchar column, a
      // typed NULL's column alias): dst stores both texts the same way, so a match.
      return .object([
        ("result", "match"), ("full", .bool(full)), ("diff", ""), ("cosmetic_diff", .string(diff)),
        ("reprinted", .from(reprinted)),
        (
          "message",
          .string(
            "schemas match (\(reprinted.count) object(s) printed differently by dst, stored the same: \(reprinted.joined(separator: ", ")))"
          )
        ),
      ])
    }
    return try mismatch(ctx, full: full, diff: real, differences: differences, reprinted: reprinted)
  }

  /// The record of a real mismatch: failed unless every difference is accepted by name
  /// (`accept`), in which case it succeeds and the acceptance goes to the audit log.
  /// Record: `result` mismatch, `differences`, `accepted`, `unaccepted`, `diff`, `reprinted`.
  static func mismatch(
    _ ctx: PairContext, full: Bool, diff: String, differences: [String], reprinted: [String]
  ) throws -> Value {
    let accept = Set(ctx.options.strings("accept").map { $0.trimmingCharacters(in: .whitespaces) })
    let accepted = differences.filter(accept.contains)
    let unaccepted = differences.filter { !accept.contains($0) }
    ctx.logger.info(
      "schema mismatch between src and dst (\(diff.split(separator: "\n").count) diff lines)")
    var fields: [(String, Value)] = [
      ("ok", .bool(unaccepted.isEmpty)), ("result", "mismatch"), ("full", .bool(full)),
      ("diff", .string(diff)),
      ("differences", .from(differences)), ("accepted", .from(accepted)),
      ("unaccepted", .from(unaccepted)),
      ("reprinted", .from(reprinted)),
    ]
    if unaccepted.isEmpty {
      ctx.env.audit.append(
        .object([
          ("time", .string(Audit.timestamp(Date()))), ("dc", .string(ctx.dc)),
          ("db", .string(ctx.db)),
          ("action", "accept_schema_differences"), ("accepted", .from(accepted)),
          ("full", .bool(full)), ("diff", .string(diff)),
        ]), dc: ctx.dc, db: ctx.db)
      ctx.logger.warning(
        "schemas differ in \(accepted.count) accepted difference(s): \(accepted.joined(separator: "; ")) (recorded in the audit log)"
      )
      fields.append(
        (
          "message",
          .string(
            "schemas differ only in accepted difference(s): \(accepted.joined(separator: "; "))\n"
              + diff)
        ))
    } else {
      fields.append(
        (
          "message",
          .string(
            "schemas differ in \(unaccepted.count) difference(s): \(unaccepted.joined(separator: "; "))\n"
              + diff)
        ))
    }
    return .object(fields)
  }

  // MARK: analyze

  /// ANALYZE on dst as root with statement_timeout off. Record: `analyzed`, `message`.
  public static func analyze(_ ctx: PairContext) throws -> Value {
    try ctx.connect(.dst, .root, noTimeout: true).exec("ANALYZE")
    return .object([("analyzed", true), ("message", "ANALYZE done")])
  }
}
