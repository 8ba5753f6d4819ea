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
    let pair = try dc.addPair("app", srcSQL: Fixtures.basic() + Self.more, extra: [("engine", "native")])
    let args = [dc.dc, "--config-dir", dc.root]

    let pre = try CLI.run(["precheck", dc.dc, "app", "--config-dir", dc.root, "--json"], env: env)
    let preRec = try JSONParser.parse(pre.out)
    #expect(preRec["engine"] == "native", "\(pre.out)")
    let nokey = preRec["tables"]?.arrayValue?.first { $0["name"] == "nokey" }
    #expect(nokey?["replication"] == "native" && (nokey?["why"]?.stringValue ?? "").contains("REPLICA IDENTITY FULL"), "\(pre.out)")

    let migrate = try CLI.run(["run", "migrate.lua"] + args, env: env)
    #expect(migrate.code == 0, "\(migrate.err)")
    #expect(migrate.out.contains("ready for cutover"), "\(migrate.out)")
    let s = try dc.conn("app", .src)
    defer { s.close() }
    // The PK-less table got a replica identity before it was published: UPDATE/DELETE work.
    #expect(try s.query("SELECT relreplident::text FROM pg_class WHERE oid = 'nokey'::regclass").scalar == "f")
    for round in 1...20 { try Self.write(s, round: round) }
    let status = try dc.run("status", "app")
    #expect(status["forward"] == "replicating", "\(status.json())")
    #expect(status["back"] == "armed", "\(status.json())")

    let cutover = try CLI.run(["run", "cutover.lua"] + args + ["--", "drain_timeout=2s", "lock_out_shared=true"], env: env)
    #expect(cutover.code == 0, "\(cutover.err) \(cutover.out)")
    let d = try dc.conn("app", .dst)
    defer { d.close() }
    #expect(try LoadTests.fingerprint(s) == LoadTests.fingerprint(d))
    #expect(try d.query("SELECT last_value FROM standalone_seq").scalar == "42")
    let after = try dc.run("status", "app")
    #expect(after["forward"] == "unconfigured" && after["back"] == "replicating", "\(after.json())")

    // A write on dst after the switch reaches src through back replication.
    try d.exec("INSERT INTO \"UsersCapital\" (name) VALUES ('after cutover'); DELETE FROM nokey WHERE a = 7; UPDATE \"Orders\" SET qty = 99 WHERE id = 1")
    var arrived = false
    for _ in 0..<100 where !arrived {
      arrived = try s.query("SELECT count(*) FROM \"UsersCapital\" WHERE name = 'after cutover'").scalar == "1"
        && s.query("SELECT count(*) FROM nokey WHERE a = 7").scalar == "0"
        && s.query("SELECT qty FROM \"Orders\" WHERE id = 1").scalar == "99"
      if !arrived { Thread.sleep(forTimeInterval: 0.1) }
    }
    #expect(arrived, "dst's writes after the cutover reached src")

    let rollback = try CLI.run(["run", "rollback.lua"] + args + ["--", "lock_out_shared=true"], env: env)
    #expect(rollback.code == 0, "\(rollback.err) \(rollback.out)")
    #expect(try LoadTests.fingerprint(s) == LoadTests.fingerprint(d))

    let teardown = try dc.run("teardown", "app")
    #expect(teardown["ok"] != false, "\(teardown.json())")
    #expect(try s.query("SELECT relreplident::text FROM pg_class WHERE oid = 'nokey'::regclass").scalar == "d", "replica identity restored")
    #expect(try s.query("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()").scalar == "0")
    #expect(try d.query("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()").scalar == "0")
    #expect(try s.query("SELECT count(*) FROM pg_publication").scalar == "0")
    _ = pair
  }
}
