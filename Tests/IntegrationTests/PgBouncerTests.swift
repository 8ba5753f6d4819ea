import Foundation
import Testing

@testable import BeltRuntime

#if canImport(Glibc)
  import Glibc
#endif

/// A real pgbouncer (Debian's package) in front of a pair's src, started as the postgres OS
/// user (it refuses root) in a private directory, transaction pooling.
final class TestBouncer {
  let dir = "/tmp/belt-pgb-" + PG.unique("b")
  /// A port no socket uses yet (pgbouncer would fail to bind a taken one), below the kernel's
  /// ephemeral range (32768-60999 here), where client sockets of other tests take ports at any moment.
  let port: Int = {
    // /proc/net/tcp: "sl local_address rem_address ...", addresses as HEXIP:HEXPORT.
    let table = (try? String(contentsOfFile: "/proc/net/tcp", encoding: .utf8)) ?? ""
    let used = Set(
      table.split(separator: "\n").dropFirst().compactMap { line in
        line.split(separator: " ").dropFirst().first?.split(separator: ":").last.flatMap {
          Int($0, radix: 16)
        }
      })
    var p = Int.random(in: 26000...27999)
    while used.contains(p) { p = Int.random(in: 26000...27999) }
    return p
  }()
  let admin = Credentials(name: "pgb_admin", password: "adm'in pw")
  /// The file `%include`d from pgbouncer.ini that holds `database`'s one `[databases]` line.
  func databasesFile(_ database: String) -> String { dir + "/databases-\(database).ini" }

  convenience init(database: String, dbname: String, users: [Credentials]) throws {
    try self.init(databases: [(database, dbname)], users: users)
  }

  /// One pgbouncer for several databases (client name, dbname on src), each in its own file.
  init(databases: [(name: String, dbname: String)], users: [Credentials]) throws {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let quote = { (s: String) in "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }
    let userlist =
      ([admin] + users).map { "\(quote($0.name)) \(quote($0.password))" }.joined(separator: "\n")
      + "\n"
    try userlist.write(toFile: dir + "/userlist.txt", atomically: true, encoding: .utf8)
    for (database, dbname) in databases {
      try "\(database) = host=\(PG.host) port=\(PG.port(.src)) dbname=\(dbname)\n".write(
        toFile: databasesFile(database), atomically: true, encoding: .utf8)
    }
    let ini = """
      [databases]
      \(databases.map { "%include " + databasesFile($0.name) }.joined(separator: "\n"))
      [pgbouncer]
      listen_addr = 127.0.0.1
      listen_port = \(port)
      unix_socket_dir =
      auth_type = plain
      auth_file = \(dir)/userlist.txt
      admin_users = \(admin.name)
      pool_mode = transaction
      max_client_conn = 100
      default_pool_size = 10
      logfile = \(dir)/pgbouncer.log
      pidfile = \(dir)/pgbouncer.pid
      """
    try ini.write(toFile: dir + "/pgbouncer.ini", atomically: true, encoding: .utf8)
    if getuid() == 0 { _ = try shell(["/bin/chown", "-R", "postgres:postgres", dir]) }
    // The daemon must inherit no descriptor of ours (Foundation's Process would wait for it).
    let run =
      (getuid() == 0 ? "exec /usr/sbin/runuser -u postgres -- " : "exec ")
      + "/usr/sbin/pgbouncer -d \"$1\""
    let start = [
      "/bin/bash", "-c",
      "for fd in /proc/$$/fd/*; do fd=${fd##*/}; (( fd > 2 )) && eval \"exec $fd>&-\" 2>/dev/null; done; "
        + run, "bash", dir + "/pgbouncer.ini",
    ]
    #expect(try shell(start) == 0, "pgbouncer started")
    // The pid file comes before the listening socket: wait until the console answers.
    let answering = eventually(15) {
      (try? self.console()).map {
        $0.close(); return true
      } ?? false
    }
    let log = (try? String(contentsOfFile: dir + "/pgbouncer.log", encoding: .utf8)) ?? ""
    #expect(answering, "pgbouncer on port \(port) answers: \(log.suffix(600))")
  }

  /// A connection to the admin console.
  func console() throws -> PGConnection {
    try PGConnection(
      conninfo: ConnInfo.build([
        ("hostaddr", PG.host), ("port", String(port)), ("dbname", "pgbouncer"),
        ("user", admin.name), ("password", admin.password), ("connect_timeout", "2"),
      ]),
      label: "pgbouncer admin")
  }

  /// The config block.
  func block(database: String) -> Value {
    .object([
      ("host", .string(PG.host)), ("port", .string(String(port))),
      ("admin_user", .object([("name", .string(admin.name)), ("pw", .string(admin.password))])),
      ("database", .string(database)), ("databases_file", .string(databasesFile(database))),
    ])
  }

  /// pgbench through this pgbouncer to `database` as `user`: `clients` persistent connections,
  /// one INSERT into orders per transaction, for `seconds`, with a per-transaction log when
  /// `log` is given (files in `scratch`).
  func pgbench(
    database: String, user: Credentials, scratch: String, seconds: Int, clients: Int = 4,
    rate: Int = 200, log: String? = nil
  ) throws -> (Process, Pipe) {
    let script = scratch + "/insert.sql"
    try "INSERT INTO orders (note) VALUES ('through pgbouncer');\n".write(
      toFile: script, atomically: true, encoding: .utf8)
    let bench = Process()
    bench.executableURL = URL(fileURLWithPath: PG.pgBin + "/pgbench")
    bench.arguments =
      [
        "-n", "-c", String(clients), "-R", String(rate), "-T", String(seconds), "-f", script,
        "-h", PG.host, "-p", String(port), "-U", user.name, database,
      ] + (log.map { ["-l", "--log-prefix", $0] } ?? [])
    bench.environment = ["PGPASSWORD": user.password, "PATH": "/usr/bin:/bin"]
    bench.currentDirectoryURL = URL(fileURLWithPath: scratch)
    let out = Pipe()
    bench.standardOutput = out
    bench.standardError = out
    try bench.run()
    return (bench, out)
  }

  func shell(_ argv: [String]) throws -> Int32 {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: argv[0])
    p.arguments = Array(argv.dropFirst())
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    return p.terminationStatus
  }

  deinit { stop() }

  /// Stops the daemon (by its pid file).
  func stop() {
    if let pid = try? String(contentsOfFile: dir + "/pgbouncer.pid", encoding: .utf8),
      let n = Int32(pid.trimmingCharacters(in: .whitespacesAndNewlines))
    {
      kill(n, SIGKILL)  // the test runner passes a blocked SIGTERM down to its children
    }
  }
}

/// A migrated pair whose application role reaches src through a real pgbouncer, and
/// pgbench writing through it.
struct Bounced {
  let dc: TestDC
  let pair: TestDC.PairSpec
  let app: Credentials
  let bouncer: TestBouncer

  static func make(
    srcSQL: String =
      "CREATE TABLE orders (id bigserial PRIMARY KEY, note text, at timestamptz DEFAULT clock_timestamp());",
    engine: EngineKind = .pglogical
  ) throws -> Bounced {
    let dc = try TestDC()
    let app = Credentials(name: PG.unique("app"), password: "app pw 'q' \\ x")
    let pair = try dc.addPair(
      "shop", srcSQL: srcSQL,
      extra: engine == .pglogical ? [] : [("engine", .string(engine.rawValue))])
    let bouncer = try TestBouncer(database: "shop", dbname: pair.dbname, users: [app])
    let raw = try dc.store.load(dc: dc.dc, db: "shop").raw.setting(
      "pgbouncer", bouncer.block(database: "shop"))
    try dc.store.save(raw, to: dc.store.path(dc: dc.dc, db: "shop"))
    let grant =
      "GRANT ALL ON ALL TABLES IN SCHEMA public TO \(PGConnection.quoteIdent(app.name)); GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO \(PGConnection.quoteIdent(app.name))"
    for side in Side.allCases {
      let c = try PG.root(side)
      try c.exec(
        "CREATE ROLE \(PGConnection.quoteIdent(app.name)) LOGIN PASSWORD \(try c.literal(try c.encryptPassword(app.password, user: app.name)))"
      )
      c.close()
      try Cut.exec(dc, "shop", side, grant)
    }
    _ = try dc.run("setup", "shop")
    // Healthy: replicating with a settled apply worker, as a pair migrated a while ago (a cutover
    // right after setup first waits up to 8 s for the worker to settle, see cutover.lua).
    try Repl.waitStatus(dc, "shop", "replicating") {
      $0["forward"] == "replicating" && $0["forward_healthy"] == true
    }
    // The grants on dst came after the schema load there: give them again.
    try Cut.exec(dc, "shop", .dst, grant)
    return Bounced(dc: dc, pair: pair, app: app, bouncer: bouncer)
  }

  /// Ends the test: pgbouncer, the pair, the role.
  func cleanup() {
    bouncer.stop()
    Repl.cleanup(dc)
    for side in Side.allCases {
      if let c = try? PG.root(side) {
        _ = try? c.exec("DROP ROLE IF EXISTS \(PGConnection.quoteIdent(app.name))")
        c.close()
      }
    }
  }

  /// pgbench through pgbouncer: `clients` persistent connections, one INSERT per transaction,
  /// for `seconds`, with a per-transaction log when `log` is given.
  func pgbench(seconds: Int, clients: Int = 4, rate: Int = 200, log: String? = nil) throws -> (
    Process, Pipe
  ) {
    try bouncer.pgbench(
      database: "shop", user: app, scratch: dc.root, seconds: seconds, clients: clients, rate: rate,
      log: log)
  }

  /// Waits for pgbench and checks that it ran to the end with no failed transaction.
  static func expectNoFailure(
    _ bench: (Process, Pipe), sourceLocation: SourceLocation = #_sourceLocation
  ) -> String {
    bench.0.waitUntilExit()
    let log = String(decoding: bench.1.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    #expect(
      bench.0.terminationStatus == 0, "pgbench: \(log.suffix(800))", sourceLocation: sourceLocation)
    #expect(
      log.contains("number of failed transactions: 0"), "\(log.suffix(800))",
      sourceLocation: sourceLocation)
    #expect(!log.contains("aborted"), "\(log.suffix(800))", sourceLocation: sourceLocation)
    return log
  }

  /// Every row of orders that src has is on dst, and dst has more (written after the switch).
  func expectSrcRowsOnDst(sourceLocation: SourceLocation = #_sourceLocation) throws {
    let onDst = Int(try Cut.scalar(dc, "shop", .dst, "SELECT count(*) FROM orders") ?? "") ?? 0
    let onSrc = Int(try Cut.scalar(dc, "shop", .src, "SELECT count(*) FROM orders") ?? "") ?? 0
    #expect(
      onDst > onSrc && onSrc > 0, "src \(onSrc), dst \(onDst)", sourceLocation: sourceLocation)
    let srcIDs =
      try Cut.scalar(dc, "shop", .src, "SELECT coalesce(array_agg(id), '{}')::text FROM orders")
      ?? "{}"
    let kept = try Cut.scalar(
      dc, "shop", .dst, "SELECT count(*) FROM orders WHERE id = ANY($1::bigint[])", [srcIDs])
    #expect(
      Int(kept ?? "") == onSrc, "every row written on src before the switch is on dst",
      sourceLocation: sourceLocation)
  }
}

/// Issue 15 (building blocks): pause, repoint and resume pgbouncer while an application writes
/// through it: no transaction fails, and the writes after the switch land on dst.
@Suite(
  .serialized,
  .enabled(
    if: PG.available && FileManager.default.isExecutableFile(atPath: "/usr/sbin/pgbouncer"),
    "needs the clusters and pgbouncer"))
struct PgBouncerTests {
  @Test func pauseRepointResumeLosesNoTransaction() throws {
    let b = try Bounced.make()
    defer { b.cleanup() }
    let dc = b.dc
    let shown = try dc.run("pgbouncer_show", "shop")
    #expect(shown["points_to"] == "src", "\(shown.json())")
    let bench = try b.pgbench(seconds: 12)
    Thread.sleep(forTimeInterval: 2)

    // The switch, as a runbook composes it: pause, let dst catch up, repoint, resume.
    let runbook = dc.root + "/switch.lua"
    try """
    local dc, db = ...
    local p = belt.pgbouncer_pause(dc, db, { timeout = "5s" })
    local ok, err = pcall(function()
      belt.teardown_forward_replication(dc, db)
      belt.sync_sequences(dc, db)
      belt.pgbouncer_point_to(dc, db, { side = "dst" })
    end)
    belt.pgbouncer_resume(dc, db)
    if not ok then error(err) end
    print(("paused %.3f s"):format(p.waited_s))
    return { ok = true }
    """.write(toFile: runbook, atomically: true, encoding: .utf8)
    let t0 = Date()
    let switched = try CLI.run(["run", runbook, dc.dc, "shop", "--config-dir", dc.root])
    let window = Date().timeIntervalSince(t0)
    #expect(switched.code == 0, "\(switched.err)")
    _ = Bounced.expectNoFailure(bench)
    print(
      "[pgbouncer switch: belt run took \(String(format: "%.2f", window)) s; \(switched.out.trimmingCharacters(in: .whitespacesAndNewlines))]"
    )

    let after = try dc.run("pgbouncer_show", "shop")
    #expect(after["points_to"] == "dst" && after["paused"] == false, "\(after.json())")
    try b.expectSrcRowsOnDst()
  }
}

/// Issue 15: cutover.lua switch=pgbouncer under pgbench through pgbouncer. No transaction
/// fails: not in a cutover, not in one that fails after the PAUSE, not in one killed after it.
@Suite(
  .serialized,
  .enabled(
    if: PG.available && FileManager.default.isExecutableFile(atPath: "/usr/sbin/pgbouncer"),
    "needs the clusters and pgbouncer"))
struct CutoverPgBouncerTests {
  static let schema = """
    CREATE TABLE orders (id bigserial PRIMARY KEY, note text, at timestamptz DEFAULT clock_timestamp());
    CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL);
    INSERT INTO products SELECT g, 'product ' || g FROM generate_series(1, 500) g;
    """

  static func cutover(_ b: Bounced, _ extra: [String] = []) -> [String] {
    [
      "run", "cutover.lua", b.dc.dc, "shop", "--config-dir", b.dc.root, "--", "switch=pgbouncer",
      "lock_out_shared=true",
    ] + extra
  }

  /// What pgbouncer's server connections for the database point at: their ports.
  static func serverPorts(_ b: Bounced) throws -> [Int] {
    let c = try b.bouncer.console()
    defer { c.close() }
    return try c.exec("SHOW SERVERS").rows.filter { $0.string("database") == "shop" }.compactMap {
      $0.int("port")
    }
  }

  @Test(arguments: [EngineKind.pglogical, .native])
  func cutoverThroughPgBouncerFailsNoTransactionAndServesFromDst(engine: EngineKind) throws {
    let t0 = Date()
    let b = try Bounced.make(srcSQL: Self.schema, engine: engine)
    defer { b.cleanup() }
    let bench = try b.pgbench(seconds: 16)
    Thread.sleep(forTimeInterval: 2)
    let r = try CLI.run(Self.cutover(b))
    #expect(r.code == 0, "\(r.out)\(r.err)")
    #expect(r.out.contains("cut over through pgbouncer; traffic paused"), "\(r.out)")
    print("[cutover switch=pgbouncer: \(r.out.trimmingCharacters(in: .whitespacesAndNewlines))]")
    Login.expectRefused(
      db: b.pair.dbname, user: b.app.name, pw: b.app.password, "src stays fenced after the switch")
    let shown = try b.dc.run("pgbouncer_show", "shop")
    #expect(shown["points_to"] == "dst" && shown["paused"] == false, "\(shown.json())")
    // Transactions after the switch are served by dst: a new client's, and every server
    // connection of the pool (the client keeps one there, whether pgbench is still running
    // or not).
    Thread.sleep(forTimeInterval: 1)
    let client = try Self.client(b)
    defer { client.close() }
    #expect(try Self.probe(client).port == PG.port(.dst))
    let ports = try Self.serverPorts(b)
    #expect(!ports.isEmpty && ports.allSatisfy { $0 == PG.port(.dst) }, "SHOW SERVERS: \(ports)")
    _ = Bounced.expectNoFailure(bench)
    try b.expectSrcRowsOnDst()
    let products = "SELECT md5(string_agg(id || ':' || name, ',' ORDER BY id)) FROM products"
    #expect(
      try Cut.scalar(b.dc, "shop", .src, products) == Cut.scalar(b.dc, "shop", .dst, products))
    let audit =
      (try? String(
        contentsOfFile: b.dc.root + "/configs/\(b.dc.dc)/shop/audit.jsonl", encoding: .utf8)) ?? ""
    for cmd in ["PAUSE shop", "RELOAD", "RESUME shop"] {
      #expect(audit.contains("\"command\":\"\(cmd)\""), "audit log records \(cmd)")
    }
    #expect(!audit.contains(b.bouncer.admin.password) && !audit.contains(b.app.password))
    print(
      String(
        format: "[cutover switch=pgbouncer on %@: test took %.1f s]", engine.rawValue,
        Date().timeIntervalSince(t0)))
  }

  @Test func aFailureAfterThePauseResumesAtSrcWithLoginsBack() throws {
    let b = try Bounced.make(srcSQL: Self.schema)
    defer { b.cleanup() }
    // One changed value on dst, in the newest rows (which validation always compares): sync fails after the PAUSE.
    try Cut.exec(b.dc, "shop", .dst, "UPDATE products SET name = 'changed on dst' WHERE id = 500")
    let bench = try b.pgbench(seconds: 12)
    Thread.sleep(forTimeInterval: 2)
    let r = try CLI.run(Self.cutover(b))
    #expect(r.code != 0, "\(r.out)")
    #expect(r.err.contains("products"), "names the table that differs: \(r.err)")
    let shown = try b.dc.run("pgbouncer_show", "shop")
    #expect(shown["points_to"] == "src" && shown["paused"] == false, "\(shown.json())")
    Login.expectAllowed(
      db: b.pair.dbname, user: b.app.name, pw: b.app.password, "logins restored on src")
    let before = Int(try Cut.scalar(b.dc, "shop", .src, "SELECT count(*) FROM orders") ?? "") ?? 0
    Thread.sleep(forTimeInterval: 1)
    let after = Int(try Cut.scalar(b.dc, "shop", .src, "SELECT count(*) FROM orders") ?? "") ?? 0
    #expect(after > before, "the application carries on against src (\(before) -> \(after))")
    #expect(try Self.serverPorts(b).allSatisfy { $0 == PG.port(.src) })
    _ = Bounced.expectNoFailure(bench)
  }

  @Test func pauseTimeoutAtOrAboveQueryWaitTimeoutIsRefusedBeforeAnyChange() throws {
    let b = try Bounced.make(srcSQL: Self.schema)
    defer { b.cleanup() }
    let r = try CLI.run(Self.cutover(b, ["pause_timeout=10m"]))
    #expect(r.code != 0 && r.err.contains("query_wait_timeout"), "\(r.err)")
    #expect(r.err.split(separator: "\n").count == 1, "one line: \(r.err)")
    Login.expectAllowed(db: b.pair.dbname, user: b.app.name, pw: b.app.password)
    #expect(try b.dc.run("pgbouncer_show", "shop")["paused"] == false)
  }

  /// A client connected through pgbouncer (opened before the cutover, like the application's
  /// pooled connections; a new login while paused can wait for pgbouncer's server_login_retry
  /// after the RESUME).
  static func client(_ b: Bounced) throws -> PGConnection {
    try PGConnection(
      conninfo: ConnInfo.build([
        ("hostaddr", PG.host), ("port", String(b.bouncer.port)), ("dbname", "shop"),
        ("user", b.app.name), ("password", b.app.password), ("connect_timeout", "30"),
      ]),
      label: "client through pgbouncer")
  }

  /// A query of that client (it blocks while the database is paused): the port of the server
  /// that answered, and when.
  static func probe(_ c: PGConnection) throws -> (port: Int, at: Date) {
    let port = Int(try c.query("SELECT inet_server_port()").scalar ?? "") ?? 0
    return (port, Date())
  }

  /// The watchdog's log, printed (what it decided, for the test output).
  static func printWatchdogLog(_ b: Bounced) {
    let log =
      (try? String(
        contentsOfFile: b.dc.root + "/configs/\(b.dc.dc)/shop/cutover.watchdog.log", encoding: .utf8
      ))
      ?? "(none)"
    print("[watchdog log: \(log.split(separator: "\n").joined(separator: " | "))]")
  }

  /// When the cutover's PAUSE began (its journal).
  static func pausedAt(_ b: Bounced) -> Date {
    let s = Resume.step(Resume.journal(b.dc, "shop"), "pgbouncer-pause")
    return Date(timeIntervalSince1970: s?["started_epoch"]?.doubleValue ?? 0)
  }

  /// Issue 24, the watchdog, with nobody running belt again after each SIGKILL:
  /// 1. belt killed right after its PAUSE: the watchdog gives traffic back to src within
  ///    pause_timeout + 5 s (logins restored, journal compensated);
  /// 2. the same command, killed right after it rewrote pgbouncer's line to dst (the test
  ///    watches the file's directory with inotify and, the moment the dst line lands, stops
  ///    pgbouncer with SIGSTOP so that whatever belt sends next, RELOAD included, waits, then
  ///    kills belt): the watchdog finishes the switch, clients are served by dst within
  ///    pause_timeout + 5 s;
  /// 3. the same command finishes the cutover.
  /// pgbench (pgbouncer's query_wait_timeout: 120 s) sees no failed transaction throughout.
  @Test func sigkilledAfterThePauseThenAfterTheRepointTheWatchdogResumesAtTheRightServer() throws {
    let b = try Bounced.make(srcSQL: Self.schema)
    defer { b.cleanup() }
    let pidText = try String(contentsOfFile: b.bouncer.dir + "/pgbouncer.pid", encoding: .utf8)
    let pgbouncer = try #require(Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
    let bench = try b.pgbench(seconds: 26)
    let client = try Self.client(b)
    defer { client.close() }
    Thread.sleep(forTimeInterval: 2)

    // 1. Killed right after the PAUSE.
    let bg = try Resume.Background(Self.cutover(b, ["pause_timeout=3s"]), scratch: b.dc.root)
    let caught = Resume.waitJournal(b.dc, "shop", bg) {
      Resume.step($0, "pgbouncer-pause")?["status"] == "done"
    }
    bg.stop(SIGKILL)
    #expect(caught, "belt ended before the PAUSE finished: \(bg.output)")
    #expect(try b.dc.run("pgbouncer_show", "shop")["paused"] == true, "killed while paused")
    // A client waits, then src serves it.
    let served = try Self.probe(client)
    let waited = served.at.timeIntervalSince(Self.pausedAt(b))
    print(
      "[watchdog after a SIGKILL right after PAUSE: served by src \(String(format: "%.1f", waited)) s after the PAUSE (pause_timeout=3s)]"
    )
    #expect(served.port == PG.port(.src), "served by src")
    Self.printWatchdogLog(b)
    #expect(waited < 3 + 5, "served within pause_timeout + 5 s: \(waited) s")
    Login.expectAllowed(
      db: b.pair.dbname, user: b.app.name, pw: b.app.password, "the watchdog restored logins")
    let j = Resume.journal(b.dc, "shop")
    #expect(
      j?["state"] == "compensated"
        && (j?["note"]?.stringValue ?? "").contains("compensated by the watchdog"),
      "\(j?.json() ?? "no journal")")

    // 2. The same command, killed right after the repoint.
    let watch = inotify_init1(Int32(IN_NONBLOCK))
    #expect(watch >= 0 && inotify_add_watch(watch, b.bouncer.dir, UInt32(IN_MOVED_TO)) >= 0)
    defer { close(watch) }
    let bg2 = try Resume.Background(Self.cutover(b, ["pause_timeout=6s"]), scratch: b.dc.root)
    let dstLine = "port=\(PG.port(.dst))"
    var rewritten = false
    var buf = [UInt8](repeating: 0, count: 4096)
    let end = Date().addingTimeInterval(60)
    while !rewritten && bg2.process.isRunning && Date() < end {
      var p = pollfd(fd: watch, events: Int16(POLLIN), revents: 0)
      guard poll(&p, 1, 100) > 0 else { continue }
      _ = buf.withUnsafeMutableBytes { read(watch, $0.baseAddress, $0.count) }
      rewritten =
        ((try? String(contentsOfFile: b.bouncer.databasesFile("shop"), encoding: .utf8)) ?? "")
        .contains(dstLine)
    }
    kill(pgbouncer, SIGSTOP)
    bg2.stop(SIGKILL)
    kill(pgbouncer, SIGCONT)
    #expect(rewritten, "killed right after the rewrite: \(bg2.output)")
    #expect(
      Resume.step(Resume.journal(b.dc, "shop"), "pgbouncer-resume")?["status"] != "done",
      "killed before the RESUME")
    let served2 = try Self.probe(client)
    let waited2 = served2.at.timeIntervalSince(Self.pausedAt(b))
    print(
      "[watchdog after a SIGKILL right after the repoint: served by dst \(String(format: "%.1f", waited2)) s after the PAUSE (pause_timeout=6s)]"
    )
    #expect(served2.port == PG.port(.dst), "served by dst")
    Self.printWatchdogLog(b)
    #expect(waited2 < 6 + 5, "served within pause_timeout + 5 s: \(waited2) s")
    let j2 = Resume.journal(b.dc, "shop")
    #expect(
      j2?["state"] == "in_progress"
        && Resume.step(j2, "pgbouncer-resume")?["data"]?["by"] == "watchdog",
      "\(j2?.json() ?? "no journal")")
    Login.expectRefused(
      db: b.pair.dbname, user: b.app.name, pw: b.app.password, "src stays fenced")

    // 3. The same command finishes.
    let r = try CLI.run(Self.cutover(b))
    #expect(r.code == 0 && r.out.contains("cut over through pgbouncer"), "\(r.out)\(r.err)")
    #expect(Resume.journal(b.dc, "shop")?["state"] == "done")
    #expect(try b.dc.run("pgbouncer_show", "shop")["points_to"] == "dst")
    _ = Bounced.expectNoFailure(bench)
    try b.expectSrcRowsOnDst()
  }
}

extension CutoverPgBouncerTests {
  /// dst cannot catch up (its apply worker waits on a row lock): the gate runs into the
  /// pause's budget, and the cutover goes back to src within about pause_timeout.
  @Test func aPauseThatOutlastsPauseTimeoutGoesBackToSrc() throws {
    let b = try Bounced.make(srcSQL: Self.schema)
    defer { b.cleanup() }
    let blocker = try b.dc.conn("shop", .dst)
    defer { blocker.close() }
    try blocker.exec("BEGIN; SELECT * FROM products WHERE id = 7 FOR UPDATE")
    try Cut.exec(
      b.dc, "shop", .src,
      "UPDATE products SET name = 'changed just before the cutover' WHERE id = 7")
    let bench = try b.pgbench(seconds: 12)
    Thread.sleep(forTimeInterval: 1)
    let t0 = Date()
    let r = try CLI.run(Self.cutover(b, ["pause_timeout=3s"]))
    let took = Date().timeIntervalSince(t0)
    try blocker.exec("ROLLBACK")
    #expect(r.code != 0 && r.err.contains("pause_timeout="), "\(r.err)")
    #expect(took < 10, "gave up within the pause budget (took \(took) s)")
    let shown = try b.dc.run("pgbouncer_show", "shop")
    #expect(shown["points_to"] == "src" && shown["paused"] == false, "\(shown.json())")
    Login.expectAllowed(
      db: b.pair.dbname, user: b.app.name, pw: b.app.password, "logins restored on src")
    _ = Bounced.expectNoFailure(bench)
  }
}

extension CutoverPgBouncerTests {
  /// A dc-wide cutover with switch=pgbouncer, two databases behind one pgbouncer, each with its
  /// own application role and pgbench: beta fails in sync and is compensated alone (pgbouncer
  /// back at src, logins back, resumed: its application carries on against src), while alpha
  /// cuts over (resumed at dst, src logins still revoked, no failed transaction).
  @Test func oneDatabaseFailingAPgBouncerCutoverIsSentBackAloneAndTheOtherSwitches() throws {
    let t0 = Date()
    let dc = try TestDC()
    let schema = """
      CREATE TABLE orders (id bigserial PRIMARY KEY, note text, at timestamptz DEFAULT clock_timestamp());
      CREATE TABLE fruits (id integer, name varchar(20));
      INSERT INTO fruits VALUES (1, 'apple'), (2, 'banana'), (3, NULL), (4, 'kiwi');
      """
    let names = ["alpha", "beta"]
    var pairs: [String: TestDC.PairSpec] = [:]
    var apps: [String: Credentials] = [:]
    for name in names {
      pairs[name] = try dc.addPair(name, srcSQL: schema)
      apps[name] = Credentials(name: PG.unique("app"), password: "app pw 'q' \\ x")
    }
    let bouncer = try TestBouncer(
      databases: names.map { ($0, pairs[$0]!.dbname) }, users: names.map { apps[$0]! })
    defer {
      bouncer.stop()
      _ = try? dc.run("restore_logins", nil)
      Repl.cleanup(dc)
      for side in Side.allCases {
        guard let c = try? PG.root(side) else { continue }
        for app in apps.values {
          _ = try? c.exec("DROP ROLE IF EXISTS \(PGConnection.quoteIdent(app.name))")
        }
        c.close()
      }
    }
    func grant(_ name: String) -> String {
      let role = PGConnection.quoteIdent(apps[name]!.name)
      return
        "GRANT ALL ON ALL TABLES IN SCHEMA public TO \(role); GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO \(role)"
    }
    for name in names {
      let raw = try dc.store.load(dc: dc.dc, db: name).raw.setting(
        "pgbouncer", bouncer.block(database: name))
      try dc.store.save(raw, to: dc.store.path(dc: dc.dc, db: name))
      let app = apps[name]!
      for side in Side.allCases {
        let c = try PG.root(side)
        try c.exec(
          "CREATE ROLE \(PGConnection.quoteIdent(app.name)) LOGIN PASSWORD \(try c.literal(try c.encryptPassword(app.password, user: app.name)))"
        )
        c.close()
        try Cut.exec(dc, name, side, grant(name))
      }
      _ = try dc.run("setup", name)
    }
    try Repl.waitStatus(dc, nil, "replicating") { $0["forward"] == "replicating" }
    for name in names { try Cut.exec(dc, name, .dst, grant(name)) }
    // beta's PK-less table diverges on dst: its sync fails validation, after the PAUSE.
    try Cut.exec(dc, "beta", .dst, "INSERT INTO fruits VALUES (1000, 'stray row on dst')")

    func serverPorts(_ name: String) throws -> [Int] {
      let c = try bouncer.console()
      defer { c.close() }
      return try c.exec("SHOW SERVERS").rows.filter { $0.string("database") == name }.compactMap {
        $0.int("port")
      }
    }
    func count(_ name: String, _ side: Side) throws -> Int {
      Int(try Cut.scalar(dc, name, side, "SELECT count(*) FROM orders") ?? "") ?? 0
    }

    // 20 s: beta's pgbench must still write when the cutover has ended (it waits up to 8 s for
    // the freshly set-up workers to settle, then the window, refresh-matviews and diff-schemas).
    var benches: [String: (Process, Pipe)] = [:]
    for name in names {
      benches[name] = try bouncer.pgbench(
        database: name, user: apps[name]!, scratch: dc.root, seconds: 20)
    }
    Thread.sleep(forTimeInterval: 2)
    let r = try CLI.run([
      "run", "cutover.lua", dc.dc, "--config-dir", dc.root, "--", "switch=pgbouncer",
      "lock_out_shared=true",
    ])
    #expect(r.code == 1, "\(r.out)\(r.err)")
    #expect(r.err.contains("\(dc.dc)/beta: cutover failed in sync"), "\(r.err)")
    #expect(
      r.out.contains("\(dc.dc)/alpha: cut over through pgbouncer; traffic paused"), "\(r.out)")
    print(
      "[cutover switch=pgbouncer, alpha and beta (beta fails sync): \(r.out.trimmingCharacters(in: .whitespacesAndNewlines)) | \(r.err.trimmingCharacters(in: .whitespacesAndNewlines))]"
    )

    // No database is left paused.
    let console = try bouncer.console()
    let shown = try console.exec("SHOW DATABASES").rows.filter { names.contains($0.string("name")) }
    console.close()
    #expect(
      shown.count == 2 && shown.allSatisfy { $0.int("paused") == 0 },
      "SHOW DATABASES: \(shown.map { "\($0.string("name")) paused=\($0.int("paused") ?? -1)" })")
    let alpha = try dc.run("pgbouncer_show", "alpha")
    #expect(alpha["points_to"] == "dst" && alpha["paused"] == false, "\(alpha.json())")
    let beta = try dc.run("pgbouncer_show", "beta")
    #expect(beta["points_to"] == "src" && beta["paused"] == false, "\(beta.json())")
    Login.expectRefused(
      db: pairs["alpha"]?.dbname ?? "", user: apps["alpha"]?.name ?? "",
      pw: apps["alpha"]?.password ?? "", "alpha's src stays fenced after the switch")
    Login.expectAllowed(
      db: pairs["beta"]?.dbname ?? "", user: apps["beta"]?.name ?? "",
      pw: apps["beta"]?.password ?? "", "beta was compensated: its logins are back on src")

    // beta's application carries on against src; alpha's is served by dst.
    let before = try count("beta", .src)
    Thread.sleep(forTimeInterval: 1)
    let after = try count("beta", .src)
    #expect(after > before, "beta's pgbench writes to src (\(before) -> \(after))")
    let alphaPorts = try serverPorts("alpha")
    let betaPorts = try serverPorts("beta")
    #expect(
      !alphaPorts.isEmpty && alphaPorts.allSatisfy { $0 == PG.port(.dst) },
      "SHOW SERVERS alpha: \(alphaPorts)")
    #expect(
      !betaPorts.isEmpty && betaPorts.allSatisfy { $0 == PG.port(.src) },
      "SHOW SERVERS beta: \(betaPorts)")

    let journal = try dc.run("journal", nil, ["flow": "cutover"])
    let states = Dictionary(
      uniqueKeysWithValues: (journal["databases"]?.arrayValue ?? []).compactMap { rec in
        rec["db"]?.stringValue.map { ($0, rec["state"]?.stringValue ?? "") }
      })
    #expect(states == ["alpha": "done", "beta": "compensated"])

    let alphaLog = Bounced.expectNoFailure(benches["alpha"]!)
    let alphaLag =
      alphaLog.split(separator: "\n").first { $0.contains("rate limit schedule lag") }.map(
        String.init) ?? "none"
    print("[alpha's pgbench (cut over): \(alphaLag)]")
    let betaBench = benches["beta"]!
    betaBench.0.waitUntilExit()
    let betaLog = String(
      decoding: betaBench.1.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    let failedLine =
      betaLog.split(separator: "\n").first { $0.contains("number of failed transactions") }.map(
        String.init) ?? "none"
    let lagLine =
      betaLog.split(separator: "\n").first { $0.contains("rate limit schedule lag") }.map(
        String.init) ?? "none"
    print(
      "[beta's pgbench (compensated): exit \(betaBench.0.terminationStatus); \(failedLine); \(lagLine)]"
    )
    #expect(betaBench.0.terminationStatus == 0, "beta's pgbench: \(betaLog.suffix(800))")

    // alpha: every row src had is on dst, and dst took the writes after the switch.
    let onSrc = try count("alpha", .src)
    let onDst = try count("alpha", .dst)
    #expect(onDst > onSrc && onSrc > 0, "alpha: src \(onSrc), dst \(onDst)")
    let srcIDs =
      try Cut.scalar(dc, "alpha", .src, "SELECT coalesce(array_agg(id), '{}')::text FROM orders")
      ?? "{}"
    #expect(
      Int(
        try Cut.scalar(
          dc, "alpha", .dst, "SELECT count(*) FROM orders WHERE id = ANY($1::bigint[])", [srcIDs])
          ?? "") == onSrc)
    let fruits =
      "SELECT md5(string_agg(id || ':' || coalesce(name, '-'), ',' ORDER BY id)) FROM fruits"
    #expect(try Cut.scalar(dc, "alpha", .src, fruits) == Cut.scalar(dc, "alpha", .dst, fruits))
    print(
      "[pgbouncer two-database cutover test took \(String(format: "%.1f", Date().timeIntervalSince(t0))) s]"
    )
  }
}
