import Foundation
import Testing

@testable import BeltRuntime

/// Issue 11: belt killed (SIGKILL, SIGINT) at each step of cutover.lua, then the same command
/// run again. The kill is real: the test polls the pair's journal file and kills the belt
/// process when it shows the target step started.
enum Resume {
  /// The fixture: the basic schema plus an index and a NOT VALID constraint (so sync has its
  /// constraint and index parts), and optionally a big PK-less table.
  static func schema(big: Bool) -> String {
    var sql =
      Fixtures.basic() + """

        CREATE INDEX fruits_name_idx ON fruits (name);
        ALTER TABLE fruits ADD CONSTRAINT fruits_id_positive CHECK (id > 0) NOT VALID;
        """
    if big {
      sql += """

        CREATE TABLE big_nopk (a int, b text, c text);
        INSERT INTO big_nopk SELECT g, md5(g::text), repeat(md5((g * 7)::text), 4) FROM generate_series(1, 300000) g;
        """
    }
    return sql
  }

  /// A fresh pair in `dc`, migrated with migrate.lua (ready for cutover), and an application
  /// role that can log in to its src database.
  static func migrated(
    _ dc: TestDC, _ db: String, big: Bool = false, engine: EngineKind = .pglogical,
    env: [String: String] = [:]
  )
    throws -> (TestDC.PairSpec, String, String)
  {
    let pair = try dc.addPair(
      db, srcSQL: schema(big: big),
      extra: engine == .pglogical ? [] : [("engine", .string(engine.rawValue))])
    let (app, pw) = try RunbookTests.appRole(dc, grantIn: [db])
    let m = try CLI.run(["run", "migrate.lua", dc.dc, db, "--config-dir", dc.root], env: env)
    #expect(m.code == 0, "migrate: \(m.err)")
    return (pair, app, pw)
  }

  /// The journal of a flow, parsed (nil while absent).
  static func journal(_ dc: TestDC, _ db: String, flow: String = "cutover") -> Value? {
    let path = Journal.path(dc.store, dc: dc.dc, db: db, flow: flow)
    guard let data = FileManager.default.contents(atPath: path) else { return nil }
    return try? JSONParser.parse(String(decoding: data, as: UTF8.self))
  }

  /// A step of a journal.
  static func step(_ j: Value?, _ name: String) -> Value? {
    j?["steps"]?.arrayValue?.first { $0["name"]?.stringValue == name }
  }

  /// A belt process running in the background, its output in files.
  final class Background {
    let process = Process()
    let out: String
    let err: String

    init(_ args: [String], scratch: String, env extra: [String: String] = [:]) throws {
      out = scratch + "/bg-\(UInt32.random(in: 0...UInt32.max)).out"
      err = out + ".err"
      FileManager.default.createFile(atPath: out, contents: nil)
      FileManager.default.createFile(atPath: err, contents: nil)
      process.executableURL = URL(fileURLWithPath: CLI.binary)
      process.arguments = args
      var env = ProcessInfo.processInfo.environment
      env["NO_COLOR"] = "1"
      for (k, v) in extra { env[k] = v }
      process.environment = env
      process.standardInput = FileHandle.nullDevice
      process.standardOutput = FileHandle(forWritingAtPath: out)
      process.standardError = FileHandle(forWritingAtPath: err)
      try process.run()
    }

    /// Sends `signal` and waits for the process to end.
    func stop(_ signal: Int32) {
      if process.isRunning { kill(process.processIdentifier, signal) }
      process.waitUntilExit()
    }

    var output: String {
      ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
        + ((try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
    }
  }

  /// Polls the journal every 10 ms until `cond` holds; false when belt ended first or after
  /// `timeout` seconds.
  static func waitJournal(
    _ dc: TestDC, _ db: String, _ bg: Background, timeout: Double = 60, _ cond: (Value) -> Bool
  ) -> Bool {
    let end = Date().addingTimeInterval(timeout)
    while Date() < end {
      if let j = journal(dc, db), cond(j) { return true }
      if !bg.process.isRunning { return false }
      Thread.sleep(forTimeInterval: 0.01)
    }
    return false
  }

  /// Every table has the same ordered content hash on both sides; every sequence on dst is at
  /// least src's.
  static func expectSameData(
    _ dc: TestDC, _ db: String, sourceLocation: SourceLocation = #_sourceLocation
  ) throws {
    let src = try dc.conn(db, .src)
    let dst = try dc.conn(db, .dst)
    defer { src.close(); dst.close() }
    let a = try LoadTests.fingerprint(src)
    let b = try LoadTests.fingerprint(dst)
    #expect(a.count >= 6, sourceLocation: sourceLocation)
    #expect(
      a == b, "tables differ: \(a.filter { b[$0.key] != $0.value }.keys.sorted())",
      sourceLocation: sourceLocation)
    let seqs = try src.query("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")
      .rows.map { $0.string("sequencename") }
    #expect(seqs.count >= 4, sourceLocation: sourceLocation)
    for s in seqs {
      let q = PGConnection.qualified("public", s)
      let sv = Int(try src.query("SELECT last_value FROM \(q)").scalar ?? "") ?? -1
      let dv = Int(try dst.query("SELECT last_value FROM \(q)").scalar ?? "") ?? -2
      #expect(dv >= sv, "\(s): dst \(dv) < src \(sv)", sourceLocation: sourceLocation)
    }
  }

  /// cutover.lua of pair "app" started in the background while an application session stays
  /// open on src, once its journal shows the drain started (the drain waits for that session).
  static func cutoverInTheDrain(
    _ dc: TestDC, _ pair: TestDC.PairSpec, app: String, pw: String, drainTimeout: String,
    sourceLocation: SourceLocation = #_sourceLocation
  ) throws -> (PGConnection, Background, [String]) {
    let held = try PGConnection(
      conninfo: ConnInfo.build([
        ("hostaddr", PG.host), ("port", String(PG.port(.src))), ("dbname", pair.dbname),
        ("user", app), ("password", pw),
      ]),
      label: "app session")
    let args = [
      "run", "cutover.lua", dc.dc, "app", "--config-dir", dc.root, "--",
      "drain_timeout=\(drainTimeout)", "lock_out_shared=true",
    ]
    let bg = try Background(args, scratch: dc.root)
    #expect(
      waitJournal(dc, "app", bg) { step($0, "drain")?["status"] == "started" }, "\(bg.output)",
      sourceLocation: sourceLocation)
    return (held, bg, args)
  }

  /// Takes the pair out of the way of later tests (workers, manager slots).
  static func cleanup(_ dc: TestDC, _ db: String) {
    _ = try? dc.run("restore_logins", db)
    Repl.cleanup(dc)
  }
}

/// Where a kill lands: the journal condition, and what the test does around it.
struct KillPoint: CustomTestStringConvertible, Sendable {
  var name: String
  /// The step status shows for the interrupted cutover.
  var step: String
  var big = false
  /// Seconds between the condition and the kill.
  var delay = 0.0
  /// An application session held open through the revoke (the drain waits for it).
  var holdSession = false
  /// A lock on dst that stops the apply worker (the gate waits for it).
  var blockApply = false
  var cond: @Sendable (Value?) -> Bool
  /// The engine the pair replicates with.
  var engine: EngineKind = .pglogical
  var testDescription: String {
    engine == .pglogical ? name : "\(name) [\(engine.rawValue), 15 -> 18]"
  }

  static func started(_ step: String) -> @Sendable (Value?) -> Bool {
    { j in Resume.step(j, step)?["status"] == "started" }
  }
  static func part(_ part: String) -> @Sendable (Value?) -> Bool {
    { j in Resume.step(j, "sync")?["data"]?["sync"]?["parts"]?[part] == "started" }
  }

  /// Every kill point on pglogical (15 -> 15) and on the native engine (15 -> 18, dst the
  /// PostgreSQL 18 cluster), or those whose name contains $BELT_TEST_KILL (to iterate on one).
  /// The native engine streams PK-less tables, so sync copies none: no kill mid-copy.
  static var selected: [KillPoint] {
    let native = all.filter { !$0.big }.map { p -> KillPoint in
      var q = p
      q.engine = .native
      return q
    }
    guard let f = ProcessInfo.processInfo.environment["BELT_TEST_KILL"] else { return all + native }
    return (all + native).filter { $0.testDescription.contains(f) }
  }

  static let all: [KillPoint] = [
    KillPoint(name: "at revoke-logins", step: "revoke-logins", cond: started("revoke-logins")),
    KillPoint(
      name: "inside the drain", step: "drain", delay: 0.5, holdSession: true, cond: started("drain")
    ),
    KillPoint(
      name: "inside the teardown-forward gate", step: "teardown-forward-replication", delay: 0.3,
      blockApply: true,
      cond: { j in
        Resume.step(j, "teardown-forward-replication")?["data"]?["teardown_forward_replication"]?[
          "target_lsn"] != nil
      }),
    KillPoint(name: "at sync (sync-sequences)", step: "sync", cond: part("sync_sequences")),
    KillPoint(
      name: "inside sync-tables, mid-copy of a 300k-row PK-less table", step: "sync", big: true,
      delay: 0.15,
      cond: { j in
        Resume.step(j, "sync")?["data"]?["sync_tables"]?["tables"]?["big_nopk"] == "copying"
      }),
    KillPoint(name: "at constraints and indexes", step: "sync", cond: part("load_constraints")),
    KillPoint(name: "at validation", step: "sync", cond: part("validate_data")),
    KillPoint(name: "at diff-schemas", step: "diff-schemas", cond: started("diff-schemas")),
  ]
}

@Suite(.serialized, .enabled(if: PG.available, "needs the clusters from scripts/pg-clusters"))
struct ResumeTests {
  @Test(arguments: KillPoint.selected)
  func sigkillThenTheSameCommandFinishesTheCutover(_ point: KillPoint) throws {
    let t0 = Date()
    let dc = try TestDC()
    // Native runs 15 -> 18: dst is the PostgreSQL 18 cluster, and pg_dump 18 dumps both.
    let env = point.engine == .native ? try dc.useDst18() : [:]
    let (pair, app, pw) = try Resume.migrated(
      dc, "app", big: point.big, engine: point.engine, env: env)
    defer { Resume.cleanup(dc, "app") }
    let args = [
      "run", "cutover.lua", dc.dc, "app", "--config-dir", dc.root, "--", "drain_timeout=2s",
      "lock_out_shared=true",
    ]
    var held: PGConnection? = nil
    if point.holdSession {
      held = try PGConnection(
        conninfo: ConnInfo.build([
          ("hostaddr", PG.host), ("port", String(PG.port(.src))), ("dbname", pair.dbname),
          ("user", app), ("password", pw),
        ]),
        label: "app session")
    }
    defer { held?.close() }
    var blocker: PGConnection? = nil
    if point.blockApply {
      // dst's apply worker waits on this row lock to apply an update made on src (as root,
      // not revoked), so the gate's target stays out of reach until the lock goes.
      blocker = try dc.conn("app", .dst)
      try blocker?.exec("BEGIN; SELECT * FROM \"UsersCapital\" WHERE id = 1 FOR UPDATE")
      try Cut.exec(
        dc, "app", .src,
        "UPDATE \"UsersCapital\" SET name = 'changed just before the cutover' WHERE id = 1")
    }
    defer { blocker?.close() }
    let ready = Date()

    let bg = try Resume.Background(args, scratch: dc.root, env: env)
    let caught = Resume.waitJournal(dc, "app", bg) { point.cond($0) }
    if point.delay > 0 { Thread.sleep(forTimeInterval: point.delay) }
    bg.stop(SIGKILL)
    #expect(caught, "belt ended before the kill point: \(bg.output)")
    #expect(bg.process.terminationReason == .uncaughtSignal, "\(bg.output)")
    if point.blockApply { try blocker?.exec("ROLLBACK") }
    let killedAt = Date()
    let dstBigRowsAfterKill =
      point.big ? try Cut.scalar(dc, "app", .dst, "SELECT count(*) FROM big_nopk") : nil

    // While interrupted: logins stay revoked (the application is down), and status says so.
    if point.step != "revoke-logins" {
      Login.expectRefused(
        .src, db: pair.dbname, user: app, pw: pw, "logins stay revoked after the kill")
    }
    let j = Resume.journal(dc, "app")
    #expect(j?["state"] == "in_progress")
    #expect(Resume.step(j, point.step)?["status"] == "started", "\(j?.json() ?? "no journal")")
    let status = try CLI.run(["status", dc.dc, "app", "--config-dir", dc.root, "--json"], env: env)
    let st = (try? JSONParser.parse(status.out)) ?? .null
    #expect(st["cutover"] == "in_progress", "\(status.out)")
    #expect(st["cutover_step"]?.stringValue == point.step, "\(status.out)")
    #expect(
      st["cutover_command"]?.stringValue == "belt " + args.joined(separator: " "), "\(status.out)")
    if point.step != "revoke-logins" { #expect(st["src_logins_revoked"] == true, "\(status.out)") }

    // The same command again: finishes from where it stopped.
    let r0 = Date()
    let again = try CLI.run(args, env: env)
    let resumeSeconds = Date().timeIntervalSince(r0)
    #expect(again.code == 0, "re-run: \(again.err) \(again.out)")
    #expect(again.out.contains("app: cut over; downtime window"), "\(again.out)")
    try Resume.expectSameData(dc, "app")
    Login.expectRefused(
      .src, db: pair.dbname, user: app, pw: pw, "src logins revoked after the cutover")
    let done = Resume.journal(dc, "app")
    #expect(done?["state"] == "done")
    let names = done?["steps"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
    #expect(
      names == [
        "revoke-logins", "drain", "teardown-forward-replication", "sync", "diff-sequences",
        "refresh-matviews", "diff-schemas",
      ], "\(names)")
    #expect(done?["steps"]?.arrayValue?.allSatisfy { $0["status"] == "done" } == true)
    #expect(Resume.step(done, point.step)?["attempts"] == 2, "the interrupted step ran again")
    if point.big {
      // Killed mid-COPY: the server rolled the load back; the re-run emptied and copied the
      // table again in one transaction instead of skipping or refusing it.
      #expect(dstBigRowsAfterKill == "0", "the killed load left \(dstBigRowsAfterKill ?? "?") rows")
      #expect(
        Resume.step(done, "sync")?["data"]?["sync_tables"]?["tables"]?["big_nopk"] == "copied")
      #expect(!(again.out + again.err).contains("not empty"), "\(again.out) \(again.err)")
    }
    // The downtime counts from the first revoke, across the interruption.
    let downtime = done?["data"]?["downtime_s"]?.doubleValue ?? 0
    let revokeStart = Resume.step(done, "revoke-logins")?["started_epoch"]?.doubleValue ?? 0
    #expect(revokeStart > 0 && revokeStart <= killedAt.timeIntervalSince1970)
    // (A kill inside the window is part of it; diff-schemas runs after the window has closed.)
    if point.step != "diff-schemas" {
      #expect(
        downtime >= killedAt.timeIntervalSince1970 - revokeStart - 0.05, "downtime \(downtime)")
    }
    #expect(downtime > 0, "downtime \(downtime)")

    // And once more: done, says when, exit 0.
    let third = try CLI.run(args, env: env)
    #expect(third.code == 0, "\(third.err)")
    #expect(third.out.contains("app: the cutover finished at"), "\(third.out)")
    print(
      String(
        format:
          "[kill %@] migrate %.1f s, resume %.1f s, downtime window %.1f s, whole test %.1f s",
        point.name, ready.timeIntervalSince(t0), resumeSeconds, downtime,
        Date().timeIntervalSince(t0)))
  }
}

extension ResumeTests {
  /// Ctrl-C inside the drain: the compensation gives the logins back and records it; the same
  /// command then does the whole cutover again.
  @Test func sigintInTheDrainRestoresLoginsAndTheRerunDoesTheWholeCutover() throws {
    let dc = try TestDC()
    let (pair, app, pw) = try Resume.migrated(dc, "app")
    defer { Resume.cleanup(dc, "app") }
    let (held, bg, args) = try Resume.cutoverInTheDrain(
      dc, pair, app: app, pw: pw, drainTimeout: "3s")
    defer { held.close() }
    // The same command in a second terminal, while the first still runs: refused, and it
    // changes nothing (no compensation either: logins stay revoked for the first run).
    let second = try CLI.run(args)
    #expect(second.code == 1)
    #expect(
      second.err.contains(
        "another belt process (pid \(bg.process.processIdentifier)) is running the cutover of"),
      "\(second.err)")
    #expect(!second.err.contains("restoring logins"), "\(second.err)")
    Login.expectRefused(.src, db: pair.dbname, user: app, pw: pw)
    let rollbackMeanwhile = try CLI.run([
      "run", "rollback.lua", dc.dc, "app", "--config-dir", dc.root, "--", "lock_out_shared=true",
    ])
    #expect(
      rollbackMeanwhile.code == 1 && rollbackMeanwhile.err.contains("another belt process"),
      "\(rollbackMeanwhile.err)")
    bg.stop(SIGINT)
    #expect(bg.process.terminationStatus == 1, "\(bg.output)")
    #expect(bg.output.contains("restoring logins on src"), "\(bg.output)")
    Login.expectAllowed(.src, db: pair.dbname, user: app, pw: pw, "compensation restored logins")
    let j = Resume.journal(dc, "app")
    #expect(j?["state"] == "compensated")
    #expect(j?["note"]?.stringValue?.contains("interrupted") == true, "\(j?.json() ?? "")")
    #expect(
      try CLI.run(["status", dc.dc, "app", "--config-dir", dc.root, "--json"]).out.contains(
        "\"src_logins_revoked\": false"))

    let again = try CLI.run(args)
    #expect(again.code == 0, "\(again.err)")
    #expect(again.out.contains("app: cut over; downtime window"), "\(again.out)")
    #expect(
      again.err.contains("terminated 1 session(s) on src"),
      "the whole cutover ran again, drain included: \(again.err)")
    try Resume.expectSameData(dc, "app")
    let done = Resume.journal(dc, "app")
    #expect(done?["state"] == "done")
    #expect(done?["run"] == 2, "a new run, not a resume of the compensated one")
    #expect(
      done?["steps"]?.arrayValue?.allSatisfy { $0["status"] == "done" && $0["attempts"] == 1 }
        == true)
    Login.expectRefused(.src, db: pair.dbname, user: app, pw: pw)
  }

  /// SIGKILL inside the drain, then the logins given back by hand (or by a compensation that
  /// was itself cut short) before the re-run: the resumed cutover puts the fence up again and
  /// drains before the gate, instead of going on while the application writes to src.
  @Test func loginsGivenBackWhileInterruptedAreRevokedAgainBeforeTheGate() throws {
    let dc = try TestDC()
    let (pair, app, pw) = try Resume.migrated(dc, "app")
    defer { Resume.cleanup(dc, "app") }
    let (held, bg, args) = try Resume.cutoverInTheDrain(
      dc, pair, app: app, pw: pw, drainTimeout: "2s")
    defer { held.close() }
    bg.stop(SIGKILL)
    _ = try dc.run("restore_logins", "app")
    Login.expectAllowed(.src, db: pair.dbname, user: app, pw: pw)
    try Cut.exec(dc, "app", .src, "INSERT INTO fruits VALUES (50, 'meanwhile')")

    let again = try CLI.run(args)
    #expect(again.code == 0, "\(again.err)")
    #expect(
      again.err.contains(
        "src logins were given back while the cutover was interrupted; revoking them again"),
      "\(again.err)")
    Login.expectRefused(
      .src, db: pair.dbname, user: app, pw: pw, "the fence is up again after the cutover")
    try Resume.expectSameData(dc, "app")
    #expect(Resume.journal(dc, "app")?["state"] == "done")
  }

  /// Ctrl-C inside sync-tables, after forward replication was dropped: logins come back, and
  /// the re-run refuses (src took writes that dst lacks) and says how to start over.
  @Test func sigintAfterTheTeardownRestoresLoginsAndTheRerunSaysHowToStartOver() throws {
    let dc = try TestDC()
    let (pair, app, pw) = try Resume.migrated(dc, "app", big: true)
    defer { Resume.cleanup(dc, "app") }
    let args = [
      "run", "cutover.lua", dc.dc, "app", "--config-dir", dc.root, "--", "lock_out_shared=true",
    ]
    let bg = try Resume.Background(args, scratch: dc.root)
    #expect(
      Resume.waitJournal(dc, "app", bg) {
        Resume.step($0, "sync")?["data"]?["sync_tables"]?["tables"]?["big_nopk"] == "copying"
      })
    Thread.sleep(forTimeInterval: 0.1)
    bg.stop(SIGINT)
    #expect(bg.process.terminationStatus == 1, "\(bg.output)")
    Login.expectAllowed(.src, db: pair.dbname, user: app, pw: pw, "compensation restored logins")
    #expect(Resume.journal(dc, "app")?["state"] == "compensated")
    let again = try CLI.run(args)
    #expect(again.code == 1)
    #expect(
      again.err.contains("forward replication is unconfigured") && again.err.contains("belt reset"),
      "\(again.err)")
    Login.expectAllowed(
      .src, db: pair.dbname, user: app, pw: pw, "the refused re-run did not revoke")
  }

  /// SIGKILL mid-copy of the big PK-less table, then rollback.lua: src is writable again with
  /// all its data (nothing is copied back from dst's half-loaded tables).
  @Test func rollbackAfterAKillMidCutoverLeavesSrcWritableWithAllData() throws {
    let dc = try TestDC()
    let (pair, app, pw) = try Resume.migrated(dc, "app", big: true)
    defer { Resume.cleanup(dc, "app") }
    let before = try LoadTests.fingerprint(dc.conn("app", .src))
    let bg = try Resume.Background(
      ["run", "cutover.lua", dc.dc, "app", "--config-dir", dc.root, "--", "lock_out_shared=true"],
      scratch: dc.root)
    #expect(
      Resume.waitJournal(dc, "app", bg) {
        Resume.step($0, "sync")?["data"]?["sync_tables"]?["tables"]?["big_nopk"] == "copying"
      })
    Thread.sleep(forTimeInterval: 0.1)
    bg.stop(SIGKILL)
    Login.expectRefused(.src, db: pair.dbname, user: app, pw: pw)
    // status, human form: the step, the logins, the command that continues it.
    let st = try CLI.run(["status", dc.dc, "app", "--config-dir", dc.root])
    #expect(st.out.contains("app: cutover in progress: step sync since"), "\(st.out)")
    #expect(st.out.contains("src logins revoked (the application is down)"), "\(st.out)")
    #expect(
      st.out.contains("continue with: belt run cutover.lua \(dc.dc) app --config-dir \(dc.root)"),
      "\(st.out)")

    let rb = try CLI.run([
      "run", "rollback.lua", dc.dc, "app", "--config-dir", dc.root, "--", "lock_out_shared=true",
    ])
    #expect(rb.code == 0, "\(rb.err)")
    #expect(rb.out.contains("the cutover had not finished; nothing was copied back"), "\(rb.out)")
    #expect(rb.out.contains("forward replication was dropped"), "\(rb.out)")
    Login.expectAllowed(.src, db: pair.dbname, user: app, pw: pw, "logins restored on src")
    #expect(try LoadTests.fingerprint(dc.conn("app", .src)) == before, "src keeps all its data")
    // Writable: the application's owner writes on src.
    let owner = try PGConnection(
      conninfo: try dc.store.load(dc: dc.dc, db: "app").server(.src).conninfo(.owner),
      label: "owner")
    defer { owner.close() }
    #expect(
      try owner.query("INSERT INTO fruits VALUES (5, 'after rollback') RETURNING id").scalar == "5")
    #expect(Resume.journal(dc, "app")?["state"] == "rolled_back")
    #expect(Resume.journal(dc, "app", flow: "rollback")?["state"] == "done")
    let twice = try CLI.run([
      "run", "rollback.lua", dc.dc, "app", "--config-dir", dc.root, "--", "lock_out_shared=true",
    ])
    #expect(
      twice.code == 0 && twice.out.contains("already rolled back at"), "\(twice.out) \(twice.err)")
  }

  /// `belt run cutover.lua DC`: one database was interrupted in sync, the other never started;
  /// the dc-wide run resumes the first from its step and cuts the second over from the start.
  @Test func dcWideRunResumesEachDatabaseFromItsOwnStep() throws {
    let dc = try TestDC()
    _ = try Resume.migrated(dc, "alpha")
    _ = try Resume.migrated(dc, "beta")
    defer { Resume.cleanup(dc, "alpha"); Resume.cleanup(dc, "beta") }
    let bg = try Resume.Background(
      [
        "run", "cutover.lua", dc.dc, "alpha", "--config-dir", dc.root, "--", "lock_out_shared=true",
      ], scratch: dc.root)
    #expect(Resume.waitJournal(dc, "alpha", bg) { Resume.step($0, "sync")?["status"] == "started" })
    bg.stop(SIGKILL)
    #expect(Resume.journal(dc, "beta") == nil)
    let all = try CLI.run([
      "run", "cutover.lua", dc.dc, "--config-dir", dc.root, "--", "lock_out_shared=true",
    ])
    #expect(all.code == 0, "\(all.err)")
    #expect(all.err.contains("alpha: resuming the cutover interrupted in sync"), "\(all.err)")
    #expect(
      all.err.contains("waiting for forward lag < 1048576 bytes on beta"),
      "only beta waits for lag: \(all.err)")
    for db in ["alpha", "beta"] {
      try Resume.expectSameData(dc, db)
      let j = Resume.journal(dc, db)
      #expect(j?["state"] == "done")
      #expect(Resume.step(j, "revoke-logins")?["attempts"] == 1, "\(db): revoke-logins ran once")
      #expect(Resume.step(j, "sync")?["attempts"] == (db == "alpha" ? 2 : 1))
    }
    let again = try CLI.run([
      "run", "cutover.lua", dc.dc, "--config-dir", dc.root, "--", "lock_out_shared=true",
    ])
    #expect(again.code == 0)
    #expect(
      again.out.contains("alpha: the cutover finished at")
        && again.out.contains("beta: the cutover finished at"), "\(again.out)")
  }
}

@Suite(.serialized, .enabled(if: PG.available, "needs the clusters from scripts/pg-clusters"))
struct AuditTests {
  @Test func auditLogOfMigrateAndCutoverHoldsEveryChangeAndNoSecret() throws {
    let dc = try TestDC()
    let (pair, app, pw) = try Resume.migrated(dc, "app")
    defer { Resume.cleanup(dc, "app") }
    // A session that does not drain: the cutover terminates it (an audited statement too).
    let held = try PGConnection(
      conninfo: ConnInfo.build([
        ("hostaddr", PG.host), ("port", String(PG.port(.src))), ("dbname", pair.dbname),
        ("user", app), ("password", pw),
      ]),
      label: "app session")
    defer { held.close() }
    let cut = try CLI.run([
      "run", "cutover.lua", dc.dc, "app", "--config-dir", dc.root, "--", "drain_timeout=1s",
      "lock_out_shared=true",
    ])
    #expect(cut.code == 0, "\(cut.err)")
    // An explicit place (option) for a later command: the same lines go there instead.
    let elsewhere = dc.root + "/elsewhere.jsonl"
    let restore = try CLI.run([
      "restore-logins", dc.dc, "app", "--config-dir", dc.root, "--audit-log", elsewhere,
    ])
    #expect(restore.code == 0, "\(restore.err)")

    let path = dc.root + "/configs/\(dc.dc)/app/audit.jsonl"
    let text = try String(contentsOfFile: path, encoding: .utf8)
    let lines = text.split(separator: "\n").map(String.init)
    let records = lines.compactMap { try? JSONParser.parse($0) }
    #expect(records.count == lines.count, "every line is one JSON document")
    for r in records {
      for key in [
        "time", "dc", "db", "side", "server", "role", "user", "statement", "duration_ms", "outcome",
      ] {
        #expect(r[key] != nil, "\(key) missing in \(r.json(indent: 0))")
      }
      #expect(r["dc"]?.stringValue == dc.dc && r["db"] == "app")
    }
    func find(_ side: String, _ role: String, _ pattern: String) -> [Value] {
      records.filter {
        $0["side"]?.stringValue == side && $0["role"]?.stringValue == role
          && ($0["statement"]?.stringValue ?? "").range(
            of: pattern, options: [.regularExpression, .caseInsensitive]) != nil
      }
    }
    let expected: [(String, String, String, String)] = [
      (
        "src", "root", "ROLE .* WITH LOGIN PASSWORD '\\*\\*\\*\\*'",
        "the pglogical role, password redacted"
      ),
      ("src", "root", "pglogical\\.create_node", "node pg1"),
      ("src", "root", "pglogical\\.create_replication_set", "replication set"),
      ("dst", "owner", "^\\s*CREATE TABLE", "load-schema as the owner"),
      ("dst", "root", "pglogical\\.create_subscription", "forward subscription"),
      ("src", "root", "pglogical\\.create_subscription", "back subscription"),
      ("dst", "owner", "CREATE INDEX", "create-indexes"),
      ("src", "root", "WITH NOLOGIN", "revoke-logins"),
      ("src", "root", "pg_terminate_backend", "terminated session"),
      (
        "dst", "root", "pglogical\\.drop_subscription|DROP SUBSCRIPTION",
        "teardown-forward-replication"
      ),
      ("dst", "root", "setval", "sync-sequences"),
      ("dst", "root", "^COPY .*fruits.* FROM STDIN", "sync-tables COPY target"),
      ("dst", "owner", "NOT VALID", "load-constraints"),
    ]
    for (side, role, pattern, what) in expected {
      #expect(
        !find(side, role, pattern).isEmpty,
        "no audit line for \(what) (\(side) as \(role): \(pattern))")
    }
    // Values travel with their statement; a COPY says how many rows it wrote; the terminated
    // session is named.
    #expect(
      find("src", "root", "pglogical\\.create_node").first?["params"]?.arrayValue?.first == "pg1")
    #expect(find("dst", "root", "^COPY .*fruits").first?["rows"] == 4)
    #expect(
      find("src", "root", "pg_terminate_backend").first?["returned"]?.display.contains(app) == true)
    #expect(
      find("src", "root", "WITH NOLOGIN").contains {
        $0["statement"]?.stringValue?.contains(app) == true
      })
    #expect(records.allSatisfy { $0["outcome"] == "ok" || $0["outcome"] == "error" })
    // Reads are not audited.
    #expect(
      !records.contains { ($0["statement"]?.stringValue ?? "").hasPrefix("SELECT count(") },
      "a read in the audit log")
    #expect(!records.contains { ($0["statement"]?.stringValue ?? "").contains("TO STDOUT") })

    // No secret: the config's passwords, in any form, nor their SCRAM hashes.
    let all = text + ((try? String(contentsOfFile: elsewhere, encoding: .utf8)) ?? "")
    let cfg = try dc.store.load(dc: dc.dc, db: "app")
    var secrets: [String] = []
    for s in [cfg.src, cfg.dst].compactMap({ $0 }) {
      secrets += Role.allCases.map { s.credentials($0).password }
    }
    for side in Side.allCases {
      let c = try PG.root(side)
      defer { c.close() }
      secrets += try c.query(
        "SELECT rolpassword FROM pg_authid WHERE rolname = ANY($1::text[]) AND rolpassword IS NOT NULL",
        [PGArray.literal([pair.owner.name, pair.pglogical.name, PG.rootUser])]
      ).values.compactMap { $0[0] }
    }
    #expect(secrets.count >= 10)
    for (i, s) in Set(secrets).sorted().enumerated() {
      #expect(!all.contains(s), "secret #\(i) is in the audit log")
    }
    #expect(!all.contains("SCRAM-SHA-256$"))
    #expect(all.range(of: "password=(?!\\*\\*\\*\\*)", options: .regularExpression) == nil)
    // The journal holds no secret either.
    let journal = try String(
      contentsOfFile: Journal.path(dc.store, dc: dc.dc, db: "app", flow: "cutover"), encoding: .utf8
    )
    for s in Set(secrets) { #expect(!journal.contains(s)) }
    // The option put restore-logins' lines elsewhere.
    let moved = ((try? String(contentsOfFile: elsewhere, encoding: .utf8)) ?? "").split(
      separator: "\n")
    #expect(
      moved.contains { $0.contains("WITH LOGIN") && $0.contains(app) },
      "restore-logins in --audit-log file")
    #expect(
      !lines.contains {
        $0.contains("WITH LOGIN\"") && $0.contains(app) && !$0.contains("PASSWORD")
      })
    print(
      "[audit] \(records.count) lines for migrate + cutover; e.g.\n"
        + lines.filter {
          ["NOLOGIN", "FROM STDIN", "create_node", "pg_terminate_backend", "drop_subscription"]
            .contains(where: $0.contains)
        }.prefix(8).joined(separator: "\n"))
  }
}

/// The journal is part of the scripting API: a custom runbook resumes with it (no server).
@Suite struct JournalScriptingTests {
  @Test func aCustomRunbookResumesFromItsJournal() throws {
    let root = NSTemporaryDirectory() + "belt-test-" + PG.unique("journal")
    defer { try? FileManager.default.removeItem(atPath: root) }
    let store = ConfigStore(root: root)
    try store.save(
      .object([("db", "app"), ("dc", "dc"), ("src", .null), ("dst", .null)]),
      to: store.path(dc: "dc", db: "app"))
    let script = root + "/custom.lua"
    try """
    local dc, db, opts = ...
    local j = belt.journal(dc, db, {flow = "custom"})
    if j.state == "done" then print("done at " .. j.finished_at) return end
    for _, step in ipairs({"one", "two", "three"}) do
      if j.state == "in_progress" and j.step_status[step] == "done" then
        print("skip " .. step)
      else
        belt.journal_begin(dc, db, {flow = "custom", step = step, data = {len = #step}, run_data = {by = "custom.lua"}})
        if step == "two" and opts.fail then error(belt.error("step_failed", "boom")) end
        belt.journal_end(dc, db, {flow = "custom", step = step, data = {ok = true}})
        print("did " .. step)
      end
    end
    belt.journal_close(dc, db, {flow = "custom", state = "done"})
    """.write(toFile: script, atomically: true, encoding: .utf8)
    let first = try CLI.run(["run", script, "dc", "app", "--config-dir", root, "--", "fail=true"])
    #expect(first.code == 1 && first.out == "did one\n", "\(first.out) \(first.err)")
    let j = try CLI.run([
      "journal", "dc", "app", "--flow", "custom", "--config-dir", root, "--json",
    ])
    let rec = try JSONParser.parse(j.out)
    #expect(
      rec["state"] == "in_progress" && rec["current_step"] == "two"
        && rec["current_step_status"] == "started", "\(j.out)")
    let again = try CLI.run(["run", script, "dc", "app", "--config-dir", root])
    #expect(
      again.code == 0 && again.out == "skip one\ndid two\ndid three\n", "\(again.out) \(again.err)")
    let doc = try JSONParser.parse(
      String(
        contentsOfFile: Journal.path(store, dc: "dc", db: "app", flow: "custom"), encoding: .utf8))
    #expect(doc["state"] == "done")
    #expect(doc["data"]?["by"] == "custom.lua")
    let two = doc["steps"]?.arrayValue?.first { $0["name"] == "two" }
    #expect(
      two?["attempts"] == 2 && two?["data"]?["len"] == 3 && two?["data"]?["ok"] == true,
      "\(two?.json() ?? "")")
    let third = try CLI.run(["run", script, "dc", "app", "--config-dir", root])
    #expect(third.out.hasPrefix("done at "), "\(third.out)")
    // Bad input is refused with one clear sentence.
    let bad = try CLI.run([
      "run", "journal-end.lua", "dc", "app", "--config-dir", root, "--", "flow=../x", "step=a",
    ])
    #expect(bad.code != 0 && bad.err.contains("invalid journal flow name"), "\(bad.err)")
  }
}
