import Foundation
import Logging
import Testing

@testable import BeltRuntime

/// The real clusters started by scripts/pg-clusters (see `make test`): src and dst (PostgreSQL 15
/// with pglogical) and pg18 (PostgreSQL 18, a second major version).
enum PG {
  static let envVars = ProcessInfo.processInfo.environment
  /// True when the cluster variables are set (they always are under `make test`).
  static let available =
    envVars["BELT_TEST_SRC_PORT"] != nil && envVars["BELT_TEST_DST_PORT"] != nil
  static let host = envVars["BELT_TEST_HOST"] ?? "127.0.0.1"
  static let rootUser = envVars["BELT_TEST_ROOT_USER"] ?? "postgres"
  static let rootPassword = envVars["BELT_TEST_ROOT_PASSWORD"] ?? "belt-root-pw"
  static let pgBin = envVars["BELT_TEST_PG_BIN"] ?? "/usr/lib/postgresql/15/bin"
  /// `make test` sets BELT_TEST_REQUIRE_SERVERS: a missing cluster is then a failure, not a skip.
  static let required = envVars["BELT_TEST_REQUIRE_SERVERS"] != nil
  /// The PostgreSQL 18 cluster's port and bindir, when scripts/pg-clusters started it.
  static let pg18Port = envVars["BELT_TEST_PG18_PORT"].flatMap { Int($0) }
  static let pg18Bin = envVars["BELT_TEST_PG18_BIN"]
  /// Whether the tests that need the PostgreSQL 18 cluster run: when it is there, and always
  /// under BELT_TEST_REQUIRE_SERVERS (they fail then if it is missing).
  static let pg18Wanted = available && (required || (pg18Port != nil && pg18Bin != nil))

  static func port(_ side: Side) -> Int {
    Int(envVars[side == .src ? "BELT_TEST_SRC_PORT" : "BELT_TEST_DST_PORT"] ?? "")
      ?? (side == .src ? 55432 : 55433)
  }

  /// The PostgreSQL 18 cluster's port and bindir.
  /// - Throws: when scripts/pg-clusters did not export them (the test then fails).
  static func pg18() throws -> (port: Int, bin: String) {
    guard let pg18Port, let pg18Bin else {
      throw BeltError(
        .notFound,
        "BELT_TEST_PG18_PORT/BELT_TEST_PG18_BIN are not set: start the clusters with scripts/pg-clusters up (after scripts/install-deps)"
      )
    }
    return (pg18Port, pg18Bin)
  }

  /// The second PostgreSQL 18 cluster's port (the other side of an 18 → 18 pair).
  /// - Throws: when scripts/pg-clusters did not export it (the test then fails).
  static func pg18b() throws -> Int {
    guard let port = envVars["BELT_TEST_PG18B_PORT"].flatMap({ Int($0) }) else {
      throw BeltError(
        .notFound,
        "BELT_TEST_PG18B_PORT is not set: start the clusters with scripts/pg-clusters up (after scripts/install-deps)"
      )
    }
    return port
  }

  /// A root connection to `db` on one cluster.
  static func root(_ side: Side, db: String = "postgres") throws -> PGConnection {
    try root(port: port(side), db: db, label: side.rawValue)
  }

  /// A root connection to `db` on the cluster listening on `port`.
  static func root(port: Int, db: String = "postgres", label: String? = nil) throws -> PGConnection
  {
    try PGConnection(
      conninfo: ConnInfo.build([
        ("hostaddr", host), ("port", String(port)), ("dbname", db), ("user", rootUser),
        ("password", rootPassword),
      ]), label: "test \(label ?? String(port)) root")
  }

  /// A short unique suffix for database and role names (DROP DATABASE hangs with pglogical
  /// preloaded, so every test uses fresh names).
  static func unique(_ prefix: String) -> String {
    let t = String(UInt64(Date().timeIntervalSince1970 * 1000) % 100_000_000, radix: 36)
    let r = String(UInt32.random(in: 0...UInt32.max), radix: 36)
    return "\(prefix)_\(t)\(r)".lowercased()
  }
}

/// Login probes that pass only for the server's own answer: a refusal proves a fence only when
/// the server said why (a port nobody listens on, a wrong password or a dead cluster must not
/// pass for "logins revoked"), and a session counts as terminated only by its error.
enum Login {
  /// Tries to log in as `user`; nil when the server let it in, else why not.
  static func attempt(_ side: Side = .src, db: String, user: String, pw: String, port: Int? = nil)
    -> (any Error)?
  {
    do {
      let c = try PGConnection(
        conninfo: ConnInfo.build([
          ("hostaddr", PG.host), ("port", String(port ?? PG.port(side))), ("dbname", db),
          ("user", user), ("password", pw),
        ]), label: "login probe \(user)@\(db)")
      c.close()
      return nil
    } catch {
      return error
    }
  }

  /// How a server refuses a login, by the fence that is up.
  enum Refusal: String {
    /// The role has NOLOGIN: FATAL 28000 "role ... is not permitted to log in".
    case nologin = "is not permitted to log in"
    /// The role lacks CONNECT on the database: FATAL 42501 "permission denied for database".
    case noConnect = "permission denied for database"
  }

  /// Records an issue unless the server lets `user` in.
  static func expectAllowed(
    _ side: Side = .src, db: String, user: String, pw: String, _ comment: String = "",
    sourceLocation: SourceLocation = #_sourceLocation
  ) {
    if let e = attempt(side, db: db, user: user, pw: pw) {
      Issue.record(
        "\(user) cannot log in to \(db) on \(side.rawValue) (\(comment)): \(e)",
        sourceLocation: sourceLocation)
    }
  }

  /// Records an issue unless the server refuses `user` for one of `because` (any other failure,
  /// or a login that succeeds, is an issue). libpq gives no SQLSTATE for a failed connect, so
  /// the server's message is the proof.
  static func expectRefused(
    _ side: Side = .src, db: String, user: String, pw: String, because: [Refusal] = [.nologin],
    _ comment: String = "",
    port: Int? = nil, sourceLocation: SourceLocation = #_sourceLocation
  ) {
    guard let e = attempt(side, db: db, user: user, pw: pw, port: port) else {
      Issue.record(
        "\(user) can still log in to \(db) on \(side.rawValue) (\(comment))",
        sourceLocation: sourceLocation)
      return
    }
    let message = (e as? PGError)?.message ?? "\(e)"
    if !because.contains(where: { message.contains($0.rawValue) }) {
      Issue.record(
        "\(user)@\(db) on \(side.rawValue) failed, but not because of the fence (\(because.map(\.rawValue))) (\(comment)): \(message)",
        sourceLocation: sourceLocation)
    }
  }

  /// Records an issue unless `c`, whose backend was terminated, says so when used: the server's
  /// FATAL 57P01 ("terminating connection due to administrator command"), or libpq finding the
  /// connection closed by the server. A statement that fails otherwise (a syntax error, a
  /// permission) or succeeds is an issue.
  static func expectTerminated(
    _ c: PGConnection, _ comment: String = "", sourceLocation: SourceLocation = #_sourceLocation
  ) {
    do {
      _ = try c.query("SELECT 1")
      Issue.record("the session still answers (\(comment))", sourceLocation: sourceLocation)
    } catch let e as PGError {
      let byServer =
        e.sqlState == "57P01"
        || e.message.contains("terminating connection due to administrator command")
        || (e.sqlState == nil && e.message.contains("server closed the connection unexpectedly"))
      if !byServer {
        Issue.record(
          "the session failed, but not by termination (\(comment)): \(e)",
          sourceLocation: sourceLocation)
      }
    } catch {
      Issue.record(
        "the session failed, but not by termination (\(comment)): \(error)",
        sourceLocation: sourceLocation)
    }
  }
}

/// A temporary belt root directory (configs/ and schemas/) with pairs in one dc.
final class TestDC: @unchecked Sendable {
  let root: String
  let dc: String
  var pairs: [String: PairSpec] = [:]
  /// The port of each side's cluster for the pairs added from now on (the PostgreSQL 18
  /// cluster's for a 15 → 18 pair).
  var ports: [Side: Int] = [.src: PG.port(.src), .dst: PG.port(.dst)]
  /// The environment operations look up and run pg_dump in (BELT_PG_BIN, PATH); the test
  /// process's own when nil.
  var toolEnvironment: [String: String]? = nil

  struct PairSpec {
    var db: String  // pair name
    var dbname: String  // database name on both servers
    var owner: Credentials
    var pglogical: Credentials
    var schema: String
  }

  init(_ dc: String = PG.unique("dc")) throws {
    self.dc = dc
    root = NSTemporaryDirectory() + "belt-test-" + PG.unique("root")
    try FileManager.default.createDirectory(
      atPath: root + "/configs/" + dc, withIntermediateDirectories: true)
  }

  var store: ConfigStore { ConfigStore(root: root) }

  /// An environment for running operations in-process.
  func env(jobs: Int = 4) -> Environment {
    var logger = Logger(label: "belt-test") { _ in SwiftLogNoOpLogHandler() }
    logger.logLevel = .critical
    var env = Environment(store: store, logger: logger, jobs: jobs, connectTimeout: 5)
    if let toolEnvironment { env.toolEnvironment = toolEnvironment }
    return env
  }

  /// Creates a pair: a fresh database on both clusters owned by a fresh owner role (with a
  /// hostile password), `srcSQL` run on src as the owner, `dstSQL` on dst, and the config file.
  @discardableResult
  func addPair(
    _ db: String, schema: String = "public", srcSQL: String = "", dstSQL: String = "",
    tables: [String]? = nil, sequences: [String]? = nil, ownerPassword: String = "o'wn er\\ #@pw",
    extra: [(String, Value)] = [], pglogical: Credentials? = nil
  ) throws -> PairSpec {
    let dbname = PG.unique("belt")
    let owner = Credentials(name: PG.unique("own"), password: ownerPassword)
    // A fleet shares one pglogical role (pgbelt's is always `pglogical`); by default each pair
    // gets its own, so that tests do not step on each other's role.
    let pgl = pglogical ?? Credentials(name: PG.unique("pgl"), password: "pgl 'pw' \\x")
    for side in Side.allCases {
      let c = try serverRoot(side)
      defer { c.close() }
      let hashed = try c.encryptPassword(owner.password, user: owner.name)
      try c.exec(
        "CREATE ROLE \(PGConnection.quoteIdent(owner.name)) LOGIN PASSWORD \(try c.literal(hashed))"
      )
      try c.exec(
        "CREATE DATABASE \(PGConnection.quoteIdent(dbname)) OWNER \(PGConnection.quoteIdent(owner.name))"
      )
      let o = try PGConnection(
        conninfo: ConnInfo.build([
          ("hostaddr", PG.host), ("port", String(ports[side] ?? PG.port(side))), ("dbname", dbname),
          ("user", owner.name), ("password", owner.password),
        ]), label: "owner")
      defer { o.close() }
      if schema != "public" {
        try o.exec("CREATE SCHEMA \(PGConnection.quoteIdent(schema))")
      }
      let sql = side == .src ? srcSQL : dstSQL
      if !sql.isEmpty { try o.exec(sql) }
    }
    func server() -> Value {
      .object([
        ("host", "localhost"), ("ip", .string(PG.host)), ("db", .string(dbname)),
        ("port", .string(String(ports[.src] ?? PG.port(.src)))),
        ("root_user", .object([("name", .string(PG.rootUser)), ("pw", .string(PG.rootPassword))])),
        ("owner_user", .object([("name", .string(owner.name)), ("pw", .string(owner.password))])),
        ("pglogical_user", .object([("name", .string(pgl.name)), ("pw", .string(pgl.password))])),
      ])
    }
    var src = server()
    var dst = server()
    src = src.setting("port", .string(String(ports[.src] ?? PG.port(.src))))
    dst = dst.setting("port", .int(ports[.dst] ?? PG.port(.dst)))  // a number: belt accepts both
    var cfg: [(String, Value)] = [
      ("db", .string(db)), ("dc", .string(dc)), ("src", src), ("dst", dst),
      ("tables", tables.map { .from($0) } ?? .null),
      ("sequences", sequences.map { .from($0) } ?? .null),
      ("schema_name", .string(schema)), ("exclude_users", .null), ("exclude_patterns", .null),
    ]
    cfg += extra
    try store.save(.object(cfg), to: store.path(dc: dc, db: db))
    let spec = PairSpec(db: db, dbname: dbname, owner: owner, pglogical: pgl, schema: schema)
    pairs[db] = spec
    return spec
  }

  /// Points dst at the PostgreSQL 18 cluster, with pg_dump and psql 18 for belt's tools (they
  /// dump both majors). - Returns: the CLI environment that does the same (`BELT_PG_BIN`).
  @discardableResult
  func useDst18() throws -> [String: String] {
    let pg18 = try PG.pg18()
    ports[.dst] = pg18.port
    var tools = ProcessInfo.processInfo.environment
    tools["BELT_PG_BIN"] = pg18.bin
    toolEnvironment = tools
    return ["BELT_PG_BIN": pg18.bin]
  }

  /// A root connection to a pair's database.
  func conn(_ db: String, _ side: Side) throws -> PGConnection {
    guard let p = pairs[db] else { throw BeltError(.notFound, "no pair \(db)") }
    return try PG.root(port: ports[side] ?? PG.port(side), db: p.dbname, label: side.rawValue)
  }

  /// A root connection to the `postgres` database of a side's cluster (see ``ports``).
  func serverRoot(_ side: Side) throws -> PGConnection {
    try PG.root(port: ports[side] ?? PG.port(side), label: side.rawValue)
  }

  /// Runs an operation in-process.
  func run(_ op: String, _ db: String?, _ opts: [String: Value] = [:]) throws -> Value {
    guard let spec = OperationRegistry.find(op) else {
      throw BeltError(.notFound, "no operation \(op)")
    }
    return try Runner.run(spec, dc: dc, db: db, options: Options(opts), env: env())
  }

  deinit { try? FileManager.default.removeItem(atPath: root) }
}

/// The built `belt` binary, run as a user would.
enum CLI {
  static var binary: String {
    if let b = ProcessInfo.processInfo.environment["BELT_BIN"] { return b }
    let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for candidate in [
      dir, dir.deletingLastPathComponent(),
      dir.deletingLastPathComponent().deletingLastPathComponent(),
    ] {
      let p = candidate.appendingPathComponent("belt").path
      if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    let pkg = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .deletingLastPathComponent().deletingLastPathComponent()
    return pkg.appendingPathComponent(".build/debug/belt").path
  }

  struct Result {
    var code: Int32
    var out: String
    var err: String
  }

  /// Runs `belt args...` in `cwd` with stdin closed.
  @discardableResult
  static func run(
    _ args: [String], cwd: String? = nil, env extra: [String: String] = [:], stdin: String? = nil
  ) throws -> Result {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: binary)
    p.arguments = args
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    var env = ProcessInfo.processInfo.environment
    env["NO_COLOR"] = "1"
    for (k, v) in extra { env[k] = v }
    p.environment = env
    let out = Pipe()
    let err = Pipe()
    let input = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = input
    try p.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try input.fileHandleForWriting.close()
    // Both pipes at once: reading one to EOF first would block the child (and the test) as soon
    // as it fills the other's 64 KB pipe buffer.
    let errData = PipeDrain(err.fileHandleForReading)
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = errData.wait()
    p.waitUntilExit()
    return Result(
      code: p.terminationStatus, out: String(decoding: o, as: UTF8.self),
      err: String(decoding: e, as: UTF8.self))
  }
}

/// Reads a pipe to EOF on a thread of its own.
final class PipeDrain: @unchecked Sendable {
  private var data = Data()
  private let done = DispatchSemaphore(value: 0)

  init(_ handle: FileHandle) {
    Thread.detachNewThread { [self] in
      data = handle.readDataToEndOfFile()
      done.signal()
    }
  }

  /// Everything read, once the writer closed the pipe.
  func wait() -> Data {
    done.wait()
    return data
  }
}

/// `make test` sets BELT_TEST_REQUIRE_SERVERS: the suites above are then never skipped for want
/// of the cluster variables (a run that skips them is a failure, not a pass), and both clusters answer.
@Suite struct TestEnvironmentTests {
  @Test func theClustersArePresentWhenTheRunRequiresThem() throws {
    guard PG.envVars["BELT_TEST_REQUIRE_SERVERS"] != nil else { return }
    #expect(
      PG.available,
      "BELT_TEST_SRC_PORT/BELT_TEST_DST_PORT are not set: the integration suites would be skipped")
    for side in Side.allCases {
      #expect(try PG.root(side).query("SELECT 1").scalar == "1")
    }
    // scripts/install-deps installs pgbouncer: without it the pgbouncer suites would be skipped.
    #expect(
      FileManager.default.isExecutableFile(atPath: "/usr/sbin/pgbouncer"),
      "pgbouncer is missing: the pgbouncer suites would be skipped")
    // The second major version (PostgreSQL 18 from PyPI, scripts/install-deps).
    let pg18 = try PG.pg18()
    #expect(
      try PG.root(port: pg18.port).query("SHOW server_version_num").scalar?.hasPrefix("18") == true)
    #expect(FileManager.default.isExecutableFile(atPath: pg18.bin + "/pg_dump"))
    // The second one, the other side of an 18 -> 18 pair.
    #expect(
      try PG.root(port: PG.pg18b()).query("SHOW server_version_num").scalar?.hasPrefix("18")
        == true)
  }
}

/// The login probes themselves: a failure that is not the fence's must not pass for it.
@Suite(.serialized, .enabled(if: PG.available, "needs the clusters from scripts/pg-clusters"))
struct LoginProbeTests {
  /// A role of its own, with LOGIN, and CONNECT through PUBLIC on the postgres database.
  static func role(login: Bool = true) throws -> (String, String) {
    let name = PG.unique("probe")
    let pw = "probe pw"
    let c = try PG.root(.src)
    defer { c.close() }
    try c.exec(
      "CREATE ROLE \(PGConnection.quoteIdent(name)) \(login ? "LOGIN" : "NOLOGIN") PASSWORD \(try c.literal(try c.encryptPassword(pw, user: name)))"
    )
    return (name, pw)
  }

  static func drop(_ name: String) {
    guard let c = try? PG.root(.src) else { return }
    _ = try? c.exec("DROP ROLE IF EXISTS \(PGConnection.quoteIdent(name))")
    c.close()
  }

  @Test func aRefusalCountsOnlyWhenTheServerNamesTheFence() throws {
    let (user, pw) = try Self.role()
    defer { Self.drop(user) }
    Login.expectAllowed(db: "postgres", user: user, pw: pw)
    withKnownIssue("a wrong password is not a revoked login") {
      Login.expectRefused(db: "postgres", user: user, pw: pw + " wrong")
    }
    withKnownIssue("a missing database is not a revoked login") {
      Login.expectRefused(db: PG.unique("nodb"), user: user, pw: pw)
    }
    withKnownIssue("a role that logs in is not revoked") {
      Login.expectRefused(db: "postgres", user: user, pw: pw)
    }
    withKnownIssue("a NOLOGIN refusal is not a missing CONNECT") {
      let (locked, lpw) = try Self.role(login: false)
      defer { Self.drop(locked) }
      Login.expectRefused(db: "postgres", user: locked, pw: lpw, because: [.noConnect])
    }
    let (locked, lpw) = try Self.role(login: false)
    defer { Self.drop(locked) }
    Login.expectRefused(db: "postgres", user: locked, pw: lpw, "NOLOGIN")
    withKnownIssue("a NOLOGIN role cannot log in") {
      Login.expectAllowed(db: "postgres", user: locked, pw: lpw)
    }
  }

  @Test func aRefusalFromAServerThatIsNotThereDoesNotCount() throws {
    // A port nobody listens on: connection refused, which once passed for "logins revoked".
    withKnownIssue("connection refused is not a revoked login") {
      Login.expectRefused(db: "postgres", user: PG.rootUser, pw: PG.rootPassword, port: 1)
    }
  }

  @Test func aSessionCountsAsTerminatedOnlyByItsError() throws {
    let (user, pw) = try Self.role()
    defer { Self.drop(user) }
    func open() throws -> PGConnection {
      try PGConnection(
        conninfo: ConnInfo.build([
          ("hostaddr", PG.host), ("port", String(PG.port(.src))), ("dbname", "postgres"),
          ("user", user), ("password", pw),
        ]),
        label: "probe session")
    }
    let live = try open()
    defer { live.close() }
    withKnownIssue("a session that answers was not terminated") { Login.expectTerminated(live) }
    let closedHere = try open()
    closedHere.close()
    withKnownIssue("a session the client closed was not terminated by the server") {
      Login.expectTerminated(closedHere)
    }
    let killed = try open()
    defer { killed.close() }
    let root = try PG.root(.src)
    defer { root.close() }
    try root.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", [user])
    Thread.sleep(forTimeInterval: 0.2)
    Login.expectTerminated(killed, "pg_terminate_backend")
  }
}
