import Foundation
import Logging

/// Runs the statements of indexes.sql on dst, the plain `CREATE INDEX` builds on several owner
/// connections at once (see ``SchemaOps/createIndexes(_:analyzeWhenNoneCreated:concurrently:jobs:)``).
///
/// The order pg_dump's file needs is kept in three phases:
/// 1. the indexes of partitioned parents (`ON ONLY`: catalog only, quick), in file order;
/// 2. every other `CREATE INDEX`, up to `jobs` at once, the indexes of the largest tables first
///    (`CREATE INDEX` takes a SHARE lock, which does not conflict with itself: two builds on one
///    table run side by side);
/// 3. what needs the indexes (`ALTER INDEX … ATTACH PARTITION`, `COMMENT ON INDEX`, `CLUSTER ON`,
///    …), in file order.
/// Each statement runs with the `SET`s that precede it in the file replayed on its connection.
struct IndexBuilder {
  /// What one statement of indexes.sql came to.
  struct Outcome: Sendable {
    var record: Value?
    var line: String?
    var created = 0
    var present = 0
    var failed = 0
    var failedName: String?
  }

  /// One statement and how many of the file's `SET`s precede it.
  struct Item: Sendable {
    var statement: SQLStatement
    var sets: Int
    /// The index a `CREATE INDEX` builds.
    var index: IndexInfo? {
      if case .index(let x) = statement.kind { return x }
      return nil
    }
  }

  let file: String
  let concurrently: Bool
  let logger: Logger
  /// Every `SET` of the file, in order.
  let sets: [String]

  /// A connection and how many of ``sets`` it has run.
  final class Session {
    let conn: PGConnection
    var applied = 0
    init(_ conn: PGConnection) { self.conn = conn }
  }

  /// Runs the `SET`s an item needs that this session has not run yet (settings a server does
  /// not know are skipped with a warning). An item that comes earlier in the file than the last
  /// one this session ran (builds run largest table first) gets the settings of its own place:
  /// `RESET ALL`, then its `SET`s (a `SET default_tablespace` of a later index must not apply).
  func prepare(_ s: Session, for item: Item) throws {
    if item.sets < s.applied {
      try s.conn.exec("RESET ALL")
      s.applied = 0
    }
    while s.applied < item.sets {
      let text = sets[s.applied]
      s.applied += 1
      do { try s.conn.exec(text) } catch let e as PGError where e.sqlState == "42704" {
        logger.warning(
          "\(file): skipping a setting this server does not know: \(SchemaLoader.excerpt(text))")
      }
    }
  }

  static func note(
    _ name: String, _ table: String, _ status: String, _ ms: Int, _ error: String? = nil,
    logger: Logger
  ) -> Outcome {
    var fields: [(String, Value)] = [
      ("name", .string(name)), ("table", .string(table)), ("status", .string(status)),
      ("duration_ms", .int(ms)),
    ]
    if let error { fields.append(("error", .string(error))) }
    logger.info("index \(name) on \(table): \(status) in \(ms) ms")
    return Outcome(
      record: .object(fields),
      line:
        "  \(name): \(status.replacingOccurrences(of: "_", with: " ")) (\(ms) ms)\(error.map { " — \($0)" } ?? "")"
    )
  }

  /// Builds one index (phases 1 and 2): an existing valid index is left alone, an INVALID one
  /// (left by a failed concurrent build) is dropped and built again.
  func build(_ s: Session, _ item: Item, _ info: IndexInfo, monitor: IndexBuildMonitor, pid: Int)
    throws -> Outcome
  {
    try prepare(s, for: item)
    let owner = s.conn
    let t0 = Date()
    let name = info.name.description
    let table = info.table.description
    let row = try owner.query(
      """
      SELECT c.relkind::text AS kind, coalesce(i.indisvalid, true) AS valid FROM pg_catalog.pg_class c
        LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid WHERE c.oid = pg_catalog.to_regclass($1)
      """, [info.name.quoted]
    ).rows.first
    let kind = row?.string("kind")
    // CONCURRENTLY cannot build the index of a partitioned parent (ON ONLY: catalog only, quick).
    let useConcurrently = concurrently && !info.onOnly
    var rebuilt = false
    if kind == "i", row?.bool("valid") == false {
      logger.warning(
        "index \(name) on \(table) is INVALID on dst (left by a failed concurrent build): dropping it and building it again"
      )
      try owner.exec(
        "DROP INDEX \(useConcurrently ? "CONCURRENTLY " : "")IF EXISTS \(info.name.quoted)")
      rebuilt = true
    } else if kind == "i" || kind == "I" {
      var o = Self.note(name, table, "already_present", 0, logger: logger)
      o.present = 1
      return o
    } else if kind != nil {
      var o = Self.note(
        name, table, "failed", 0, "a relation with this name exists on dst and is not an index",
        logger: logger)
      o.failed = 1
      o.failedName = name
      return o
    }
    monitor.begin(name: name, pid: pid)
    defer { monitor.end(pid: pid) }
    do {
      try owner.exec(
        useConcurrently ? SchemaOps.concurrentSQL(item.statement.text) : item.statement.text)
      var o = Self.note(
        name, table, rebuilt ? "rebuilt" : "created", Runner.ms(since: t0), logger: logger)
      o.created = 1
      return o
    } catch let e as PGError {
      // Another session built the same index meanwhile (e.g. the build of a belt that was
      // killed, still running on dst): 42P07, or 23505 on pg_class's name index when this
      // build waited for that one's commit, and the index is there and valid: nothing to do.
      // (A 23505 on the data, duplicate keys of a UNIQUE index, leaves no index or an
      // INVALID one: a failure.)
      if e.sqlState == "42P07"
        || (e.sqlState == "23505"
          && (try? owner.query(
            """
            SELECT i.indisvalid FROM pg_catalog.pg_index i
             WHERE i.indexrelid = pg_catalog.to_regclass($1)
            """, [info.name.quoted]
          ).scalar) == "t")
      {
        var o = Self.note(name, table, "already_present", Runner.ms(since: t0), logger: logger)
        o.present = 1
        return o
      }
      guard e.kind == .server && !e.isCancel else { throw e }
      var why = e.message
      let left = try? owner.query(
        "SELECT NOT i.indisvalid FROM pg_catalog.pg_index i WHERE i.indexrelid = pg_catalog.to_regclass($1)",
        [info.name.quoted]
      ).scalar
      if left == "t" {
        why += " (the index is left INVALID on dst; the next create-indexes drops and rebuilds it)"
      }
      var o = Self.note(name, table, "failed", Runner.ms(since: t0), why, logger: logger)
      o.failed = 1
      o.failedName = name
      return o
    }
  }

  /// Phase 3: a statement that needs the indexes.
  func follow(_ s: Session, _ item: Item) throws -> Outcome {
    try prepare(s, for: item)
    let owner = s.conn
    let t0 = Date()
    let text = item.statement.text
    if case .attachIndexPartition(let parent, let child) = item.statement.kind {
      let name = "\(parent.description) ← \(child.description)"
      let attached =
        try owner.query(
          """
          SELECT 1 FROM pg_catalog.pg_inherits
           WHERE inhrelid = pg_catalog.to_regclass($1) AND inhparent = pg_catalog.to_regclass($2)
          """, [child.quoted, parent.quoted]
        ).values.count == 1
      if attached {
        var o = Self.note(name, "", "already_present", 0, logger: logger)
        o.present = 1
        return o
      }
      do {
        try owner.exec(text)
        return Self.note(name, "", "attached", Runner.ms(since: t0), logger: logger)
      } catch let e as PGError where e.kind == .server && !e.isCancel {
        var o = Self.note(name, "", "failed", Runner.ms(since: t0), e.message, logger: logger)
        o.failed = 1
        o.failedName = name
        return o
      }
    }
    // COMMENT ON INDEX, ALTER TABLE ... CLUSTER ON, ALTER INDEX ... SET STATISTICS: re-runnable.
    do {
      try owner.exec(text)
      return Outcome()
    } catch let e as PGError where e.kind == .server && !e.isCancel {
      let short = SchemaLoader.excerpt(text, maxLines: 1, maxChars: 80)
      logger.error("\(file): \(e.message); statement: \(SchemaLoader.excerpt(text))")
      return Outcome(
        line: "  \(short): failed — \(e.message)", failed: 1, failedName: short)
    }
  }

  /// Runs the whole file: phases 1 and 3 on `main`, phase 2 on `jobs` connections (`main` alone
  /// when `jobs` is 1). Returns the outcomes in the order they ran.
  func run(
    _ statements: [SQLStatement], main: PGConnection, jobs: Int, connector: Connector,
    monitor: IndexBuildMonitor, tableBytes: [String: Int]
  ) throws -> [Outcome] {
    var items: [Item] = []
    var count = 0
    for s in statements {
      switch s.kind {
      case .meta: continue
      case .set: count += 1
      default: items.append(Item(statement: s, sets: count))
      }
    }
    let parents = items.filter { $0.index?.onOnly == true }
    // Largest table first: the longest builds start at once, the small ones fill in after.
    let builds = items.enumerated().filter { $0.element.index?.onOnly == false }
      .sorted {
        let a = tableBytes[$0.element.index!.table.quoted] ?? 0
        let b = tableBytes[$1.element.index!.table.quoted] ?? 0
        return a != b ? a > b : $0.offset < $1.offset
      }.map(\.element)
    let rest = items.filter { $0.index == nil }
    let session = Session(main)
    let pid = Int(try main.query("SELECT pg_catalog.pg_backend_pid()").scalar ?? "") ?? 0
    var out: [Outcome] = []
    for p in parents { out.append(try build(session, p, p.index!, monitor: monitor, pid: pid)) }
    let width = concurrently ? 1 : max(1, min(jobs, builds.count))
    if width == 1 {
      for b in builds { out.append(try build(session, b, b.index!, monitor: monitor, pid: pid)) }
    } else {
      let box = ResultBox<Swift.Result<Outcome, BeltError>>(count: builds.count)
      let builder = self
      _ = Runner.parallelMap(Array(0..<width), width: width) { _ -> Int in
        let s: Session
        let wpid: Int
        do {
          s = Session(try connector.open(.dst, .owner, noTimeout: true))
          wpid = Int(try s.conn.query("SELECT pg_catalog.pg_backend_pid()").scalar ?? "") ?? 0
        } catch {
          while let i = box.nextIndex() { box.set(i, .failure(BeltError.wrap(error))) }
          return 0
        }
        defer { s.conn.close() }
        while let i = box.nextIndex() {
          do {
            box.set(
              i,
              .success(
                try builder.build(s, builds[i], builds[i].index!, monitor: monitor, pid: wpid)))
          } catch {
            box.set(i, .failure(BeltError.wrap(error)))
            // This connection may be mid-protocol: the other workers take the rest.
            return 0
          }
        }
        return 0
      }
      let results = box.results()
      if let e = results.compactMap({ r -> BeltError? in
        if case .failure(let e) = r { return e }
        return nil
      }).first {
        throw e
      }
      out += results.compactMap { try? $0.get() }
    }
    for r in rest { out.append(try follow(session, r)) }
    return out
  }
}
