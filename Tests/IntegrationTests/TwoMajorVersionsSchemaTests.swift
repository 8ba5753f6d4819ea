import Foundation
import Testing

@testable import BeltRuntime

/// The schema pipeline across two major versions: src PostgreSQL 15, dst the PostgreSQL 18
/// cluster of scripts/pg-clusters (from PyPI), and 15 → 15 with PostgreSQL 18's pg_dump.
/// Under BELT_TEST_REQUIRE_SERVERS (make test) these run, and fail, when the PostgreSQL 18
/// cluster is missing.
@Suite(
  .serialized,
  .enabled(if: PG.pg18Wanted, "needs the PostgreSQL 18 cluster from scripts/pg-clusters"))
struct TwoMajorVersionsSchemaTests {
  /// A dc whose pg_dump lookup sees `belt_pg_bin` as BELT_PG_BIN (else none) and only system
  /// directories on PATH (not the PostgreSQL 18 venv).
  func makeDC(dst18: Bool, beltPgBin: String?) throws -> TestDC {
    let dc = try TestDC()
    if dst18 { dc.ports[.dst] = try PG.pg18().port }
    var env = ProcessInfo.processInfo.environment
    env["PATH"] = "/usr/bin:/bin"
    env["BELT_PG_BIN"] = beltPgBin
    dc.toolEnvironment = env
    return dc
  }

  func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

  /// The schema files dump-schema wrote for `db`.
  func schemaFiles(_ dc: TestDC, _ db: String) -> [String: String] {
    let dir = dc.store.schemaDirectory(dc: dc.dc, db: db)
    let names = [
      SchemaFiles.fullFileName, SchemaFiles.baseFileName, SchemaFiles.indexesFileName,
      SchemaFiles.invalidConstraintsFileName,
    ]
    return Dictionary(uniqueKeysWithValues: names.map { ($0, read(dir + "/" + $0)) })
  }

  /// dump → load → diff → create-indexes → load-constraints → diff --full, each expected ok.
  func pipeline(_ dc: TestDC, _ db: String) throws -> (dump: Value, diff: Value, fullDiff: Value) {
    let dump = try dc.run("dump_schema", db)
    #expect(dump["ok"] == true, "dump_schema: \(dump.json())")
    let load = try dc.run("load_schema", db)
    #expect(load["ok"] == true, "load_schema: \(load.json())")
    #expect(load["skipped_settings"] == .array([]), "load_schema: \(load.json())")
    let diff = try dc.run("diff_schemas", db)
    let indexes = try dc.run("create_indexes", db)
    #expect(indexes["ok"] == true && indexes["failed"] == 0, "create_indexes: \(indexes.json())")
    let constraints = try dc.run("load_constraints", db)
    #expect(constraints["ok"] == true, "load_constraints: \(constraints.json())")
    let fullDiff = try dc.run("diff_schemas", db, ["full": true])
    return (dump, diff, fullDiff)
  }

  @Test func schemaWithEveryObjectKindGoesFrom15To18AndDiffsEqual() throws {
    let pg18 = try PG.pg18()
    let dc = try makeDC(dst18: true, beltPgBin: pg18.bin)
    try dc.addPair("up", srcSQL: SchemaFixtures.rich("public"))
    #expect(try dc.conn("up", .dst).serverVersion == 18)
    let (dump, diff, fullDiff) = try pipeline(dc, "up")
    #expect(dump["pg_dump"]?["major"] == 18 && dump["pg_dump"]?["path"] == .string(pg18.bin))
    // precheck names it too.
    let pre = try dc.run("precheck", "up")
    #expect(pre["pg_dump"]?["major"] == 18, "\(pre["pg_dump"]?.json() ?? "")")
    #expect(
      !(pre["alerts"]?.arrayValue ?? []).contains { $0.stringValue?.contains("pg_dump") == true })
    #expect(dump["dropped_settings"] == .array([]))  // dst 18 has every setting pg_dump 18 sets
    for (name, text) in schemaFiles(dc, "up") {
      #expect(!text.contains("\\restrict") && !text.contains("\\unrestrict"), "\(name)")
    }
    #expect(
      schemaFiles(dc, "up")[SchemaFiles.baseFileName]?.contains("SET transaction_timeout = 0;")
        == true)
    // PostgreSQL 18 prints a view over one table without qualifying its columns
    // (`SELECT id` where 15 prints `SELECT "Customers".id`): diff-schemas re-creates both texts
    // on dst, which stores them the same way, so the schemas match (issue 26).
    for (what, d) in [("diff-schemas", diff), ("diff-schemas --full", fullDiff)] {
      let text = d["diff"]?.stringValue ?? ""
      #expect(d["result"] == "match", "\(what): \(text)")
      #expect(
        (d["cosmetic_diff"]?.stringValue ?? "").isEmpty
          || differsOnlyInViewQualifiers(
            d["cosmetic_diff"]?.stringValue ?? "", tables: ["Customers", "naïve tåble"]),
        "\(what): \(d["cosmetic_diff"]?.stringValue ?? "")")
    }
    // Every object arrived: relations of each kind, enum and domain, functions, triggers, constraints.
    let srcObjects = try objects(dc, "up", .src)
    #expect(srcObjects.count > 40 && srcObjects.contains("trigger Touch Trigger"))
    #expect(try objects(dc, "up", .dst) == srcObjects)
  }

  /// The schema objects of public on one side, one line each (`rel:r Customers`, `type:e Mood`,
  /// `func sql_body`, `trigger Touch Trigger`, `con:c Chk NotValid false`), sorted; objects of
  /// extensions and PostgreSQL 18's NOT NULL constraint rows left out.
  func objects(_ dc: TestDC, _ db: String, _ side: Side) throws -> [String] {
    let c = try dc.conn(db, side)
    defer { c.close() }
    return try c.query(
      """
      WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = 'public'),
      ext AS (SELECT objid FROM pg_depend WHERE deptype = 'e')
      SELECT x FROM (
        SELECT 'rel:' || relkind::text || ' ' || relname AS x FROM pg_class WHERE relnamespace IN (SELECT oid FROM ns)
        UNION ALL SELECT 'type:' || typtype::text || ' ' || typname FROM pg_type
         WHERE typnamespace IN (SELECT oid FROM ns) AND typtype IN ('e', 'd')
        UNION ALL SELECT 'func ' || proname FROM pg_proc
         WHERE pronamespace IN (SELECT oid FROM ns) AND oid NOT IN (SELECT objid FROM ext)
        UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid
         WHERE r.relnamespace IN (SELECT oid FROM ns) AND NOT t.tgisinternal
        UNION ALL SELECT 'con:' || contype::text || ' ' || conname || ' ' || convalidated::text FROM pg_constraint
         WHERE connamespace IN (SELECT oid FROM ns) AND contype <> 'n') o
      ORDER BY x COLLATE "C"
      """
    ).rows.map { $0.string("x") }
  }

  /// Whether every line a unified diff removes is a line it adds once the `"table".`
  /// qualifiers of `tables` are taken out (and it changes something).
  func differsOnlyInViewQualifiers(_ diff: String, tables: [String]) -> Bool {
    let lines = diff.split(separator: "\n").map(String.init).filter {
      !$0.hasPrefix("---") && !$0.hasPrefix("+++")
    }
    let removed = lines.filter { $0.hasPrefix("-") }.map { line in
      tables.reduce(String(line.dropFirst())) {
        $0.replacingOccurrences(of: PGConnection.quoteIdent($1) + ".", with: "")
      }
    }
    let added = lines.filter { $0.hasPrefix("+") }.map { String($0.dropFirst()) }
    return !removed.isEmpty && removed == added
  }

  @Test func from15To15WithPg18ToolsTheFilesLeaveOutWhat15LacksAndLoad() throws {
    let pg18 = try PG.pg18()
    let dc = try makeDC(dst18: false, beltPgBin: pg18.bin)
    // Not `public`: the files of a dump of `public` start with CREATE SCHEMA public, which psql
    // cannot run on a database that has it (belt's load-schema handles it).
    let schema = "App Schema"
    let p = try dc.addPair("same", schema: schema, srcSQL: SchemaFixtures.rich(schema))
    let (dump, diff, fullDiff) = try pipeline(dc, "same")
    #expect(dump["pg_dump"]?["major"] == 18)
    #expect(dump["dropped_settings"] == .from(["transaction_timeout"]))
    let files = schemaFiles(dc, "same")
    for (name, text) in files {
      #expect(!text.contains("transaction_timeout") && !text.contains("\\restrict"), "\(name)")
    }
    #expect(diff["result"] == "match", "diff-schemas: \(diff["diff"]?.stringValue ?? "")")
    #expect(
      fullDiff["result"] == "match", "diff-schemas --full: \(fullDiff["diff"]?.stringValue ?? "")")

    // The written base file loads with psql 15 and ON_ERROR_STOP into a fresh database.
    let fresh = PG.unique("psql15")
    let root = try PG.root(.dst)
    defer { root.close() }
    try root.exec(
      "CREATE DATABASE \(PGConnection.quoteIdent(fresh)) OWNER \(PGConnection.quoteIdent(p.owner.name))"
    )
    let f = try PG.root(.dst, db: fresh)
    defer { f.close() }
    try f.exec("CREATE EXTENSION citext; CREATE EXTENSION pg_trgm;")
    let psql = Process()
    psql.executableURL = URL(fileURLWithPath: PG.pgBin + "/psql")
    let dir = dc.store.schemaDirectory(dc: dc.dc, db: "same")
    psql.arguments = [
      "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", dir + "/" + SchemaFiles.baseFileName,
    ]
    psql.environment = [
      "PGHOST": PG.host, "PGPORT": String(PG.port(.dst)), "PGUSER": PG.rootUser,
      "PGDATABASE": fresh,
      "PGPASSWORD": PG.rootPassword, "PATH": "/usr/bin:/bin",
    ]
    let err = Pipe()
    psql.standardError = err
    psql.standardOutput = FileHandle.nullDevice
    try psql.run()
    let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    psql.waitUntilExit()
    #expect(psql.terminationStatus == 0, "psql 15 -f \(SchemaFiles.baseFileName): \(errText)")
    #expect(
      try f.query("SELECT to_regclass('\"App Schema\".\"Customers\"') IS NOT NULL").scalar == "t")
  }

  @Test func noPgDumpNewEnoughForDst18IsOneLineAndNoFile() throws {
    _ = try PG.pg18()
    // Only PostgreSQL 15's programs: BELT_PG_BIN, /usr/lib/postgresql/15/bin and /usr/bin.
    let dc = try makeDC(dst18: true, beltPgBin: PG.pgBin)
    try dc.addPair("old")
    #expect {
      try dc.run("dump_schema", "old")
    } throws: { e in
      guard let b = e as? BeltError else { return false }
      return b.code == .preconditionFailed && !b.message.contains("\n")
        && b.message.contains("src is PostgreSQL 15, dst is PostgreSQL 18")
        && b.message.contains("pg_dump 18 or newer is needed")
        && b.message.contains("found pg_dump 15 (")
    }
    #expect(!FileManager.default.fileExists(atPath: dc.store.schemaDirectory(dc: dc.dc, db: "old")))
    // precheck: not ok, the same line among its alerts.
    let pre = try dc.run("precheck", "old")
    #expect(pre["ok"] == false && pre["pg_dump"] == .null)
    #expect(
      (pre["alerts"]?.arrayValue ?? []).contains {
        $0.stringValue?.contains("pg_dump 18 or newer is needed") == true
      })

    // The CLI: exit 1, the one line on stderr.
    let r = try CLI.run(
      ["diff-schemas", dc.dc, "old", "--config-dir", dc.root],
      env: ["BELT_PG_BIN": PG.pgBin, "PATH": "/usr/bin:/bin"])
    #expect(r.code == 1)
    let lines = r.err.split(separator: "\n").filter { $0.contains("pg_dump 18 or newer is needed") }
    #expect(lines.count == 1, "stderr: \(r.err)")
    #expect(!r.err.contains(PG.rootPassword) && !r.out.contains(PG.rootPassword))
  }
}
