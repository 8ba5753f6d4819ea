import Foundation
import Logging
import Testing

@testable import BeltRuntime

/// The schema pipeline against the real clusters: dump → load → diff → create-indexes →
/// load-constraints → diff --full → remove-indexes/remove-constraints, every step twice, in
/// public and in a non-public schema, with a hostile owner password.
@Suite(.serialized, .enabled(if: PG.available, "needs the clusters from scripts/pg-clusters"))
struct SchemaPipelineTests {
  static let hostileRootPassword = "r'oot pw: \\ \"x\" #"
  static let secrets = ["o'wn er\\ #@pw", PG.rootPassword, hostileRootPassword]

  /// Makes the pair's root a fresh superuser whose password has a quote, a space, a colon and a
  /// backslash (pg_dump runs as root, so this exercises the passfile).
  func useHostileRoot(_ dc: TestDC, _ db: String) throws {
    let name = PG.unique("root")
    for side in Side.allCases {
      let c = try PG.root(side)
      defer { c.close() }
      let hashed = try c.encryptPassword(Self.hostileRootPassword, user: name)
      try c.exec(
        "CREATE ROLE \(PGConnection.quoteIdent(name)) SUPERUSER LOGIN PASSWORD \(try c.literal(hashed))"
      )
    }
    let path = dc.store.path(dc: dc.dc, db: db)
    var cfg = try dc.store.load(dc: dc.dc, db: db).raw
    let root: Value = .object([("name", .string(name)), ("pw", .string(Self.hostileRootPassword))])
    for side in ["src", "dst"] {
      cfg = cfg.setting(side, cfg[side]?.setting("root_user", root) ?? .null)
    }
    try dc.store.save(cfg, to: path)
  }

  /// Names of the indexes of `schema` on one side.
  func indexes(_ dc: TestDC, _ db: String, _ side: Side, _ schema: String) throws -> Set<String> {
    let c = try dc.conn(db, side)
    defer { c.close() }
    let r = try c.query(
      "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('i', 'I')",
      [schema])
    return Set(r.rows.map { $0.string("relname") })
  }

  /// (relation or domain, name) of the NOT VALID constraints of `schema` on one side.
  func notValid(_ dc: TestDC, _ db: String, _ side: Side, _ schema: String) throws -> Set<String> {
    let c = try dc.conn(db, side)
    defer { c.close() }
    let r = try c.query(
      """
      SELECT coalesce(cl.relname, t.typname) || '/' || k.conname AS x
        FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
        LEFT JOIN pg_class cl ON cl.oid = k.conrelid LEFT JOIN pg_type t ON t.oid = k.contypid
       WHERE n.nspname = $1 AND NOT k.convalidated
      """, [schema])
    return Set(r.rows.map { $0.string("x") })
  }

  func expectNoSecrets(_ text: String, _ what: String) {
    for s in Self.secrets { #expect(!text.contains(s), "\(what) contains a password") }
  }

  /// A file the dump must have written (a missing one fails the test: its "does not contain" checks
  /// would pass on an empty string).
  func read(_ path: String) throws -> String { try String(contentsOfFile: path, encoding: .utf8) }

  /// Runs `op` twice and returns both records (both must be ok unless `ok` says otherwise).
  func twice(
    _ dc: TestDC, _ op: String, _ db: String, _ opts: [String: Value] = [:],
    sourceLocation: SourceLocation = #_sourceLocation
  ) throws -> (Value, Value) {
    let a = try dc.run(op, db, opts)
    let b = try dc.run(op, db, opts)
    #expect(a["ok"] == true, "\(op) 1st: \(a.json())", sourceLocation: sourceLocation)
    #expect(b["ok"] == true, "\(op) 2nd: \(b.json())", sourceLocation: sourceLocation)
    expectNoSecrets(a.json() + b.json(), op)
    return (a, b)
  }

  func fullFlow(schema: String) throws {
    let dc = try TestDC()
    let db = "pair"
    try dc.addPair(db, schema: schema, srcSQL: SchemaFixtures.rich(schema))
    try useHostileRoot(dc, db)
    let deferred = Set(SchemaFixtures.deferredIndexes)

    // dump-schema (twice: same files)
    let (d1, d2) = try twice(dc, "dump_schema", db)
    let dir = dc.store.schemaDirectory(dc: dc.dc, db: db)
    let base = try read(dir + "/no_invalid_constraints_no_indexes.sql")
    let idx = try read(dir + "/indexes.sql")
    let inv = try read(dir + "/invalid_constraints.sql")
    let full = try read(dir + "/schema.sql")
    #expect(d1["statements"] == d2["statements"])
    #expect(d2["extensions"] == .from(SchemaFixtures.extensions))
    #expect(d2["indexes"] == .int(deferred.count))
    #expect(d2["invalid_constraints"] == 4)  // 3 constraints + the comment on one of them
    #expect((d2["grants_skipped"]?.intValue ?? 0) >= 1)
    #expect(d2["fk_required_unique_indexes"]?.arrayValue?.count == 1)
    #expect(base.contains("CREATE UNIQUE INDEX \"Customers_Code_key\""))
    #expect(base.contains("CREATE UNIQUE INDEX ri_idx"))
    #expect(
      !base.contains("CREATE INDEX \"Idx Mixed Case\"")
        && idx.contains("CREATE INDEX \"Idx Mixed Case\""))
    #expect(
      idx.contains("ON ONLY") && idx.contains("ATTACH PARTITION")
        && idx.contains("CLUSTER ON \"Idx Mixed Case\""))
    #expect(idx.contains("COMMENT ON INDEX") && idx.contains("SET STATISTICS 500"))
    #expect(!idx.contains("events_pkey"), "constraint-backed partition attaches stay in base")
    #expect(base.contains("ATTACH PARTITION") && base.contains("events_pkey"))
    #expect(
      inv.contains("\"Chk NotValid\"") && inv.contains("\"fk \"\"not\"\" valid\"")
        && inv.contains("pos_small"))
    #expect(inv.contains("COMMENT ON CONSTRAINT"))
    #expect(
      !base.contains("ADD CONSTRAINT \"Chk NotValid\"")
        && !base.contains("ADD CONSTRAINT pos_small"))
    #expect(!base.contains("ADD CONSTRAINT \"fk \"\"not\"\" valid\""))
    #expect(
      base.contains("RAISE NOTICE 'CREATE INDEX %; NOT VALID', TG_OP;"), "function body intact")
    #expect(base.contains("BEGIN ATOMIC"))
    #expect(!full.contains("GRANT ") && !full.contains("\\restrict") && !full.contains("EXTENSION"))
    #expect(try read(dir + "/extensions.json").contains("pg_trgm"))

    // load-schema (twice: the second run finds everything present)
    let (l1, l2) = try twice(dc, "load_schema", db)
    #expect((l1["applied"]?.intValue ?? 0) > 20)
    #expect((l2["already_present"]?.intValue ?? 0) > 20)
    #expect(l2["extensions"]?.arrayValue?.allSatisfy { $0["status"] == "already_present" } == true)
    #expect(
      l1["extensions"]?.arrayValue?.map { $0["name"] ?? .null }
        == SchemaFixtures.extensions.map(Value.string))
    let firstIndexes = try indexes(dc, db, .dst, schema)
    #expect(firstIndexes.isDisjoint(with: deferred), "no deferred index on dst: \(firstIndexes)")
    #expect(firstIndexes.isSuperset(of: SchemaFixtures.baseIndexes))
    #expect(try notValid(dc, db, .dst, schema).isEmpty)

    // diff-schemas without --full matches; with --full it shows the deferred objects.
    let (m1, _) = try twice(dc, "diff_schemas", db)
    #expect(m1["result"] == "match", "\(m1["diff"]?.stringValue ?? "")")
    let mm = try dc.run("diff_schemas", db, ["full": true])
    #expect(mm["ok"] == false && mm["result"] == "mismatch")
    let diffText = mm["diff"]?.stringValue ?? ""
    #expect(diffText.hasPrefix("--- source\n+++ destination\n"))
    #expect(diffText.contains("-CREATE INDEX \"Idx Mixed Case\""))
    #expect(
      !diffText.split(separator: "\n").contains { $0.hasPrefix("+") && !$0.hasPrefix("+++") },
      "dst has nothing src lacks")

    // Old rows that violate the NOT VALID constraints (the reason they are deferred).
    let q = PGConnection.quoteIdent(schema)
    let dstConn = try dc.conn(db, .dst)
    try dstConn.exec("INSERT INTO \(q).\"quo\"\"ted table\" VALUES (-1, 999, 'old row')")
    dstConn.close()

    // create-indexes (twice), load-constraints (twice)
    let (c1, c2) = try twice(dc, "create_indexes", db)
    #expect(
      c1["created"] == .int(deferred.count) && c1["already_present"] == 0
        && c1["analyze_ran"] == true)
    #expect(c2["created"] == 0 && c2["already_present"] == .int(deferred.count + 2), "\(c2.json())")  // + the two attaches
    let perIndex = c1["indexes"]?.arrayValue ?? []
    #expect(perIndex.allSatisfy { $0["duration_ms"]?.intValue != nil })
    #expect(Set(perIndex.compactMap { $0["status"]?.stringValue }) == ["created", "attached"])
    #expect(try indexes(dc, db, .dst, schema) == indexes(dc, db, .src, schema))
    let (k1, k2) = try twice(dc, "load_constraints", db)
    #expect(k1["applied"] == 4 && k2["already_present"] == 3)
    #expect(try notValid(dc, db, .dst, schema) == notValid(dc, db, .src, schema))

    // Everything is there now: both diffs match.
    let (f1, _) = try twice(dc, "diff_schemas", db, ["full": true])
    #expect(f1["result"] == "match", "\(f1["diff"]?.stringValue ?? "")")
    #expect(try dc.run("diff_schemas", db)["result"] == "match")

    // remove-indexes / remove-constraints bring dst back to the first state.
    let (ri1, ri2) = try twice(dc, "remove_indexes", db)
    #expect(ri1["dropped"]?.arrayValue?.count == deferred.count)
    #expect(
      ri2["dropped"]?.arrayValue?.count == 0
        && ri2["already_absent"]?.arrayValue?.count == deferred.count)
    let (rc1, rc2) = try twice(dc, "remove_constraints", db)
    #expect(rc1["dropped"]?.arrayValue?.count == 3 && rc2["already_absent"]?.arrayValue?.count == 3)
    #expect(try indexes(dc, db, .dst, schema) == firstIndexes)
    #expect(try notValid(dc, db, .dst, schema).isEmpty)
    #expect(try dc.run("diff_schemas", db)["result"] == "match")
    #expect(try dc.run("diff_schemas", db, ["full": true])["result"] == "mismatch")

    // analyze
    let (a1, _) = try twice(dc, "analyze", db)
    #expect(a1["analyzed"] == true)

    // The CLI, as a user runs it.
    let dump = try CLI.run(["dump-schema", dc.dc, db, "--config-dir", dc.root])
    #expect(dump.code == 0, "\(dump.err)")
    let match = try CLI.run(["diff-schemas", dc.dc, db, "--config-dir", dc.root])
    #expect(match.code == 0, "\(match.err)")
    #expect(match.out.contains("schemas match"))
    let mismatch = try CLI.run(["diff-schemas", dc.dc, "--full", "--config-dir", dc.root])
    #expect(mismatch.code == 1)
    #expect(
      mismatch.out.contains("+++ destination")
        && mismatch.out.contains("-CREATE INDEX \"Idx Mixed Case\""))
    let json = try CLI.run(["create-indexes", dc.dc, db, "--config-dir", dc.root, "--json"])
    #expect(json.code == 0, "\(json.err)")
    #expect(json.out.contains("\"status\": \"created\""))
    for r in [dump, match, mismatch, json] { expectNoSecrets(r.out + r.err, "CLI output") }
  }

  @Test func fullPipelineInPublic() throws { try fullFlow(schema: "public") }

  @Test func fullPipelineInANonPublicSchema() throws { try fullFlow(schema: "App Schema") }

  @Test func schemaMissingOnDstIsCreatedForTheOwnerAndDiffBeforeLoadIsAnError() throws {
    let dc = try TestDC()
    let schema = "Fresh Ünï"
    let p = try dc.addPair(
      "fresh",
      srcSQL: "CREATE SCHEMA \(PGConnection.quoteIdent(schema));\n" + SchemaFixtures.rich(schema))
    let path = dc.store.path(dc: dc.dc, db: "fresh")
    let cfg = try dc.store.load(dc: dc.dc, db: "fresh").raw.setting("schema_name", .string(schema))
    try dc.store.save(cfg, to: path)
    // pg_dump on dst finds no such schema: an error, never a match.
    #expect(throws: BeltError.self) { try dc.run("diff_schemas", "fresh") }
    let cli = try CLI.run(["diff-schemas", dc.dc, "fresh", "--config-dir", dc.root])
    #expect(cli.code == 1)
    #expect(cli.err.contains("pg_dump of dst") && cli.err.contains("no matching schemas"))
    _ = try twice(dc, "dump_schema", "fresh")
    let (l1, _) = try twice(dc, "load_schema", "fresh")
    #expect(l1["schema_created"] == .from([schema]))
    let c = try dc.conn("fresh", .dst)
    defer { c.close() }
    #expect(
      try c.query("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1", [schema])
        .scalar == p.owner.name)
    #expect(try dc.run("diff_schemas", "fresh")["result"] == "match")
  }

  @Test func tableSubsetIsHonouredByRemoveAndSkippedByDiff() throws {
    let dc = try TestDC()
    try dc.addPair(
      "subset", srcSQL: SchemaFixtures.rich("public"),
      tables: ["public.\"quo\"\"ted table\"", "events"])
    for op in ["dump_schema", "load_schema", "create_indexes", "load_constraints"] {
      let r = try dc.run(op, "subset")
      #expect(r["ok"] == true, "\(op): \(r.json())")
    }
    let diff = try dc.run("diff_schemas", "subset")
    #expect(diff["result"] == "skipped" && diff["ok"] == true)
    let ri = try dc.run("remove_indexes", "subset")
    #expect(
      Set(ri["dropped"]?.arrayValue?.compactMap(\.stringValue) ?? []) == [
        "public.events_payload_idx", "public.quo\"ted idx", "public.uniq näme",
        "public.trgm_note_idx",
      ])
    let left = try indexes(dc, "subset", .dst, "public")
    #expect(left.contains("Idx Mixed Case") && left.contains("mat_totals_idx"))
    #expect(!left.contains("events_2023_payload_idx"), "partition indexes go with their parent")
    let rc = try dc.run("remove_constraints", "subset")
    #expect(rc["dropped"]?.arrayValue?.count == 3)
  }

  @Test func loadErrorsNameTheFileAndStatementAndApplyNothing() throws {
    let dc = try TestDC()
    try dc.addPair("broken")
    // No dump yet: the missing file is named.
    let missing = try CLI.run(["load-schema", dc.dc, "broken", "--config-dir", dc.root])
    #expect(missing.code == 1)
    #expect(missing.err.contains("no_invalid_constraints_no_indexes.sql does not exist"))
    let dir = dc.store.schemaDirectory(dc: dc.dc, db: "broken")
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try "CREATE TABLE public.first_one (x int);\nCREATE TABLE public.second (y no_such_type);\n"
      .write(
        toFile: dir + "/no_invalid_constraints_no_indexes.sql", atomically: true, encoding: .utf8)
    let r = try CLI.run(["load-schema", dc.dc, "broken", "--config-dir", dc.root])
    #expect(r.code == 1)
    #expect(
      r.err.contains(
        "no_invalid_constraints_no_indexes.sql: statement 2 failed: type \"no_such_type\" does not exist"
      ))
    #expect(r.err.contains("CREATE TABLE public.second"))
    let c = try dc.conn("broken", .dst)
    defer { c.close() }
    #expect(try c.query("SELECT to_regclass('public.first_one')").scalar == nil, "rolled back")
    // A failure after the first batch: earlier batches stay, and a re-run counts them as present.
    let many = (1...300).map { "CREATE TABLE public.t\($0) (x int);\n" }
    try
      (many[0..<279].joined() + "CREATE TABLE public.bad (y no_such_type);\n"
      + many[279...].joined())
      .write(
        toFile: dir + "/no_invalid_constraints_no_indexes.sql", atomically: true, encoding: .utf8)
    #expect {
      try dc.run("load_schema", "broken")
    } throws: { e in
      let m = (e as? BeltError)?.message ?? ""
      return m.contains("statement 280 failed") && m.contains("statements 1-250 were applied")
    }
    try many.joined().write(
      toFile: dir + "/no_invalid_constraints_no_indexes.sql", atomically: true, encoding: .utf8)
    let resumed = try dc.run("load_schema", "broken")
    #expect(resumed["already_present"] == 250 && resumed["applied"] == 50)
    // An extension dst does not offer stops the load before any statement, naming it.
    try "[{\"name\": \"no_such_extension\", \"schema\": \"public\"}]".write(
      toFile: dir + "/extensions.json", atomically: true, encoding: .utf8)
    let ext = try CLI.run(["load-schema", dc.dc, "broken", "--config-dir", dc.root])
    #expect(ext.code == 1)
    #expect(
      ext.err.contains("extension no_such_extension") && ext.err.contains("not available on dst"))
    // A file written by pgbelt under the older name is accepted.
    try FileManager.default.removeItem(atPath: dir + "/extensions.json")
    try FileManager.default.removeItem(atPath: dir + "/no_invalid_constraints_no_indexes.sql")
    try
      "\\restrict abc\nSET statement_timeout = 0;\nCREATE TABLE public.legacy (x int);\n\\unrestrict abc\n"
      .write(toFile: dir + "/no_invalid_constraints.sql", atomically: true, encoding: .utf8)
    let legacy = try dc.run("load_schema", "broken")
    #expect(legacy["applied"] == 1)
  }

  @Test func failingPgDumpIsAnErrorWithoutThePassword() throws {
    let dc = try TestDC()
    try dc.addPair("badpw")
    let path = dc.store.path(dc: dc.dc, db: "badpw")
    var cfg = try dc.store.load(dc: dc.dc, db: "badpw").raw
    let wrong = "wrong 'secret' pw"
    cfg = cfg.setting(
      "dst",
      cfg["dst"]?.setting(
        "root_user", .object([("name", .string(PG.rootUser)), ("pw", .string(wrong))])) ?? .null)
    try dc.store.save(cfg, to: path)
    let r = try CLI.run(["diff-schemas", dc.dc, "badpw", "--config-dir", dc.root])
    #expect(r.code == 1)
    #expect(r.err.contains("dst") && r.err.contains("password authentication failed"))
    #expect(!r.err.contains(wrong) && !r.out.contains(wrong))
  }

  @Test func longIndexBuildsLogProgress() throws {
    let dc = try TestDC()
    try dc.addPair(
      "big",
      dstSQL:
        "CREATE TABLE public.big AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 300000) g;"
    )
    let server = try dc.store.load(dc: dc.dc, db: "big").server(.dst)
    let sink = SchemaLogSink()
    let logger = Logger(label: "progress") { _ in sink }
    let monitor = IndexBuildMonitor(
      conninfo: server.conninfo(.owner), label: "monitor", logger: logger, interval: 0.1)
    monitor.start()
    let c = try PGConnection(conninfo: server.conninfo(.owner), label: "builder")
    defer { c.close() }
    let pid = Int(try c.query("SELECT pg_backend_pid()").scalar ?? "") ?? 0
    monitor.begin(name: "big_h_idx", pid: pid)
    try c.exec("SET maintenance_work_mem = '1MB'; CREATE INDEX big_h_idx ON public.big (h, id)")
    monitor.end(pid: pid)
    monitor.stop()
    let lines = sink.lines
    #expect(lines.contains { $0.contains("index big_h_idx: building for") }, "\(lines)")
  }
}

/// Collects log lines (for the progress test).
final class SchemaLogSink: LogHandler, @unchecked Sendable {
  private let lock = NSLock()
  private var collected: [String] = []
  var metadata: Logger.Metadata = [:]
  var logLevel: Logger.Level = .trace
  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }
  func log(event: LogEvent) {
    lock.lock()
    collected.append(event.message.description)
    lock.unlock()
  }
  var lines: [String] {
    lock.lock()
    defer { lock.unlock() }
    return collected
  }
}

/// create-indexes builds several indexes at once (issue 25): while the largest table's build
/// waits on a lock held by another session, the other tables' indexes are built beside it;
/// with --index-jobs 1 nothing else is built while it waits.
@Suite(.serialized, .enabled(if: PG.available, "needs the clusters from scripts/pg-clusters"))
struct ParallelIndexTests {
  static let ddl = """
    CREATE TABLE public.big (id int, v text);
    CREATE TABLE public."Small One" (id int, v text);
    CREATE TABLE public.small2 (id int, v text);
    CREATE TABLE public.parted (id int, at date) PARTITION BY RANGE (at);
    CREATE TABLE public.parted_a PARTITION OF public.parted FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');
    INSERT INTO public.big SELECT g, md5(g::text) FROM generate_series(1, 50000) g;
    INSERT INTO public."Small One" SELECT g, md5(g::text) FROM generate_series(1, 100) g;
    INSERT INTO public.small2 SELECT g, md5(g::text) FROM generate_series(1, 100) g;
    INSERT INTO public.parted SELECT g, date '2020-01-01' + g % 300 FROM generate_series(1, 100) g;
    CREATE INDEX big_v ON public.big (v);
    CREATE UNIQUE INDEX big_id ON public.big (id);
    CREATE INDEX "Small One v" ON public."Small One" (v);
    COMMENT ON INDEX public."Small One v" IS 'commented';
    CREATE INDEX small2_v ON public.small2 (lower(v));
    CREATE INDEX small2_part ON public.small2 (id) WHERE id > 10;
    ALTER TABLE public.small2 CLUSTER ON small2_v;
    CREATE INDEX parted_at ON public.parted (at);
    """

  static let built = [
    "big_v", "big_id", "Small One v", "small2_v", "small2_part", "parted_at", "parted_a_at_idx",
  ]

  func present(_ c: PGConnection) throws -> Set<String> {
    Set(
      try c.query(
        "SELECT relname FROM pg_class WHERE relkind IN ('i', 'I') AND relnamespace = 'public'::regnamespace"
      ).rows.map { $0.string("relname") })
  }

  /// The indexes other than big's.
  static let others: Set<String> = [
    "Small One v", "small2_v", "small2_part", "parted_at", "parted_a_at_idx",
  ]

  static let allValid =
    "SELECT bool_and(indisvalid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'public'::regnamespace"

  /// The schema loaded on dst without its indexes, big the largest table there, and another
  /// session (`holder`) holding big, so that its builds (the largest table's, so first) wait
  /// until the holder commits.
  func lockedBig() throws -> (dc: TestDC, dst: PGConnection, holder: PGConnection) {
    let dc = try TestDC()
    try dc.addPair("ix", srcSQL: Self.ddl)
    #expect(try dc.run("dump_schema", "ix")["ok"] == true)
    #expect(try dc.run("load_schema", "ix")["ok"] == true)
    let dst = try dc.conn("ix", .dst)
    try dst.exec("INSERT INTO public.big SELECT g, md5(g::text) FROM generate_series(1, 50000) g")
    #expect(try present(dst).isEmpty)
    let holder = try dc.conn("ix", .dst)
    try holder.exec("BEGIN; LOCK TABLE public.big IN EXCLUSIVE MODE")
    return (dc, dst, holder)
  }

  func run(jobs: Int) throws {
    let (dc, dst, holder) = try lockedBig()
    defer { dst.close(); holder.close() }
    final class Box: @unchecked Sendable { var result: CLI.Result? }
    let box = Box()
    let done = DispatchSemaphore(value: 0)
    let args = [
      "create-indexes", dc.dc, "ix", "--index-jobs", String(jobs), "--config-dir", dc.root,
      "--json",
    ]
    Thread {
      box.result = try? CLI.run(args)
      done.signal()
    }.start()
    let until = Date().addingTimeInterval(jobs > 1 ? 30 : 4)
    while try !Self.others.isSubset(of: present(dst)), Date() < until {
      Thread.sleep(forTimeInterval: 0.1)
    }
    let whileWaiting = try present(dst)
    try holder.exec("COMMIT")
    done.wait()
    if jobs > 1 {
      #expect(
        Self.others.isSubset(of: whileWaiting),
        "the other tables' indexes were built while big's build waited: \(whileWaiting)")
    } else {
      // One at a time in the file's order (pg_dump's: by name): what follows big's builds
      // waits with them.
      #expect(
        whileWaiting.isDisjoint(with: ["small2_v", "small2_part", "parted_a_at_idx"]),
        "\(whileWaiting)")
    }
    #expect(!whileWaiting.contains("big_v") && !whileWaiting.contains("big_id"))
    guard let r = box.result else { Issue.record("belt did not run"); return }
    #expect(r.code == 0, "\(r.err)")
    let v = (try? JSONParser.parse(r.out)) ?? .null
    #expect(v["created"] == 7 && v["failed"] == 0 && v["jobs"] == .int(jobs), "\(r.out)")
    #expect(try present(dst) == Set(Self.built))
    #expect(
      try dst.query(
        """
        SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.parted_at'::regclass
           AND inhrelid = 'public.parted_a_at_idx'::regclass
        """
      ).scalar == "1", "the partition's index is attached")
    #expect(
      try dst.query("SELECT obj_description('public.\"Small One v\"'::regclass, 'pg_class')").scalar
        == "commented")
    #expect(
      try dst.query(
        "SELECT indisclustered FROM pg_index WHERE indexrelid = 'public.small2_v'::regclass"
      )
      .scalar == "t")
    #expect(try dst.query(Self.allValid).scalar == "t")
    // Run again: every index is there.
    let again = try dc.run("create_indexes", "ix", ["index_jobs": .int(jobs)])
    #expect(again["created"] == 0 && again["failed"] == 0, "\(again.json())")
  }

  @Test func fourJobsBuildBesideAWaitingBuild() throws { try run(jobs: 4) }

  /// belt SIGKILLed while four builds run (big's waiting on the lock, the others done), then
  /// Ctrl-C'd the same way: the same command builds what is missing and fails nothing (a build
  /// orphaned by the kill finishes or rolls back on the server; the rerun finds it there or
  /// builds it).
  @Test(arguments: [SIGKILL, SIGINT])
  func killedWhileBuildingThenTheSameCommandFinishes(signal: Int32) throws {
    let (dc, dst, holder) = try lockedBig()
    defer { dst.close(); holder.close() }
    let bg = try Resume.Background(
      ["create-indexes", dc.dc, "ix", "--index-jobs", "4", "--config-dir", dc.root],
      scratch: dc.root)
    let until = Date().addingTimeInterval(30)
    while try !Self.others.isSubset(of: present(dst)), Date() < until, bg.process.isRunning {
      Thread.sleep(forTimeInterval: 0.05)
    }
    #expect(bg.process.isRunning, "belt ended before it was killed: \(bg.output)")
    bg.stop(signal)
    // Ctrl-C cancels the builds on the server; SIGKILL leaves them waiting there (orphans the
    // rerun must live with).
    let building = """
      SELECT count(*) FROM pg_stat_activity
       WHERE query ILIKE 'CREATE%INDEX%big%' AND state = 'active' AND pid <> pg_backend_pid()
      """
    let settled = Date().addingTimeInterval(5)
    while try dst.query(building).scalar != "0", signal == SIGINT, Date() < settled {
      Thread.sleep(forTimeInterval: 0.05)
    }
    #expect(try dst.query(building).scalar == (signal == SIGINT ? "0" : "2"))
    try holder.exec("COMMIT")
    let again = try CLI.run(["create-indexes", dc.dc, "ix", "--config-dir", dc.root, "--json"])
    #expect(again.code == 0, "\(again.err)")
    let v = (try? JSONParser.parse(again.out)) ?? .null
    #expect(v["failed"] == 0, "\(again.out)")
    #expect(try present(dst) == Set(Self.built))
    #expect(try dst.query(Self.allValid).scalar == "t")
  }

  @Test func oneJobBuildsOneAtATime() throws { try run(jobs: 1) }
}
