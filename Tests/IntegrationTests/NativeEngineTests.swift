import Foundation
import Testing

@testable import BeltRuntime

/// The native engine (publications and subscriptions) through the shipped flows, on 15 → 15 and
/// 15 → 18 (the PostgreSQL 18 cluster of scripts/pg-clusters).
@Suite(.serialized, .enabled(if: PG.available, "needs the clusters from scripts/pg-clusters"))
struct NativeEngineTests {
  /// Besides Fixtures.basic: a stored generated column, a partitioned table, an enum and a domain,
  /// a PK-less table written with UPDATE and DELETE.
  static let more = """
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
    CREATE TABLE "Orders" (id bigserial PRIMARY KEY, qty posint NOT NULL, price numeric(10,2) NOT NULL,
      total numeric GENERATED ALWAYS AS (qty * price) STORED, m mood DEFAULT 'ok');
    CREATE TABLE events (id bigint NOT NULL, at date NOT NULL, note text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
    CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
    CREATE TABLE nokey (a int, b text);
    INSERT INTO "Orders" (qty, price, m) SELECT g % 7 + 1, g * 1.5, 'happy' FROM generate_series(1, 200) g;
    INSERT INTO events SELECT g, DATE '2025-06-01' + (g % 400), 'e' || g FROM generate_series(1, 300) g;
    INSERT INTO nokey SELECT g, 'n' || g FROM generate_series(1, 500) g;
    """

  /// Writes on src: INSERT, UPDATE and DELETE on tables with and without a primary key.
  static func write(_ c: PGConnection, round: Int) throws {
    try c.exec(
      """
      INSERT INTO "UsersCapital" (name) VALUES ('w\(round)');
      UPDATE "Orders" SET qty = qty + 1 WHERE id % 10 = \(round % 10);
      DELETE FROM "Orders" WHERE id = \(100 + round);
      INSERT INTO events VALUES (\(1000 + round), DATE '2026-03-01', 'late');
      UPDATE nokey SET b = b || '!' WHERE a % 50 = \(round % 50);
      DELETE FROM nokey WHERE a = \(400 + round);
      INSERT INTO nokey VALUES (\(9000 + round), 'new');
      UPDATE fruits SET name = 'w\(round)' WHERE id = 2;
      """)
  }

  @Test(arguments: [false, true])
  func migrateCutoverRollback(dst18: Bool) throws {
    let dc = try TestDC()
    var env: [String: String] = [:]
    if dst18 {
      let pg18 = try PG.pg18()
      dc.ports[.dst] = pg18.port
      env["BELT_PG_BIN"] = pg18.bin
      var toolEnv = ProcessInfo.processInfo.environment
      toolEnv["BELT_PG_BIN"] = pg18.bin
      dc.toolEnvironment = toolEnv
    }
    let pair = try dc.addPair(
      "app", srcSQL: Fixtures.basic() + Self.more, extra: [("engine", "native")])
    let args = [dc.dc, "--config-dir", dc.root]

    let pre = try CLI.run(["precheck", dc.dc, "app", "--config-dir", dc.root, "--json"], env: env)
    let preRec = try JSONParser.parse(pre.out)
    #expect(preRec["engine"] == "native", "\(pre.out)")
    let nokey = preRec["tables"]?.arrayValue?.first { $0["name"] == "nokey" }
    #expect(
      nokey?["replication"] == "native"
        && (nokey?["why"]?.stringValue ?? "").contains("REPLICA IDENTITY FULL"), "\(pre.out)")

    // Large objects (issue 24): copied by migrate.lua, the delta by the cutover, back by rollback.
    let s = try dc.conn("app", .src)
    defer { s.close() }
    try s.exec(LargeObjectTests.create(first: 800_000, count: 20))
    let migrate = try CLI.run(["run", "migrate.lua"] + args, env: env)
    #expect(migrate.code == 0, "\(migrate.err)")
    #expect(migrate.out.contains("ready for cutover"), "\(migrate.out)")
    try s.exec(
      LargeObjectTests.create(first: 900_000, count: 3) + "SELECT lo_unlink(800001);")
    // The PK-less table got a replica identity before it was published: UPDATE/DELETE work.
    #expect(
      try s.query("SELECT relreplident::text FROM pg_class WHERE oid = 'nokey'::regclass").scalar
        == "f")
    for round in 1...20 { try Self.write(s, round: round) }
    let status = try dc.run("status", "app")
    #expect(status["forward"] == "replicating", "\(status.json())")
    #expect(status["back"] == "armed", "\(status.json())")

    let cutover = try CLI.run(
      ["run", "cutover.lua"] + args + ["--", "drain_timeout=2s", "lock_out_shared=true"], env: env)
    #expect(cutover.code == 0, "\(cutover.err) \(cutover.out)")
    let d = try dc.conn("app", .dst)
    defer { d.close() }
    #expect(try LoadTests.fingerprint(s) == LoadTests.fingerprint(d))
    #expect(try LargeObjectTests.inventory(d) == LargeObjectTests.inventory(s))
    #expect(try LargeObjectTests.inventory(d).count == 22)
    #expect(try d.query("SELECT last_value FROM standalone_seq").scalar == "42")
    let after = try dc.run("status", "app")
    #expect(after["forward"] == "unconfigured" && after["back"] == "replicating", "\(after.json())")

    // A write on dst after the switch reaches src through back replication.
    try d.exec(
      "INSERT INTO \"UsersCapital\" (name) VALUES ('after cutover'); DELETE FROM nokey WHERE a = 7; UPDATE \"Orders\" SET qty = 99 WHERE id = 1; "
        + "SELECT lo_from_bytea(950000, '\\x0102'); SELECT lo_unlink(800002)"
    )
    var arrived = false
    for _ in 0..<100 where !arrived {
      arrived =
        try s.query("SELECT count(*) FROM \"UsersCapital\" WHERE name = 'after cutover'").scalar
        == "1"
        && s.query("SELECT count(*) FROM nokey WHERE a = 7").scalar == "0"
        && s.query("SELECT qty FROM \"Orders\" WHERE id = 1").scalar == "99"
      if !arrived { Thread.sleep(forTimeInterval: 0.1) }
    }
    #expect(arrived, "dst's writes after the cutover reached src")

    let rollback = try CLI.run(
      ["run", "rollback.lua"] + args + ["--", "lock_out_shared=true"], env: env)
    #expect(rollback.code == 0, "\(rollback.err) \(rollback.out)")
    #expect(try LoadTests.fingerprint(s) == LoadTests.fingerprint(d))
    #expect(try LargeObjectTests.inventory(s) == LargeObjectTests.inventory(d), "copied back")
    #expect(
      try s.query("SELECT count(*) FROM pg_largeobject_metadata WHERE oid = 950000").scalar == "1")

    let teardown = try dc.run("teardown", "app")
    #expect(teardown["ok"] != false, "\(teardown.json())")
    #expect(
      try s.query("SELECT relreplident::text FROM pg_class WHERE oid = 'nokey'::regclass").scalar
        == "d", "replica identity restored")
    #expect(
      try s.query("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()")
        .scalar == "0")
    #expect(
      try d.query("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()")
        .scalar == "0")
    #expect(try s.query("SELECT count(*) FROM pg_publication").scalar == "0")
    _ = pair
  }
}

extension NativeEngineTests {
  /// A row that conflicts on dst stops the native apply worker: status says down, with the
  /// cause, within seconds (the worker retries every few seconds; no server log needed).
  @Test func applyErrorIsDownWithItsCauseWithinSeconds() throws {
    let dc = try TestDC()
    try dc.addPair("app", srcSQL: Fixtures.basic(), extra: [("engine", "native")])
    _ = try dc.run("setup", "app")
    #expect(try eventually { try dc.run("status", "app")["forward"] == "replicating" })
    let d = try dc.conn("app", .dst)
    defer { d.close() }
    try d.exec("INSERT INTO \"UsersCapital\" (id, name) VALUES (1000, 'dst only')")
    let s = try dc.conn("app", .src)
    defer { s.close() }
    let t0 = Date()
    try s.exec("INSERT INTO \"UsersCapital\" (id, name) VALUES (1000, 'src')")
    var st: Value = .null
    let down = try eventually(10) {
      st = try dc.run("status", "app")
      return st["forward"] == "down"
    }
    #expect(down, "\(st.json())")
    #expect(st["forward_error"]?.stringValue?.contains("apply") == true, "\(st.json())")
    print(
      String(
        format: "[native apply error] down after %.1f s: %@", Date().timeIntervalSince(t0),
        st["forward_error"]?.stringValue ?? "?"))
    // Mended on dst: replication resumes and the row from src arrives.
    try d.exec("DELETE FROM \"UsersCapital\" WHERE id = 1000")
    #expect(
      try eventually(20) {
        try d.query("SELECT name FROM \"UsersCapital\" WHERE id = 1000").scalar == "src"
      })
    #expect(try eventually(20) { try dc.run("status", "app")["forward"] == "replicating" })
    _ = try? dc.run("teardown", "app")
  }
}

extension IsolatedFaultTests {
  /// Native teardown while dst is stopped: src is cleaned (publication, replica identity, the
  /// forward slot that would hold WAL), dst's leftovers are named; once dst is back, the same
  /// command removes them and nothing of the migration is left on either side.
  @Test func nativeTeardownWithDstStoppedNamesWhatIsLeftAndFinishesLater() throws {
    let dc = try TestDC()
    try dc.addPair("app", srcSQL: Fixtures.basic(), extra: [("engine", "native")])
    _ = try dc.run("setup", "app")
    #expect(try eventually { try dc.run("status", "app")["forward"] == "replicating" })
    let s = try dc.conn("app", .src)
    defer { s.close() }
    #expect(try pgClusters(["stop", "dst"]) == 0)
    var started = false
    defer { if !started { _ = try? pgClusters(["start", "dst"]) } }
    let first = try dc.run("teardown", "app")
    #expect(first["unreachable"] == "dst", "\(first.json())")
    #expect(
      first["message"]?.stringValue?.contains("run teardown again") == true, "\(first.json())")
    #expect(
      try s.query("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()")
        .scalar == "0")
    #expect(try s.query("SELECT count(*) FROM pg_publication").scalar == "0")
    #expect(
      try s.query("SELECT relreplident::text FROM pg_class WHERE oid = 'fruits'::regclass").scalar
        == "d")
    #expect(try pgClusters(["start", "dst"]) == 0)
    started = true
    let second = try dc.run("teardown", "app")
    #expect(second["unreachable"] == nil, "\(second.json())")
    let d = try dc.conn("app", .dst)
    defer { d.close() }
    #expect(
      try d.query(
        "SELECT count(*) FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
      ).scalar == "0")
    #expect(
      try d.query("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()")
        .scalar == "0")
    #expect(try d.query("SELECT count(*) FROM pg_publication").scalar == "0")
  }
}

extension NativeEngineTests {
  /// A pglogical pair whose dst is PostgreSQL 18 without pglogical: precheck says which engines
  /// each server can run, and setup refuses in one line before it changes src.
  @Test func anEngineAServerCannotRunIsRefusedBeforeAnyChange() throws {
    let dc = try TestDC()
    let pg18 = try PG.pg18()
    dc.ports[.dst] = pg18.port
    var toolEnv = ProcessInfo.processInfo.environment
    toolEnv["BELT_PG_BIN"] = pg18.bin
    dc.toolEnvironment = toolEnv
    let pair = try dc.addPair("app", srcSQL: Fixtures.basic())
    let pre = try dc.run("precheck", "app")
    #expect(pre["engine"] == "pglogical")
    #expect(pre["engines"]?["dst"]?["pglogical"]?["ok"] == false, "\(pre.json())")
    #expect(pre["engines"]?["dst"]?["native"]?["ok"] == true, "\(pre.json())")
    #expect(pre["engines"]?["src"]?["pglogical"]?["ok"] == true, "\(pre.json())")
    let cli = try CLI.run(
      ["setup", dc.dc, "app", "--config-dir", dc.root], env: ["BELT_PG_BIN": pg18.bin])
    #expect(cli.code != 0)
    let lines = cli.err.split(separator: "\n").filter { !$0.isEmpty }
    #expect(
      lines.count == 1 && cli.err.contains("engine \"pglogical\" cannot run")
        && cli.err.contains("\"native\""), "\(cli.err)")
    let s = try dc.conn("app", .src)
    defer { s.close() }
    #expect(
      try s.query("SELECT count(*) FROM pg_extension WHERE extname = 'pglogical'").scalar == "0",
      "src unchanged")
    #expect(
      try s.query("SELECT count(*) FROM pg_roles WHERE rolname = $1", [pair.pglogical.name]).scalar
        == "0", "no role made")
  }
}

extension NativeEngineTests {
  /// A fleet: three native pairs on one server pair (slots are per server: each database's
  /// has its own name), migrated and cut over dc-wide, with a shared replication role.
  @Test func aFleetOnOneServerPairMigratesAndCutsOver() throws {
    let dc = try TestDC()
    let role = Credentials(name: PG.unique("repl"), password: "r 'e\\pl")
    for i in 0..<3 {
      try dc.addPair(
        "db\(i)", srcSQL: Fixtures.basic() + Self.more, extra: [("engine", "native")],
        pglogical: role)
    }
    let migrate = try CLI.run(["run", "migrate.lua", dc.dc, "--config-dir", dc.root])
    #expect(migrate.code == 0, "\(migrate.err)")
    for i in 0..<3 {
      let s = try dc.conn("db\(i)", .src)
      defer { s.close() }
      for round in 1...5 { try Self.write(s, round: round * (i + 1)) }
    }
    let cutover = try CLI.run([
      "run", "cutover.lua", dc.dc, "--config-dir", dc.root, "--", "drain_timeout=2s",
      "lock_out_shared=true",
    ])
    #expect(cutover.code == 0, "\(cutover.err) \(cutover.out)")
    for i in 0..<3 {
      let s = try dc.conn("db\(i)", .src)
      let d = try dc.conn("db\(i)", .dst)
      defer { s.close(); d.close() }
      #expect(try LoadTests.fingerprint(s) == LoadTests.fingerprint(d), "db\(i)")
    }
    let teardown = try CLI.run(["teardown", dc.dc, "--config-dir", dc.root])
    #expect(teardown.code == 0, "\(teardown.err)")
    let r = try PG.root(.src)
    defer { r.close() }
    #expect(
      try r.query("SELECT count(*) FROM pg_roles WHERE rolname = $1", [role.name]).scalar == "0",
      "the shared role is dropped with the last pair")
    let dbnames = PGArray.literal((0..<3).compactMap { dc.pairs["db\($0)"]?.dbname })
    for side in Side.allCases {
      let c = try dc.serverRoot(side)
      defer { c.close() }
      #expect(
        try c.query(
          "SELECT count(*) FROM pg_replication_slots WHERE database = ANY($1::text[])", [dbnames]
        ).scalar == "0", "\(side)")
    }
  }
}
