import Foundation
import Testing

@testable import BeltRuntime

/// The replication lifecycle against the real clusters: setup, status, back replication,
/// the cutover gate, teardown, reset.
@Suite(.serialized, .enabled(if: PG.available, "needs the clusters from scripts/pg-clusters"))
struct ReplicationTests {
  /// PK tables of Fixtures.basic.
  static let pkTables = ["UsersCapital", "manual_seq", "table with space", "we\"ird"]

  /// A dc of three pairs: public schema, a non-public schema with a space in its name, a table
  /// subset (one PK table, one PK-less); PK-less tables everywhere; dst gets the schema only.
  static func threePairs() throws -> TestDC {
    let dc = try TestDC()
    try dc.addPair("app", srcSQL: Fixtures.basic(), dstSQL: Repl.schemaOnly(Fixtures.basic()))
    try dc.addPair(
      "Other App", schema: "Non Public", srcSQL: Fixtures.basic("Non Public"),
      dstSQL: Repl.schemaOnly(Fixtures.basic("Non Public")))
    try dc.addPair(
      "subset", srcSQL: Fixtures.basic(), dstSQL: Repl.schemaOnly(Fixtures.basic()),
      tables: ["UsersCapital", "fruits"])
    return dc
  }

  static func replicatedTables(_ db: String) -> [String] {
    db == "subset" ? ["UsersCapital"] : pkTables
  }

  static func rootConninfo(_ dc: TestDC, _ db: String, _ side: Side) -> String {
    ConnInfo.build([
      ("hostaddr", PG.host), ("port", String(PG.port(side))),
      ("dbname", dc.pairs[db]?.dbname ?? ""),
      ("user", PG.rootUser), ("password", PG.rootPassword),
    ])
  }

  @Test func fullLifecycleOnThreePairs() throws {
    let dc = try Self.threePairs()
    defer { Repl.cleanup(dc) }
    let dbs = ["app", "Other App", "subset"]

    // setup (schema already on dst), twice: the second run converges.
    let setup = try dc.run("setup", nil, ["schema": false])
    #expect(setup["ok"] == true, "\(setup.json())")
    for r in Repl.records(setup) {
      let db = r["db"]?.stringValue ?? ""
      #expect(r["tables"] == .from(Self.replicatedTables(db)))
      #expect(r["subscription"] == "created")
      #expect(r["schema"] == "skipped (--no-schema)")
    }
    let again = try dc.run("setup", nil, ["schema": false])
    #expect(again["ok"] == true, "\(again.json())")
    #expect(
      Repl.records(again).allSatisfy {
        $0["subscription"]?.stringValue?.hasPrefix("exists") == true
          && $0["tables_added"] == .array([])
      })

    // status reaches replicating; lag and table counts are numbers.
    let t0 = Date()
    let st = try Repl.waitStatus(dc, nil, "forward replicating") { $0["forward"] == "replicating" }
    let reached = Date().timeIntervalSince(t0)
    for r in Repl.records(st) {
      let db = r["db"]?.stringValue ?? ""
      #expect(r["back"] == "unconfigured")
      #expect(r["tables_total"] == .int(Self.replicatedTables(db).count))
      #expect(r["tables_done"] == r["tables_total"])
      #expect(r["progress"] == "n/a")
      #expect(r["lag_bytes"]?.intValue != nil, "\(r.json())")
      #expect(r["forward_error"] == nil)
    }
    for db in dbs { #expect(try Repl.sameRows(dc, db, Self.replicatedTables(db)), "\(db)") }
    let ts = Date()
    _ = try dc.run("status", nil)
    let statusTime = Date().timeIntervalSince(ts)
    print(
      "[measure] status for a dc of 3 pairs: \(String(format: "%.0f", statusTime * 1000)) ms; replicating \(String(format: "%.2f", reached)) s after setup returned"
    )
    let cli = try CLI.run(["status", dc.dc, "--config-dir", dc.root])
    #expect(cli.code == 0, "\(cli.err)")
    #expect(
      cli.out.contains("src -> dst") && cli.out.contains("replay_lag")
        && cli.out.contains("replicating"))
    #expect(cli.out.contains("Other App"))
    // A runbook branches on the record: belt.status(dc) from Lua.
    let script = dc.root + "/branch.lua"
    try """
    local dc, db = ...
    for _, r in ipairs(belt.status(dc).databases) do
      if r.forward == "replicating" and type(r.lag_bytes) == "number" then
        print(("%s ready %d/%d"):format(r.db, r.tables_done, r.tables_total))
      end
    end
    """.write(toFile: script, atomically: true, encoding: .utf8)
    let lua = try CLI.run(["run", script, dc.dc, "--config-dir", dc.root])
    #expect(lua.code == 0, "\(lua.err)")
    #expect(lua.out.contains("app ready 4/4") && lua.out.contains("subset ready 1/1"), "\(lua.out)")

    // Inserts, updates and deletes on src reach dst (odd identifiers, both schemas).
    for db in dbs {
      let schema = try #require(dc.pairs[db]?.schema, "no pair \(db)")
      let s = try dc.conn(db, .src)
      defer { s.close() }
      try s.exec(
        """
        SET search_path = \(PGConnection.quoteIdent(schema));
        INSERT INTO "UsersCapital" (name, gender, n) VALUES ('new''s', 'male', 1.5), ('zz', NULL, NULL);
        UPDATE "UsersCapital" SET name = 'changed' WHERE id = 5;
        DELETE FROM "UsersCapital" WHERE id = 7;
        UPDATE "table with space" SET "Mixed Col" = 'upd' WHERE id <= 3;
        DELETE FROM "we""ird" WHERE "K2" = 1;
        INSERT INTO manual_seq (t) VALUES ('more');
        """)
    }
    for db in dbs {
      try Repl.waitFor("\(db): src changes on dst", timeout: 30) {
        try Repl.sameRows(dc, db, Self.replicatedTables(db))
      }
    }
    // PK-less tables are not replicated.
    let fruits = try dc.conn("app", .dst)
    #expect(try fruits.query("SELECT count(*) FROM fruits").scalar == "0")
    fruits.close()

    // Back replication; re-running it and setup keeps it.
    let back = try dc.run("setup_back_replication", nil)
    #expect(back["ok"] == true, "\(back.json())")
    #expect(Repl.records(back).allSatisfy { $0["subscription"] == "created" })
    let back2 = try dc.run("setup_back_replication", nil)
    #expect(
      Repl.records(back2).allSatisfy {
        $0["subscription"]?.stringValue?.hasPrefix("exists") == true
      })
    #expect(try dc.run("setup", nil, ["schema": false])["ok"] == true)
    try Repl.waitStatus(dc, nil, "back replicating") {
      $0["back"] == "replicating" && $0["forward"] == "replicating"
    }

    // Writes on dst reach src, and do not come back (forward stays replicating, one copy each).
    for (i, db) in dbs.enumerated() {
      let schema = try #require(dc.pairs[db]?.schema, "no pair \(db)")
      let d = try dc.conn(db, .dst)
      defer { d.close() }
      try d.exec(
        "INSERT INTO \(PGConnection.qualified(schema, "UsersCapital")) (id, name) VALUES (\(900_000 + i), 'from dst')"
      )
      try d.exec(
        "UPDATE \(PGConnection.qualified(schema, "table with space")) SET \"Mixed Col\" = 'dst wrote' WHERE id = 10"
      )
    }
    for db in dbs {
      try Repl.waitFor("\(db): dst writes on src", timeout: 30) {
        try Repl.sameRows(dc, db, Self.replicatedTables(db))
      }
      let schema = try #require(dc.pairs[db]?.schema, "no pair \(db)")
      for side in Side.allCases {
        let c = try dc.conn(db, side)
        #expect(
          try c.query(
            "SELECT count(*) FROM \(PGConnection.qualified(schema, "UsersCapital")) WHERE name = 'from dst'"
          ).scalar == "1")
        c.close()
      }
    }
    let after = try dc.run("status", nil)
    #expect(
      Repl.records(after).allSatisfy {
        $0["forward"] == "replicating" && $0["back"] == "replicating"
      }, "\(after.json())")

    // teardown-back-replication, twice.
    let tb = try dc.run("teardown_back_replication", nil)
    #expect(
      tb["ok"] == true && Repl.records(tb).allSatisfy { $0["dropped"] == true }, "\(tb.json())")
    let tb2 = try dc.run("teardown_back_replication", nil)
    #expect(
      Repl.records(tb2).allSatisfy {
        $0["dropped"] == false && $0["message"]?.stringValue?.contains("nothing to do") == true
      })

    // The cutover step: writers insert on src until the moment teardown-forward-replication is
    // called; every row they committed must be on dst afterwards.
    let writers = dbs.map {
      Writer(conninfo: Self.rootConninfo(dc, $0, .src), schema: dc.pairs[$0]?.schema ?? "")
    }
    Thread.sleep(forTimeInterval: 0.3)
    let written = writers.map { $0.stop() }
    let tf = try dc.run("teardown_forward_replication", nil, ["timeout": "60s"])
    for (n, err) in written {
      #expect(err == nil)
      #expect(n > 0)
    }
    #expect(tf["ok"] == true, "\(tf.json())")
    for r in Repl.records(tf) {
      #expect(r["dropped"] == true)
      #expect(r["waited_s"]?.isNull == false)
      #expect(r["message"]?.stringValue?.contains("waited") == true, "\(r.json())")
    }
    for db in dbs {
      #expect(try Repl.sameRows(dc, db, Self.replicatedTables(db)), "\(db): rows lost at cutover")
    }
    let tf2 = try dc.run("teardown_forward_replication", nil)
    #expect(Repl.records(tf2).allSatisfy { $0["dropped"] == false }, "\(tf2.json())")
    let st2 = try dc.run("status", nil)
    #expect(
      Repl.records(st2).allSatisfy {
        $0["forward"] == "unconfigured" && $0["back"] == "unconfigured"
      })

    // teardown, twice: nothing left but the extension; then --full, twice.
    let td = try dc.run("teardown", nil)
    #expect(td["ok"] == true, "\(td.json())")
    #expect(try dc.run("teardown", nil)["ok"] == true)
    for db in dbs {
      for side in Side.allCases {
        let l = try Repl.leftovers(dc, db, side)
        #expect(l == Repl.Leftovers(ext: true, schema: true), "\(db) \(side): \(l)")
      }
    }
    let full = try dc.run("teardown", nil, ["full": true])
    #expect(full["ok"] == true, "\(full.json())")
    #expect(try dc.run("teardown", nil, ["full": true])["ok"] == true)
    for db in dbs {
      for side in Side.allCases {
        let l = try Repl.leftovers(dc, db, side)
        #expect(l == Repl.Leftovers(), "\(db) \(side): \(l)")
      }
    }
  }

  @Test func brokenSubscriptionIsDownWithTheReasonAndSetupRepairsIt() throws {
    let dc = try TestDC()
    defer { Repl.cleanup(dc) }
    let p = try dc.addPair(
      "broken", srcSQL: Fixtures.basic(), dstSQL: Repl.schemaOnly(Fixtures.basic()))
    #expect(try dc.run("setup", "broken", ["schema": false])["ok"] == true)
    try Repl.waitStatus(dc, "broken", "replicating") { $0["forward"] == "replicating" }
    // The pglogical user's password on src no longer matches what the subscription uses.
    let s = try dc.conn("broken", .src)
    defer { s.close() }
    let hash = try s.encryptPassword("some other password", user: p.pglogical.name)
    try s.exec(
      "ALTER ROLE \(PGConnection.quoteIdent(p.pglogical.name)) PASSWORD \(try s.literal(hash))")
    try s.query(
      "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = current_database() AND active_pid IS NOT NULL"
    )
    let t0 = Date()
    let down = try Repl.waitStatus(dc, "broken", "forward down", timeout: 60) {
      $0["forward"] == "down"
    }
    let tDown = Date().timeIntervalSince(t0)
    let why = down["forward_error"]?.stringValue ?? ""
    #expect(why.contains("password authentication failed"), "\(why)")
    #expect(!why.contains(p.pglogical.password))
    let cli = try CLI.run(["status", dc.dc, "broken", "--json", "--config-dir", dc.root])
    #expect(cli.out.contains("\"forward\": \"down\""))
    #expect(!cli.out.contains(p.pglogical.password) && !cli.err.contains(p.pglogical.password))
    // The cutover gate cannot pass while forward is down: it refuses at once (issue 24: not
    // after its timeout), retryable, and keeps the subscription.
    try s.exec("INSERT INTO \"UsersCapital\" (name) VALUES ('after break')")
    do {
      _ = try dc.run("teardown_forward_replication", "broken", ["timeout": "1s"])
      Issue.record("the gate should time out while forward is down")
    } catch let e as BeltError {
      #expect(e.code == .preconditionFailed && e.retryable, "\(e)")
      #expect(
        e.message.contains("left in place") && e.message.contains("forward is down"), "\(e.message)"
      )
    }
    // Re-running setup converges the role's password; replication recovers by itself.
    let fix = try dc.run("setup", "broken", ["schema": false])
    #expect(fix["ok"] == true, "\(fix.json())")
    try Repl.waitStatus(dc, "broken", "replicating again", timeout: 60) {
      $0["forward"] == "replicating"
    }
    print(
      "[measure] broken subscription: down after \(String(format: "%.1f", tDown)) s, replicating again \(String(format: "%.1f", Date().timeIntervalSince(t0) - tDown)) s later"
    )
  }

  @Test func initializingBlocksBackReplicationAndTheGateAndBlockersAreNamed() throws {
    let dc = try TestDC()
    defer { Repl.cleanup(dc) }
    try dc.addPair("init", srcSQL: Fixtures.basic(), dstSQL: Repl.schemaOnly(Fixtures.basic()))
    // Hold a lock on a dst table so the initial copy cannot write into it (SHARE mode: reads,
    // such as setup's emptiness check, still pass).
    let holder = try dc.conn("init", .dst)
    defer { holder.close() }
    // If belt ever waited behind this lock, the test would fail after a minute, not hang.
    try holder.exec("SET idle_in_transaction_session_timeout = '60s'")
    try holder.exec("BEGIN; LOCK TABLE \"UsersCapital\" IN SHARE MODE")
    // A transaction open on src, in another database: the slot cannot be created before it
    // ends. status names it (pglogical only says initializing).
    let open = try PG.root(.src)
    defer { open.close() }
    try open.exec("SET idle_in_transaction_session_timeout = '60s'")
    try open.exec("BEGIN; SELECT txid_current()")
    let openPid = try open.query("SELECT pg_backend_pid()").scalar ?? "?"
    #expect(try dc.run("setup", "init", ["schema": false])["ok"] == true)
    let waiting = try Repl.waitStatus(dc, "init", "the slot waiting") {
      $0["forward_waiting"] != nil
    }
    #expect(waiting["forward"] == "initializing")
    #expect(
      waiting["forward_waiting"]?.stringValue?.contains(
        "pid \(openPid) (user \(PG.rootUser), database postgres, idle in transaction") == true,
      "\(waiting.json())")
    let cli = try CLI.run(["status", dc.dc, "init", "--config-dir", dc.root])
    #expect(
      cli.out.contains("init: src -> dst waits: ") && cli.out.contains("pid \(openPid)"),
      "\(cli.out)")
    try open.exec("ROLLBACK")
    let st = try Repl.waitStatus(dc, "init", "initializing") {
      $0["forward"] == "initializing" && $0["forward_waiting"] == nil
    }
    #expect(st["tables_total"] == 4)
    #expect((st["tables_done"]?.intValue ?? 99) < 4)
    #expect(st["progress"]?.stringValue?.contains("/4 tables") == true, "\(st.json())")
    #expect(st["src_dataset_size"]?.stringValue != "n/a")
    do {
      _ = try dc.run("setup_back_replication", "init")
      Issue.record("setup-back-replication should refuse while initializing")
    } catch let e as BeltError {
      #expect(e.code == .preconditionFailed)
      #expect(e.message.contains("still initializing"), "\(e.message)")
    }
    do {
      _ = try dc.run("teardown_forward_replication", "init")
      Issue.record("teardown-forward-replication should refuse while initializing")
    } catch let e as BeltError {
      #expect(e.message.contains("still initializing"), "\(e.message)")
    }
    try holder.exec("ROLLBACK")
    try Repl.waitStatus(dc, "init", "replicating") { $0["forward"] == "replicating" }
    #expect(try Repl.sameRows(dc, "init", Self.pkTables))
    // --no-wait skips the gate.
    let nowait = try dc.run("teardown_forward_replication", "init", ["wait": false])
    #expect(nowait["dropped"] == true && nowait["waited_s"] == .null, "\(nowait.json())")
    #expect(nowait["message"]?.stringValue?.hasPrefix("did not wait") == true)
    #expect(try dc.run("status", "init")["forward"] == "unconfigured")

    // A session idle in a transaction that touched pglogical's catalog blocks DROP EXTENSION:
    // teardown --full names it instead of hanging.
    let idle = try dc.conn("init", .dst)
    defer { idle.close() }
    try idle.exec("SET idle_in_transaction_session_timeout = '60s'")
    try idle.exec("BEGIN; SELECT count(*) FROM pglogical.node")
    let pid = try idle.query("SELECT pg_backend_pid()").scalar ?? "?"
    do {
      _ = try dc.run("teardown", "init", ["full": true])
      Issue.record("teardown --full should have given up on the lock")
    } catch let e as BeltError {
      #expect(
        e.message.contains("pid \(pid)") && e.message.contains("idle in transaction"),
        "\(e.message)")
      #expect(e.retryable)
    }
    try idle.exec("ROLLBACK")
    let full = try dc.run("teardown", "init", ["full": true])
    #expect(full["ok"] == true, "\(full.json())")
    for side in Side.allCases { #expect(try Repl.leftovers(dc, "init", side) == Repl.Leftovers()) }
  }

  /// A teardown killed between disabling the subscription and dropping it (cutover.lua killed
  /// in teardown-forward-replication): the next one enables it for the gate instead of waiting
  /// until its timeout for a marker that can never arrive.
  @Test func teardownAfterOneStoppedBetweenDisableAndDropPassesTheGate() throws {
    let dc = try TestDC()
    defer { Repl.cleanup(dc) }
    try dc.addPair("half", srcSQL: Fixtures.basic())
    _ = try dc.run("setup", "half")
    try Repl.waitStatus(dc, "half", "replicating") { $0["forward"] == "replicating" }
    try Cut.exec(dc, "half", .dst, "SELECT pglogical.alter_subscription_disable('pg1_pg2', true)")
    try Cut.exec(dc, "half", .src, "INSERT INTO \"UsersCapital\" (name) VALUES ('after disable')")
    let t0 = Date()
    let gated = try dc.run("teardown_forward_replication", "half", ["timeout": 60])
    #expect(gated["dropped"] == true, "\(gated.json())")
    #expect(Date().timeIntervalSince(t0) < 30, "the gate waited \(Date().timeIntervalSince(t0)) s")
    #expect(
      try Cut.scalar(
        dc, "half", .dst, "SELECT count(*) FROM \"UsersCapital\" WHERE name = 'after disable'")
        == "1")
  }

  /// Also the schema path: setup without --no-schema runs SchemaOps.dumpSchema + loadSchema,
  /// and reset runs SchemaOps.removeIndexes/removeConstraints once the schema files exist.
  /// A commit made with `synchronous_commit = off` is acknowledged before its WAL is written
  /// out. The gate of teardown-forward-replication must still wait for it: pg_current_wal_lsn()
  /// (the write position) would not include it and the row would never reach dst.
  @Test func asyncCommitJustBeforeTheGateReachesDst() throws {
    let dc = try TestDC()
    defer { Repl.cleanup(dc) }
    try dc.addPair("async", srcSQL: Fixtures.basic(), dstSQL: Repl.schemaOnly(Fixtures.basic()))
    #expect(try dc.run("setup", "async", ["schema": false])["ok"] == true)
    try Repl.waitStatus(dc, "async", "replicating") { $0["forward"] == "replicating" }
    let s = try dc.conn("async", .src)
    defer { s.close() }
    // A slow WAL writer keeps the async commit below in WAL buffers for seconds.
    try s.exec("ALTER SYSTEM SET wal_writer_delay = '10s'")
    try s.exec("SELECT pg_reload_conf()")
    defer {
      _ = try? s.exec("ALTER SYSTEM RESET wal_writer_delay")
      _ = try? s.exec("SELECT pg_reload_conf()")
    }
    Thread.sleep(forTimeInterval: 0.5)
    try s.exec("SET synchronous_commit = off")
    // The first async commit wakes a hibernating WAL writer, which then sleeps 10 s.
    try s.exec("INSERT INTO \"UsersCapital\" (name) VALUES ('wakes the wal writer')")
    Thread.sleep(forTimeInterval: 0.3)
    try s.exec("INSERT INTO \"UsersCapital\" (name) VALUES ('async commit before the gate')")
    let r = try dc.run("teardown_forward_replication", "async")
    #expect(r["dropped"] == true, "\(r.json())")
    print("[measure] gate: \(r["message"]?.stringValue ?? "")")
    let d = try dc.conn("async", .dst)
    defer { d.close() }
    let n = try d.query(
      "SELECT count(*) FROM \"UsersCapital\" WHERE name = 'async commit before the gate'"
    ).scalar
    #expect(
      n == "1",
      "the async commit did not reach dst before the subscription was dropped: \(r.json())")
    #expect(try Repl.sameRows(dc, "async", Self.pkTables))
  }

  @Test func resetThenSetupReplicatesTheSameDataAgain() throws {
    let dc = try TestDC()
    defer { Repl.cleanup(dc) }
    // dst starts empty: setup loads the schema (the schema pipeline).
    try dc.addPair(
      "again", schema: "Non Public",
      srcSQL: Fixtures.basic("Non Public")
        + "\nCREATE INDEX \"idx name\" ON \"Non Public\".\"UsersCapital\" (name);")
    // dst holds more than src: src and dst swapped in the config, as the failsafe assumes.
    try dc.addPair("swapped", srcSQL: Repl.schemaOnly(Fixtures.basic()), dstSQL: Fixtures.basic())
    let setup = try dc.run("setup", "again")
    #expect(setup["ok"] == true, "\(setup.json())")
    #expect(setup["schema"] == "loaded")
    try Repl.waitStatus(dc, "again", "replicating") { $0["forward"] == "replicating" }
    #expect(try dc.run("setup_back_replication", "again")["ok"] == true)
    let s = try dc.conn("again", .src)
    defer { s.close() }
    try s.exec(
      "INSERT INTO \"Non Public\".\"UsersCapital\" (name) SELECT 'r' || g FROM generate_series(1, 500) g"
    )
    try Repl.waitFor("rows on dst") { try Repl.sameRows(dc, "again", Self.pkTables) }
    let d = try dc.conn("again", .dst)
    defer { d.close() }
    // As create-indexes would have done before a restart.
    try d.exec("CREATE INDEX IF NOT EXISTS \"idx name\" ON \"Non Public\".\"UsersCapital\" (name)")

    let r = try dc.run("reset", "again")
    #expect(r["ok"] == true, "\(r.json())")
    #expect(r["stopped"] == .from(["pg1_pg2", "pg2_pg1"]))
    #expect(r["indexes"] == "removed")
    #expect(
      try d.query("SELECT count(*) FROM pg_indexes WHERE indexname = 'idx name'").scalar == "0")
    #expect(try d.query("SELECT count(*) FROM \"Non Public\".\"UsersCapital\"").scalar == "0")
    let st = try dc.run("status", "again")
    #expect(st["forward"] == "unconfigured" && st["back"] == "unconfigured")
    let r2 = try dc.run("reset", "again")
    #expect(r2["ok"] == true && r2["stopped"] == .array([]), "\(r2.json())")

    #expect(try dc.run("setup", "again", ["schema": false])["ok"] == true)
    try Repl.waitStatus(dc, "again", "replicating after reset") { $0["forward"] == "replicating" }
    #expect(try Repl.sameRows(dc, "again", Self.pkTables))

    // The failsafe: dst bigger than src.
    do {
      _ = try dc.run("reset", "swapped")
      Issue.record("reset should refuse when dst holds more than src")
    } catch let e as BeltError {
      #expect(e.code == .preconditionFailed && e.message.contains("failsafe"), "\(e.message)")
    }
    let sw = try dc.conn("swapped", .dst)
    defer { sw.close() }
    #expect(try sw.query("SELECT count(*) FROM \"UsersCapital\"").scalar == "50")
    let forced = try dc.run("reset", "swapped", ["force": true])
    #expect(forced["ok"] == true && forced["warning"] != nil, "\(forced.json())")
    #expect(forced["indexes"]?.stringValue?.hasPrefix("skipped") == true)
    #expect(try sw.query("SELECT count(*) FROM \"UsersCapital\"").scalar == "0")

    // src unreachable: refused, even with --force.
    let path = dc.store.path(dc: dc.dc, db: "swapped")
    let cfg = try dc.store.load(dc: dc.dc, db: "swapped").raw
    try dc.store.save(cfg.setting("src", cfg["src"]?.setting("port", "1") ?? .null), to: path)
    for force in [false, true] {
      do {
        _ = try dc.run("reset", "swapped", ["force": .bool(force)])
        Issue.record("reset should refuse when src is unreachable")
      } catch let e as BeltError {
        #expect(e.message.contains("src is unreachable"), "\(e.message)")
      }
    }
    try dc.store.save(cfg, to: path)
  }

  /// Measures setup → replicating for a 100k-row table (prints the figure; no assertion on it).
  @Test func measureSetupToReplicatingFor100kRows() throws {
    let dc = try TestDC()
    defer { Repl.cleanup(dc) }
    let ddl = "CREATE TABLE big (id bigint PRIMARY KEY, payload text, n int);"
    try dc.addPair(
      "big",
      srcSQL: ddl
        + "INSERT INTO big SELECT g, md5(g::text), g % 97 FROM generate_series(1, 100000) g;",
      dstSQL: ddl)
    let t0 = Date()
    #expect(try dc.run("setup", "big", ["schema": false])["ok"] == true)
    let setupDone = Date().timeIntervalSince(t0)
    try Repl.waitStatus(dc, "big", "replicating", timeout: 60) { $0["forward"] == "replicating" }
    let total = Date().timeIntervalSince(t0)
    print(
      "[measure] 100k rows: setup \(String(format: "%.2f", setupDone)) s, setup start -> replicating \(String(format: "%.2f", total)) s"
    )
    #expect(try Repl.sameRows(dc, "big", ["big"]))
  }
}
