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
    let env = dst18 ? try dc.useDst18() : [:]
    let pair = try dc.addPair(
      "app", srcSQL: Fixtures.basic() + Self.more, extra: [("engine", "native")])
    let args = [dc.dc, "--config-dir", dc.root]

    let pre = try CLI.run(["precheck", dc.dc, "app", "--config-dir", dc.root, "--json"], env: env)
    let preRec = try JSONParser.parse(pre.out)
    #expect(preRec["engine"] == "native", "\(pre.out)")
    // src is PostgreSQL 15: no origin filter, back replication waits for the cutover.
    #expect(
      preRec["both_directions_at_once"] == false
        && (preRec["both_directions_why_not"]?.stringValue ?? "").contains("src is PostgreSQL 15"),
      "\(pre.out)")
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
    let env = try dc.useDst18()
    let pair = try dc.addPair("app", srcSQL: Fixtures.basic())
    let pre = try dc.run("precheck", "app")
    #expect(pre["engine"] == "pglogical")
    #expect(pre["engines"]?["dst"]?["pglogical"]?["ok"] == false, "\(pre.json())")
    #expect(pre["engines"]?["dst"]?["native"]?["ok"] == true, "\(pre.json())")
    #expect(pre["engines"]?["src"]?["pglogical"]?["ok"] == true, "\(pre.json())")
    let cli = try CLI.run(
      ["setup", dc.dc, "app", "--config-dir", dc.root], env: env)
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
    // The three pairs are done with the servers (cut over, torn down): the budget of a new pair
    // of the dc counts it alone.
    try dc.addPair("db3", srcSQL: Fixtures.basic(), extra: [("engine", "native")])
    let pre = try dc.run("precheck", "db3")
    let slots = pre["server_budget"]?.arrayValue?.filter {
      $0["name"]?.stringValue?.hasPrefix("max_replication_slots") == true
    }
    #expect(
      slots?.count == 2
        && slots?.allSatisfy { $0["why"]?.stringValue?.hasPrefix("1 needed") == true } == true,
      "\(slots.map { Value.array($0).json() } ?? "none")")
  }
}

extension NativeEngineTests {
  /// 18 → 18 (the two PostgreSQL 18 clusters): both subscriptions with `origin = none`, so back
  /// replication runs beside forward from setup-back-replication on. Under live writes on src:
  /// a change on either side arrives on the other exactly once and never comes back (a PK-less
  /// table would take a looped INSERT twice, a PK table would stop its apply on the duplicate
  /// key, and a row updated again by a loop gets a new xmin); the cutover passes its gate with
  /// back running; every table is equal; a write on dst after the cutover reaches src; then
  /// rollback.lua goes back to src with everything dst took.
  @Test func bothDirectionsAtOnceFrom18To18WithoutLoops() throws {
    let t0 = Date()
    let dc = try TestDC()
    let pg18 = try PG.pg18()
    dc.ports = [.src: pg18.port, .dst: try PG.pg18b()]
    var toolEnv = ProcessInfo.processInfo.environment
    toolEnv["BELT_PG_BIN"] = pg18.bin
    dc.toolEnvironment = toolEnv
    let env = ["BELT_PG_BIN": pg18.bin]
    let pair = try dc.addPair(
      "app", srcSQL: Fixtures.basic() + Self.more, extra: [("engine", "native")])
    let args = [dc.dc, "--config-dir", dc.root]
    let pre = try JSONParser.parse(
      try CLI.run(["precheck", dc.dc, "app", "--config-dir", dc.root, "--json"], env: env).out)
    #expect(pre["both_directions_at_once"] == true, "\(pre.json())")

    // Live writes on src as the application's owner, a new connection per transaction: the
    // fence stops them.
    let script = dc.root + "/live.sql"
    try """
    \\set r random(1, 500)
    INSERT INTO "UsersCapital" (name) VALUES ('live');
    INSERT INTO nokey VALUES (:r + 100000, 'live');
    UPDATE nokey SET b = b || '+' WHERE a = :r;
    """.write(toFile: script, atomically: true, encoding: .utf8)
    let bench = Process()
    bench.executableURL = URL(fileURLWithPath: PG.pgBin + "/pgbench")
    bench.arguments = [
      "-n", "-C", "-c", "2", "-R", "40", "-T", "120", "-f", script, "-h", PG.host, "-p",
      String(pg18.port), "-U", pair.owner.name, pair.dbname,
    ]
    bench.environment = ["PGPASSWORD": pair.owner.password, "PATH": "/usr/bin:/bin"]
    bench.standardOutput = FileHandle.nullDevice
    bench.standardError = FileHandle.nullDevice
    try bench.run()
    defer { if bench.isRunning { bench.terminate() } }

    let migrate = try CLI.run(["run", "migrate.lua"] + args, env: env)
    #expect(migrate.code == 0, "\(migrate.err)")
    let status = try dc.run("status", "app")
    #expect(
      status["forward"] == "replicating" && status["back"] == "replicating", "\(status.json())")
    let s = try dc.conn("app", .src)
    let d = try dc.conn("app", .dst)
    defer { s.close(); d.close() }
    for c in [s, d] {
      #expect(
        try c.query(
          "SELECT string_agg(subname || '=' || suborigin, ',') FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).scalar?.hasSuffix("=none") == true)
    }

    func count(_ c: PGConnection, _ sql: String) throws -> Int {
      Int(try c.query(sql).scalar ?? "") ?? -1
    }
    func arrives(_ c: PGConnection, _ sql: String, _ what: String) throws {
      #expect(try eventually(20) { try count(c, sql) == 1 }, "\(what)")
    }
    // dst's own writes during the migration reach src once.
    try d.exec(
      """
      INSERT INTO nokey VALUES (-1, 'written on dst');
      INSERT INTO "UsersCapital" (id, name) VALUES (1000000, 'written on dst');
      """)
    try arrives(s, "SELECT count(*) FROM nokey WHERE a = -1", "dst's PK-less insert on src")
    try arrives(
      s, "SELECT count(*) FROM \"UsersCapital\" WHERE id = 1000000", "dst's insert on src")
    try d.exec("UPDATE \"UsersCapital\" SET name = 'updated on dst' WHERE id = 1000000")
    let xmin = "SELECT xmin::text FROM \"UsersCapital\" WHERE id = 1000000"
    let dstXmin = try d.query(xmin).scalar
    try arrives(
      s, "SELECT count(*) FROM \"UsersCapital\" WHERE id = 1000000 AND name = 'updated on dst'",
      "dst's update on src")
    let srcXmin = try s.query(xmin).scalar
    try s.exec("INSERT INTO nokey VALUES (-2, 'written on src')")
    try arrives(d, "SELECT count(*) FROM nokey WHERE a = -2", "src's PK-less insert on dst")
    // A round trip of markers: each direction applies in commit order, so whatever would have
    // looped (the changes above, sent on by the side that applied them) has arrived by now.
    try s.exec("INSERT INTO nokey VALUES (-3, 'marker from src')")
    try arrives(d, "SELECT count(*) FROM nokey WHERE a = -3", "src's marker on dst")
    try d.exec("INSERT INTO nokey VALUES (-4, 'marker from dst')")
    try arrives(s, "SELECT count(*) FROM nokey WHERE a = -4", "dst's marker on src")
    for (c, side) in [(s, "src"), (d, "dst")] {
      #expect(
        try count(c, "SELECT count(*) FROM nokey WHERE a BETWEEN -4 AND -1") == 4,
        "\(side): each of the four PK-less rows once")
      #expect(
        try count(
          c,
          "SELECT coalesce(sum(apply_error_count + sync_error_count), 0) FROM pg_stat_subscription_stats"
        ) == 0, "\(side): no apply error (a looped insert is a duplicate key)")
    }
    #expect(try d.query(xmin).scalar == dstXmin, "dst's updated row was not updated again")
    #expect(try s.query(xmin).scalar == srcXmin, "src applied dst's update once")

    let cutover = try CLI.run(
      ["run", "cutover.lua"] + args + ["--", "drain_timeout=2s", "lock_out_shared=true"], env: env)
    #expect(cutover.code == 0, "\(cutover.err) \(cutover.out)")
    bench.terminate()
    bench.waitUntilExit()
    #expect(
      try count(s, "SELECT count(*) FROM \"UsersCapital\" WHERE name = 'live'") > 10,
      "the live writes ran")
    #expect(try LoadTests.fingerprint(s) == LoadTests.fingerprint(d))
    let after = try dc.run("status", "app")
    #expect(
      after["forward"] == "unconfigured" && after["back"] == "replicating", "\(after.json())")
    try d.exec(
      "INSERT INTO \"UsersCapital\" (name) VALUES ('after cutover'); DELETE FROM nokey WHERE a = 7")
    try arrives(
      s, "SELECT count(*) FROM \"UsersCapital\" WHERE name = 'after cutover'",
      "dst's write after the cutover on src")
    #expect(try eventually(20) { try count(s, "SELECT count(*) FROM nokey WHERE a = 7") == 0 })

    // Rollback on an 18 → 18 pair (back replication has run beside forward since migrate):
    // the application goes back to src with everything dst took.
    #expect(
      try s.query("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", [pair.owner.name]).scalar
        == "f", "the cutover fenced the application's role on src")
    try d.exec("INSERT INTO \"UsersCapital\" (name) VALUES ('before rollback')")
    let rollback = try CLI.run(
      ["run", "rollback.lua"] + args + ["--", "lock_out_shared=true"], env: env)
    #expect(rollback.code == 0, "\(rollback.err) \(rollback.out)")
    #expect(
      try count(s, "SELECT count(*) FROM \"UsersCapital\" WHERE name = 'before rollback'") == 1)
    #expect(try LoadTests.fingerprint(s) == LoadTests.fingerprint(d))
    // The application's role (fenced on src by the cutover) can log in to src again.
    #expect(
      try s.query("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", [pair.owner.name]).scalar
        == "t")

    let teardown = try dc.run("teardown", "app")
    #expect(teardown["ok"] != false, "\(teardown.json())")
    for c in [s, d] {
      #expect(
        try count(
          c, "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()") == 0)
      #expect(try count(c, "SELECT count(*) FROM pg_publication") == 0)
    }
    print(
      String(
        format: "[native 18 -> 18, both directions at once: %.1f s]", Date().timeIntervalSince(t0)))
  }
}
