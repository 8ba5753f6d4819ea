import Foundation
import Testing

@testable import BeltRuntime

/// remote-configs/<dc>/<db>/config.json: pairs resolved by a command (issue 16). No server needed.
@Suite struct RemoteConfigTests {
  static let side: Value = .object([
    ("host", "h"), ("ip", "10.0.0.1"), ("db", "appdb"), ("port", "5432"),
    ("root_user", .object([("name", "postgres"), ("pw", "s3cret root")])),
    ("owner_user", .object([("name", "owner"), ("pw", "s3cret owner")])),
    ("pglogical_user", .object([("name", "pglogical"), ("pw", "s3cret pgl")])),
  ])

  /// A root with `remote-configs/dc1/app/config.json` = `definition` (and `configs/` when asked).
  func store(_ definition: Value, alsoLocal: Bool = false) throws -> ConfigStore {
    let root = NSTemporaryDirectory() + "belt-remote-" + UUID().uuidString
    let s = ConfigStore(root: root)
    try FileManager.default.createDirectory(
      atPath: root + "/remote-configs/dc1/app", withIntermediateDirectories: true)
    try definition.json().write(
      toFile: s.remotePath(dc: "dc1", db: "app"), atomically: true, encoding: .utf8)
    if alsoLocal {
      try FileManager.default.createDirectory(
        atPath: root + "/configs/dc1/app", withIntermediateDirectories: true)
      try "{}".write(toFile: s.path(dc: "dc1", db: "app"), atomically: true, encoding: .utf8)
    }
    return s
  }

  func error(_ s: ConfigStore) -> String {
    do {
      _ = try s.load(dc: "dc1", db: "app")
      return "no error"
    } catch let e as BeltError {
      return e.message
    } catch {
      return "unexpected \(error)"
    }
  }

  @Test func perSideResolversAreAssembledWithTheDefinitionsFields() throws {
    let s = try store(
      .object([
        ("src_resolver_command", .from(["cat"])), ("src_resolver_config", Self.side),
        ("tables", .from(["orders"])), ("schema_name", "shop"), ("revoked_logins", .from(["app"])),
      ]))
    #expect(try s.dbs(dc: "dc1") == ["app"])
    let c = try s.load(dc: "dc1", db: "app")
    #expect(c.db == "app" && c.dc == "dc1")
    #expect(c.src?.owner.password == "s3cret owner")
    #expect(c.dst == nil)
    #expect(c.tableSubset == ["orders"] && c.schemaName == "shop")
    #expect(c.raw["revoked_logins"] == .from(["app"]))
    // belt's own edits go to the definition, which holds no resolved secret.
    #expect(c.path == s.remotePath(dc: "dc1", db: "app"))
  }

  @Test func aWholeConfigResolverAndItsEnvironment() throws {
    let whole: Value = .object([
      ("db", "app"), ("dc", "dc1"), ("src", Self.side), ("dst", Self.side),
    ])
    let s = try store(.object([("resolver_command", .from(["cat"])), ("resolver_config", whole)]))
    let c = try s.load(dc: "dc1", db: "app")
    #expect(c.dst?.root.password == "s3cret root")
    // BELT_DC, BELT_DB and BELT_SIDE reach the command; a side resolver prints one object.
    let side = Self.side.json(indent: 0).replacingOccurrences(
      of: "appdb", with: "db-$BELT_DB-$BELT_SIDE")
    let s2 = try store(
      .object([("dst_resolver_command", .from(["sh", "-c", "cat <<EOF\n\(side)\nEOF"]))]))
    #expect(try s2.load(dc: "dc1", db: "app").dst?.dbname == "db-app-dst")
    // The operator's environment reaches it too (vault and aws read their own variables).
    setenv("BELT_TEST_RESOLVER_TOKEN", "tok", 1)
    let fromEnv = Self.side.json(indent: 0).replacingOccurrences(
      of: "appdb", with: "db-$BELT_TEST_RESOLVER_TOKEN")
    let s3 = try store(
      .object([("dst_resolver_command", .from(["sh", "-c", "cat <<EOF\n\(fromEnv)\nEOF"]))]))
    #expect(try s3.load(dc: "dc1", db: "app").dst?.dbname == "db-tok")
  }

  @Test func failingResolversAreOneLineWithoutTheirOutput() throws {
    let failing = try store(
      .object([
        (
          "src_resolver_command",
          .from(["sh", "-c", "echo s3cret-out; echo s3cret-err >&2; exit 3"])
        )
      ]))
    let f = error(failing)
    #expect(
      f.contains(
        "remote-configs/dc1/app/config.json: src_resolver_command (sh) exited with status 3"),
      "\(f)")
    #expect(!f.contains("s3cret") && !f.contains("\n"), "\(f)")

    let malformed = try store(
      .object([("src_resolver_command", .from(["sh", "-c", "echo '{\"pw\": \"s3cret-pw\"'"]))]))
    let m = error(malformed)
    #expect(m.contains("printed malformed JSON (invalid at line "), "\(m)")
    #expect(!m.contains("s3cret"), "\(m)")

    let incomplete = try store(
      .object([
        ("src_resolver_command", .from(["cat"])),
        ("src_resolver_config", Self.side.setting("port", .null)),
      ]))
    let i = error(incomplete)
    #expect(i.contains("src_resolver_command") || i.contains("resolver commands"), "\(i)")
    #expect(i.contains("field src.port"), "\(i)")

    let missing = try store(.object([("resolver_command", .from(["no-such-resolver-xyz"]))]))
    #expect(error(missing).contains("command \"no-such-resolver-xyz\" not found in PATH"))

    let t0 = Date()
    let slow = try store(
      .object([("resolver_command", .from(["sleep", "30"])), ("resolver_timeout", 1)]))
    #expect(error(slow).contains("did not finish within 1 s"))
    #expect(Date().timeIntervalSince(t0) < 10)
    // The timeout stops the resolver's children as well (it runs in a process group of its own).
    let marker = NSTemporaryDirectory() + "belt-resolver-child-" + UUID().uuidString
    let forked = try store(
      .object([
        ("resolver_command", .from(["sh", "-c", "(sleep 2; touch \(marker)) & sleep 30"])),
        ("resolver_timeout", 1),
      ]))
    #expect(error(forked).contains("did not finish within 1 s"))
    Thread.sleep(forTimeInterval: 2.5)
    #expect(
      !FileManager.default.fileExists(atPath: marker), "the resolver's child outlived the timeout")
  }

  @Test func pgbeltDefinitionsAndDoubleDefinitionsAreRefusedClearly() throws {
    let python = try store(
      .object([
        ("src_resolver_path", "mycompany.resolvers.Vault"), ("src_resolver_config", .object([])),
      ]))
    let p = error(python)
    #expect(
      p.contains("names a Python resolver class") && p.contains("\"src_resolver_command\""), "\(p)")
    let both = try store(
      .object([("resolver_command", .from(["cat"])), ("src_resolver_command", .from(["cat"]))]))
    #expect(error(both).contains("not both"))
    let none = try store(.object([("tables", .null)]))
    #expect(error(none).contains("needs \"resolver_command\""))
    let twice = try store(.object([("resolver_command", .from(["cat"]))]), alsoLocal: true)
    let t = error(twice)
    #expect(
      t.contains("defined twice") && t.contains("configs/dc1/app/config.json")
        && t.contains("remote-configs/dc1/app/config.json"), "\(t)")
  }
}
