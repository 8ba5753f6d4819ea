import Foundation
import Testing

@testable import BeltRuntime

@Suite(.serialized, .enabled(if: PG.available, "needs the clusters from scripts/pg-clusters"))
struct CutoverTests {
  // MARK: - revoke-logins / restore-logins

  @Test func revokeSavesLoginsThenRestoreGivesBackExactlyThose() throws {
    let dc = try TestDC()
    try dc.addPair("app", extra: [("custom", .object([("kept", .array([1, "two"]))]))])
    let path = dc.store.path(dc: dc.dc, db: "app")
    // Hand-formatted config (2-space indent) with the exclusions set, to check that only the
    // new keys are added (the list and the fence used) and every other byte is kept.
    var cfg = try dc.store.load(dc: dc.dc, db: "app").raw
    let t = PG.unique("r").replacingOccurrences(of: "r_", with: "")
    let app = "Cuapp \"\(t)", app2 = "CuApp2_\(t)", group = "CuGroup_\(t)", keep = "CuKeep_\(t)"
    let pat = "CuPat_\(t)", gone = "CuGone_\(t)", viaFlag = "CuFlag_\(t)"
    let mine = [app, app2, group, keep, pat, gone, viaFlag]
    cfg = cfg.setting("exclude_users", .from([keep])).setting("exclude_patterns", .from(["CuPat%"]))
    let original = cfg.json(indent: 2) + "\n"
    try original.write(toFile: path, atomically: true, encoding: .utf8)
    let root = try Cut.cluster(.src)
    defer {
      for r in mine { _ = try? root.exec("DROP ROLE IF EXISTS \(PGConnection.quoteIdent(r))") }
      root.close()
    }
    for r in mine {
      let hashed = try root.encryptPassword("pw \(t)", user: r)
      try root.exec(
        "CREATE ROLE \(PGConnection.quoteIdent(r)) \(r == group ? "NOLOGIN" : "LOGIN") PASSWORD \(try root.literal(hashed))"
      )
    }
    try root.exec("GRANT \(PGConnection.quoteIdent(group)) TO \(PGConnection.quoteIdent(app2))")
    let others = try Cut.otherLogins(except: mine)
    let opts: [String: Value] = [
      "exclude_users": .from(others + [viaFlag]),
      "exclude_patterns": .from(Cut.everythingButCu() + ["cupat%"]),
    ]
    // An application session that stays connected through the revoke.
    let held = try PGConnection(
      conninfo: ConnInfo.build([
        ("hostaddr", PG.host), ("port", String(PG.port(.src))),
        ("dbname", dc.pairs["app"]?.dbname ?? ""),
        ("user", app2), ("password", "pw \(t)"),
      ]), label: "held")
    defer { held.close() }

    // Every database of the dc; "other" shares the server, so whichever runs second finds
    // nothing left to revoke, yet both configs record every role (roles are server-wide).
    try dc.addPair("other", extra: [("custom", "x")])
    let otherPath = dc.store.path(dc: dc.dc, db: "other")
    let otherCfg = try dc.store.load(dc: dc.dc, db: "other").raw
    try dc.store.save(
      otherCfg.setting("exclude_users", .from([keep])).setting(
        "exclude_patterns", .from(["CuPat%"])), to: otherPath)
    let all = try dc.run("revoke_logins", nil, opts)
    #expect(all["ok"] == true)
    let records = all["databases"]?.arrayValue ?? []
    let expected = [app2, gone, app]  // C order: 'A' < 'G' < 'a'
    #expect(
      records.flatMap { $0["revoked"]?.arrayValue ?? [] }.compactMap(\.stringValue).sorted()
        == expected.sorted())
    for r in records {
      #expect(r["saved_logins"] == .from(expected), "\(r["db"]?.display ?? "")")
      #expect(r["config_saved"] == true)
    }
    #expect(records.reduce(0) { $0 + ($1["active_sessions"]?.intValue ?? 0) } == 1)
    // The file: the original bytes plus two keys.
    let after = try String(contentsOfFile: path, encoding: .utf8)
    guard let end = original.range(of: "\n}", options: .backwards) else {
      Issue.record("no closing brace"); return
    }
    let listText =
      "[\n" + expected.map { "    " + Value.jsonQuote($0) }.joined(separator: ",\n") + "\n  ]"
    let fenceText =
      ",\n  \"login_fence\": {\n    \"kind\": \"nologin\",\n    \"restored\": false\n  }"
    #expect(
      after == String(original[..<end.lowerBound]) + ",\n  \"revoked_logins\": " + listText
        + fenceText + String(original[end.lowerBound...]))
    #expect(
      try dc.store.load(dc: dc.dc, db: "app").raw["custom"]
        == .object([("kept", .array([1, "two"]))]))
    // Logins: revoked ones fail, excluded ones work, the group role is untouched.
    let db = try #require(dc.pairs["app"]).dbname
    Login.expectRefused(db: db, user: app, pw: "pw \(t)", "a revoked role")
    for ok in [keep, pat, viaFlag] {
      Login.expectAllowed(db: db, user: ok, pw: "pw \(t)", "\(ok) must not be revoked")
    }
    #expect(try Cut.rolcanlogin(group) == false)

    // Twice: nothing left to revoke, the saved list is not overwritten, the file is untouched.
    var args = ["revoke-logins", dc.dc, "app", "--config-dir", dc.root]
    for u in others + [viaFlag] { args += ["-e", u] }
    for p in Cut.everythingButCu() { args += ["-p", p] }
    let second = try CLI.run(args)
    #expect(second.code == 0, "\(second.err)")
    #expect(second.out.contains("No roles to revoke."))
    #expect(try String(contentsOfFile: path, encoding: .utf8) == after)

    // Restore: exactly the saved roles; one of them was dropped meanwhile.
    try root.exec("DROP ROLE \(PGConnection.quoteIdent(gone))")
    let restore = try CLI.run(["restore-logins", dc.dc, "app", "--config-dir", dc.root])
    #expect(restore.code == 0, "\(restore.err)")
    #expect(restore.out.contains("restored LOGIN to 2 role(s)"), "\(restore.out)")
    #expect(restore.out.contains("no longer exist"))
    #expect(
      try dc.store.load(dc: dc.dc, db: "app").raw["login_fence"]
        == .object([("kind", "nologin"), ("restored", true)]))
    Login.expectAllowed(db: db, user: app, pw: "pw \(t)", "restored")
    #expect(try Cut.rolcanlogin(app2) == true)
    #expect(
      try Cut.rolcanlogin(group) == false, "a group role that never had LOGIN must not get it")
    let again = try dc.run("restore_logins", "other")
    #expect(again["restored"] == .array([]))
    #expect(again["already_login"] == .from([app2, app]))
    #expect(again["missing"] == .from([gone]))
  }

  @Test func savingTheLoginListKeepsEveryOtherByteOfTheConfig() throws {
    let list = Value.from(["b\"q", "a"])
    // Appended to a 4-space file whose strings contain braces, brackets and escaped quotes.
    let four = "{\n    \"db\": \"x}\\\"]\",\n    \"n\": [1, {\"a\": \"}\"}],\n    \"z\": null\n}\n"
    #expect(
      ConfigEdit.splice(four, key: "revoked_logins", value: list)
        == "{\n    \"db\": \"x}\\\"]\",\n    \"n\": [1, {\"a\": \"}\"}],\n    \"z\": null,\n    \"revoked_logins\": [\n        \"b\\\"q\",\n        \"a\"\n    ]\n}\n"
    )
    // Replaced in place, in a one-line file.
    let compact = "{\"db\":\"x\",\"revoked_logins\":[\"old\"],\"z\":1}"
    #expect(
      ConfigEdit.splice(compact, key: "revoked_logins", value: list)
        == "{\"db\":\"x\",\"revoked_logins\":[\"b\\\"q\",\"a\"],\"z\":1}")
    // Duplicate keys: not spliced (the caller then rewrites the whole document).
    #expect(ConfigEdit.splice("{\"k\": 1, \"k\": 2}", key: "k", value: 3) == nil)
    // Through the file: replace keeps the rest; the result parses to the expected document.
    let file = NSTemporaryDirectory() + PG.unique("cfg") + ".json"
    defer { try? FileManager.default.removeItem(atPath: file) }
    try four.write(toFile: file, atomically: true, encoding: .utf8)
    chmod(file, 0o640)
    let store = ConfigStore(root: NSTemporaryDirectory())
    try store.setTopLevel("revoked_logins", list, file: file)
    try store.setTopLevel("revoked_logins", .from(["c"]), file: file)
    let text = try String(contentsOfFile: file, encoding: .utf8)
    #expect(
      text
        == "{\n    \"db\": \"x}\\\"]\",\n    \"n\": [1, {\"a\": \"}\"}],\n    \"z\": null,\n    \"revoked_logins\": [\n        \"c\"\n    ]\n}\n"
    )
    // save() is the same writer: a whole document with one changed key keeps the other bytes...
    let doc = try JSONParser.parse(text)
    try store.save(doc.setting("z", 2), to: file)
    #expect(
      try String(contentsOfFile: file, encoding: .utf8)
        == text.replacingOccurrences(of: "\"z\": null", with: "\"z\": 2"))
    // ...and a document the splices cannot give (a key removed) is written whole, as saved.
    guard case .object(var members) = doc else { Issue.record("not an object"); return }
    members.removeAll { $0.0 == "n" }
    try store.save(.object(members), to: file)
    #expect(try JSONParser.parse(String(contentsOfFile: file, encoding: .utf8)) == .object(members))
    var st = stat()
    stat(file, &st)
    #expect(st.st_mode & 0o777 == 0o640, "the file keeps its mode")
  }

  @Test func revokeRefusesWhenTheOwnerIsTheRootUser() throws {
    let dc = try TestDC()
    try dc.addPair("app")
    let path = dc.store.path(dc: dc.dc, db: "app")
    var cfg = try dc.store.load(dc: dc.dc, db: "app").raw
    let src = cfg["src"]?.setting(
      "owner_user", .object([("name", .string(PG.rootUser)), ("pw", .string(PG.rootPassword))]))
    cfg = cfg.setting("src", src ?? .null).setting("dst", .null)  // both commands work without dst
    try dc.store.save(cfg, to: path)
    let before = try String(contentsOfFile: path, encoding: .utf8)
    do {
      _ = try dc.run("revoke_logins", "app")
      Issue.record("revoke-logins ran with owner == root")
    } catch let e as BeltError {
      #expect(e.code == .preconditionFailed)
      #expect(e.message.contains("is the root user"))
    }
    #expect(try String(contentsOfFile: path, encoding: .utf8) == before)
    let restore = try dc.run("restore_logins", "app")
    #expect(restore["restored"] == .array([]))
    #expect(restore["message"]?.stringValue?.contains("No roles to restore") == true)
  }

  // MARK: - sync-sequences

  static let sequenceDDL = #"""
    CREATE TABLE ser (id serial PRIMARY KEY, v text);
    CREATE TABLE ident (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v text);
    CREATE SEQUENCE "Man ""Seq""";
    CREATE TABLE "Manual T" (id bigint PRIMARY KEY DEFAULT nextval('"Man ""Seq"""'), v text);
    CREATE SEQUENCE plain_seq;
    CREATE SEQUENCE "Ahead Seq";
    CREATE TABLE ahead_pk (id serial PRIMARY KEY);
    CREATE TABLE src_ahead (id serial PRIMARY KEY);
    CREATE TABLE nonpk_serial (id serial, v text);
    CREATE SEQUENCE never_used;
    """#

  @Test func syncSequencesUsesMaxPKForKeySequencesAndNeverMovesBackwards() throws {
    let dc = try TestDC()
    let src =
      Self.sequenceDDL + """
        INSERT INTO ser (v) SELECT 'v' FROM generate_series(1, 10);
        INSERT INTO ident (v) SELECT 'v' FROM generate_series(1, 5);
        INSERT INTO "Manual T" (v) SELECT 'v' FROM generate_series(1, 7);
        SELECT setval('plain_seq', 42), setval('"Ahead Seq"', 100);
        INSERT INTO ahead_pk SELECT FROM generate_series(1, 3);
        INSERT INTO src_ahead SELECT FROM generate_series(1, 20);
        DELETE FROM src_ahead WHERE id > 10;
        INSERT INTO nonpk_serial (v) SELECT 'v' FROM generate_series(1, 4);
        """
    let dst =
      Self.sequenceDDL + """
        INSERT INTO ser (id, v) SELECT g, 'v' FROM generate_series(1, 10) g;
        INSERT INTO ident (id, v) SELECT g, 'v' FROM generate_series(1, 5) g;
        INSERT INTO "Manual T" (id, v) SELECT g, 'v' FROM generate_series(1, 7) g;
        INSERT INTO ahead_pk SELECT g FROM generate_series(1, 3) g;
        SELECT setval('ahead_pk_id_seq', 999), setval('"Ahead Seq"', 500);
        INSERT INTO src_ahead SELECT g FROM generate_series(1, 10) g;
        INSERT INTO nonpk_serial (id, v) SELECT g, 'v' FROM generate_series(1, 4) g;
        """
    try dc.addPair("seq", srcSQL: src, dstSQL: dst)
    try dc.addPair("subset", srcSQL: src, dstSQL: dst, sequences: ["plain_seq"])

    func detail(_ r: Value, _ name: String) -> Value? {
      r["sequences"]?.arrayValue?.first { $0["name"]?.stringValue == name }
    }
    func last(_ seq: String) throws -> String? {
      try Cut.scalar(dc, "seq", .dst, "SELECT last_value || ':' || is_called FROM \(seq)")
    }
    let r = try dc.run("sync_sequences", "seq")
    #expect(r["ok"] == true)
    #expect(detail(r, "ser_id_seq")?["method"] == "pk_max")
    #expect(detail(r, "ser_id_seq")?["new_value"] == 10)
    #expect(detail(r, "ident_id_seq")?["new_value"] == 5)
    #expect(detail(r, "Man \"Seq\"")?["method"] == "pk_max")
    #expect(detail(r, "Man \"Seq\"")?["new_value"] == 7)
    #expect(detail(r, "plain_seq")?["method"] == "source_value")
    #expect(detail(r, "plain_seq")?["new_value"] == 42)
    #expect(detail(r, "nonpk_serial_id_seq")?["method"] == "source_value")
    #expect(detail(r, "nonpk_serial_id_seq")?["new_value"] == 4)
    // Ahead on dst: kept.
    #expect(detail(r, "Ahead Seq")?["synced"] == false)
    #expect(detail(r, "Ahead Seq")?["skipped_reason"] == "destination value is ahead of source")
    #expect(detail(r, "ahead_pk_id_seq")?["synced"] == false)
    #expect(try last("ahead_pk_id_seq") == "999:true")
    #expect(try last("\"Ahead Seq\"") == "500:true")
    // src handed out ids up to 20 although max(pk) is 10: never hand them out again.
    #expect(detail(r, "src_ahead_id_seq")?["pk_max"] == 10)
    #expect(detail(r, "src_ahead_id_seq")?["new_value"] == 20)
    // Never used on src: copied as never used.
    #expect(try last("never_used") == "1:false")
    #expect(
      try Cut.scalar(dc, "seq", .dst, "INSERT INTO ser (v) VALUES ('new') RETURNING id") == "11")
    #expect(
      try Cut.scalar(dc, "seq", .dst, "INSERT INTO \"Manual T\" (v) VALUES ('new') RETURNING id")
        == "8")

    // Stride: non-PK sequences padded; PK sequences keep max(pk).
    let s = try dc.run("sync_sequences", "seq", ["stride": 1000])
    #expect(detail(s, "plain_seq")?["method"] == "source_value_with_stride")
    #expect(detail(s, "plain_seq")?["new_value"] == 1042)
    #expect(detail(s, "Ahead Seq")?["new_value"] == 1100)
    #expect(detail(s, "ser_id_seq")?["new_value"] == 11)
    #expect(try last("plain_seq") == "1042:true")
    // Without stride again: the source value is now behind dst, which is kept.
    let t = try dc.run("sync_sequences", "seq")
    #expect(detail(t, "plain_seq")?["synced"] == false)
    #expect(try last("plain_seq") == "1042:true")
    #expect(t["ok"] == true)

    // The config's sequence subset.
    let sub = try dc.run("sync_sequences", "subset")
    #expect(sub["sequences"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["plain_seq"])
    let cli = try CLI.run([
      "sync-sequences", dc.dc, "seq", "--stride", "5", "--config-dir", dc.root,
    ])
    #expect(cli.code == 0, "\(cli.err)")
    #expect(cli.out.contains("synced"))
  }

  // MARK: - sync-tables

  static let bigTable = """
    CREATE TABLE big (a int, b text, c bytea, d int[], e text[], f jsonb, g timestamptz, h float8, pad text);
    """
  static let bigRows = """
    INSERT INTO big SELECT g,
      CASE WHEN g % 10 = 0 THEN NULL ELSE E'tab\\there\\nnew line \\\\back\\\\slash\\\\N ' || g END,
      CASE WHEN g % 7 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END,
      ARRAY[g, NULL, -g], ARRAY['x,y', NULL, E'q"uote', E'back\\\\slash', E'new\\nline'],
      jsonb_build_object('k', g, 's', E'a\\nb\\tc'), timestamptz '2020-01-01 00:00:00.5+00' + g * interval '1 second',
      CASE WHEN g % 13 = 0 THEN 'NaN'::float8 ELSE g / 3.0 END, repeat(md5(g::text), 16)
    FROM generate_series(1, 200000) g;
    """

  @Test func syncTablesStreamsABigTableExactlyWithFlatMemory() throws {
    let dc = try TestDC()
    try dc.addPair(
      "tiny", srcSQL: "CREATE TABLE t (a int); INSERT INTO t VALUES (1);",
      dstSQL: "CREATE TABLE t (a int);")
    try dc.addPair("big", srcSQL: Self.bigTable + Self.bigRows, dstSQL: Self.bigTable)
    defer {  // free the disk space (databases are never dropped on these clusters)
      for side in Side.allCases { try? Cut.exec(dc, "big", side, "DROP TABLE big") }
    }
    let baseline = try Cut.spawnMeasured(
      ["sync-tables", dc.dc, "tiny", "--config-dir", dc.root, "--json"], scratch: dc.root)
    #expect(baseline.code == 0, "\(baseline.err)")
    let run = try Cut.spawnMeasured(
      ["sync-tables", dc.dc, "big", "--config-dir", dc.root, "--json"], scratch: dc.root)
    #expect(run.code == 0, "\(run.err)")
    let record = try JSONParser.parse(run.out)
    let table = record["tables"]?.arrayValue?.first
    #expect(table?["loaded"] == true)
    #expect(table?["rows"] == 200_000)
    #expect(table?["format"] == "binary")
    let bytes = table?["bytes"]?.intValue ?? 0
    #expect(bytes > 100 << 20, "the table must be bigger than the memory bound to prove streaming")
    let growthMB = Double(run.maxRSSKB - baseline.maxRSSKB) / 1024
    print(
      "sync-tables big: \(bytes >> 20) MB in \(table?["duration_ms"]?.intValue ?? 0) ms (\(table?["mb_per_s"]?.display ?? "?") MB/s); belt max RSS \(run.maxRSSKB / 1024) MB vs \(baseline.maxRSSKB / 1024) MB baseline (+\(Int(growthMB)) MB)"
    )
    #expect(growthMB < 64, "memory grew by \(growthMB) MB while streaming \(bytes >> 20) MB")
    #expect(try Cut.orderedHash(dc, "big", .src, "big") == Cut.orderedHash(dc, "big", .dst, "big"))
    #expect(
      !run.out.contains(dc.pairs["big"]?.owner.password ?? "\u{0}")
        && !run.err.contains(PG.rootPassword))
    // Second run: the table is no longer empty.
    let again = try dc.run("sync_tables", "big")
    #expect(again["ok"] == true)
    #expect(again["tables"]?.arrayValue?.first?["skipped_reason"] == "destination table not empty")
  }

  @Test func syncTablesSkipsNonEmptyTablesLoadsWithTriggersOffAndFailsLoudly() throws {
    let dc = try TestDC()
    let ddl = """
      CREATE TABLE parent (id int PRIMARY KEY);
      CREATE TABLE child (pid int REFERENCES parent (id), note text);
      CREATE TABLE fruits (id integer, name varchar(20));
      CREATE TABLE "Odd ""Name"" t" ("Col A" text, gen int GENERATED ALWAYS AS (length("Col A")) STORED);
      CREATE TABLE trig (v int);
      CREATE TABLE keyed (id int PRIMARY KEY, v text);
      CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
      CREATE TABLE moods (m mood, ms mood[]);
      CREATE TABLE parts (k int, v text) PARTITION BY RANGE (k);
      CREATE TABLE parts_1 PARTITION OF parts FOR VALUES FROM (0) TO (10);
      CREATE TABLE parts_2 PARTITION OF parts FOR VALUES FROM (10) TO (20);
      """
    let srcData = """
      INSERT INTO parent VALUES (1), (2);
      INSERT INTO child VALUES (1, 'a'), (2, NULL);
      INSERT INTO fruits VALUES (1, 'apple'), (2, NULL);
      INSERT INTO "Odd ""Name"" t" ("Col A") VALUES (E'x\\ty'), (NULL);
      INSERT INTO trig VALUES (1), (2), (3);
      INSERT INTO keyed VALUES (1, 'one');
      INSERT INTO moods VALUES ('happy', '{sad,ok}'), (NULL, NULL);
      INSERT INTO parts SELECT g, 'p' || g FROM generate_series(0, 19) g;
      """
    let dstExtra = """
      INSERT INTO fruits VALUES (9, 'already here');
      CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'trigger fired'; END $$;
      CREATE TRIGGER refuse BEFORE INSERT ON trig FOR EACH ROW EXECUTE FUNCTION refuse();
      """
    try dc.addPair("mixed", srcSQL: ddl + srcData, dstSQL: ddl + dstExtra)
    let r = try dc.run("sync_tables", "mixed")
    #expect(r["mode"] == "auto")
    let tables = r["tables"]?.arrayValue ?? []
    #expect(
      tables.compactMap { $0["name"]?.stringValue }.sorted() == [
        "Odd \"Name\" t", "child", "fruits", "moods", "parts_1", "parts_2", "trig",
      ])
    func t(_ n: String) -> Value? { tables.first { $0["name"]?.stringValue == n } }
    #expect(t("fruits")?["skipped_reason"] == "destination table not empty")
    #expect(
      t("child")?["loaded"] == true, "FK checks are off during the load (parent is empty on dst)")
    #expect(t("trig")?["rows"] == 3, "user triggers are off during the load")
    #expect(t("Odd \"Name\" t")?["rows"] == 2)
    #expect(t("Odd \"Name\" t")?["format"] == "binary")
    #expect(t("moods")?["format"] == "text", "user types have server-specific OIDs: text COPY")
    #expect(t("moods")?["rows"] == 2)
    #expect(
      try Cut.orderedHash(dc, "mixed", .src, "moods") == Cut.orderedHash(dc, "mixed", .dst, "moods")
    )
    #expect(r["ok"] == true)
    #expect(try Cut.scalar(dc, "mixed", .dst, "SELECT count(*) FROM fruits") == "1")
    #expect(
      try Cut.orderedHash(dc, "mixed", .src, "\"Odd \"\"Name\"\" t\"")
        == Cut.orderedHash(dc, "mixed", .dst, "\"Odd \"\"Name\"\" t\""))

    // Explicit tables: bare, schema-qualified, quoted; unknown ones fail the command.
    try Cut.exec(dc, "mixed", .dst, "TRUNCATE trig, child")
    let explicit = try dc.run(
      "sync_tables", "mixed",
      ["tables": .from(["public.trig", "\"public\".child", "keyed", "nope"])])
    #expect(explicit["mode"] == "explicit")
    #expect(explicit["loaded"] == 3)
    #expect(explicit["ok"] == false)
    #expect(explicit["message"]?.stringValue?.contains("nope") == true)

    // A partitioned parent, named as a quoted identifier: copied through its partitions.
    try Cut.exec(dc, "mixed", .dst, "TRUNCATE parts")
    let parent = try dc.run("sync_tables", "mixed", ["tables": .from(["\"parts\""])])
    #expect(parent["tables"]?.arrayValue?.first?["rows"] == 20)
    #expect(
      try Cut.orderedHash(dc, "mixed", .src, "parts") == Cut.orderedHash(dc, "mixed", .dst, "parts")
    )

    // A table that cannot be loaded: the command fails, the table stays empty.
    try dc.addPair(
      "bad",
      srcSQL:
        "CREATE TABLE m (v text); INSERT INTO m VALUES ('abc'); CREATE TABLE checked (v int); INSERT INTO checked VALUES (1), (2);",
      dstSQL: "CREATE TABLE m (v int); CREATE TABLE checked (v int CHECK (v < 2));")
    let bad = try dc.run("sync_tables", "bad")
    #expect(bad["ok"] == false)
    #expect(bad["failed"] == 2)
    func err(_ n: String) -> String {
      bad["tables"]?.arrayValue?.first { $0["name"]?.stringValue == n }?["error"]?.stringValue ?? ""
    }
    #expect(err("m").contains("invalid input syntax"))
    #expect(
      err("checked").contains("violates check constraint"),
      "binary attempt fails, the text retry reports the real error")
    #expect(try Cut.scalar(dc, "bad", .dst, "SELECT count(*) FROM m") == "0")
    #expect(try Cut.scalar(dc, "bad", .dst, "SELECT count(*) FROM checked") == "0")
    let cli = try CLI.run(["sync-tables", dc.dc, "bad", "--config-dir", dc.root])
    #expect(cli.code == 1)
    #expect((cli.out + cli.err).contains("invalid input syntax"))
  }

  // MARK: - validate-data

  @Test func validateDataFindsEveryKindOfDifferenceAndPassesOnEqualData() throws {
    let dc = try TestDC()
    try dc.addPair("v", srcSQL: CutFixtures.validation, dstSQL: CutFixtures.validation)
    func validate(random: Int = 0, latest: Int = 0, full: Bool = false, chunk: Int = 16) throws
      -> Value
    {
      let ctx = try Cut.context(dc, "v")
      defer { ctx.closeAll() }
      return try Validation.run(
        ctx,
        settings: Validation.Settings(random: random, latest: latest, full: full, chunkRows: chunk))
    }
    func mismatches(_ r: Value, _ table: String) -> [Value] {
      r["tables"]?.arrayValue?.first { $0["name"]?.stringValue == table }?["mismatches"]?.arrayValue
        ?? []
    }
    // Equal data: never fails (20 runs of the sampled mode), nor the full mode.
    for _ in 0..<20 {
      let r = try dc.run("validate_data", "v")
      #expect(r["ok"] == true, "\(r["message"]?.display ?? "")")
    }
    let full = try validate(full: true)
    #expect(full["ok"] == true, "\(full["message"]?.display ?? "")")
    #expect(full["rows_compared"] == 455)

    // One float changed in its 17th significant digit, in an old row.
    try Cut.exec(dc, "v", .dst, "UPDATE items SET ratio = 0.4285714285714286 WHERE id = 3")
    let random = try validate(random: 1000)
    #expect(random["ok"] == false)
    let m = mismatches(random, "items")
    #expect(m.count == 1)
    #expect(m.first?["kind"] == "differs")
    #expect(m.first?["key"] == .object([("id", "3")]))
    #expect(m.first?["columns"] == .from(["ratio"]))
    let latestOnly = try validate(latest: 100)
    #expect(latestOnly["ok"] == true, "the latest 100 rows do not include id 3: \(latestOnly)")
    let fullHit = try validate(full: true)
    #expect(mismatches(fullHit, "items").first?["key"] == .object([("id", "3")]))
    #expect(mismatches(fullHit, "items").first?["columns"] == .from(["ratio"]))
    try Cut.exec(dc, "v", .dst, "UPDATE items SET ratio = 3 / 7.0::float8 WHERE id = 3")

    // One microsecond in the latest row.
    try Cut.exec(
      dc, "v", .dst, "UPDATE items SET at = at + interval '1 microsecond' WHERE id = 150")
    let latest = try validate(latest: 100)
    #expect(mismatches(latest, "items").first?["columns"] == .from(["at"]))
    #expect(mismatches(try validate(full: true), "items").first?["columns"] == .from(["at"]))
    try Cut.exec(
      dc, "v", .dst, "UPDATE items SET at = at - interval '1 microsecond' WHERE id = 150")

    // NaN is not NULL, '' is not NULL, a text key with a changed value.
    try Cut.exec(
      dc, "v", .dst,
      "UPDATE items SET price = NULL WHERE id = 50; UPDATE items SET note = NULL WHERE id = 4; UPDATE \"Pairs\" SET v = 'changed' WHERE k2 = 10"
    )
    let several = try validate(random: 1000)
    #expect(
      Set(mismatches(several, "items").compactMap { $0["key"]?["id"]?.stringValue }) == ["50", "4"])
    #expect(mismatches(several, "Pairs").first?["key"] == .object([("K1", "key 3"), ("k2", "10")]))
    let cli = try CLI.run([
      "validate-data", dc.dc, "v", "--config-dir", dc.root, "--sample", "1000",
    ])
    #expect(cli.code == 1)
    #expect((cli.out + cli.err).contains("items") && (cli.out + cli.err).contains("price"))
    try Cut.exec(
      dc, "v", .dst,
      "UPDATE items SET price = 'NaN' WHERE id = 50; UPDATE items SET note = '' WHERE id = 4; UPDATE \"Pairs\" SET v = md5('10') WHERE k2 = 10"
    )
    #expect(try validate(random: 1000, full: false)["ok"] == true)

    // A missing row in the middle (full) and at the end (latest); an extra row before the
    // first key (full) and after the last (latest).
    try Cut.exec(
      dc, "v", .dst,
      "DELETE FROM items WHERE id IN (77, 150); INSERT INTO items (id, name) VALUES (0, 'extra'), (1000, 'extra')"
    )
    let kinds = Set(
      mismatches(try validate(full: true), "items").map {
        "\($0["kind"]?.display ?? ""):\($0["key"]?["id"]?.display ?? "")"
      })
    #expect(
      kinds == ["missing_on_dst:77", "missing_on_dst:150", "extra_on_dst:0", "extra_on_dst:1000"])
    let tailRun = try validate(latest: 5)
    let tail = Set(
      mismatches(tailRun, "items").map {
        "\($0["kind"]?.display ?? ""):\($0["key"]?["id"]?.display ?? "")"
      })
    #expect(tail == ["missing_on_dst:150", "extra_on_dst:1000"])
    try Cut.exec(
      dc, "v", .dst,
      "DELETE FROM items WHERE id IN (0, 1000); \(CutFixtures.items(77, 77)) \(CutFixtures.items(150, 150))"
    )

    // A table without a primary key: one duplicate gone.
    try Cut.exec(
      dc, "v", .dst, "DELETE FROM nopk WHERE ctid = (SELECT min(ctid) FROM nopk WHERE a = 1)")
    let nopk = Set(
      mismatches(try validate(random: 100), "nopk").compactMap { $0["kind"]?.stringValue })
    #expect(nopk == ["row_count_differs", "multiplicity_differs"])
    let nopkFull = Set(
      mismatches(try validate(full: true), "nopk").compactMap { $0["kind"]?.stringValue })
    #expect(nopkFull == ["row_count_differs", "multiplicity_differs"])
    try Cut.exec(dc, "v", .dst, "INSERT INTO nopk VALUES (1, 'x', '{1.5,NaN}')")
    let healed = try dc.run("validate_data", "v", ["full": true])
    #expect(healed["ok"] == true, "\(healed["message"]?.display ?? "")")
  }

  @Test func validateDataFullComparesAWholeTableAndReportsItsRate() throws {
    let dc = try TestDC()
    let sql = """
      CREATE TABLE orders (id bigint PRIMARY KEY, customer int, total numeric(12,2), placed timestamptz, note text, ratio float8);
      INSERT INTO orders SELECT g, g % 997, (g % 10000) / 100.0, timestamptz '2022-01-01' + g * interval '17 seconds',
                                CASE WHEN g % 5 = 0 THEN NULL ELSE 'order note ' || md5(g::text) END, g / 9.0
        FROM generate_series(1, 200000) g;
      """
    try dc.addPair("full", srcSQL: sql, dstSQL: sql)
    defer { for side in Side.allCases { try? Cut.exec(dc, "full", side, "DROP TABLE orders") } }
    let r = try dc.run("validate_data", "full", ["full": true])
    #expect(r["ok"] == true, "\(r["message"]?.display ?? "")")
    #expect(r["rows_compared"] == 200_000)
    print(
      "validate-data --full: \(r["rows_compared"]?.display ?? "?") rows in \(r["duration_ms"]?.display ?? "?") ms = \(r["rows_per_s"]?.display ?? "?") rows/s"
    )
    try Cut.exec(dc, "full", .dst, "UPDATE orders SET note = note || ' ' WHERE id = 123457")
    let hit = try dc.run("validate_data", "full", ["full": true])
    let m = hit["tables"]?.arrayValue?.first?["mismatches"]?.arrayValue ?? []
    #expect(m.count == 1)
    #expect(m.first?["key"] == .object([("id", "123457")]))
    #expect(m.first?["columns"] == .from(["note"]))
  }

  // MARK: - sync

  @Test func syncLoadsConstraintsAndIndexesFromTheDumpedSchema() throws {
    let dc = try TestDC()
    let extra = """

      CREATE INDEX fruits_name_idx ON fruits (name);
      ALTER TABLE fruits ADD CONSTRAINT fruits_id_positive CHECK (id > 0) NOT VALID;
      """
    try dc.addPair(
      "app", srcSQL: CutFixtures.syncSource + extra,
      dstSQL: CutFixtures.syncDDL + CutFixtures.syncPKData)
    let dump = try dc.run("dump_schema", "app")
    #expect(dump["ok"] == true)
    let r = try dc.run("sync", "app")
    #expect(r["ok"] == true, "\(r["message"]?.display ?? "")")
    let statuses = (r["steps"]?.arrayValue ?? []).map {
      "\($0["name"]?.display ?? "")=\($0["status"]?.display ?? "")"
    }
    #expect(
      statuses == [
        "sync_sequences=ok", "sync_tables=ok", "sync_large_objects=ok", "load_constraints=ok",
        "create_indexes=ok", "validate_data=ok", "analyze=skipped",
      ])
    #expect(
      try Cut.scalar(
        dc, "app", .dst, "SELECT count(*) FROM pg_indexes WHERE indexname = 'fruits_name_idx'")
        == "1")
    #expect(
      try Cut.scalar(
        dc, "app", .dst,
        "SELECT convalidated::text FROM pg_constraint WHERE conname = 'fruits_id_positive'")
        == "false")
    print("sync with schema parts: \(r["message"]?.display ?? "")")
  }

  @Test func syncRunsEveryPartAndReportsDowntimeAndStopsAtTheFirstFailure() throws {
    let dc = try TestDC()
    try dc.addPair(
      "app", srcSQL: CutFixtures.syncSource, dstSQL: CutFixtures.syncDDL + CutFixtures.syncPKData)
    let r = try dc.run("sync", "app")
    #expect(r["ok"] == true, "\(r["message"]?.display ?? "")")
    let steps = r["steps"]?.arrayValue ?? []
    #expect(
      steps.compactMap { $0["name"]?.stringValue } == [
        "sync_sequences", "sync_tables", "sync_large_objects", "load_constraints", "create_indexes",
        "validate_data", "analyze",
      ])
    #expect(
      steps.compactMap { $0["status"]?.stringValue } == [
        "ok", "ok", "ok", "skipped", "skipped", "ok", "ok",
      ])
    print(
      "sync of the test database: downtime \(r["downtime_ms"]?.display ?? "?") ms — \(r["message"]?.display ?? "")"
    )
    #expect(
      try Cut.orderedHash(dc, "app", .src, "fruits") == Cut.orderedHash(dc, "app", .dst, "fruits"))
    #expect(try Cut.scalar(dc, "app", .dst, "SELECT last_value FROM standalone_seq") == "42")
    #expect(
      try Cut.scalar(dc, "app", .dst, "SELECT last_value FROM \"UsersCapital_id_seq\"") == "50")
    #expect(
      try Cut.scalar(
        dc, "app", .dst, "SELECT reltuples::int FROM pg_class WHERE relname = 'fruits'") == "4",
      "ANALYZE ran on dst")

    // Second run: tables are already loaded (skipped), everything else converges.
    let cli = try CLI.run(["sync", dc.dc, "app", "--config-dir", dc.root, "--no-schema"])
    #expect(cli.code == 0, "\(cli.err)")
    #expect(
      cli.out.contains("sync_sequences") && cli.out.contains("validate_data")
        && cli.out.contains(" ms"))
    #expect(cli.out.contains("total"))

    // The same operations from Lua, with their option keys checked.
    let script = dc.root + "/cutover.lua"
    try """
    local dc, db = ...
    local s = belt.sync_sequences(dc, db, {stride = 10})
    assert(s.ok, s.message)
    local v = belt.validate_data(dc, db, {full = true, sample = 20})
    assert(v.ok and v.mode == "full", v.message)
    local t = belt.sync_tables(dc, db, {tables = {"fruits"}})
    assert(t.tables[1].skipped_reason == "destination table not empty")
    local ok, err = pcall(belt.sync_tables, dc, db, {table = "fruits"})
    assert(not ok and err.code == "bad_argument", tostring(err))
    print("lua ok " .. v.rows_compared)
    """.write(toFile: script, atomically: true, encoding: .utf8)
    let lua = try CLI.run(["run", script, dc.dc, "app", "--config-dir", dc.root])
    #expect(lua.code == 0, "\(lua.out) \(lua.err)")
    #expect(lua.out.contains("lua ok 85"))

    // A part that fails: later phases do not run and the command fails naming the step.
    try dc.addPair(
      "broken", srcSQL: CutFixtures.syncSource,
      dstSQL: CutFixtures.syncDDL.replacingOccurrences(
        of: "fruits (id integer, name varchar(20))", with: "fruits (id integer, name integer)"))
    let b = try dc.run("sync", "broken")
    #expect(b["ok"] == false)
    #expect(b["failed_step"] == "sync_tables")
    let statuses = (b["steps"]?.arrayValue ?? []).map {
      "\($0["name"]?.display ?? "")=\($0["status"]?.display ?? "")"
    }
    // validate_data's half for the PK tables runs beside the copies (phase 1); here dst never
    // got their rows (no replication), so it fails too; its PK-less half is not run.
    #expect(
      statuses == [
        "sync_sequences=ok", "sync_tables=failed", "sync_large_objects=ok",
        "load_constraints=not run", "create_indexes=not run", "validate_data=failed",
        "analyze=not run",
      ])
    let bcli = try CLI.run(["sync", dc.dc, "broken", "--config-dir", dc.root])
    #expect(bcli.code == 1)
    #expect(
      bcli.out.contains("failed at sync_tables") || bcli.err.contains("failed at sync_tables"))
  }
}

extension CutoverTests {
  /// A table without a primary key that the engine streamed (native) is final at the gate and
  /// is compared in the window like one with a key: its row counts on both servers, and a
  /// sample of src rows, each of which must occur as often on dst (found there by the leading
  /// column of an index, NULLs too). Equal data (with duplicated rows) passes; a missing row is
  /// always caught, by the counts; changed rows are caught when sampled (here every row of dst
  /// differs, so any sample shows it); a streamed table without an index is compared whole.
  @Test func validateDataSamplesAStreamedTableWithoutAPrimaryKey() throws {
    let dc = try TestDC()
    let sql = """
      CREATE TABLE big_nopk (a int, b text, c numeric);
      INSERT INTO big_nopk SELECT CASE WHEN g % 100 = 0 THEN NULL ELSE g END, 'row ' || g, g / 7.0
        FROM generate_series(1, 20000) g;
      INSERT INTO big_nopk SELECT g % 50, 'twice', 1 FROM generate_series(1, 100) g;
      CREATE INDEX ON big_nopk (a);
      CREATE TABLE plain_nopk (a int, b text);
      INSERT INTO plain_nopk SELECT g, 'p' || g FROM generate_series(1, 20000) g;
      ANALYZE big_nopk, plain_nopk;
      """
    try dc.addPair("s", srcSQL: sql, dstSQL: sql)
    func validate() throws -> Value {
      let ctx = try Cut.context(dc, "s")
      defer { ctx.closeAll() }
      var settings = Validation.Settings(random: 100, latest: 100, full: false)
      settings.withPK = true
      settings.wholeUpTo = 10_000
      settings.streamedNoPK = ["big_nopk", "plain_nopk"]
      return try Validation.run(ctx, settings: settings)
    }
    func table(_ r: Value, _ name: String) -> Value? {
      r["tables"]?.arrayValue?.first { $0["name"]?.stringValue == name }
    }
    func kinds(_ r: Value) -> Set<String> {
      Set(
        (table(r, "big_nopk")?["mismatches"]?.arrayValue ?? []).compactMap {
          $0["kind"]?.stringValue
        })
    }
    for _ in 0..<5 {
      let ok = try validate()
      #expect(ok["ok"] == true, "\(ok["message"]?.display ?? "")")
      #expect(
        table(ok, "big_nopk")?["strategy"] == "no_pkey_count+random_100", "\(ok.json())")
      #expect(table(ok, "plain_nopk")?["strategy"] == "no_pkey_hash", "no index: whole")
    }
    try Cut.exec(
      dc, "s", .dst,
      "DELETE FROM big_nopk WHERE ctid = (SELECT min(ctid) FROM big_nopk WHERE a = 12345)")
    let missing = try validate()
    #expect(missing["ok"] == false && kinds(missing).contains("row_count_differs"))
    try Cut.exec(dc, "s", .dst, "INSERT INTO big_nopk VALUES (12345, 'row 12345', 12345 / 7.0)")
    #expect(try validate()["ok"] == true)
    try Cut.exec(dc, "s", .dst, "UPDATE big_nopk SET b = b || '.'")
    let changed = try validate()
    #expect(
      changed["ok"] == false && kinds(changed) == ["multiplicity_differs"], "\(changed.json())")
  }
}
