import Foundation
import Testing

@testable import BeltRuntime

/// Issue 25: belt's own initial copy on the native engine (exported snapshot, parallel COPY,
/// ctid ranges, indexes after the copy, resumable table by table).
@Suite(.serialized, .enabled(if: PG.available, "needs the clusters from scripts/pg-clusters"))
struct SnapshotCopyTests {
  /// Every type of the test schemas (NativeEngineTests.more: enum, domain, generated column,
  /// partitions, a PK-less table) plus one table of many more types, with the values text COPY
  /// must escape, and a table big enough to be split into ctid ranges at copy_split_mb=0.5.
  static let schema =
    Fixtures.basic() + NativeEngineTests.more + """
      CREATE TYPE pair AS (a int, b text);
      CREATE TABLE types (id int PRIMARY KEY, b bool, i2 smallint, f4 real, f8 double precision,
        n numeric, m money, vc varchar(10), ch char(3), by bytea, d date, ts timestamp, tz timestamptz,
        tm time, tmz timetz, iv interval, u uuid, j json, jb jsonb, ip inet, net cidr, mac macaddr,
        bits varbit, ia int[], ta text[], moods mood[], p pair, pairs pair[], r int4range, pt point,
        tv tsvector, t text);
      INSERT INTO types SELECT g, g % 2 = 0, g, g / 3.0, CASE g WHEN 1 THEN 'NaN' WHEN 2 THEN '-Infinity' ELSE g / 7.0 END,
        CASE WHEN g = 3 THEN 'NaN'::numeric ELSE g * 1.1 END, g, 'v' || g, 'c', decode(md5(g::text), 'hex'),
        CASE WHEN g = 4 THEN 'infinity'::date ELSE DATE '2024-01-01' + g END, TIMESTAMP '2024-01-01 00:00:00.123456' + g * INTERVAL '1 h',
        TIMESTAMPTZ '2024-01-01 00:00:00+05' + g * INTERVAL '1 min', TIME '12:34:56.789', TIMETZ '12:00+02',
        g * INTERVAL '1 day 2 h', gen_random_uuid(), json_build_object('g', g, 's', E'tab\\there'),
        jsonb_build_object('g', g, 'a', jsonb_build_array(1, 'x')), '10.0.0.1'::inet + g, '10.1.0.0/16',
        '08:00:2b:01:02:03', B'1011', ARRAY[g, NULL, 3], ARRAY[E'a\\tb', E'new\\nline', 'back\\\\slash', NULL, '"q"'],
        ARRAY['sad', 'happy']::mood[], ROW(g, E'x,y"z')::pair, ARRAY[ROW(1, 'a')::pair, ROW(2, NULL)::pair],
        int4range(g, g + 10), point(g, -g), to_tsvector('simple', 'the quick fox ' || g),
        CASE WHEN g % 5 = 0 THEN NULL ELSE E'line1\\nline2\\r\\t\\\\ end' END
      FROM generate_series(1, 60) g;
      CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL, pad text);
      INSERT INTO big SELECT g, 0, repeat(md5(g::text), 3) FROM generate_series(1, 20000) g;
      CREATE INDEX big_v ON big (v);
      CREATE TABLE covering_pk (id int, v text, PRIMARY KEY (id) INCLUDE (v));
      INSERT INTO covering_pk SELECT g, 'c' || g FROM generate_series(1, 50) g;
      ANALYZE;
      """

  /// Mixed writes on src, one transaction per round, until stopped.
  final class Load: @unchecked Sendable {
    private let lock = NSLock()
    private var stopFlag = false
    private(set) var rounds = 0
    private var failure: String?
    private let finished = DispatchSemaphore(value: 0)

    /// Runs `sql(round)` in one transaction per round, every 5 ms.
    init(conninfo: String, _ sql: @escaping @Sendable (Int) -> String) {
      let t = Thread { [self] in
        defer { finished.signal() }
        guard let c = try? PGConnection(conninfo: conninfo, label: "load") else {
          lock.withLock { failure = "cannot connect" }
          return
        }
        defer { c.close() }
        var round = 0
        while !lock.withLock({ stopFlag }) {
          round += 1
          do {
            try c.exec("BEGIN; " + sql(round) + "; COMMIT")
            lock.withLock { rounds = round }
          } catch {
            lock.withLock { failure = "\(error)" }
            return
          }
          Thread.sleep(forTimeInterval: 0.005)
        }
      }
      t.start()
    }

    /// The writes of NativeEngineTests plus updates of the split table and the types table.
    static func mixed(_ round: Int) -> String {
      """
      UPDATE big SET v = v + 1 WHERE id % 97 = \(round % 97);
      DELETE FROM big WHERE id = \(round * 7);
      INSERT INTO big VALUES (\(100_000 + round), \(round), 'new');
      UPDATE types SET n = n + 1, moods = moods || 'ok'::mood WHERE id = \(round % 60 + 1);
      INSERT INTO "UsersCapital" (name) VALUES ('w\(round)');
      UPDATE "Orders" SET qty = qty + 1 WHERE id % 10 = \(round % 10);
      DELETE FROM "Orders" WHERE id = \(100 + round);
      INSERT INTO events VALUES (\(1000 + round), DATE '2026-03-01', 'late');
      UPDATE nokey SET b = b || '!' WHERE a % 50 = \(round % 50);
      DELETE FROM nokey WHERE a = \(400 + round);
      INSERT INTO nokey VALUES (\(9000 + round), 'new');
      UPDATE fruits SET name = 'w\(round)' WHERE id = 2
      """
    }

    var count: Int { lock.withLock { rounds } }

    func stop() -> (Int, String?) {
      lock.withLock { stopFlag = true }
      finished.wait()
      return lock.withLock { (rounds, failure) }
    }
  }

  /// A pair on 15 -> 18 (`dst18`) or 15 -> 15, with its CLI environment.
  static func pair(_ dst18: Bool, sql: String, extra: [(String, Value)] = []) throws -> (
    TestDC, TestDC.PairSpec, [String: String]
  ) {
    let dc = try TestDC()
    let env = dst18 ? try dc.useDst18() : [:]
    let pair = try dc.addPair("app", srcSQL: sql, extra: [("engine", "native")] + extra)
    return (dc, pair, env)
  }

  /// Waits until every table has the same ordered hash on both sides.
  static func expectCaughtUp(
    _ dc: TestDC, tables: Int, timeout: Double = 60,
    sourceLocation: SourceLocation = #_sourceLocation
  ) throws {
    let src = try dc.conn("app", .src)
    let dst = try dc.conn("app", .dst)
    defer { src.close(); dst.close() }
    let end = Date().addingTimeInterval(timeout)
    var a: [String: String] = [:]
    var b: [String: String] = [:]
    repeat {
      a = try LoadTests.fingerprint(src)
      b = try LoadTests.fingerprint(dst)
      if a == b { break }
      Thread.sleep(forTimeInterval: 0.5)
    } while Date() < end
    #expect(a.count >= tables, sourceLocation: sourceLocation)
    #expect(
      a == b, "tables differ: \(a.filter { b[$0.key] != $0.value }.keys.sorted())",
      sourceLocation: sourceLocation)
  }

  static func record(_ dc: TestDC) -> Value? {
    Resume.journal(dc, "app", flow: SnapshotCopy.flow)
  }

  @Test(arguments: [true, false])
  func copiesFromAnExportedSnapshotUnderWrites(dst18: Bool) throws {
    let (dc, _, env) = try Self.pair(dst18, sql: Self.schema)
    defer { Repl.cleanup(dc) }
    let args = [dc.dc, "app", "--config-dir", dc.root]
    let pre = try CLI.run(["precheck"] + args + ["--json"], env: env)
    #expect(
      (try JSONParser.parse(pre.out))["initial_copy"]?.stringValue?.hasPrefix(
        "belt's copy from an exported snapshot") == true, "\(pre.out)")

    let load = Load(
      conninfo: try dc.store.load(dc: dc.dc, db: "app").server(.src).conninfo(.root), Load.mixed)
    while load.count < 5 { Thread.sleep(forTimeInterval: 0.01) }
    let before = load.count
    let m = try CLI.run(
      ["run", "migrate.lua"] + args + ["--", "copy_jobs=3", "copy_split_mb=0.5"], env: env)
    let during = load.count - before
    let (rounds, failure) = load.stop()
    #expect(m.code == 0, "\(m.err)")
    #expect(failure == nil, "\(failure ?? "")")
    #expect(during > 0 && rounds > before, "writes ran during the migration")
    #expect(m.err.contains("initial copy"), "\(m.err)")

    let r = Self.record(dc)
    #expect(r?["state"] == "done", "\(r?.json() ?? "no record")")
    #expect(r?["tables_done"] == r?["tables_total"])
    #expect((r?["tables_total"]?.intValue ?? 0) >= 10)
    // The slot made on the replication connection is in the audit log like every other change.
    let audit =
      (try? String(contentsOfFile: dc.root + "/configs/\(dc.dc)/app/audit.jsonl", encoding: .utf8))
      ?? ""
    #expect(
      audit.split(separator: "\n").contains { $0.contains("CREATE_REPLICATION_SLOT") },
      "audit.jsonl names CREATE_REPLICATION_SLOT")
    let big = r?["tables"]?.arrayValue?.first { $0["name"] == "big" }
    #expect((big?["parts"]?.arrayValue?.count ?? 0) >= 3, "big split into ctid ranges")
    #expect((big?["rows"]?.intValue ?? 0) >= 19_000)
    let types = r?["tables"]?.arrayValue?.first { $0["name"] == "types" }
    #expect(types?["rows"] == 60 && types?["format"] == "binary", "\(types?.json() ?? "")")
    #expect(r?["handed_over"] == nil)
    #expect(r?["eta_s"] == 0)

    try Self.expectCaughtUp(dc, tables: 13)
    let dst = try dc.conn("app", .dst)
    defer { dst.close() }
    // The subscription copied nothing (every table ready from the start, on belt's slot), and
    // dst has its keys and indexes back.
    #expect(
      try dst.query("SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'").scalar
        == "0")
    #expect(
      try dst.query("SELECT subslotname FROM pg_subscription").scalar
        == r?["slot"]?.stringValue)
    #expect(
      try dst.query(
        "SELECT count(*) FROM pg_index WHERE indrelid = 'big'::regclass AND (indisprimary OR indexrelid = 'big_v'::regclass)"
      ).scalar == "2")
    // Every primary key is back under its own name and definition: those built as a unique
    // index beside the others and attached, and the covering one (INCLUDE) added back whole.
    let keys = """
      SELECT string_agg(k, ', ' ORDER BY k) FROM (
        SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) AS k
        FROM pg_constraint WHERE contype = 'p' AND connamespace = 'public'::regnamespace) x
      """
    let src = try dc.conn("app", .src)
    defer { src.close() }
    let (srcKeys, dstKeys) = (try src.query(keys).scalar, try dst.query(keys).scalar)
    #expect(dstKeys == srcKeys)
    #expect(
      try dst.query(keys).scalar?.contains(
        "covering_pk covering_pk_pkey PRIMARY KEY (id) INCLUDE (v)")
        == true)
    let status = try CLI.run(["status"] + args + ["--json"], env: env)
    let st = try JSONParser.parse(status.out)
    #expect(st["copy_state"] == "done", "\(status.out)")
    #expect(st["initial_copy"]?["tables"]?.arrayValue?.isEmpty == false)
  }

  /// belt killed in the middle of the copy, after a table finished: the same command keeps the
  /// finished tables (not copied again: dst's n_tup_ins) and hands the unfinished ones to the
  /// subscription's own copy; every table equal.
  @Test func sigkillMidCopyThenTheSameCommandFinishes() throws {
    let sql =
      Fixtures.basic() + """
        CREATE TABLE big_a (id int PRIMARY KEY, pad text);
        CREATE TABLE big_b (id int PRIMARY KEY, pad text);
        INSERT INTO big_a SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 100000) g;
        INSERT INTO big_b SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 100000) g;
        ANALYZE;
        """
    let (dc, _, env) = try Self.pair(true, sql: sql)
    defer { Repl.cleanup(dc) }
    let args = ["run", "migrate.lua", dc.dc, "app", "--config-dir", dc.root, "--", "copy_jobs=1"]
    let bg = try Resume.Background(args, scratch: dc.root, env: env)
    let end = Date().addingTimeInterval(120)
    var caught = false
    while Date() < end, bg.process.isRunning {
      if let r = Self.record(dc), (r["tables_done"]?.intValue ?? 0) >= 1 {
        caught = true
        break
      }
      Thread.sleep(forTimeInterval: 0.01)
    }
    bg.stop(SIGKILL)
    #expect(caught, "belt ended before a table finished: \(bg.output)")
    let killed = Self.record(dc)
    #expect(killed?["state"] == "copying", "\(killed?.json() ?? "")")
    let done = Set(
      (killed?["tables"]?.arrayValue ?? []).filter { $0["state"] == "done" }.compactMap {
        $0["name"]?.stringValue
      })
    #expect(!done.isEmpty && done.count < (killed?["tables_total"]?.intValue ?? 0))
    for t in killed?["tables"]?.arrayValue ?? [] where t["state"] == "done" {
      if t["name"]?.stringValue?.hasPrefix("big_") == true { #expect(t["rows"] == 100_000) }
    }
    let status = try CLI.run(["status", dc.dc, "app", "--config-dir", dc.root], env: env)
    #expect(status.out.contains("copy"), "\(status.out)")

    // Writes while belt is down, then the same command.
    try Cut.exec(
      dc, "app", .src,
      "UPDATE big_a SET pad = 'x' WHERE id % 1000 = 0; DELETE FROM big_b WHERE id % 999 = 0; INSERT INTO big_b VALUES (900000, 'late')"
    )
    // … and while it finishes the copy.
    let load = Load(
      conninfo: try dc.store.load(dc: dc.dc, db: "app").server(.src).conninfo(.root)
    ) { round in
      """
      UPDATE big_a SET pad = 'r\(round)' WHERE id = \(round * 13);
      UPDATE big_b SET pad = 'r\(round)' WHERE id = \(round * 17);
      DELETE FROM big_b WHERE id = \(round * 11);
      INSERT INTO big_a VALUES (\(500_000 + round), 'n');
      INSERT INTO "UsersCapital" (name) VALUES ('w\(round)')
      """
    }
    let again = try CLI.run(Array(args), env: env)
    let (rounds, failure) = load.stop()
    #expect(again.code == 0, "\(again.err)")
    #expect(again.err.contains("resuming"), "\(again.err)")
    #expect(failure == nil && rounds > 0, "\(failure ?? "")")
    try Self.expectCaughtUp(dc, tables: 8)
    let r = Self.record(dc)
    #expect(r?["state"] == "done")
    let handed = Set(r?["handed_over"]?.arrayValue?.compactMap(\.stringValue) ?? [])
    #expect(!handed.isEmpty && handed.isDisjoint(with: done), "\(handed) \(done)")
    // Finished tables were not copied again: dst inserted each of their rows once (a second
    // copy would double n_tup_ins).
    let dst = try dc.conn("app", .dst)
    defer { dst.close() }
    for t in done where t.hasPrefix("big_") {
      var ins = 0
      for _ in 0..<20 {
        ins =
          Int(
            try dst.query("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = $1", [t])
              .scalar
              ?? "") ?? 0
        if ins >= 100_000 { break }
        Thread.sleep(forTimeInterval: 0.5)
      }
      #expect(ins >= 100_000 && ins < 150_000, "\(t): n_tup_ins \(ins)")
    }
  }
}

extension SnapshotCopyTests {
  /// A resumed copy withdraws its unfinished tables from the publication again when the run
  /// that withdrew them was killed before it subscribed: tables no longer published are left
  /// alone (ALTER PUBLICATION … DROP TABLE has no IF EXISTS), the others go.
  @Test func withdrawingTablesTwiceIsNotAnError() throws {
    let dc = try TestDC()
    try dc.addPair(
      "app",
      srcSQL: "CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE \"B c\" (id int PRIMARY KEY);")
    let src = try dc.conn("app", .src)
    defer { src.close() }
    try src.exec("CREATE PUBLICATION belt_fwd FOR TABLE a, \"B c\"")
    let engine = NativeEngine()
    try engine.withdraw(src, schema: "public", tables: ["B c"])
    try engine.withdraw(src, schema: "public", tables: ["a", "B c"])
    #expect(try engine.publishedTables(src, schema: "public") == [])
  }
}

extension SnapshotCopyTests {
  /// An interrupted copy that teardown ends (its slot dropped) can no longer resume: status
  /// stops telling the operator to run setup to finish it, and says it was abandoned.
  @Test func teardownAbandonsAnInterruptedCopy() throws {
    let dc = try TestDC()
    try dc.addPair(
      "app", srcSQL: "CREATE TABLE a (id int PRIMARY KEY);", extra: [("engine", "native")])
    let args = [dc.dc, "app", "--config-dir", dc.root]
    let stamp = Date().timeIntervalSince1970 - 60
    try """
    {"flow": "initial-copy", "state": "copying", "run": 1, "pct": 40.0, "updated_epoch": \(stamp), "tables": []}
    """.write(
      toFile: dc.root + "/configs/\(dc.dc)/app/initial-copy.journal.json", atomically: true,
      encoding: .utf8)
    let before = try JSONParser.parse(try CLI.run(["status"] + args + ["--json"]).out)
    #expect(before["copy_state"] == "copying")
    #expect(
      before["copy_interrupted"]?.stringValue?.contains("run setup") == true, "\(before.json())")
    let t = try CLI.run(["teardown"] + args)
    #expect(t.code == 0, "\(t.err)")
    let after = try JSONParser.parse(try CLI.run(["status"] + args + ["--json"]).out)
    #expect(after["copy_state"] == "abandoned", "\(after.json())")
    #expect(after["copy_interrupted"] == nil)
  }
}
