import Foundation
import Testing

@testable import BeltRuntime

/// Issue 16: the commands pgbelt added since the seed (diff-sequences, cleanup-previous-config).
@Suite(.serialized, .enabled(if: PG.available, "needs the clusters from scripts/pg-clusters"))
struct PgbeltParityTests {
  @Test func diffSequencesMatchesAfterSyncAndFailsOnASequenceBehind() throws {
    let dc = try TestDC()
    defer { Repl.cleanup(dc) }
    try dc.addPair("app", srcSQL: Fixtures.basic())
    _ = try dc.run("setup", "app")
    try Repl.waitStatus(dc, "app", "replicating") { $0["forward"] == "replicating" }
    try Cut.exec(dc, "app", .dst, "CREATE SEQUENCE only_on_dst")
    let synced = try dc.run("sync_sequences", "app")
    #expect(synced["ok"] == true, "\(synced.json())")
    let match = try CLI.run(["diff-sequences", dc.dc, "--config-dir", dc.root])
    #expect(match.code == 0, "\(match.out)\(match.err)")
    #expect(match.out.contains("standalone_seq") && match.out.contains("—"), "\(match.out)")

    try Cut.exec(dc, "app", .src, "SELECT setval('standalone_seq', 5000)")
    let mismatch = try CLI.run(["diff-sequences", dc.dc, "app", "--json", "--config-dir", dc.root])
    #expect(mismatch.code == 1)
    let rec = try JSONParser.parse(mismatch.out)
    #expect(rec["result"] == "mismatch")
    let rows = Dictionary(
      (rec["sequences"]?.arrayValue ?? []).map { ($0["name"]?.stringValue ?? "", $0) }, uniquingKeysWith: { a, _ in a })
    #expect(rows["standalone_seq"]?["destination_ok"] == false)
    #expect(rows["standalone_seq"]?["source_value"] == .int(5000))
    #expect(rows["userS_id_seq"]?["destination_ok"] == true)
    #expect((rows["only_on_dst"]?["source_value"] ?? .null) == .null)
    #expect(rows["only_on_dst"]?["destination_value"]?.intValue != nil)
    #expect(rows["only_on_dst"]?["destination_ok"] == true)
    #expect(rec["message"]?.stringValue?.contains("standalone_seq (src 5000") == true, "\(rec.json())")
  }

  @Test func cleanupPreviousConfigLetsAFormerDestinationBecomeASource() throws {
    let dc = try TestDC()
    defer { Repl.cleanup(dc) }
    // Migration 1: src cluster -> dst cluster, replicating, never torn down.
    let first = try dc.addPair("first", srcSQL: Fixtures.basic())
    _ = try dc.run("setup", "first")
    try Repl.waitStatus(dc, "first", "replicating") { $0["forward"] == "replicating" }
    // Migration 2: that destination database is now the source (back to the src cluster).
    let second = try dc.addPair("second")
    let firstCfg = try dc.store.load(dc: dc.dc, db: "first").raw
    let secondCfg = try dc.store.load(dc: dc.dc, db: "second").raw
    let newSrc = (firstCfg["dst"] ?? .null).setting("pglogical_user", firstCfg["dst"]?["pglogical_user"] ?? .null)
    let cfg = secondCfg.setting("src", newSrc).setting("dst", (secondCfg["src"] ?? .null))
    try dc.store.save(cfg, to: dc.store.path(dc: dc.dc, db: "second"))
    dc.pairs["second"] = TestDC.PairSpec(
      db: "second", dbname: second.dbname, owner: second.owner, pglogical: first.pglogical, schema: "public")

    let pre = try dc.run("precheck", "second")
    #expect(pre["ok"] == false)
    #expect(pre["alert"]?.stringValue?.contains("run cleanup-previous-config") == true, "\(pre.json())")
    let refused = try CLI.run(["setup", dc.dc, "second", "--config-dir", dc.root])
    #expect(refused.code == 1)
    #expect(refused.err.contains("already is pglogical node \"pg2\""), "\(refused.err)")

    let cleanup = try CLI.run(["cleanup-previous-config", dc.dc, "second", "--json", "--config-dir", dc.root])
    #expect(cleanup.code == 0, "\(cleanup.out)\(cleanup.err)")
    let notes = try JSONParser.parse(cleanup.out)["notes"]?.arrayValue?.compactMap(\.stringValue) ?? []
    #expect(notes.contains("dropped subscription pg1_pg2"), "\(notes)")
    #expect(notes.contains("dropped node pg2"), "\(notes)")
    let again = try dc.run("cleanup_previous_config", "second")
    #expect(again["message"]?.stringValue?.hasPrefix("nothing left") == true || again["notes"]?.arrayValue?.allSatisfy { $0.stringValue?.contains("role") == true } == true, "\(again.json())")

    let setup = try dc.run("setup", "second")
    #expect(setup["ok"] == true, "\(setup.json())")
    try Repl.waitStatus(dc, "second", "replicating") { $0["forward"] == "replicating" }
    // The new destination is the src cluster's database of pair "second": compare directly.
    let s = try PG.root(.dst, db: first.dbname)
    let d = try PG.root(.src, db: second.dbname)
    defer { s.close(); d.close() }
    for t in ["UsersCapital", "table with space", "we\"ird", "manual_seq"] {
      #expect(try Repl.digest(s, "public", t) == Repl.digest(d, "public", t), "\(t)")
    }
  }
}
