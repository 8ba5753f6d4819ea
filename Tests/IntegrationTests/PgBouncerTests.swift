import Foundation
import Testing

@testable import BeltRuntime

/// A real pgbouncer (Debian's package) in front of a pair's src, started as the postgres OS
/// user (it refuses root) in a private directory, transaction pooling.
final class TestBouncer {
  let dir = "/tmp/belt-pgb-" + PG.unique("b")
  let port = Int.random(in: 56000...56999)
  let admin = Credentials(name: "pgb_admin", password: "adm'in pw")
  var databasesFile: String { dir + "/databases.ini" }

  init(database: String, dbname: String, users: [Credentials]) throws {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let quote = { (s: String) in "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }
    let userlist = ([admin] + users).map { "\(quote($0.name)) \(quote($0.password))" }.joined(separator: "\n") + "\n"
    try userlist.write(toFile: dir + "/userlist.txt", atomically: true, encoding: .utf8)
    try "\(database) = host=\(PG.host) port=\(PG.port(.src)) dbname=\(dbname)\n".write(toFile: databasesFile, atomically: true, encoding: .utf8)
    let ini = """
      [databases]
      %include \(databasesFile)
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
    let run = (getuid() == 0 ? "exec /usr/sbin/runuser -u postgres -- " : "exec ") + "/usr/sbin/pgbouncer -d \"$1\""
    let start = ["/bin/bash", "-c", "for fd in /proc/$$/fd/*; do fd=${fd##*/}; (( fd > 2 )) && eval \"exec $fd>&-\" 2>/dev/null; done; " + run, "bash", dir + "/pgbouncer.ini"]
    #expect(try shell(start) == 0, "pgbouncer started")
    _ = eventually(10) { FileManager.default.fileExists(atPath: self.dir + "/pgbouncer.pid") }
  }

  /// The config block.
  func block(database: String) -> Value {
    .object([
      ("host", .string(PG.host)), ("port", .string(String(port))),
      ("admin_user", .object([("name", .string(admin.name)), ("pw", .string(admin.password))])),
      ("database", .string(database)), ("databases_file", .string(databasesFile)),
    ])
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
    if let pid = try? String(contentsOfFile: dir + "/pgbouncer.pid", encoding: .utf8), let n = Int32(pid.trimmingCharacters(in: .whitespacesAndNewlines)) {
      kill(n, SIGKILL)  // the test runner passes a blocked SIGTERM down to its children
    }
  }
}

/// Issue 15 (building blocks): pause, repoint and resume pgbouncer while an application writes
/// through it: no transaction fails, and the writes after the switch land on dst.
@Suite(.serialized, .enabled(if: PG.available && FileManager.default.isExecutableFile(atPath: "/usr/sbin/pgbouncer"), "needs the clusters and pgbouncer"))
struct PgBouncerTests {
  @Test func pauseRepointResumeLosesNoTransaction() throws {
    let dc = try TestDC()
    defer { Repl.cleanup(dc) }
    let app = Credentials(name: PG.unique("app"), password: "app pw 'q'")
    var bouncer: TestBouncer? = nil
    let pair = try dc.addPair("shop", srcSQL: "CREATE TABLE orders (id bigserial PRIMARY KEY, note text, at timestamptz DEFAULT clock_timestamp());")
    bouncer = try TestBouncer(database: "shop", dbname: pair.dbname, users: [app])
    guard let bouncer else { return }
    defer { bouncer.stop() }
    let raw = try dc.store.load(dc: dc.dc, db: "shop").raw.setting("pgbouncer", bouncer.block(database: "shop"))
    try dc.store.save(raw, to: dc.store.path(dc: dc.dc, db: "shop"))
    for side in Side.allCases {
      let c = try PG.root(side)
      try c.exec("CREATE ROLE \(PGConnection.quoteIdent(app.name)) LOGIN PASSWORD \(try c.literal(try c.encryptPassword(app.password, user: app.name)))")
      c.close()
      let o = try dc.conn("shop", side)
      try o.exec("GRANT ALL ON ALL TABLES IN SCHEMA public TO \(PGConnection.quoteIdent(app.name)); GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO \(PGConnection.quoteIdent(app.name))")
      o.close()
    }
    let shown = try dc.run("pgbouncer_show", "shop")
    #expect(shown["points_to"] == "src", "\(shown.json())")

    _ = try dc.run("setup", "shop")
    try Repl.waitStatus(dc, "shop", "replicating") { $0["forward"] == "replicating" }
    // The grants on dst came after the schema load there: give them again.
    try Cut.exec(dc, "shop", .dst, "GRANT ALL ON ALL TABLES IN SCHEMA public TO \(PGConnection.quoteIdent(app.name)); GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO \(PGConnection.quoteIdent(app.name))")

    // pgbench through pgbouncer, persistent connections, one INSERT per transaction.
    let script = dc.root + "/insert.sql"
    try "INSERT INTO orders (note) VALUES ('through pgbouncer');\n".write(toFile: script, atomically: true, encoding: .utf8)
    let bench = Process()
    bench.executableURL = URL(fileURLWithPath: PG.pgBin + "/pgbench")
    bench.arguments = ["-n", "-c", "4", "-R", "200", "-T", "12", "-f", script, "-h", PG.host, "-p", String(bouncer.port), "-U", app.name, "shop"]
    bench.environment = ["PGPASSWORD": app.password, "PATH": "/usr/bin:/bin"]
    let out = Pipe()
    bench.standardOutput = out
    bench.standardError = out
    try bench.run()
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
    bench.waitUntilExit()
    let log = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    print("[pgbouncer switch: belt run took \(String(format: "%.2f", window)) s; \(switched.out.trimmingCharacters(in: .whitespacesAndNewlines))]")
    #expect(bench.terminationStatus == 0, "\(log.suffix(800))")
    #expect(log.contains("number of failed transactions: 0"), "\(log.suffix(800))")

    let after = try dc.run("pgbouncer_show", "shop")
    #expect(after["points_to"] == "dst" && after["paused"] == false, "\(after.json())")
    // Rows written after the switch are on dst only; none written before it is missing there.
    let onDst = Int(try Cut.scalar(dc, "shop", .dst, "SELECT count(*) FROM orders") ?? "") ?? 0
    let onSrc = Int(try Cut.scalar(dc, "shop", .src, "SELECT count(*) FROM orders") ?? "") ?? 0
    #expect(onDst > onSrc && onSrc > 0, "src \(onSrc), dst \(onDst)")
    let srcIDs = try Cut.scalar(dc, "shop", .src, "SELECT coalesce(array_agg(id), '{}')::text FROM orders") ?? "{}"
    let kept = try Cut.scalar(dc, "shop", .dst, "SELECT count(*) FROM orders WHERE id = ANY($1::bigint[])", [srcIDs])
    #expect(Int(kept ?? "") == onSrc, "every row written on src before the switch is on dst")
  }
}
