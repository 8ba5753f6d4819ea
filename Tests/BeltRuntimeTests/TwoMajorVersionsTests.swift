import Foundation
import Testing

@testable import BeltRuntime

/// Two major versions without a server: which pg_dump belt picks for a pair, and what the schema
/// pipeline does with a newer pg_dump's script (PostgreSQL 18's, loaded into 15).
@Suite struct TwoMajorVersionsTests {
  // MARK: choosing pg_dump

  @Test func pgDumpVersionOutputGivesTheMajor() {
    #expect(PGTools.parseMajor("pg_dump (PostgreSQL) 18.6\n") == 18)
    #expect(PGTools.parseMajor("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n") == 15)
    #expect(PGTools.parseMajor("pg_dump (PostgreSQL) 9.6.24") == 9)
    #expect(PGTools.parseMajor("pg_dump (PostgreSQL) 19devel") == 19)
    #expect(PGTools.parseMajor("no version here") == nil)
  }

  let found = [
    PGTools.ToolDirectory(path: "/opt/pg15/bin", major: 15),
    PGTools.ToolDirectory(path: "/usr/lib/postgresql/18/bin", major: 18),
    PGTools.ToolDirectory(path: "/usr/bin", major: 18),
    PGTools.ToolDirectory(path: "/usr/lib/postgresql/16/bin", major: 16),
  ]

  @Test func theNewestPgDumpIsChosenTheFirstOfEqualMajors() throws {
    let t = try PGTools.chooseDumpTool(found, servers: [("src", 15), ("dst", 18)])
    #expect(t == PGTools.ToolDirectory(path: "/usr/lib/postgresql/18/bin", major: 18))
    // Newest even when both servers are older: a newer pg_dump dumps older servers.
    #expect(try PGTools.chooseDumpTool(found, servers: [("src", 15), ("dst", 15)]).major == 18)
    #expect(
      try PGTools.chooseDumpTool([found[0]], servers: [("src", 15), ("dst", 15)]).path
        == "/opt/pg15/bin")
  }

  @Test func noPgDumpNewEnoughIsOneLineNamingFoundAndNeeded() {
    let old = [found[0], found[3]]
    #expect {
      try PGTools.chooseDumpTool(old, servers: [("src", 15), ("dst", 18)])
    } throws: { e in
      guard let b = e as? BeltError else { return false }
      return b.code == .preconditionFailed && !b.message.contains("\n")
        && b.message.contains("src is PostgreSQL 15, dst is PostgreSQL 18")
        && b.message.contains("pg_dump 18 or newer is needed")
        && b.message.contains(
          "found pg_dump 15 (/opt/pg15/bin), pg_dump 16 (/usr/lib/postgresql/16/bin)")
        && b.message.contains("BELT_PG_BIN")
    }
    #expect {
      try PGTools.chooseDumpTool([], servers: [("src", 15), ("dst", 15)])
    } throws: { e in
      (e as? BeltError)?.message.contains(
        "found none in $BELT_PG_BIN, /usr/lib/postgresql/*/bin or PATH") == true
    }
  }

  /// A directory with a fake `pg_dump` that prints `version`.
  func fakeBin(_ root: String, _ sub: String, version: String) throws -> String {
    let dir = root + "/" + sub
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let exe = dir + "/pg_dump"
    try "#!/bin/sh\necho 'pg_dump (PostgreSQL) \(version)'\n".write(
      toFile: exe, atomically: true, encoding: .utf8)
    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: exe)
    return dir
  }

  @Test func candidatesAreBeltPgBinThenTheVersionedDirectoriesThenPath() throws {
    let root = NSTemporaryDirectory() + "belt-tools-" + UUID().uuidString
    defer { try? FileManager.default.removeItem(atPath: root) }
    let versioned = root + "/usr-lib-postgresql"
    let d15 = try fakeBin(versioned, "15/bin", version: "15.20 (Debian 15.20-0+deb12u1)")
    let d18 = try fakeBin(versioned, "18/bin", version: "18.6")
    try FileManager.default.createDirectory(
      atPath: versioned + "/17/bin", withIntermediateDirectories: true)  // no pg_dump
    let explicit = try fakeBin(root, "venv/bin", version: "18.6")
    let onPath = try fakeBin(root, "path/bin", version: "16.4")
    let link = root + "/link"  // another name of onPath (/bin and /usr/bin on a merged-/usr system)
    try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: onPath)
    let env = ["BELT_PG_BIN": explicit, "PATH": "\(root)/empty:\(onPath):\(d15):\(link)"]
    let dirs = PGTools.toolDirectories(environment: env, root: versioned)
    #expect(dirs.map(\.path) == [explicit, d18, d15, onPath])  // d15 and onPath once
    #expect(dirs.map(\.major) == [18, 18, 15, 16])
    // BELT_PG_BIN wins among equal majors; an older BELT_PG_BIN loses to a newer version.
    #expect(
      try PGTools.dumpTool(servers: [("src", 15), ("dst", 18)], environment: env).path == explicit)
    let older = ["BELT_PG_BIN": onPath, "PATH": d15]
    #expect(
      try PGTools.chooseDumpTool(
        PGTools.toolDirectories(environment: older, root: versioned), servers: [("src", 15)]
      ).path == d18)
  }

  // MARK: a newer pg_dump's script

  /// The head and tail of PostgreSQL 18.6's `pg_dump --schema-only` of a PostgreSQL 15 database.
  static let pg18Dump = """
    --
    -- PostgreSQL database dump
    --

    \\restrict aWlqzDsEZuhcEDAfDEObyeSLMmeXYd4V2vzd1ZQlbwXxvjbWBQrnMn940HN87yw

    -- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
    -- Dumped by pg_dump version 18.6

    SET statement_timeout = 0;
    SET lock_timeout = 0;
    SET idle_in_transaction_session_timeout = 0;
    SET transaction_timeout = 0;
    SET client_encoding = 'UTF8';
    SET standard_conforming_strings = on;
    SELECT pg_catalog.set_config('search_path', '', false);
    SET check_function_bodies = false;
    SET xmloption = content;
    SET client_min_messages = warning;
    SET row_security = off;

    SET default_tablespace = '';

    SET default_table_access_method = heap;

    CREATE TABLE public.t (a integer NOT NULL);

    CREATE INDEX t_a ON public.t USING btree (a);

    --
    -- PostgreSQL database dump complete
    --

    \\unrestrict aWlqzDsEZuhcEDAfDEObyeSLMmeXYd4V2vzd1ZQlbwXxvjbWBQrnMn940HN87yw

    """

  @Test func setStatementsNameTheirSetting() {
    func name(_ sql: String) -> String? { SchemaScript.settingName(of: SchemaScript.split(sql)[0]) }
    #expect(name("SET transaction_timeout = 0;") == "transaction_timeout")
    #expect(name("SET SESSION Transaction_Timeout TO 0;") == "transaction_timeout")
    #expect(name("SET LOCAL \"lock_timeout\" = 0;") == "lock_timeout")
    #expect(name("SELECT pg_catalog.set_config('search_path', '', false);") == "search_path")
    #expect(name("SELECT set_config('Search_Path', '', false);") == "search_path")
    #expect(name("SET ROLE app;") == nil)
    #expect(name("SET TIME ZONE 'UTC';") == nil)
    #expect(name("SET SESSION AUTHORIZATION app;") == nil)
    #expect(name("SET myapp.flag = on;") == nil)
    #expect(name("CREATE TABLE set_config (a int);") == nil)
  }

  @Test func aPg18DumpLosesItsMetaLinesAndTheSettingsDstLacks() {
    let statements = SchemaScript.split(Self.pg18Dump)
    #expect(statements.first?.kind == .meta && statements.last?.kind == .meta)
    let names = SchemaScript.settingNames(statements)
    #expect(
      names.first == "statement_timeout" && names.contains("transaction_timeout")
        && names.contains("search_path"))
    #expect(Set(names).count == names.count)
    // What dump-schema does with a PostgreSQL 15 dst (which has no transaction_timeout).
    let kept = SchemaScript.removingSettings(["transaction_timeout"], from: statements)
    #expect(kept.count == statements.count - 1)
    let files = SchemaScript.partition(kept)
    for (name, contents) in files.renderedFiles() {
      #expect(!contents.contains("\\restrict") && !contents.contains("\\unrestrict"), "\(name)")
      #expect(!contents.contains("transaction_timeout"), "\(name)")
      #expect(contents.contains("SET lock_timeout = 0;"), "\(name)")
    }
    #expect(files.base.map(\.text).contains("CREATE TABLE public.t (a integer NOT NULL);\n"))
    #expect(
      files.indexes.filter { $0.kind != .set }.map(\.text) == [
        "CREATE INDEX t_a ON public.t USING btree (a);\n"
      ])
    // A PostgreSQL 18 dst keeps the setting.
    #expect(
      SchemaScript.partition(SchemaScript.removingSettings([], from: statements)).base.contains {
        $0.text == "SET transaction_timeout = 0;\n"
      })
  }
}
