import Foundation
import Testing

@testable import BeltRuntime

/// Issue 24 item 3: large objects migrate (belt copies them; replication carries none).
@Suite(.serialized, .enabled(if: PG.available, "needs the clusters from scripts/pg-clusters"))
struct LargeObjectTests {
  /// `n` large objects with OIDs from `first`, each `(oid, 'lo <oid>' repeated)`; every 100th is
  /// 2.5 MB (three chunks of the copy and of the hash).
  static func create(first: Int, count n: Int) -> String {
    """
    SELECT lo_from_bytea(o, convert_to(repeat('lo ' || o || ' ', CASE WHEN o % 100 = 0 THEN 250000 ELSE 10 END), 'UTF8'))
      FROM generate_series(\(first), \(first + n - 1)) o;
    """
  }

  /// Every large object of a database as the servers print it: OID, owner, ACL (with grantors)
  /// and md5 of the content; independent of belt's own comparison.
  static func inventory(_ c: PGConnection) throws -> [[String?]] {
    try c.query(
      """
      SELECT oid::text, pg_get_userbyid(lomowner), lomacl::text, md5(lo_get(oid))
        FROM pg_largeobject_metadata ORDER BY oid
      """
    ).values
  }

  /// Makes `role` exist on both clusters.
  static func role(_ dc: TestDC, _ name: String) throws {
    for side in Side.allCases {
      let c = try dc.serverRoot(side)
      defer { c.close() }
      try c.exec("CREATE ROLE \(PGConnection.quoteIdent(name)) NOLOGIN")
    }
  }

  /// 1,000 objects before migrate.lua (some owned by another role, some with grants; plus an
  /// empty one and one with a hole, hashed through lo_get instead of pg_largeobject's pages), 10
  /// created and 5 unlinked while replicating, 2 more created just before cutover.lua (after
  /// the lag wait they would be the same delta: the test writes them before the command, not
  /// between its fence and its sync); after the cutover dst has exactly src's objects, and
  /// validate-data names the OID of an object tampered on dst.
  @Test func largeObjectsMigrateWithADeltaInTheWindow() throws {
    let dc = try TestDC()
    defer { Repl.cleanup(dc) }
    let keeper = PG.unique("lokeep")
    let reader = PG.unique("loread")
    try Self.role(dc, keeper)
    try Self.role(dc, reader)
    try dc.addPair("docs", srcSQL: Fixtures.basic() + Self.create(first: 500_000, count: 1_000))
    let s = try dc.conn("docs", .src)
    defer { s.close() }
    let k = PGConnection.quoteIdent(keeper)
    let r = PGConnection.quoteIdent(reader)
    try s.exec(
      """
      DO $$ DECLARE o oid; BEGIN
        FOR o IN SELECT g FROM generate_series(500000, 500099) g LOOP
          EXECUTE format('ALTER LARGE OBJECT %s OWNER TO \(k)', o);
        END LOOP;
        FOR o IN SELECT g FROM generate_series(500050, 500149) g LOOP
          EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO \(r)', o);
        END LOOP;
        EXECUTE 'GRANT UPDATE ON LARGE OBJECT 500200 TO PUBLIC';
      END $$;
      SELECT lo_create(510001);
      SELECT lo_put(lo_create(510000), 5000, '\\x01');
      """)
    let args = [dc.dc, "docs", "--config-dir", dc.root]
    let pre = try CLI.run(["precheck"] + args + ["--json"])
    let preRec = try JSONParser.parse(pre.out)
    #expect(preRec["large_objects"] == .int(1_002), "\(pre.out)")
    #expect(preRec["alert"] == nil, "\(pre.out)")
    #expect(
      preRec["large_objects_strategy"]?.stringValue?.contains("before the window") == true,
      "\(pre.out)")

    let t0 = Date()
    let migrate = try CLI.run(["run", "migrate.lua"] + args)
    let migrateTime = Date().timeIntervalSince(t0)
    #expect(migrate.code == 0, "\(migrate.err)")
    let d = try dc.conn("docs", .dst)
    defer { d.close() }
    #expect(try Self.inventory(d) == Self.inventory(s), "migrate.lua copied every object")

    // While replicating: 10 new, 5 unlinked, one rewritten in place.
    try s.exec(
      Self.create(first: 600_000, count: 10)
        + "SELECT lo_unlink(o) FROM generate_series(500300, 500304) o; SELECT lo_put(500400, 0, '\\x00ff');"
    )
    // Just before the cutover command (see above).
    try s.exec(Self.create(first: 700_000, count: 2))
    #expect(try Self.inventory(d) != Self.inventory(s))
    let t1 = Date()
    let cutover = try CLI.run(
      ["run", "cutover.lua"] + args + ["--", "drain_timeout=2s", "lock_out_shared=true"])
    let cutoverTime = Date().timeIntervalSince(t1)
    #expect(cutover.code == 0, "\(cutover.err) \(cutover.out)")
    let src = try Self.inventory(s)
    #expect(src.count == 1_009)
    #expect(try Self.inventory(d) == src, "every object equal: OID, owner, ACL, content")
    #expect(src.contains { $0[1] == keeper && ($0[2] ?? "").contains(reader) })

    // Inside the window only the delta moved: the cutover's one lo_create names 13 objects
    // (12 new, the rewritten one), and 6 were unlinked (5 gone on src, the rewritten one).
    let audit =
      (try? String(contentsOfFile: dc.root + "/configs/\(dc.dc)/docs/audit.jsonl", encoding: .utf8))
      ?? ""
    let creates = audit.split(separator: "\n").filter { $0.contains("count(lo_create(o))") }
    #expect(creates.count == 2, "migrate.lua's copy and the cutover's delta")
    let delta = try creates.last.map { try JSONParser.parse(String($0)) }
    let oids = delta?["params"]?.arrayValue?.first?.stringValue ?? ""
    #expect(oids.split(separator: ",").count == 13, "\(oids)")

    // validate-data names an object that differs on dst.
    _ = try d.query("SELECT lo_put(500777, 3, '\\x41')")
    let validate = try CLI.run(["validate-data"] + args)
    #expect(validate.code == 1)
    #expect(validate.err.contains("OID 500777 content differs"), "\(validate.err)")
    print(
      "[large objects: migrate.lua \(String(format: "%.1f", migrateTime)) s, cutover.lua \(String(format: "%.1f", cutoverTime)) s]"
    )
  }
}
