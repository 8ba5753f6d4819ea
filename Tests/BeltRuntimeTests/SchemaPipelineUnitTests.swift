import Foundation
import Testing

@testable import BeltRuntime

/// Schema pipeline pieces that need no server: pg_dump's argv/env, the passfile, the diff.
@Suite struct SchemaPipelineUnitTests {
  let server = ServerConfig(
    host: "db.example", ip: "10.1.2.3", dbname: "app db", port: 5433,
    root: Credentials(name: "root", password: "r00t 'pw' : \\ x"),
    owner: Credentials(name: "own er", password: "o'wn er\\ #@pw"),
    replication: Credentials(name: "pgl", password: "p"))

  @Test func pgDumpGetsThePasswordOnlyThroughAPrivatePassfile() throws {
    let inherited = [
      "PATH": "/usr/bin", "PGPASSWORD": "leak", "PGSERVICE": "svc", "PGSSLMODE": "require",
      "HOME": "/root",
    ]
    let inv = try PGTools.invocation(
      tool: "pg_dump", arguments: PGTools.schemaDumpArguments(schema: "App \"Sch\" *"),
      server: server, role: .root,
      connectTimeout: 7, baseEnvironment: inherited, binDir: "/usr/lib/postgresql/15/bin")
    #expect(inv.executable == "/usr/lib/postgresql/15/bin/pg_dump")
    #expect(
      inv.arguments == [
        "--schema-only", "--no-owner", "--strict-names", "--schema=\"App \"\"Sch\"\" *\"",
      ])
    for a in inv.arguments + [inv.executable] {
      #expect(!a.contains("r00t") && !a.contains("password"))
    }
    #expect(inv.environment["PGPASSWORD"] == nil && inv.environment["PGSERVICE"] == nil)
    #expect(inv.environment["PGSSLMODE"] == "require" && inv.environment["HOME"] == "/root")
    #expect(
      inv.environment["PGHOSTADDR"] == "10.1.2.3" && inv.environment["PGHOST"] == "db.example")
    #expect(inv.environment["PGPORT"] == "5433" && inv.environment["PGDATABASE"] == "app db")
    #expect(inv.environment["PGUSER"] == "root" && inv.environment["PGCONNECT_TIMEOUT"] == "7")
    #expect(!inv.environment.values.contains { $0.contains("r00t") })
    #expect(inv.passfileLine == "*:*:*:*:r00t 'pw' \\: \\\\ x")
  }

  @Test func aPasswordWithALineBreakGoesToTheChildEnvironmentOnly() throws {
    var s = server
    s.owner.password = "two\nlines"
    let inv = try PGTools.invocation(
      tool: "pg_dump", arguments: [], server: s, role: .owner, baseEnvironment: [:],
      binDir: "/usr/lib/postgresql/15/bin")
    #expect(inv.passfileLine == nil)
    #expect(inv.environment["PGPASSWORD"] == "two\nlines")
    #expect(inv.arguments.isEmpty)
  }

  @Test func failureMessagesMaskThePassword() {
    #expect(
      PGTools.mask("FATAL: bad o'wn er\\ #@pw here", secret: "o'wn er\\ #@pw")
        == "FATAL: bad **** here")
  }

  @Test func unifiedDiffHasHeadersHunksAndContext() {
    let a = (1...12).map { "line \($0)" }.joined(separator: "\n") + "\n"
    var lines = (1...12).map { "line \($0)" }
    lines[5] = "changed 6"
    lines.append("added 13")
    let b = lines.joined(separator: "\n") + "\n"
    let d = SchemaDiff.unified(a, b)
    #expect(
      d == """
        --- source
        +++ destination
        @@ -3,10 +3,11 @@
         line 3
         line 4
         line 5
        -line 6
        +changed 6
         line 7
         line 8
         line 9
         line 10
         line 11
         line 12
        +added 13

        """)
    #expect(SchemaDiff.unified(a, a) == "")
    #expect(SchemaDiff.unified("", "x\n") == "--- source\n+++ destination\n@@ -0,0 +1 @@\n+x\n")
  }

  @Test func normalizationIgnoresRestrictKeysSetsGrantsAndExtensions() {
    let one = """
      \\restrict AAA
      SET statement_timeout = 0;
      SELECT pg_catalog.set_config('search_path', '', false);
      CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public;
      CREATE TABLE public.t (a integer);
      GRANT SELECT ON TABLE public.t TO PUBLIC;
      CREATE INDEX t_a ON public.t USING btree (a);
      ALTER TABLE public.t ADD CONSTRAINT c CHECK ((a > 0)) NOT VALID;
      \\unrestrict AAA
      """
    let two = """
      \\restrict BBB
      SET statement_timeout = 0;
      SET transaction_timeout = 0;
      CREATE TABLE public.t (a integer);   \n
      \\unrestrict BBB
      """
    #expect(SchemaDiff.normalize(one, full: false) == SchemaDiff.normalize(two, full: false))
    #expect(SchemaDiff.normalize(one, full: false) == "CREATE TABLE public.t (a integer);\n")
    #expect(SchemaDiff.normalize(one, full: true).contains("NOT VALID"))
    #expect(SchemaDiff.normalize(one, full: true) != SchemaDiff.normalize(two, full: true))
  }
}
