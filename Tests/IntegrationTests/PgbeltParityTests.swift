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
      (rec["sequences"]?.arrayValue ?? []).map { ($0["name"]?.stringValue ?? "", $0) },
      uniquingKeysWith: { a, _ in a })
    #expect(rows["standalone_seq"]?["destination_ok"] == false)
    #expect(rows["standalone_seq"]?["source_value"] == .int(5000))
    #expect(rows["userS_id_seq"]?["destination_ok"] == true)
    #expect((rows["only_on_dst"]?["source_value"] ?? .null) == .null)
    #expect(rows["only_on_dst"]?["destination_value"]?.intValue != nil)
    #expect(rows["only_on_dst"]?["destination_ok"] == true)
    #expect(
      rec["message"]?.stringValue?.contains("standalone_seq (src 5000") == true, "\(rec.json())")
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
    let newSrc = (firstCfg["dst"] ?? .null).setting(
      "pglogical_user", firstCfg["dst"]?["pglogical_user"] ?? .null)
    let cfg = secondCfg.setting("src", newSrc).setting("dst", (secondCfg["src"] ?? .null))
    try dc.store.save(cfg, to: dc.store.path(dc: dc.dc, db: "second"))
    dc.pairs["second"] = TestDC.PairSpec(
      db: "second", dbname: second.dbname, owner: second.owner, pglogical: first.pglogical,
      schema: "public")

    let pre = try dc.run("precheck", "second")
    #expect(pre["ok"] == false)
    #expect(
      pre["alert"]?.stringValue?.contains("run cleanup-previous-config") == true, "\(pre.json())")
    let refused = try CLI.run(["setup", dc.dc, "second", "--config-dir", dc.root])
    #expect(refused.code == 1)
    #expect(refused.err.contains("already is pglogical node \"pg2\""), "\(refused.err)")

    let cleanup = try CLI.run([
      "cleanup-previous-config", dc.dc, "second", "--json", "--config-dir", dc.root,
    ])
    #expect(cleanup.code == 0, "\(cleanup.out)\(cleanup.err)")
    let notes =
      try JSONParser.parse(cleanup.out)["notes"]?.arrayValue?.compactMap(\.stringValue) ?? []
    #expect(notes.contains("dropped subscription pg1_pg2"), "\(notes)")
    #expect(notes.contains("dropped node pg2"), "\(notes)")
    let again = try dc.run("cleanup_previous_config", "second")
    #expect(
      again["message"]?.stringValue?.hasPrefix("nothing left") == true
        || again["notes"]?.arrayValue?.allSatisfy { $0.stringValue?.contains("role") == true }
          == true,
      "\(again.json())")

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

/// Issue 16: a pair whose credentials come from a resolver command, against the real clusters.
extension PgbeltParityTests {
  @Test func aRemoteConfigPairMigratesAndItsSecretsNeverReachDisk() throws {
    let dc = try TestDC()
    defer { Repl.cleanup(dc) }
    let pair = try dc.addPair("app", srcSQL: Fixtures.basic())
    let cfg = try dc.store.load(dc: dc.dc, db: "app").raw
    // The secrets travel in the resolver's environment, as a secret-store CLI would print them.
    let env = [
      "BELT_TEST_SRC_SIDE": (cfg["src"] ?? .null).json(indent: 0),
      "BELT_TEST_DST_SIDE": (cfg["dst"] ?? .null).json(indent: 0),
    ]
    try FileManager.default.removeItem(atPath: dc.root + "/configs/\(dc.dc)/app")
    let definition = dc.store.remotePath(dc: dc.dc, db: "app")
    try FileManager.default.createDirectory(
      atPath: (definition as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try Value.object([
      ("src_resolver_command", .from(["printenv", "BELT_TEST_SRC_SIDE"])),
      ("dst_resolver_command", .from(["printenv", "BELT_TEST_DST_SIDE"])),
      ("schema_name", "public"),
    ]).json().write(toFile: definition, atomically: true, encoding: .utf8)

    var output = ""
    func belt(_ args: [String]) throws -> CLI.Result {
      let r = try CLI.run(args + ["--config-dir", dc.root, "--verbose"], env: env)
      output += r.out + r.err
      return r
    }
    #expect(try belt(["check-connectivity", dc.dc]).code == 0, "\(output)")
    #expect(try belt(["setup", dc.dc, "app"]).code == 0, "\(output)")
    #expect(
      try eventually(60) {
        try belt(["status", dc.dc, "app", "--json"]).out.contains("\"forward\": \"replicating\"")
      }, "\(output.suffix(2000))")
    // revoke-logins writes its list into the definition; restore reads it back from there.
    #expect(
      try belt(["revoke-logins", dc.dc, "app", "-p", "%"]).code == 0, "\(output.suffix(1000))")
    #expect(try belt(["restore-logins", dc.dc, "app"]).code == 0, "\(output.suffix(1000))")
    let written = try String(contentsOfFile: definition, encoding: .utf8)
    #expect(written.contains("revoked_logins"), "\(written)")
    #expect(try belt(["teardown", dc.dc, "app", "--full"]).code == 0, "\(output.suffix(1000))")

    // A resolver that fails: one line naming the file and the status.
    let failing = try CLI.run(["status", dc.dc, "app", "--config-dir", dc.root], env: [:])
    #expect(failing.code == 1)
    #expect(
      failing.err.contains("\(definition): src_resolver_command (printenv) exited with status 1"),
      "\(failing.err)")

    let secrets = [pair.owner.password, pair.pglogical.password, PG.rootPassword]
    for s in secrets { #expect(!output.contains(s), "a password in belt's output") }
    let files = FileManager.default.enumerator(atPath: dc.root)?.compactMap { $0 as? String } ?? []
    #expect(files.contains { $0.hasSuffix(".sql") }, "setup wrote the schema files: \(files)")
    for f in files {
      var isDirectory: ObjCBool = false
      guard FileManager.default.fileExists(atPath: dc.root + "/" + f, isDirectory: &isDirectory),
        !isDirectory.boolValue
      else { continue }
      // Every file is read (as bytes: one that is not UTF-8 is still searched, not skipped).
      let text = String(
        decoding: try #require(
          FileManager.default.contents(atPath: dc.root + "/" + f), "unreadable \(f)"), as: UTF8.self
      )
      for s in secrets { #expect(!text.contains(s), "a password in \(f)") }
    }
  }
}
