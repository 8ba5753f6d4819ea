import Foundation
import Testing

@testable import BeltRuntime

@Suite(.serialized, .enabled(if: PG.available, "needs the clusters from scripts/pg-clusters"))
struct InspectionTests {
  static let shared: Result<TestDC, any Error> = Result {
    let dc = try TestDC()
    try dc.addPair("app", srcSQL: Fixtures.basic())
    try dc.addPair("Other App", schema: "Non Public", srcSQL: Fixtures.basic("Non Public"))
    try dc.addPair("subset", srcSQL: Fixtures.basic(), tables: ["UsersCapital", "fruits"])
    return dc
  }
  let dc: TestDC

  init() throws { dc = try Self.shared.get() }

  @Test func checkPkeysListsTablesWithAndWithoutPrimaryKeys() throws {
    for db in ["app", "Other App"] {
      let r = try dc.run("check_pkeys", db)
      #expect(
        r["has_pkey"] == .from(["UsersCapital", "manual_seq", "table with space", "we\"ird"]))
      #expect(r["no_pkey"] == .from(["existingSomethingIds", "fruits"]))
    }
    let cli = try CLI.run(["check-pkeys", dc.dc, "app", "--config-dir", dc.root])
    #expect(cli.code == 0)
    #expect(cli.out.contains("has pkey: UsersCapital, manual_seq, table with space, we\"ird"))
  }

  @Test func checkConnectivityPassesForEveryPairAndFailsForABadPassword() throws {
    let r = try dc.run("check_connectivity", nil)
    #expect(r["ok"] == true)
    #expect(r["databases"]?.arrayValue?.count == 3)
    let dc = try TestDC()
    try dc.addPair("app")
    try dc.addPair("good")
    // A pair whose owner password is wrong: that check fails, the others are still run.
    let path = dc.store.path(dc: dc.dc, db: "app")
    var cfg = try dc.store.load(dc: dc.dc, db: "app").raw
    let dst = cfg["dst"]?.setting(
      "owner_user",
      .object([("name", .string(dc.pairs["app"]?.owner.name ?? "")), ("pw", "wrong-secret-pw")]))
    cfg = cfg.setting("dst", dst ?? .null)
    try dc.store.save(cfg, to: path)
    let cli = try CLI.run(["check-connectivity", dc.dc, "--config-dir", dc.root])
    #expect(cli.code == 1)
    #expect(cli.out.contains("False"))
    #expect(!cli.out.contains("wrong-secret-pw") && !cli.err.contains("wrong-secret-pw"))
    let one = try dc.run("check_connectivity", "app")
    #expect(one["dst_owner_query"] == false)
    #expect(one["src_owner_query"] == true)
    #expect(one["failed_checks"] == .from(["dst_owner_query"]))
  }

  @Test func connectionsCountsApplicationSessionsAndHonoursExclusions() throws {
    let p = try #require(dc.pairs["app"])
    let server = try dc.store.load(dc: dc.dc, db: "app").server(.src)
    let held = try PGConnection(conninfo: server.conninfo(.owner), label: "app session")
    defer { held.close() }
    let r = try dc.run("connections", "app")
    #expect(r["src_count"] == 1)
    #expect(r["src_users"] == .string("\(p.owner.name): 1"))
    #expect(r["dst_count"] == 0)
    let excluded = try dc.run("connections", "app", ["exclude_users": .from([p.owner.name])])
    #expect(excluded["src_count"] == 0)
    let pattern = try dc.run("connections", "app", ["exclude_patterns": .from(["own%"])])
    #expect(pattern["src_count"] == 0)
    let cli = try CLI.run([
      "connections", dc.dc, "app", "-e", "nobody", "-p", "%-no-such-role-%", "--config-dir",
      dc.root, "--json",
    ])
    #expect(cli.code == 0)
    #expect(cli.out.contains("\"src_count\": 1"), "owner \(p.owner.name): \(cli.out)")
  }

  @Test func precheckReportsServerSettingsAndPerTableReplicability() throws {
    let r = try dc.run("precheck", "app")
    let src = r["src"]?.arrayValue ?? []
    let names = src.compactMap { $0["name"]?.stringValue }
    #expect(
      names.contains("wal_level") && names.contains("shared_preload_libraries")
        && names.contains("max_wal_senders"))
    #expect(src.allSatisfy { $0["ok"] == true }, "src checks: \(src)")
    let tables = r["tables"]?.arrayValue ?? []
    #expect(tables.first { $0["name"] == "fruits" }?["replication"] == "dump_and_load")
    #expect(tables.first { $0["name"] == "UsersCapital" }?["replication"] == "pglogical")
    let subset = try dc.run("precheck", "subset")
    #expect(subset["tables"]?.arrayValue?.count == 2)
    let all = try CLI.run(["precheck", dc.dc, "--config-dir", dc.root])
    #expect(all.code == 0, "\(all.err)")
    #expect(all.out.contains("Source DB Configuration Summary"))
  }

  @Test func dsnCommandsPrintUsableConnectionStrings() throws {
    for (flag, user) in [
      ([String](), PG.rootUser), (["--owner"], dc.pairs["app"]?.owner.name ?? ""),
    ] {
      let cli = try CLI.run(["src-dsn", dc.dc, "app", "--config-dir", dc.root] + flag)
      #expect(cli.code == 0)
      let dsn = cli.out.trimmingCharacters(in: .whitespacesAndNewlines)
      let c = try PGConnection(conninfo: dsn, label: "dsn")
      #expect(try c.query("SELECT current_user").scalar == user)
      c.close()
    }
    let pgl = try CLI.run(["dst-dsn", dc.dc, "app", "--pglogical", "--config-dir", dc.root])
    #expect(pgl.out.contains("user='\(dc.pairs["app"]?.pglogical.name ?? "")'"))
  }

  @Test func unknownDcAndDbFailWithOneLine() throws {
    let a = try CLI.run(["precheck", "nosuchdc", "--config-dir", dc.root])
    #expect(a.code == 1)
    #expect(a.err.contains("unknown dc \"nosuchdc\""))
    let b = try CLI.run(["check-pkeys", dc.dc, "nosuchdb", "--config-dir", dc.root])
    #expect(b.code == 1)
    #expect(b.err.contains("unknown db \"nosuchdb\""))
    #expect(b.err.split(separator: "\n").count == 1)
  }
}
