import Foundation
import Testing

@testable import BeltRuntime

/// The test clusters' own server logs, read through SQL (`pg_read_file`, as the superuser), with
/// statement logging turned up for one test and back down afterwards.
enum ServerLogs {
  /// Where a side's log stood when logging was turned up.
  struct Mark {
    var path: String
    var offset: Int
  }

  /// `ALTER SYSTEM` + reload on both clusters, waiting until new sessions see it; returns where
  /// each log stands. Undo with ``restore()`` (in a `defer`); undone here when it fails.
  static func logEverything() throws -> [Side: Mark] {
    var marks: [Side: Mark] = [:]
    do {
      for side in Side.allCases {
        let c = try PG.root(side)
        defer { c.close() }
        try c.exec("ALTER SYSTEM SET log_statement = 'all'")
        try c.exec("ALTER SYSTEM SET log_min_duration_statement = 0")
        try c.query("SELECT pg_reload_conf()")
        let path = try c.query("SELECT pg_current_logfile()").scalar ?? ""
        let size = Int(try c.query("SELECT size FROM pg_stat_file($1)", [path]).scalar ?? "0") ?? 0
        marks[side] = Mark(path: path, offset: size)
      }
      try waitForSetting("log_statement", "all")
      try waitForSetting("log_min_duration_statement", "0")
    } catch {
      restore()
      throw error
    }
    return marks
  }

  /// Puts both clusters' logging back as their configuration files have it, and waits until new
  /// sessions see that.
  static func restore() {
    for side in Side.allCases {
      guard let c = try? PG.root(side) else { continue }
      _ = try? c.exec("ALTER SYSTEM RESET log_statement")
      _ = try? c.exec("ALTER SYSTEM RESET log_min_duration_statement")
      _ = try? c.query("SELECT pg_reload_conf()")
      let configured =
        (try? c.query(
          "SELECT setting FROM pg_file_settings WHERE name = 'log_statement' AND applied ORDER BY seqno DESC LIMIT 1"
        ).scalar) ?? nil
      c.close()
      try? waitForSetting("log_statement", configured ?? "none", sides: [side])
    }
  }

  static func waitForSetting(_ name: String, _ value: String, sides: [Side] = Side.allCases) throws
  {
    let deadline = Date().addingTimeInterval(15)
    for side in sides {
      while true {
        let c = try PG.root(side)
        let v = try c.query("SELECT setting FROM pg_settings WHERE name = $1", [name]).scalar
        c.close()
        if v == value { break }
        if Date() > deadline {
          throw BeltError(.timeout, "\(side.rawValue): \(name) is still \(v ?? "?")")
        }
        Thread.sleep(forTimeInterval: 0.05)
      }
    }
  }

  /// How many lines of `log` contain `needle`.
  static func lines(_ log: String, _ needle: String) -> Int {
    log.split(separator: "\n").filter { $0.contains(needle) }.count
  }

  /// The log written on `side` since `mark`, once a marker statement sent now has reached it
  /// (the logging collector writes asynchronously).
  static func since(_ side: Side, _ mark: Mark) throws -> String {
    let marker = "belt-log-marker-" + PG.unique("m")
    let c = try PG.root(side)
    defer { c.close() }
    try c.query("SELECT $1::text AS marker", [marker])
    let deadline = Date().addingTimeInterval(15)
    while true {
      let size =
        Int(try c.query("SELECT size FROM pg_stat_file($1)", [mark.path]).scalar ?? "0") ?? 0
      let text =
        try c.query(
          "SELECT pg_read_file($1, $2::bigint, $3::bigint)",
          [mark.path, String(mark.offset), String(max(0, size - mark.offset))]
        ).scalar ?? ""
      if text.contains(marker) { return text }
      if Date() > deadline {
        throw BeltError(
          .timeout, "\(side.rawValue): the marker statement never reached \(mark.path)")
      }
      Thread.sleep(forTimeInterval: 0.1)
    }
  }
}

/// Issue 27: the statements that carry a secret never reach the servers' own logs, with
/// `log_statement = 'all'` and `log_min_duration_statement = 0` on both servers.
/// Like the rest of the integration suite, it expects to run alone (`swift test --no-parallel`,
/// as `make test` does): the log it reads is the whole server's.
@Suite(.serialized, .enabled(if: PG.available, "needs the clusters from scripts/pg-clusters"))
struct LogSecretsTests {
  /// Recognizable, with nothing that quoting would change, so a leak in any form is found.
  static func secret(_ what: String) -> String {
    "\(what)Secret" + PG.unique("x").replacingOccurrences(of: "_", with: "")
  }

  @Test func migrateCutoverRollbackTeardownLeaveNoPasswordInTheServerLogs() throws {
    let dc = try TestDC()
    let pglPassword = Self.secret("Pgl")
    let ownerPassword = Self.secret("Owner")
    let p = try dc.addPair(
      "app", srcSQL: Fixtures.basic(), ownerPassword: ownerPassword,
      pglogical: Credentials(name: PG.unique("pgl"), password: pglPassword))
    let marks = try ServerLogs.logEverything()
    defer { ServerLogs.restore() }

    let migrate = try CLI.run(["run", "migrate.lua", dc.dc, "--config-dir", dc.root])
    #expect(migrate.code == 0, "\(migrate.err)")
    let cutover = try CLI.run([
      "run", "cutover.lua", dc.dc, "--config-dir", dc.root, "--", "drain_timeout=2s",
      "lock_out_shared=true",
    ])
    #expect(cutover.code == 0, "\(cutover.err) \(cutover.out)")
    let rollback = try CLI.run([
      "run", "rollback.lua", dc.dc, "--config-dir", dc.root, "--", "lock_out_shared=true",
    ])
    #expect(rollback.code == 0, "\(rollback.err)")
    let teardown = try CLI.run(["teardown", dc.dc, "--config-dir", dc.root])
    #expect(teardown.code == 0, "\(teardown.err)")
    for r in [migrate, cutover, rollback, teardown] {
      #expect(!(r.out + r.err).contains(pglPassword) && !(r.out + r.err).contains(ownerPassword))
    }

    for side in Side.allCases {
      guard let mark = marks[side] else { continue }
      let log = try ServerLogs.since(side, mark)
      let s = side.rawValue
      // Counts only: a failure message must not print the log (it would hold the passwords).
      func lines(_ needle: String) -> Int { ServerLogs.lines(log, needle) }
      // Not vacuous: belt's statements are logged, with their bound values and durations.
      let logged = (
        set: lines("pglogical.create_replication_set"), params: lines("DETAIL:  parameters: $1 = "),
        durations: lines("duration: "), db: lines(p.dbname), revoke: lines("NOLOGIN")
      )
      #expect(
        logged.set > 0 && logged.params > 0 && logged.durations > 0 && logged.db > 0,
        "\(s): \(logged)")
      if side == .src {
        #expect(logged.revoke > 0, "src: revoke-logins is logged (after the secret statements)")
      }
      // Neither password anywhere, and the statements that carry a secret are not logged.
      let leaked = (
        pgl: lines(pglPassword), owner: lines(ownerPassword), root: lines(PG.rootPassword),
        hash: lines("SCRAM-SHA-256$"), createNode: lines("pglogical.create_node"),
        createSubscription: lines("pglogical.create_subscription"),
        passwordClause: lines("PASSWORD")
      )
      #expect(
        leaked.pgl == 0 && leaked.owner == 0 && leaked.root == 0 && leaked.hash == 0
          && leaked.createNode == 0
          && leaked.createSubscription == 0 && leaked.passwordClause == 0,
        "\(s): lines of the server log with \(leaked)")
    }
  }

  /// A subscription to a provider that cannot be reached: pglogical's error quotes the whole
  /// DSN ("dsn was: ..."), and a failing statement is logged with its text and values.
  @Test func aFailingSecretStatementLeavesNoPasswordInTheLogAndTheSessionUsable() throws {
    let dc = try TestDC()
    let p = try dc.addPair("app")
    let nodeSecret = Self.secret("Node")
    let providerSecret = Self.secret("Provider")
    let c = try dc.conn("app", .dst)
    defer {
      _ = try? c.query("SELECT pglogical.drop_node($1, true)", ["belt_log_node"])
      _ = try? c.exec("DROP EXTENSION IF EXISTS pglogical")
      c.close()
    }
    try c.exec("CREATE EXTENSION IF NOT EXISTS pglogical")
    let marks = try ServerLogs.logEverything()
    defer { ServerLogs.restore() }

    let node = ConnInfo.build([
      ("hostaddr", PG.host), ("port", String(PG.port(.dst))), ("dbname", p.dbname),
      ("user", "nobody"),
      ("password", nodeSecret),
    ])
    #expect(
      try PGL.ensureNode(c, name: "belt_log_node", dsn: node, side: .dst)
        == "node belt_log_node created")
    let unreachable = ConnInfo.build([
      ("hostaddr", "127.0.0.1"), ("port", "1"), ("dbname", p.dbname), ("user", "nobody"),
      ("password", providerSecret), ("connect_timeout", "2"),
    ])
    var message = ""
    do {
      _ = try PGL.ensureSubscription(
        c, name: "belt_log_sub", providerDSN: unreachable, syncData: false)
      Issue.record("a subscription to port 1 was created")
    } catch let e as PGError {
      message = e.debugDescription
    }
    let quotesAPassword = message.contains(providerSecret) || message.contains(nodeSecret)
    #expect(!quotesAPassword, "the error quotes the password")
    #expect(
      message.contains("could not connect"),
      "\(Audit.redact(message, secrets: [providerSecret, nodeSecret]))")
    // Its DSN changes (a converging setup): the UPDATE of if_dsn carries the secret too.
    #expect(
      try PGL.ensureNode(c, name: "belt_log_node", dsn: node + " ", side: .dst)
        == "node belt_log_node DSN updated")

    // Inside a transaction of the caller that fails there, its ROLLBACK resets the settings.
    #expect(throws: PGError.self) {
      try c.transaction { try c.querySecret("SELECT 1 / 0 AS secret_division") }
    }
    // The session is usable and logs again.
    #expect(
      try c.query("SELECT setting FROM pg_settings WHERE name = 'log_statement'").scalar == "all")
    #expect(
      try c.query("SELECT setting FROM pg_settings WHERE name = 'log_min_messages'").scalar
        == "warning")
    #expect(try c.query("SELECT 1 AS after_the_failure").scalar == "1")
    guard let mark = marks[.dst] else { return }
    let log = try ServerLogs.since(.dst, mark)
    let after = ServerLogs.lines(log, "after_the_failure")
    let leaked = (
      provider: ServerLogs.lines(log, providerSecret), node: ServerLogs.lines(log, nodeSecret),
      error: ServerLogs.lines(log, "could not connect")
    )
    #expect(after > 0, "statements after the failure are logged")
    #expect(
      ServerLogs.lines(log, "secret_division") == 0,
      "a failing statement inside a transaction is logged")
    #expect(
      leaked.provider == 0 && leaked.node == 0 && leaked.error == 0,
      "lines of the server log with \(leaked)")
  }

  /// The native engine's `CREATE SUBSCRIPTION ... CONNECTION '...password=...'` (a utility
  /// statement: the secret is in its text, and it cannot run in a transaction block) is one call,
  /// also when it fails.
  @Test func aNativeSubscriptionWithAPasswordIsOneCall() throws {
    let dc = try TestDC()
    let table = "CREATE TABLE t (id int PRIMARY KEY)"
    let p = try dc.addPair("app", srcSQL: table, dstSQL: table)
    let user = PG.unique("rep")
    let secret = Self.secret("Native")
    let src = try dc.conn("app", .src)
    let dst = try dc.conn("app", .dst)
    let sub = PG.unique("sub")
    defer {
      _ = try? dst.exec("DROP SUBSCRIPTION IF EXISTS \(PGConnection.quoteIdent(sub))")
      _ = try? src.exec("DROP PUBLICATION IF EXISTS belt_log_pub")
      _ = try? src.exec("DROP ROLE IF EXISTS \(PGConnection.quoteIdent(user))")
      src.close()
      dst.close()
    }
    try src.exec(
      "CREATE ROLE \(PGConnection.quoteIdent(user)) LOGIN REPLICATION PASSWORD \(try src.literal(try src.encryptPassword(secret, user: user)))"
    )
    try src.exec(
      "GRANT SELECT ON t TO \(PGConnection.quoteIdent(user)); CREATE PUBLICATION belt_log_pub FOR TABLE t"
    )
    let marks = try ServerLogs.logEverything()
    defer { ServerLogs.restore() }

    func conninfo(port: Int) -> String {
      ConnInfo.build([
        ("hostaddr", PG.host), ("port", String(port)), ("dbname", p.dbname), ("user", user),
        ("password", secret),
        ("connect_timeout", "2"),
      ])
    }
    func create(_ name: String, port: Int) throws {
      try dst.execSecret(
        "CREATE SUBSCRIPTION \(PGConnection.quoteIdent(name)) CONNECTION \(try dst.literal(conninfo(port: port))) PUBLICATION belt_log_pub"
      )
    }
    var message = ""
    do { try create(PG.unique("nosub"), port: 1) } catch let e as PGError {
      message = e.debugDescription
    }
    #expect(message.contains("could not connect"), "\(Audit.redact(message, secrets: [secret]))")
    let quotesThePassword = message.contains(secret)
    #expect(!quotesThePassword, "the error (its statement) quotes the password")
    try create(sub, port: PG.port(.src))
    #expect(
      try dst.query("SELECT count(*) FROM pg_subscription WHERE subname = $1", [sub]).scalar == "1")
    #expect(
      try dst.query("SELECT setting FROM pg_settings WHERE name = 'log_statement'").scalar == "all")

    for side in Side.allCases {
      guard let mark = marks[side] else { continue }
      let log = try ServerLogs.since(side, mark)
      let leaked = (
        password: ServerLogs.lines(log, secret),
        statement: ServerLogs.lines(log, "CREATE SUBSCRIPTION")
      )
      #expect(
        leaked.password == 0 && leaked.statement == 0,
        "\(side.rawValue): lines of the server log with \(leaked)")
    }
  }

  /// The native engine through the same flows: its subscriptions' CONNECTION carries the
  /// replication user's password (setup on dst, the back subscription attached on src at the
  /// cutover's gate).
  @Test func theNativeEnginesFlowsLeaveNoPasswordInTheServerLogs() throws {
    let dc = try TestDC()
    let replPassword = Self.secret("Repl")
    let ownerPassword = Self.secret("Owner")
    try dc.addPair(
      "app", srcSQL: Fixtures.basic(), ownerPassword: ownerPassword, extra: [("engine", "native")],
      pglogical: Credentials(name: PG.unique("rep"), password: replPassword))
    let marks = try ServerLogs.logEverything()
    defer { ServerLogs.restore() }

    let args = [dc.dc, "--config-dir", dc.root]
    let migrate = try CLI.run(["run", "migrate.lua"] + args)
    #expect(
      migrate.code == 0, "\(Audit.redact(migrate.err, secrets: [replPassword, ownerPassword]))")
    let cutover = try CLI.run(
      ["run", "cutover.lua"] + args + ["--", "drain_timeout=2s", "lock_out_shared=true"])
    #expect(
      cutover.code == 0, "\(Audit.redact(cutover.err, secrets: [replPassword, ownerPassword]))")
    let s = try dc.conn("app", .src)
    #expect(
      try s.query(
        "SELECT count(*) FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
      ).scalar == "1", "the back subscription was attached")
    s.close()
    let rollback = try CLI.run(["run", "rollback.lua"] + args + ["--", "lock_out_shared=true"])
    #expect(
      rollback.code == 0, "\(Audit.redact(rollback.err, secrets: [replPassword, ownerPassword]))")
    let teardown = try CLI.run(["teardown"] + args)
    #expect(
      teardown.code == 0, "\(Audit.redact(teardown.err, secrets: [replPassword, ownerPassword]))")

    for side in Side.allCases {
      guard let mark = marks[side] else { continue }
      let log = try ServerLogs.since(side, mark)
      let logged = (
        publication: ServerLogs.lines(log, "PUBLICATION"),
        params: ServerLogs.lines(log, "DETAIL:  parameters: $1 = ")
      )
      #expect(
        logged.publication > 0 && logged.params > 0,
        "\(side.rawValue): belt's statements are logged: \(logged)")
      let leaked = (
        password: ServerLogs.lines(log, replPassword), owner: ServerLogs.lines(log, ownerPassword),
        subscription: ServerLogs.lines(log, "CREATE SUBSCRIPTION"),
        connection: ServerLogs.lines(log, "CONNECTION '"),
        hash: ServerLogs.lines(log, "SCRAM-SHA-256$")
      )
      #expect(
        leaked.password == 0 && leaked.owner == 0 && leaked.subscription == 0
          && leaked.connection == 0 && leaked.hash == 0,
        "\(side.rawValue): lines of the server log with \(leaked)")
    }
  }

  /// A root user that is not a superuser cannot change the settings: precheck names them, and
  /// setup refuses before changing anything unless the operator accepts it.
  @Test func aRootUserThatCannotSilenceTheLogIsNamedAndRefused() throws {
    let dc = try TestDC()
    let p = try dc.addPair("app", srcSQL: Fixtures.basic())
    let root = PG.unique("nosu")
    let rootPassword = Self.secret("Root")
    for side in Side.allCases {
      let c = try PG.root(side)
      try c.exec(
        "CREATE ROLE \(PGConnection.quoteIdent(root)) LOGIN PASSWORD \(try c.literal(try c.encryptPassword(rootPassword, user: root)))"
      )
      c.close()
    }
    let path = dc.store.path(dc: dc.dc, db: "app")
    var cfg = try JSONParser.parse(try String(contentsOfFile: path, encoding: .utf8))
    for side in ["src", "dst"] {
      let user: Value = .object([("name", .string(root)), ("pw", .string(rootPassword))])
      cfg = cfg.setting(side, (cfg[side] ?? .null).setting("root_user", user))
    }
    try dc.store.save(cfg, to: path)
    _ = try ServerLogs.logEverything()
    defer { ServerLogs.restore() }

    let pre = try dc.run("precheck", "app")
    let alerts = (pre["alerts"]?.arrayValue ?? []).compactMap(\.stringValue)
    let line = alerts.first { $0.contains("cannot change") } ?? ""
    #expect(
      line.hasPrefix("src: the root user \"\(root)\" cannot change the logging settings"),
      "\(alerts)")
    #expect(
      line.contains("log_statement = 'all'") && line.contains("log_min_duration_statement = 0"),
      "\(line)")
    #expect(line.contains("--accept-logged-secrets") && !line.contains("\n"), "\(line)")
    #expect(alerts.contains { $0.hasPrefix("dst: the root user") }, "\(alerts)")
    let accepted = try dc.run("precheck", "app", ["accept_logged_secrets": true])
    #expect(
      !(accepted["alerts"]?.arrayValue ?? []).contains {
        $0.stringValue?.contains("cannot change") == true
      })
    #expect(
      (accepted["warnings"]?.arrayValue ?? []).contains {
        $0.stringValue?.contains("cannot change") == true
      })

    var refusal = ""
    do { _ = try dc.run("setup", "app") } catch { refusal = BeltError.wrap(error).message }
    #expect(
      refusal.contains("log_statement = 'all'") && refusal.contains("--accept-logged-secrets"),
      "\(refusal)")
    let s = try dc.conn("app", .src)
    defer { s.close() }
    #expect(
      try s.query("SELECT count(*) FROM pg_extension WHERE extname = 'pglogical'").scalar == "0",
      "nothing changed")
    #expect(
      try s.query("SELECT count(*) FROM pg_roles WHERE rolname = $1", [p.pglogical.name]).scalar
        == "0", "nothing changed")

    // Accepted, setup goes past the check (and then fails: a non-superuser cannot install pglogical).
    var later = ""
    do { _ = try dc.run("setup", "app", ["accept_logged_secrets": true]) } catch {
      later = BeltError.wrap(error).message
    }
    #expect(!later.contains("--accept-logged-secrets"), "\(later)")
  }
}
