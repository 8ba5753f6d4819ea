import Foundation
import Testing

@testable import BeltRuntime

/// Issue 26: real application schemas. Every extension a schema depends on is found from
/// pg_depend (whatever the kind of object that needs it), and a schema built by statements
/// compares equal after a dump and reload.
@Suite(.serialized, .enabled(if: PG.available, "needs the clusters from scripts/pg-clusters"))
struct SchemaDependencyTests {
  /// Extensions live in public (as in MusicBrainz); the migrated schema `app` reaches them only
  /// through a text search configuration (unaccent), a domain (cube), and nothing else.
  static let extensionSchema = """
    CREATE EXTENSION unaccent WITH SCHEMA public;
    CREATE EXTENSION cube WITH SCHEMA public;
    CREATE TEXT SEARCH CONFIGURATION app.mb_simple (COPY = pg_catalog.simple);
    ALTER TEXT SEARCH CONFIGURATION app.mb_simple ALTER MAPPING FOR word, asciiword WITH public.unaccent, simple;
    CREATE COLLATION app.de_phone (provider = icu, locale = 'de-u-co-phonebk');
    CREATE DOMAIN app.point3 AS public.cube CHECK (public.cube_dim(VALUE) = 3);
    CREATE TABLE app.artist (id int PRIMARY KEY, name text COLLATE app.de_phone NOT NULL, pos app.point3);
    CREATE INDEX artist_name_fts ON app.artist USING gin (to_tsvector('app.mb_simple'::regconfig, name));
    INSERT INTO app.artist SELECT g, 'Ärtist ' || g, public.cube(ARRAY[g, g, g]::float8[]) FROM generate_series(1, 500) g;
    """

  @Test func extensionsReachedOnlyThroughDependenciesAreCreatedOnDst() throws {
    let dc = try TestDC()
    defer { Repl.cleanup(dc) }
    try dc.addPair("mb", schema: "app", srcSQL: Self.extensionSchema)

    let pre = try dc.run("precheck", "mb")
    #expect(pre["ok"] == true, "\(pre.json())")
    let needed = Dictionary(
      (pre["extensions_needed"]?.arrayValue ?? []).map { ($0["name"]?.stringValue ?? "", $0) }, uniquingKeysWith: { a, _ in a })
    #expect(Set(needed.keys) == ["unaccent", "cube"], "\(pre["extensions_needed"]?.json() ?? "")")
    let byUnaccent = needed["unaccent"]?["needed_by"]?.arrayValue?.compactMap(\.stringValue) ?? []
    #expect(byUnaccent.contains("text search configuration app.mb_simple"), "\(byUnaccent)")
    let byCube = needed["cube"]?["needed_by"]?.arrayValue?.compactMap(\.stringValue).joined(separator: "; ") ?? ""
    #expect(byCube.contains("app.point3"), "\(byCube)")
    #expect(needed["cube"]?["available_on_dst"] == true && needed["cube"]?["installed_on_dst"] == false)
    let cliPre = try CLI.run(["precheck", dc.dc, "mb", "--config-dir", dc.root])
    #expect(cliPre.out.contains("Extensions the schema needs") && cliPre.out.contains("text search configuration app.mb_simple"), "\(cliPre.out)")

    let migrate = try CLI.run(["run", "migrate.lua", dc.dc, "--config-dir", dc.root])
    #expect(migrate.code == 0, "migrate: \(migrate.err.suffix(2000))")
    for ext in ["unaccent", "cube"] {
      #expect(try Cut.scalar(dc, "mb", .dst, "SELECT count(*) FROM pg_extension WHERE extname = $1", [ext]) == "1", "\(ext)")
    }
    // The configuration, the collation and the domain work on dst.
    #expect(try Cut.scalar(dc, "mb", .dst, "SELECT to_tsvector('app.mb_simple', 'Ärtist')::text") == "'artist':1")
    #expect(try Cut.scalar(dc, "mb", .dst, "SELECT collprovider::text FROM pg_collation WHERE collname = 'de_phone'") == "i")
    #expect(try Repl.sameRows(dc, "mb", ["artist"]))
    let diff = try dc.run("diff_schemas", "mb", ["full": true])
    #expect(diff["result"] == "match", "\(diff["diff"]?.stringValue ?? diff.json())")
  }

  /// An extension installed on src from a control file that is then removed: dst (same binaries,
  /// same sharedir) can never install it, which is what a server without the package looks like.
  @Test func anExtensionDstCannotInstallIsRefusedBeforeAnyChange() throws {
    let dc = try TestDC()
    defer { Repl.cleanup(dc) }
    try dc.addPair("fake", schema: "app", srcSQL: "CREATE TABLE app.t (id int PRIMARY KEY);")
    let ext = PG.unique("belt_fake_ext").lowercased()
    let sharedir = try Cut.scalar(dc, "fake", .src, "SELECT setting FROM pg_config WHERE name = 'SHAREDIR'") ?? ""
    let control = "\(sharedir)/extension/\(ext).control"
    let script = "\(sharedir)/extension/\(ext)--1.0.sql"
    try "default_version = '1.0'\nrelocatable = true\n".write(toFile: control, atomically: true, encoding: .utf8)
    try "CREATE FUNCTION plus_one(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 + 1';\n"
      .write(toFile: script, atomically: true, encoding: .utf8)
    defer {
      try? FileManager.default.removeItem(atPath: control)
      try? FileManager.default.removeItem(atPath: script)
    }
    try Cut.exec(dc, "fake", .src, "CREATE EXTENSION \(ext) WITH SCHEMA public")
    try FileManager.default.removeItem(atPath: control)
    try FileManager.default.removeItem(atPath: script)
    let owner = dc.pairs["fake"]!.owner
    try Cut.exec(dc, "fake", .src, "SET ROLE \(PGConnection.quoteIdent(owner.name)); ALTER TABLE app.t ADD COLUMN n int DEFAULT public.plus_one(1)")

    let pre = try dc.run("precheck", "fake")
    #expect(pre["ok"] == false)
    let alert = pre["alert"]?.stringValue ?? ""
    #expect(alert.contains(ext) && alert.contains("default value for app.t.n") && alert.contains("not available on dst"), "\(alert)")

    let setup = try CLI.run(["setup", dc.dc, "fake", "--config-dir", dc.root])
    #expect(setup.code == 1)
    #expect(setup.err.split(separator: "\n").filter { $0.contains(ext) }.count == 1, "one line: \(setup.err)")
    for side in Side.allCases {
      #expect(try Cut.scalar(dc, "fake", side, "SELECT count(*) FROM pg_extension WHERE extname = 'pglogical'") == "0", "\(side)")
    }
    #expect(try Cut.scalar(dc, "fake", .dst, "SELECT count(*) FROM pg_tables WHERE schemaname = 'app'") == "0")
    let migrate = try CLI.run(["run", "migrate.lua", dc.dc, "--config-dir", dc.root])
    #expect(migrate.code == 1 && migrate.err.contains(ext), "\(migrate.err.suffix(1500))")
  }
}
