import Foundation
import Testing

@testable import BeltRuntime

/// Helpers for the cutover tests.
enum Cut {
  /// Runs SQL as root in a pair's database.
  static func exec(_ dc: TestDC, _ db: String, _ side: Side, _ sql: String) throws {
    let c = try dc.conn(db, side)
    defer { c.close() }
    try c.exec(sql)
  }

  /// The first value of a query as root in a pair's database.
  static func scalar(
    _ dc: TestDC, _ db: String, _ side: Side, _ sql: String, _ params: [String?] = []
  ) throws -> String? {
    let c = try dc.conn(db, side)
    defer { c.close() }
    return try c.query(sql, params).scalar
  }

  /// A root connection to the cluster's postgres database.
  static func cluster(_ side: Side) throws -> PGConnection { try PG.root(side) }

  /// LIKE patterns matching every role name whose first two characters are not "Cu" (so
  /// revoke-logins in a test only ever touches this suite's own roles; roles are cluster-wide
  /// and other suites create lowercase ones concurrently).
  static func everythingButCu() -> [String] {
    let firsts = Array("abcdefghijklmnopqrstuvwxyz0123456789ABDEFGHIJKLMNOPQRSTUVWXYZ")
    var out = firsts.map { "\($0)%" } + ["\\_%", " %", "\"%", "C"]
    let seconds = Array("abcdefghijklmnopqrstvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ _\"")
    out += seconds.map { $0 == "_" ? "C\\_%" : "C\($0)%" }
    return out
  }

  /// Login roles on src that the patterns above do not cover (left over from earlier runs).
  static func otherLogins(except mine: [String]) throws -> [String] {
    let c = try cluster(.src)
    defer { c.close() }
    return try c.query(
      "SELECT rolname FROM pg_roles WHERE rolcanlogin AND NOT rolname LIKE ANY($2::text[]) AND rolname <> ALL($1::text[])",
      [PGArray.literal(mine), PGArray.literal(everythingButCu())]
    ).values.compactMap { $0[0] }
  }

  /// Whether a role can log in (from the catalog).
  static func rolcanlogin(_ role: String) throws -> Bool? {
    let c = try cluster(.src)
    defer { c.close() }
    return try c.query("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", [role]).scalar.map {
      $0 == "t"
    }
  }

  /// md5 over the table's rows as text in sorted order (an independent check of equality).
  static func orderedHash(_ dc: TestDC, _ db: String, _ side: Side, _ table: String) throws
    -> String?
  {
    try scalar(
      dc, db, side,
      "SELECT md5(string_agg(h, '' ORDER BY h)) || ':' || count(*) FROM (SELECT md5(t::text) AS h FROM \(table) t) s"
    )
  }

  /// A pair context for calling the Swift operations directly.
  static func context(_ dc: TestDC, _ db: String, _ opts: [String: Value] = [:]) throws
    -> PairContext
  {
    PairContext(
      config: try dc.store.load(dc: dc.dc, db: db), db: db, env: dc.env(), options: Options(opts))
  }

  struct Spawned {
    var code: Int32
    var maxRSSKB: Int
    var out: String
    var err: String
  }

  /// Runs the belt binary as a child and returns its own peak RSS (wait4 rusage), which other
  /// tests running in this process cannot disturb.
  static func spawnMeasured(_ args: [String], scratch: String) throws -> Spawned {
    let outPath = scratch + "/spawn-\(UInt32.random(in: 0...UInt32.max)).out"
    let errPath = outPath + ".err"
    var actions: posix_spawn_file_actions_t = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    let argv = [CLI.binary] + args
    var env = ProcessInfo.processInfo.environment
    env["NO_COLOR"] = "1"
    let envv = env.map { "\($0)=\($1)" }
    var cargs = argv.map { strdup($0) } + [nil]
    var cenv = envv.map { strdup($0) } + [nil]
    defer {
      cargs.forEach { free($0) }
      cenv.forEach { free($0) }
    }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, CLI.binary, &actions, nil, &cargs, &cenv)
    guard rc == 0 else { throw BeltError(.internal, "posix_spawn failed: \(rc)") }
    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
    let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    return Spawned(code: code, maxRSSKB: Int(usage.ru_maxrss), out: out, err: err)
  }
}

/// SQL for the cutover fixtures.
enum CutFixtures {
  /// Rows of `items` for ids in `range` (deterministic: the same SQL gives the same rows).
  static func items(_ from: Int, _ to: Int) -> String {
    """
    INSERT INTO items SELECT g, 'item ' || g,
      CASE WHEN g % 50 = 0 THEN 'NaN'::numeric ELSE g * 1.5 END,
      CASE WHEN g % 40 = 0 THEN 'NaN'::float8 ELSE g / 7.0::float8 END,
      ARRAY['a' || g, NULL, E'q"uo\\\\te'], jsonb_build_object('g', g, 'n', NULL), json_build_object('g',  g),
      decode(md5(g::text), 'hex'), timestamptz '2021-03-04 05:06:07.123456+00' + g * interval '1 minute 1 microsecond',
      CASE WHEN g % 3 = 0 THEN NULL WHEN g % 3 = 1 THEN '' ELSE E'x\\ty' END
    FROM generate_series(\(from), \(to)) g;
    """
  }

  /// Tables for validate-data: every awkward type, a composite text key, and a PK-less table
  /// with duplicates.
  static let validation = """
    CREATE TABLE items (id int PRIMARY KEY, name text, price numeric, ratio float8, tags text[], doc jsonb, raw json,
                        blob bytea, at timestamptz, note text);
    \(items(1, 150))
    CREATE TABLE "Pairs" ("K1" text, k2 int, v text, PRIMARY KEY ("K1", k2));
    INSERT INTO "Pairs" SELECT 'key ' || (g % 7), g, md5(g::text) FROM generate_series(1, 300) g;
    CREATE TABLE nopk (a int, b text, c float8[]);
    INSERT INTO nopk VALUES (1, 'x', '{1.5,NaN}'), (1, 'x', '{1.5,NaN}'), (2, NULL, NULL), (3, '', '{}'), (4, E'tab\\there', '{0.1}');
    """

  /// The DDL of the sync fixture (what dump-schema + load-schema would give dst).
  static let syncDDL = """
    CREATE TABLE "UsersCapital" (id bigserial PRIMARY KEY, name text NOT NULL, n numeric(19,4));
    CREATE TABLE "table with space" (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "Mixed Col" text);
    CREATE TABLE fruits (id integer, name varchar(20));
    CREATE TABLE "existingSomethingIds" ("thingId" integer, "somethingId" varchar(255));
    CREATE SEQUENCE "userS_id_seq";
    CREATE TABLE manual_seq (id bigint PRIMARY KEY DEFAULT nextval('"userS_id_seq"'), t text);
    CREATE SEQUENCE standalone_seq;
    """

  /// Rows of the PK tables (what replication would have copied), with explicit ids.
  static let syncPKData = """
    INSERT INTO "UsersCapital" (id, name, n) SELECT g, 'u' || g, CASE WHEN g = 3 THEN 'NaN'::numeric ELSE g END FROM generate_series(1, 50) g;
    INSERT INTO "table with space" (id, "Mixed Col") SELECT g, 'x' || g FROM generate_series(1, 20) g;
    INSERT INTO manual_seq (id, t) SELECT g, 't' || g FROM generate_series(1, 7) g;
    """

  /// The source side of the sync fixture.
  static let syncSource =
    syncDDL + """

      \(syncPKData)
      SELECT setval('"UsersCapital_id_seq"', 50), setval('"table with space_id_seq"', 20), setval('"userS_id_seq"', 7);
      INSERT INTO fruits VALUES (1, 'apple'), (2, 'banana'), (3, NULL), (4, 'kiwi');
      INSERT INTO "existingSomethingIds" VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd');
      SELECT setval('standalone_seq', 42);
      """
}
