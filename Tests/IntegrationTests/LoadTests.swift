import Foundation
import Testing

@testable import BeltRuntime

/// Issue 7: a whole migration under pgbench write load, compared row for row afterwards.
@Suite(.serialized, .enabled(if: PG.available, "needs the clusters from scripts/pg-clusters"))
struct LoadTests {
  static let schema = """
    CREATE TABLE accounts (id bigserial PRIMARY KEY, owner text NOT NULL, balance numeric(14,2) NOT NULL DEFAULT 0, flags int[], meta jsonb, updated_at timestamptz NOT NULL DEFAULT now());
    CREATE TABLE "Line Items" (account_id bigint NOT NULL, "Line" int NOT NULL, sku text, amount double precision, PRIMARY KEY (account_id, "Line"));
    CREATE TABLE events (at timestamptz NOT NULL DEFAULT now(), kind text, payload bytea);
    CREATE SEQUENCE tickets;
    CREATE INDEX accounts_owner_idx ON accounts (owner);
    INSERT INTO accounts (owner, balance, flags, meta) SELECT 'o' || g, g / 3.0, ARRAY[g, g+1], jsonb_build_object('g', g) FROM generate_series(1, 30000) g;
    INSERT INTO "Line Items" SELECT g, l, 'sku-' || g, g * 1.000001 * l FROM generate_series(1, 5000) g, generate_series(1, 3) l;
    INSERT INTO events (kind, payload) SELECT 'seed', decode(md5(g::text), 'hex') FROM generate_series(1, 2000) g;
    SELECT setval('tickets', 100);
    """

  static let load = """
    \\set a random(1, 30000)
    \\set l random(1, 3)
    BEGIN;
    INSERT INTO accounts (owner, balance, flags, meta) VALUES ('live', :a / 7.0, ARRAY[:a], '{"live": true}');
    UPDATE accounts SET balance = balance + 1, updated_at = now() WHERE id = :a;
    DELETE FROM "Line Items" WHERE account_id = :a AND "Line" = :l;
    INSERT INTO "Line Items" VALUES (:a, :l, 're', :a * 0.5) ON CONFLICT DO NOTHING;
    INSERT INTO events (kind, payload) VALUES ('tx', '\\x00ff');
    SELECT nextval('tickets');
    END;
    """

  /// An ordered content hash and row count of every table of the schema.
  static func fingerprint(_ c: PGConnection, schema: String = "public") throws -> [String: String] {
    var out: [String: String] = [:]
    for t in try Catalog.tables(c, schema: schema) {
      let q = PGConnection.qualified(schema, t.name)
      let r = try c.query(
        "SELECT count(*) AS n, md5(coalesce(string_agg(x.t, '|' ORDER BY x.t), '')) AS h FROM (SELECT r::text AS t FROM \(q) r) x"
      )
      out[t.name] = "\(r.rows[0].string("n")) rows, \(r.rows[0].string("h"))"
    }
    return out
  }

  @Test func migrationUnderWriteLoadLosesNothing() throws {
    let dc = try TestDC()
    let pair = try dc.addPair("shop", srcSQL: Self.schema)
    let app = PG.unique("app")
    let appPassword = "app pw 'x'"
    for side in Side.allCases {
      let c = try PG.root(side)
      try c.exec(
        "CREATE ROLE \(PGConnection.quoteIdent(app)) LOGIN PASSWORD \(try c.literal(try c.encryptPassword(appPassword, user: app)))"
      )
      c.close()
    }
    let owner = try PGConnection(
      conninfo: try dc.store.load(dc: dc.dc, db: "shop").server(.src).conninfo(.owner),
      label: "owner")
    try owner.exec(
      "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \(PGConnection.quoteIdent(app)); GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO \(PGConnection.quoteIdent(app))"
    )
    owner.close()

    // pgbench: 4 clients, a new connection per transaction (revoked logins stop them).
    let script = dc.root + "/load.sql"
    try Self.load.write(toFile: script, atomically: true, encoding: .utf8)
    let bench = Process()
    bench.executableURL = URL(fileURLWithPath: PG.pgBin + "/pgbench")
    bench.arguments = [
      "-n", "-C", "-c", "4", "-R", "100", "-T", "240", "-f", script, "-h", PG.host, "-p",
      String(PG.port(.src)), "-U", app, pair.dbname,
    ]
    bench.environment = ["PGPASSWORD": appPassword, "PATH": "/usr/bin:/bin"]
    let benchOut = Pipe()
    bench.standardOutput = benchOut
    bench.standardError = benchOut
    try bench.run()
    defer { if bench.isRunning { bench.terminate() } }
    Thread.sleep(forTimeInterval: 2)

    let migrate = try CLI.run(["run", "migrate.lua", dc.dc, "--config-dir", dc.root])
    #expect(migrate.code == 0, "migrate: \(migrate.err)")
    Thread.sleep(forTimeInterval: 3)  // replicate under load for a while
    let cutover = try CLI.run([
      "run", "cutover.lua", dc.dc, "--config-dir", dc.root, "--yes", "--", "drain_timeout=3s",
      "terminate=true", "lock_out_shared=true",
    ])
    #expect(cutover.code == 0, "cutover: \(cutover.err)")
    #expect(cutover.out.contains("downtime window"))
    bench.terminate()
    bench.waitUntilExit()
    let benchLog = String(
      decoding: benchOut.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)

    // Every table equal, row for row.
    let src = try dc.conn("shop", .src)
    let dst = try dc.conn("shop", .dst)
    let a = try Self.fingerprint(src)
    let b = try Self.fingerprint(dst)
    #expect(a.count == 3)
    #expect(a == b, "pgbench: \(benchLog.suffix(400))")
    // Writes did happen during the migration.
    let live = try src.query("SELECT count(*) FROM accounts WHERE owner = 'live'").scalar ?? "0"
    #expect((Int(live) ?? 0) > 10, "pgbench wrote \(live) rows")
    // Sequences: dst >= src, and >= the max of the column it backs.
    for seq in ["tickets", "accounts_id_seq"] {
      let s =
        Int(
          try src.query("SELECT last_value FROM \(PGConnection.qualified("public", seq))").scalar
            ?? "") ?? -1
      let d =
        Int(
          try dst.query("SELECT last_value FROM \(PGConnection.qualified("public", seq))").scalar
            ?? "") ?? -2
      #expect(d >= s, "\(seq): dst \(d) < src \(s)")
    }
    let maxId = Int(try dst.query("SELECT max(id) FROM accounts").scalar ?? "") ?? 0
    let seqVal = Int(try dst.query("SELECT last_value FROM accounts_id_seq").scalar ?? "") ?? -1
    #expect(seqVal >= maxId)

    // Back replication: a write on dst reaches src.
    try dst.exec("INSERT INTO accounts (owner, balance) VALUES ('written on dst', 1)")
    var arrived = false
    for _ in 0..<100 {
      if try src.query("SELECT count(*) FROM accounts WHERE owner = 'written on dst'").scalar == "1"
      {
        arrived = true; break
      }
      Thread.sleep(forTimeInterval: 0.1)
    }
    #expect(arrived, "a write on dst reached src through back replication")
    src.close()
    dst.close()
    _ = try? dc.run("restore_logins", "shop")
    _ = try? dc.run("teardown", "shop", ["full": true])
  }
}
