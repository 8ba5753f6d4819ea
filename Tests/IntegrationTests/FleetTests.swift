import Foundation
import Testing

@testable import BeltRuntime

/// Issue 12: many databases of a dc on one server pair; server-wide changes serialized
/// (ServerWide), logins scoped to the cutover.
@Suite(.serialized, .enabled(if: PG.available, "needs the clusters from scripts/pg-clusters"))
struct FleetTests {
  /// A small schema: a PK table that replicates and a PK-less one that sync copies.
  static let ddl = """
    CREATE TABLE items (id bigserial PRIMARY KEY, v text NOT NULL, n int);
    INSERT INTO items (v, n) SELECT md5(g::text), g FROM generate_series(1, 200) g;
    CREATE TABLE log (at int, msg text);
    INSERT INTO log SELECT g, 'm' || g FROM generate_series(1, 20) g;
    """

  /// Config keys that keep revoke-logins to this suite's roles (named "Cu..."): roles are
  /// server-wide and the test servers are full of other tests' roles.
  static func onlyCuRoles(except mine: [String]) throws -> [(String, Value)] {
    [
      ("exclude_users", .from(try Cut.otherLogins(except: mine))),
      ("exclude_patterns", .from(Cut.everythingButCu())),
    ]
  }

  /// Creates a LOGIN role on both servers; on src it may connect to and read `dbnames`.
  static func appRole(_ name: String, _ pw: String, connect dbnames: [String]) throws {
    for side in Side.allCases {
      let c = try PG.root(side)
      defer { c.close() }
      try c.exec(
        "CREATE ROLE \(PGConnection.quoteIdent(name)) LOGIN PASSWORD \(try c.literal(try c.encryptPassword(pw, user: name)))"
      )
    }
    for db in dbnames {
      let c = try PG.root(.src, db: db)
      defer { c.close() }
      try c.exec(
        "GRANT CONNECT ON DATABASE \(PGConnection.quoteIdent(db)) TO \(PGConnection.quoteIdent(name))"
      )
      try c.exec("GRANT SELECT ON ALL TABLES IN SCHEMA public TO \(PGConnection.quoteIdent(name))")
    }
  }

  static func connect(_ db: String, _ user: String, _ pw: String) throws -> PGConnection {
    try PGConnection(
      conninfo: ConnInfo.build([
        ("hostaddr", PG.host), ("port", String(PG.port(.src))), ("dbname", db), ("user", user),
        ("password", pw),
      ]), label: "\(user)@\(db)")
  }

  static func roleExists(_ side: Side, _ name: String) throws -> Bool {
    let c = try PG.root(side)
    defer { c.close() }
    return try c.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [name]).values.count == 1
  }

  /// Nothing of pglogical left for any pair of the dc on either server, nor the shared role.
  static func expectNothingLeft(
    _ dc: TestDC, role: String, _ when: String, sourceLocation: SourceLocation = #_sourceLocation
  ) throws {
    for db in dc.pairs.keys.sorted() {
      for side in Side.allCases {
        let l = try Repl.leftovers(dc, db, side)
        #expect(
          l == Repl.Leftovers(), "\(when): \(db) on \(side.rawValue): \(l)",
          sourceLocation: sourceLocation)
      }
    }
    for side in Side.allCases {
      #expect(
        try !roleExists(side, role), "\(when): role \(role) left on \(side.rawValue)",
        sourceLocation: sourceLocation)
    }
  }

  /// setup -> setup-back-replication -> cutover.lua -> teardown -> teardown --full on a dc of
  /// 8 databases sharing one pglogical role and one application role, three times on fresh
  /// databases (a different fence each time): no error, nothing left on either server.
  @Test func eightDatabasesThroughTheWholeMigrationThreeTimesLeaveNothing() throws {
    for (round, fence) in ["nologin", "connect", "auto"].enumerated() {
      let t0 = Date()
      let dc = try TestDC()
      defer { Repl.cleanup(dc) }
      let t = PG.unique("r").replacingOccurrences(of: "r_", with: "")
      let app = "CuFleet_\(t)"
      let appPW = "fleet 'app' pw"
      let pgl = Credentials(name: PG.unique("pglfleet"), password: "pgl 'fleet' \\ pw")
      let excluded = try Self.onlyCuRoles(except: [app])
      for i in 0..<8 {
        try dc.addPair("db\(i)", srcSQL: Self.ddl, extra: excluded, pglogical: pgl)
      }
      let dbnames = dc.pairs.values.map(\.dbname)
      try Self.appRole(app, appPW, connect: dbnames)

      let setup = try dc.run("setup", nil)
      #expect(setup["ok"] == true, "round \(round): \(setup.json())")
      try Repl.waitStatus(dc, nil, "forward replicating", timeout: 120) {
        $0["forward"] == "replicating"
      }
      let back = try dc.run("setup_back_replication", nil)
      #expect(back["ok"] == true, "round \(round): \(back.json())")
      try Repl.waitStatus(dc, nil, "back replicating", timeout: 120) { $0["back"] == "replicating" }

      // The application role is used by all 8 databases, all in this cutover: not "shared".
      let cutover = try CLI.run([
        "run", "cutover.lua", dc.dc, "--config-dir", dc.root, "--jobs", "8", "--",
        "drain_timeout=2s", "diff=false",
        "fence=\(fence)",
      ])
      #expect(cutover.code == 0, "round \(round) (\(fence)): \(cutover.err)")
      for db in dc.pairs.keys {
        #expect(
          try Repl.sameRows(dc, db, ["items", "log"]),
          "round \(round): \(db) differs after the cutover")
      }
      // nologin, and auto for a role no database outside the cutover uses: NOLOGIN; connect: no CONNECT.
      Login.expectRefused(
        db: dbnames[0], user: app, pw: appPW,
        because: fence == "connect" ? [.noConnect] : [.nologin],
        "round \(round) (\(fence)): the application is fenced out of src after the cutover")

      let teardown = try CLI.run(["teardown", dc.dc, "--config-dir", dc.root, "--jobs", "8"])
      #expect(teardown.code == 0, "round \(round): \(teardown.err)")
      let full = try CLI.run(["teardown", dc.dc, "--full", "--config-dir", dc.root, "--jobs", "8"])
      #expect(full.code == 0, "round \(round): \(full.err)")
      try Self.expectNothingLeft(dc, role: pgl.name, "round \(round)")
      _ = try? dc.run("restore_logins", nil)
      print(
        "fleet round \(round) (\(fence)): \(String(format: "%.1f", Date().timeIntervalSince(t0))) s"
      )
    }
  }

  /// Two belt processes tear down two dcs that share both servers and the pglogical role, at
  /// the same time: both succeed, the role is dropped exactly once per server, nothing is left.
  /// Then a teardown waits while another session holds belt's advisory lock on the server.
  @Test func twoProcessesTearDownTwoDCsOnSharedServers() throws {
    let pgl = Credentials(name: PG.unique("pglshared"), password: "shared 'pgl' pw")
    let dcs = [try TestDC(), try TestDC()]
    defer { dcs.forEach(Repl.cleanup) }
    for dc in dcs {
      for i in 0..<3 { try dc.addPair("db\(i)", srcSQL: Self.ddl, pglogical: pgl) }
      #expect(try dc.run("setup", nil)["ok"] == true)
    }
    for dc in dcs {
      try Repl.waitStatus(dc, nil, "forward replicating", timeout: 120) {
        $0["forward"] == "replicating"
      }
    }

    func both(_ extra: [String]) -> [CLI.Result] {
      let results = Runner.parallelMap([0, 1], width: 2) { i -> CLI.Result in
        (try? CLI.run(["teardown", dcs[i].dc, "--config-dir", dcs[i].root, "--json"] + extra))
          ?? CLI.Result(code: -1, out: "", err: "could not start belt")
      }
      return results
    }
    var notes: [String] = []
    for extra in [[], ["--full"]] {
      for (i, r) in both(extra).enumerated() {
        #expect(r.code == 0, "teardown \(extra) of dc \(i): \(r.err)")
        let v = (try? JSONParser.parse(r.out)) ?? .null
        #expect(v["ok"] == true, "\(r.out)")
        notes += Repl.records(v).flatMap { $0["notes"]?.arrayValue ?? [] }.compactMap(\.stringValue)
      }
    }
    for side in ["src", "dst"] {
      #expect(notes.filter { $0 == "\(side): dropped role \(pgl.name)" }.count == 1, "\(notes)")
    }
    for dc in dcs { try Self.expectNothingLeft(dc, role: pgl.name, "after both teardowns") }

    // Another process holds the lock (as a second belt would): teardown waits for it.
    let holder = try PG.root(.src)
    defer { holder.close() }
    let key = ServerWide.lockKey
    try holder.query("SELECT pg_advisory_lock($1::int, $2::int)", [String(key.0), String(key.1)])
    final class Box: @unchecked Sendable { var result: CLI.Result? }
    let box = Box()
    let done = DispatchSemaphore(value: 0)
    let args = ["teardown", dcs[0].dc, "db0", "--config-dir", dcs[0].root, "--json"]
    Thread {
      box.result = try? CLI.run(args)
      done.signal()
    }.start()
    // Hold the lock for 1 s after belt is seen waiting on it (belt's start-up on a loaded
    // machine is not part of the wait it reports).
    // (belt polls with pg_try_advisory_lock: its lock session's last query says it is waiting)
    let waiting = """
      SELECT count(*) FROM pg_stat_activity
      WHERE query LIKE '%pg_try_advisory_lock%' AND pid <> pg_backend_pid()
      """
    let seenBy = Date().addingTimeInterval(30)
    while try holder.query(waiting).scalar == "0", Date() < seenBy {
      Thread.sleep(forTimeInterval: 0.05)
    }
    Thread.sleep(forTimeInterval: 1.0)
    let finishedWhileHeld = done.wait(timeout: .now()) == .success
    try holder.query("SELECT pg_advisory_unlock($1::int, $2::int)", [String(key.0), String(key.1)])
    if !finishedWhileHeld { done.wait() }
    #expect(!finishedWhileHeld, "teardown finished while another session held the server lock")
    guard let r = box.result else { Issue.record("belt did not run"); return }
    #expect(r.code == 0, "\(r.err)")
    let waited = (try? JSONParser.parse(r.out))?["server_lock_wait_ms"]?.intValue ?? 0
    #expect(waited >= 1000, "server_lock_wait_ms = \(waited): \(r.out)")
  }

  /// revoke-logins when the application role also uses a database of the same server that is
  /// not in the dc: refused, naming role and database; the CONNECT fence stops only this
  /// database (the other keeps working, an open session here is ended, excluded roles keep
  /// CONNECT); restore-logins puts the ACL back exactly; fence=auto chooses the CONNECT fence;
  /// lock_out_shared revokes LOGIN anyway and restore gives it back.
  @Test func revokeLoginsOnASharedServerRefusesOrFencesOnlyThisDatabase() throws {
    let dc = try TestDC()
    let t = PG.unique("r").replacingOccurrences(of: "r_", with: "")
    let app = "CuShared_\(t)"
    let pw = "shared 'app' pw"
    let excluded = try Self.onlyCuRoles(except: [app])
    let pair = try dc.addPair("app", srcSQL: Self.ddl, extra: excluded)
    // The other database: same src server, not in the dc, its own owner.
    let other = try TestDC()
    let otherPair = try other.addPair("elsewhere", srcSQL: Self.ddl)
    try Self.appRole(app, pw, connect: [pair.dbname, otherPair.dbname])
    let root = try PG.root(.src)
    defer {
      _ = try? root.exec("DROP OWNED BY \(PGConnection.quoteIdent(app))")
      root.close()
    }
    func acl() throws -> [String] {
      try JSONParser.parse(
        try root.query(
          "SELECT array_to_json(coalesce(datacl, acldefault('d', datdba))::text[]) FROM pg_database WHERE datname = $1",
          [pair.dbname]
        ).scalar ?? "[]"
      ).arrayValue?.compactMap(\.stringValue).sorted() ?? []
    }
    let aclBefore = try acl()
    let path = dc.store.path(dc: dc.dc, db: "app")
    let configBefore = try String(contentsOfFile: path, encoding: .utf8)

    // Refused, naming the role and the other database; nothing changed.
    do {
      _ = try dc.run("revoke_logins", "app")
      Issue.record("revoke-logins locked a shared role out of another database")
    } catch let e as BeltError {
      #expect(e.code == .preconditionFailed)
      #expect(e.message.contains(app) && e.message.contains(otherPair.dbname), "\(e.message)")
      #expect(e.message.contains("has CONNECT"), "\(e.message)")
    }
    #expect(try Cut.rolcanlogin(app) == true)
    #expect(try String(contentsOfFile: path, encoding: .utf8) == configBefore)

    // The CONNECT fence, through the CLI; a session open here is ended, one elsewhere is not.
    let here = try Self.connect(pair.dbname, app, pw)
    let there = try Self.connect(otherPair.dbname, app, pw)
    defer {
      here.close()
      there.close()
    }
    let fenced = try CLI.run([
      "revoke-logins", dc.dc, "app", "--fence", "connect", "--config-dir", dc.root, "--json",
    ])
    #expect(fenced.code == 0, "\(fenced.err)")
    let rec = try JSONParser.parse(fenced.out)
    #expect(rec["fence"] == "connect")
    #expect(rec["fenced_roles"] == .from([app]), "\(fenced.out)")
    #expect(rec["terminated"] == 1, "\(fenced.out)")
    #expect(rec["revoked_connect"]?.arrayValue?.contains("PUBLIC") == true)
    #expect(
      try JSONParser.parse(String(contentsOfFile: path, encoding: .utf8))["login_fence"]?["kind"]
        == "connect")
    Login.expectTerminated(here, "the session in the fenced database was terminated")
    #expect(
      try there.query("SELECT count(*) FROM items").scalar == "200",
      "the other database's session goes on")
    #expect(
      try Self.connect(otherPair.dbname, app, pw).query("SELECT count(*) FROM items").scalar
        == "200")
    do {
      _ = try Self.connect(pair.dbname, app, pw)
      Issue.record("the application could still connect to the fenced database")
    } catch let e as PGError {
      #expect(e.message.contains("permission denied for database"), "\(e.message)")
    }
    #expect(try Cut.rolcanlogin(app) == true, "the CONNECT fence leaves LOGIN alone")
    // While the CONNECT fence is up, a NOLOGIN revoke would overwrite its record: refused.
    do {
      _ = try dc.run("revoke_logins", "app", ["lock_out_shared": true])
      Issue.record("a NOLOGIN revoke replaced the record of the CONNECT fence")
    } catch let e as BeltError {
      #expect(e.message.contains("CONNECT fence"), "\(e.message)")
    }
    // An excluded role (the pair's owner) keeps CONNECT.
    #expect(
      try Self.connect(pair.dbname, pair.owner.name, pair.owner.password).query("SELECT 1").scalar
        == "1")

    // restore-logins undoes exactly that: the ACL is what it was.
    let restored = try CLI.run(["restore-logins", dc.dc, "app", "--config-dir", dc.root])
    #expect(restored.code == 0, "\(restored.err)")
    #expect(try acl() == aclBefore)
    #expect(
      try Self.connect(pair.dbname, app, pw).query("SELECT count(*) FROM items").scalar == "200")
    #expect(
      try JSONParser.parse(String(contentsOfFile: path, encoding: .utf8))["login_fence"]?[
        "restored"] == true)

    // fence=auto picks the CONNECT fence for a shared role.
    let auto = try dc.run("revoke_logins", "app", ["fence": "auto"])
    #expect(auto["fence"] == "connect", "\(auto.json())")
    _ = try dc.run("restore_logins", "app")
    #expect(try acl() == aclBefore)

    // The operator says so: LOGIN is revoked anyway, with a warning naming the other database.
    let forced = try dc.run("revoke_logins", "app", ["lock_out_shared": true])
    #expect(forced["revoked"] == .from([app]), "\(forced.json())")
    #expect(forced["warning"]?.stringValue?.contains(otherPair.dbname) == true)
    #expect(try Cut.rolcanlogin(app) == false)
    _ = try dc.run("restore_logins", "app")
    #expect(try Cut.rolcanlogin(app) == true)
    #expect(try acl() == aclBefore)
  }
}
