import Foundation

/// `belt apply-ddl`: changes the schema of a replicating pair on both sides, each statement on
/// the side that must change first, so that dst can always apply what src sends (issue 24).
///
/// - Additive changes (ADD COLUMN, CREATE TABLE/TYPE/SEQUENCE/FUNCTION/VIEW, a new enum value,
///   DROP NOT NULL, DROP CONSTRAINT, DROP INDEX, a non-unique index) run on dst first: while only
///   dst has them, src's rows still apply there.
/// - Removals and tightenings (DROP COLUMN, DROP TABLE, ADD CONSTRAINT, SET NOT NULL, a unique
///   index) run on src first: src rejects what dst would reject before dst does.
/// - What no order makes safe (ALTER COLUMN TYPE, RENAME, SET SCHEMA, partitions attached or
///   detached, CREATE TABLE AS, data changes, GRANTs) is refused before anything runs.
///
/// A table created in the pair's schema that the engine streams is then published, and the
/// subscription copies it. The pair's `schemas/<dc>/<db>/` files are dumped again from src.
/// Every statement runs as the owner user on its own (autocommit), in the audit log.
enum ApplyDDL {
  /// Which side runs a statement first.
  enum First: String { case dst, src }

  /// One statement, classified.
  struct Planned {
    var text: String
    var first: First
    var why: String
    /// A table it creates.
    var creates: QualifiedName?
  }

  /// `belt apply-ddl`.
  static func run(_ ctx: PairContext) throws -> Value {
    let sql = try source(ctx)
    let statements = SchemaScript.split(sql).filter {
      $0.kind != .meta && !$0.text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
    }
    guard !statements.isEmpty else {
      throw BeltError(.badArgument, "apply-ddl: no SQL statement given", dc: ctx.dc, db: ctx.db)
    }
    let dstOnly = ctx.options.bool("dst_only")
    // Every statement is classified before any runs: one that cannot be ordered refuses the lot.
    var plan: [Planned] = []
    for (i, s) in statements.enumerated() {
      switch classify(s.text) {
      case .success(let p): plan.append(p)
      case .failure(let why):
        throw ctx.refuse(
          "apply-ddl refuses statement \(i + 1) (\(SchemaLoader.excerpt(s.text, maxLines: 2, maxChars: 120))): \(why); nothing was run"
        )
      }
    }
    let engine = try ctx.engine
    let sowner = dstOnly ? nil : try ctx.connect(.src, .owner, noTimeout: true)
    let downer = try ctx.connect(.dst, .owner, noTimeout: true)
    var done: [Value] = []
    for (i, p) in plan.enumerated() {
      let order: [Side] = dstOnly ? [.dst] : (p.first == .dst ? [.dst, .src] : [.src, .dst])
      var ran: [Side] = []
      for side in order {
        let c = side == .src ? sowner : downer
        do {
          try c?.exec(p.text)
          ran.append(side)
        } catch {
          let e = BeltError.wrap(error)
          let state =
            ran.isEmpty
            ? "it ran on neither side"
            : "it ran on \(ran.map(\.rawValue).joined(separator: ", ")) only, so the sides now differ (belt status shows it): "
              + "mend \(side.rawValue) by hand or undo it on \(ran.map(\.rawValue).joined(separator: ", "))"
          let before = i == 0 ? "" : "; the \(i) statement(s) before it ran on both sides"
          throw BeltError(
            .sqlError,
            "apply-ddl statement \(i + 1) (\(SchemaLoader.excerpt(p.text, maxLines: 2, maxChars: 120))) failed on \(side.rawValue): "
              + "\(e.message); \(state)\(before)",
            dc: ctx.dc, db: ctx.db, sqlstate: e.sqlstate)
        }
      }
      done.append(
        .object([
          ("statement", .string(SchemaLoader.excerpt(p.text, maxLines: 6, maxChars: 400))),
          ("sides", .from(ran.map(\.rawValue))),
          ("why", .string(dstOnly ? "--dst-only: src already has it" : p.why)),
        ]))
    }
    var notes: [String] = []
    // Tables created in the pair's schema: published (the engine copies them) when they stream.
    var published: [String] = []
    let created = plan.compactMap(\.creates).filter { ($0.schema ?? ctx.schema) == ctx.schema }.map(
      \.name)
    if !created.isEmpty, try engine.configured(.forward, on: ctx.connect(.dst, .root)) {
      let sroot = try ctx.connect(.src, .root)
      let droot = try ctx.connect(.dst, .root)
      let infos = try ReplicationSupport.targetTables(ctx, sroot).filter {
        created.contains($0.name)
      }
      let already = Set(try engine.publishedTables(sroot, schema: ctx.schema) ?? [])
      for t in infos where !already.contains(t.name) {
        let travel = engine.travel(t)
        let owner = try ctx.config.server(.src).owner.name
        guard t.owner == owner else {
          notes.append(
            "table \(t.name) is owned by \(t.owner), not by the owner user \(owner), so it was not published: "
              + "change its owner (ALTER TABLE ... OWNER TO), then run setup again")
          continue
        }
        guard travel.how == .streamed else {
          notes.append(
            "table \(t.name) is not published: \(travel.label)\(travel.why.map { " (\($0))" } ?? "")"
          )
          continue
        }
        _ = try engine.prepare(
          ctx, .src, root: sroot, owner: try ctx.connect(.src, .owner), schema: ctx.schema,
          tables: [t.name])
        let (_, added) = try engine.publish(
          ctx, .src, root: sroot, schema: ctx.schema, tables: [t.name])
        if !added.isEmpty {
          try engine.copyAdded(droot, schema: ctx.schema, tables: added)
          published += added
        }
      }
      if let subset = ctx.config.tableSubset {
        let outside = created.filter { name in
          !subset.contains { Catalog.bareName($0, schema: ctx.schema) == name }
        }
        if !outside.isEmpty {
          notes.append("not in the config's tables, so not published: \(Fmt.quoted(outside))")
        }
      }
    }
    // The schema files follow src, so that a later diff-schemas and load agree.
    var files: Value = .null
    do {
      let r = try SchemaOps.dumpSchema(ctx)
      files = r["directory"] ?? .null
    } catch {
      notes.append(
        "the schema files were not rewritten: \(BeltError.wrap(error).message); run dump-schema")
    }
    var drift: [String] = []
    if try engine.configured(.forward, on: ctx.connect(.dst, .root)) {
      drift = try SchemaDrift.differences(ctx).map(\.text)
    }
    var message = "applied \(plan.count) statement(s)" + (dstOnly ? " on dst only" : " in order")
    if !published.isEmpty {
      message += "; published \(Fmt.quoted(published)) (copied by \(engine.name(.forward)))"
    }
    if !drift.isEmpty { message += "; src and dst still differ: \(drift.joined(separator: "; "))" }
    return .object([
      ("message", .string(message)), ("statements", .array(done)), ("published", .from(published)),
      ("schema_drift", .from(drift)), ("schema_directory", files), ("notes", .from(notes)),
    ])
  }

  /// The SQL of `--sql` or `--file` (exactly one).
  static func source(_ ctx: PairContext) throws -> String {
    let sql = ctx.options.string("sql")
    let file = ctx.options.string("file")
    switch (sql, file) {
    case (let s?, nil): return s
    case (nil, let f?):
      guard let data = FileManager.default.contents(atPath: f),
        let text = String(data: data, encoding: .utf8)
      else {
        throw BeltError(.ioError, "\(f): cannot be read as UTF-8 text", dc: ctx.dc, db: ctx.db)
      }
      return text
    default:
      throw BeltError(
        .badArgument, "apply-ddl needs exactly one of --sql or --file", dc: ctx.dc, db: ctx.db)
    }
  }

  /// Which side a statement runs on first, or why it is refused.
  static func classify(_ text: String) -> Result<Planned, Refusal> {
    let t = TokenView(Lexer(Array(text.utf8)).tokensOfFirstStatement())
    func ok(_ first: First, _ why: String, creates: QualifiedName? = nil) -> Result<
      Planned, Refusal
    > {
      .success(Planned(text: text, first: first, why: why, creates: creates))
    }
    func no(_ why: String) -> Result<Planned, Refusal> { .failure(Refusal(why)) }
    guard let w0 = t.word(0) else { return no("it is not a statement belt knows") }
    let additive = "additive: dst first, so that src's rows always apply there"
    let removal = "a removal: src first, so that src stops writing what dst will lack"
    let tightening = "a tightening: src first, so that src rejects what dst would reject"
    let relaxing = "a relaxation: dst first, so that dst accepts whatever src still writes"
    switch w0 {
    case "create":
      var k = 1
      if t.isWord(k, "or") && t.isWord(k + 1, "replace") { k += 2 }
      var unlogged = false
      while let w = t.word(k), ["temp", "temporary", "unlogged", "global", "local"].contains(w) {
        if w == "unlogged" {
          unlogged = true
        } else {
          return no("a temporary object does not belong in the schema")
        }
        k += 1
      }
      guard let what = t.word(k) else { return no("it is not a statement belt knows") }
      switch what {
      case "table":
        guard let (name, j) = t.qualifiedName(t.skipIfExists(k + 1)) else {
          return no("no table name found")
        }
        if t.isWord(j, "as") {
          return no(
            "CREATE TABLE ... AS writes data: create the table, then fill it on src (replication carries it)"
          )
        }
        if t.isWord(j, "partition") {
          return no("a new partition changes where src's rows go; belt cannot order it safely")
        }
        return ok(.dst, additive, creates: unlogged ? nil : name)
      case "unique":
        return ok(.src, "a unique index: " + tightening)
      case "index":
        return ok(.dst, "an index: dst first (it changes no row either side accepts)")
      case "type", "sequence", "function", "procedure", "view", "schema", "domain", "materialized",
        "aggregate",
        "operator", "collation", "cast", "trigger":
        return ok(.dst, additive)
      default:
        return no("CREATE \(what.uppercased()) is not one belt orders")
      }
    case "alter":
      if t.isWord(1, "type"), let (_, j) = t.qualifiedName(2) {
        if t.isWord(j, "add") && t.isWord(j + 1, "value") {
          return ok(.dst, "a new enum value: " + additive)
        }
        if t.isWord(j, "owner") { return ok(.src, "ownership: either side; src first") }
        return no(
          "ALTER TYPE other than ADD VALUE (a renamed label or attribute) cannot be ordered safely")
      }
      guard t.isWord(1, "table") else {
        if t.isWord(1, "index") || t.isWord(1, "sequence") || t.isWord(1, "function")
          || t.isWord(1, "view")
        {
          if text.range(of: "rename", options: .caseInsensitive) != nil {
            return no(
              "a RENAME cannot be ordered safely: one side would use the old name while the other has the new one"
            )
          }
          return ok(.dst, "not part of what replication carries: dst first")
        }
        return no("ALTER \((t.word(1) ?? "").uppercased()) is not one belt orders")
      }
      var k = t.skipIfExists(2)
      if t.isWord(k, "only") { k += 1 }
      guard let (_, start) = t.qualifiedName(k) else { return no("no table name found") }
      var firsts: [(First, String)] = []
      for action in actions(t, from: start) {
        switch alterAction(t, action) {
        case .success(let f): firsts.append(f)
        case .failure(let r): return .failure(r)
        }
      }
      guard let first = firsts.first else { return no("no ALTER TABLE action found") }
      if firsts.contains(where: { $0.0 != first.0 }) {
        return no(
          "its actions must run on different sides first (\(firsts.map { "\($0.0.rawValue) first" }.joined(separator: ", "))): give each its own statement"
        )
      }
      return ok(first.0, first.1)
    case "drop":
      guard let what = t.word(1) else { return no("it is not a statement belt knows") }
      switch what {
      case "table", "view", "materialized", "sequence", "type", "function", "procedure", "domain",
        "trigger":
        return ok(.src, removal)
      case "index":
        return ok(.dst, "an index: " + relaxing)
      default:
        return no("DROP \(what.uppercased()) is not one belt orders")
      }
    case "comment":
      return ok(.src, "a comment: either side; src first")
    case "insert", "update", "delete", "truncate", "copy", "select", "merge":
      return no("it is not DDL: write data on src, replication carries it")
    case "grant", "revoke":
      return no(
        "GRANTs are not part of the migrated schema (roles differ between servers): run it on each side yourself"
      )
    case "begin", "commit", "rollback", "start":
      return no("transaction control: apply-ddl runs each statement on its own, on each side")
    default:
      return no("belt cannot order \(w0.uppercased()) statements safely")
    }
  }

  /// Why a statement is refused.
  struct Refusal: Error {
    var why: String
    init(_ why: String) { self.why = why }
  }

  /// The token ranges of the comma-separated actions of an ALTER TABLE, from `start`.
  static func actions(_ t: TokenView, from start: Int) -> [Range<Int>] {
    var out: [Range<Int>] = []
    var depth = 0
    var a = start
    var k = start
    while k < t.t.count {
      if t.isPunct(k, "(") { depth += 1 }
      if t.isPunct(k, ")") { depth -= 1 }
      if t.isPunct(k, ";") { break }
      if depth == 0 && t.isPunct(k, ",") {
        out.append(a..<k)
        a = k + 1
      }
      k += 1
    }
    if a < k { out.append(a..<k) }
    return out
  }

  /// Which side one ALTER TABLE action runs on first, and why.
  static func alterAction(_ t: TokenView, _ r: Range<Int>) -> Result<(First, String), Refusal> {
    let k = r.lowerBound
    let words = r.compactMap { t.word($0) }
    func has(_ w: String) -> Bool { words.contains(w) }
    if has("rename") {
      return .failure(
        Refusal("a RENAME cannot be ordered safely: one side would send a name the other lacks"))
    }
    guard let verb = t.word(k) else {
      return .failure(Refusal("an ALTER TABLE action belt does not know"))
    }
    let constraintWords = ["constraint", "primary", "unique", "check", "foreign", "exclude"]
    switch verb {
    case "add":
      if let next = t.word(k + 1), constraintWords.contains(next) {
        return .success(
          (.src, "a new constraint: src first, so that src rejects what dst would reject"))
      }
      return .success((.dst, "a new column: dst first, so that src's rows always apply there"))
    case "drop":
      if t.isWord(k + 1, "constraint") {
        return .success(
          (.dst, "a dropped constraint: dst first, so that dst accepts whatever src writes"))
      }
      return .success(
        (.src, "a dropped column: src first, so that src stops sending it before dst lacks it"))
    case "alter":
      var j = k + 1
      if t.isWord(j, "column") { j += 1 }
      j += 1  // the column's name
      if t.isWord(j, "type") || (t.isWord(j, "set") && t.isWord(j + 1, "data")) {
        return .failure(
          Refusal(
            "ALTER COLUMN ... TYPE cannot be ordered safely (while the types differ one side's values may not fit the other, "
              + "and the table is rewritten): add a new column, fill it on src, then drop the old one"
          ))
      }
      if t.isWord(j, "drop") && t.isWord(j + 1, "not") {
        return .success((.dst, "DROP NOT NULL: dst first, so that dst accepts a NULL from src"))
      }
      if t.isWord(j, "set") && t.isWord(j + 1, "not") {
        return .success(
          (.src, "SET NOT NULL: src first, so that src rejects a NULL before dst would"))
      }
      if t.isWord(j, "add") && t.isWord(j + 1, "generated") {
        return .failure(Refusal("turning a column into an identity cannot be ordered safely"))
      }
      if t.isWord(j, "set") || t.isWord(j, "drop") || t.isWord(j, "reset") {
        return .success((.src, "a column default or setting: either side; src first"))
      }
      return .failure(Refusal("an ALTER COLUMN action belt does not know"))
    case "validate":
      return .success((.src, "VALIDATE CONSTRAINT: src first"))
    case "owner":
      return .success((.src, "ownership: either side; src first"))
    case "set":
      if t.isWord(k + 1, "schema") {
        return .failure(
          Refusal(
            "SET SCHEMA moves the table out of what replication carries; belt cannot order it safely"
          ))
      }
      return .failure(
        Refusal("ALTER TABLE ... SET \((t.word(k + 1) ?? "").uppercased()) is not one belt orders"))
    default:
      return .failure(
        Refusal(
          "ALTER TABLE ... \(verb.uppercased()) is not one belt orders (replica identity, triggers, partitions and rules belong to the migration)"
        ))
    }
  }
}
