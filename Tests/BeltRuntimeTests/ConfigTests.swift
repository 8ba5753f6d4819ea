import CLibPQ
import Foundation
import Testing

@testable import BeltRuntime

let validConfig = """
  {
    "db": "app", "dc": "testdc",
    "src": {"host": "h", "ip": "10.0.0.1", "db": "appdb", "port": "5432",
            "root_user": {"name": "postgres", "pw": "r00t"},
            "owner_user": {"name": "owner", "pw": "owner#password"},
            "pglogical_user": {"name": "pglogical", "pw": "pglogicalpassword"}},
    "dst": null,
    "tables": ["UsersCapital"], "sequences": null, "schema_name": "public",
    "exclude_users": null, "exclude_patterns": ["%repuser%"], "future_key": {"kept": true}
  }
  """

func parseError(_ text: String) -> String {
  do {
    _ = try ConfigStore.parse(text, path: "configs/testdc/app/config.json")
    return "no error"
  } catch let e as BeltError {
    #expect(e.code == .configInvalid)
    return e.message
  } catch {
    return "unexpected \(error)"
  }
}

@Suite struct ConfigTests {
  @Test func parsesAPgbeltConfig() throws {
    let c = try ConfigStore.parse(validConfig, path: "x")
    #expect(c.db == "app" && c.dc == "testdc")
    #expect(c.src?.port == 5432)
    #expect(c.src?.owner.password == "owner#password")
    #expect(c.dst == nil)
    #expect(c.tableSubset == ["UsersCapital"])
    #expect(c.excludePatterns == ["%repuser%"])
    #expect(c.schemaName == "public")
    #expect(c.raw["future_key"] != nil)
  }

  /// pgbelt reads configs with Python's json: a repeated key keeps its last value. Objects are
  /// ordered dictionaries: the key stays where it first stood, and the output has it once.
  @Test func aRepeatedKeyKeepsItsLastValueInItsFirstPlace() throws {
    let text = validConfig.replacingOccurrences(
      of: "\"schema_name\": \"public\"",
      with: "\"schema_name\": \"old\", \"schema_name\": \"public\"")
    let c = try ConfigStore.parse(text, path: "x")
    #expect(c.schemaName == "public")
    let doc = try JSONParser.parse("{\"a\": 1, \"b\": 2, \"a\": 3}")
    #expect(doc.json(indent: 0) == "{\"a\":3,\"b\":2}")
    #expect(Value.object([("a", 1), ("b", 2), ("a", 3)]) == doc)
    #expect(doc.setting("c", 4).setting("a", 5).json(indent: 0) == "{\"a\":5,\"b\":2,\"c\":4}")
  }

  @Test func portMayBeANumber() throws {
    let c = try ConfigStore.parse(
      validConfig.replacingOccurrences(of: "\"port\": \"5432\"", with: "\"port\": 5433"), path: "x")
    #expect(c.src?.port == 5433)
  }

  @Test func eachMalformedInputHasItsOwnMessage() {
    let f = "configs/testdc/app/config.json"
    #expect(
      parseError("{\"db\": \"app\",")
        == "\(f): invalid JSON at line 1, column 14: expected a string key")
    #expect(parseError("[1]") == "\(f): must be a JSON object")
    #expect(
      parseError(validConfig.replacingOccurrences(of: "\"db\": \"app\", ", with: ""))
        == "\(f): field db is missing")
    #expect(
      parseError(validConfig.replacingOccurrences(of: "\"db\": \"app\"", with: "\"db\": \"\""))
        == "\(f): field db must not be empty")
    #expect(
      parseError(validConfig.replacingOccurrences(of: "\"dc\": \"testdc\"", with: "\"dc\": 7"))
        == "\(f): field dc must be a string, got a number")
    #expect(
      parseError(validConfig.replacingOccurrences(of: "\"port\": \"5432\"", with: "\"port\": true"))
        == "\(f): field src.port must be a port number (string or number), got a boolean")
    #expect(
      parseError(
        validConfig.replacingOccurrences(of: "\"port\": \"5432\"", with: "\"port\": \"54x\""))
        == "\(f): field src.port must be a port number between 1 and 65535, got \"54x\"")
    #expect(
      parseError(validConfig.replacingOccurrences(of: "\"port\": \"5432\"", with: "\"port\": 0"))
        == "\(f): field src.port must be a port number between 1 and 65535, got 0")
    #expect(
      parseError(
        validConfig.replacingOccurrences(of: "\"port\": \"5432\"", with: "\"port\": 70000"))
        == "\(f): field src.port must be a port number between 1 and 65535, got 70000")
    #expect(
      parseError(
        validConfig.replacingOccurrences(of: "\"port\": \"5432\"", with: "\"port\": 5432.5"))
        == "\(f): field src.port must be a port number between 1 and 65535, got 5432.5")
    #expect(
      parseError(validConfig.replacingOccurrences(of: "\"ip\": \"10.0.0.1\", ", with: ""))
        == "\(f): field src.ip is missing")
    #expect(
      parseError(
        validConfig.replacingOccurrences(
          of: "{\"name\": \"owner\", \"pw\": \"owner#password\"}", with: "\"owner\""))
        == "\(f): field src.owner_user must be an object {\"name\", \"pw\"}, got a string")
    #expect(
      parseError(validConfig.replacingOccurrences(of: "\"pw\": \"r00t\"", with: "\"pw\": \"\""))
        == "\(f): field src.root_user.pw must not be empty")
    #expect(
      parseError(
        validConfig.replacingOccurrences(of: "[\"UsersCapital\"]", with: "\"UsersCapital\""))
        == "\(f): field tables must be a list of strings or null, got a string")
    #expect(
      parseError(validConfig.replacingOccurrences(of: "[\"UsersCapital\"]", with: "[\"\"]"))
        == "\(f): field tables[0] must be a non-empty string, got a string")
  }

  @Test func unknownDcAndDbAreReported() throws {
    let root = NSTemporaryDirectory() + "belt-cfg-\(UUID().uuidString)"
    try FileManager.default.createDirectory(
      atPath: root + "/configs/dc1/app", withIntermediateDirectories: true)
    try validConfig.write(
      toFile: root + "/configs/dc1/app/config.json", atomically: true, encoding: .utf8)
    let store = ConfigStore(root: root)
    #expect(try store.dbs(dc: "dc1") == ["app"])
    #expect(
      throws: BeltError(
        .notFound,
        "unknown dc \"nope\": no directory \(root)/configs/nope (nor \(root)/remote-configs/nope)",
        dc: "nope")
    ) { try store.dbs(dc: "nope") }
    #expect(
      throws: BeltError(
        .notFound, "unknown db \"x\" in dc \"dc1\": no file \(root)/configs/dc1/x/config.json",
        dc: "dc1", db: "x")
    ) {
      try store.load(dc: "dc1", db: "x")
    }
    #expect(throws: BeltError.self) { try store.load(dc: "../etc", db: "x") }
  }

  /// The path names the pair; a file whose "dc" or "db" disagrees is refused, naming both.
  @Test func aConfigWhoseNamesDisagreeWithItsPathIsRefused() throws {
    let root = NSTemporaryDirectory() + "belt-cfg-\(UUID().uuidString)"
    try FileManager.default.createDirectory(
      atPath: root + "/configs/dc1/billing", withIntermediateDirectories: true)
    try validConfig.write(
      toFile: root + "/configs/dc1/billing/config.json", atomically: true, encoding: .utf8)
    let store = ConfigStore(root: root)
    do {
      _ = try store.load(dc: "dc1", db: "billing")
      Issue.record("loaded a config whose dc and db disagree with its path")
    } catch let e as BeltError {
      #expect(e.code == .configInvalid)
      #expect(
        e.message
          == "\(root)/configs/dc1/billing/config.json: \"dc\" is \"testdc\" but the file is in dc \"dc1\" and \"db\" is \"app\" but the file is in db directory \"billing\"; make them agree"
      )
    }
  }

  @Test func interruptedSaveLeavesTheOldFileIntact() throws {
    let root = NSTemporaryDirectory() + "belt-cfg-\(UUID().uuidString)"
    let store = ConfigStore(root: root)
    let path = store.path(dc: "dc1", db: "app")
    let original = try ConfigStore.parse(validConfig, path: path).raw
    try store.save(original, to: path)
    chmod(path, 0o640)
    let before = try String(contentsOfFile: path, encoding: .utf8)
    AtomicFile.faultBeforeRename = { true }
    defer { AtomicFile.faultBeforeRename = nil }
    #expect(throws: BeltError.self) {
      try store.save(original.setting("schema_name", "changed"), to: path)
    }
    #expect(try String(contentsOfFile: path, encoding: .utf8) == before)
    let leftovers = try FileManager.default.contentsOfDirectory(
      atPath: (path as NSString).deletingLastPathComponent)
    #expect(leftovers == ["config.json"])
    AtomicFile.faultBeforeRename = nil
    try store.save(original.setting("schema_name", "changed").setting("dc", "dc1"), to: path)
    let reloaded = try store.load(dc: "dc1", db: "app")
    #expect(reloaded.schemaName == "changed")
    #expect(reloaded.raw["future_key"] != nil)  // unknown keys survive a save
    var st = stat()
    stat(path, &st)
    #expect(st.st_mode & 0o777 == 0o640)  // mode kept
  }

  @Test func hostilePasswordsRoundTripThroughConninfo() throws {
    for pw in [
      "o'wn er", "back\\slash", "#hash@at", "' OR 1=1 --", "tab\tand space ", "ünï€ode", "\\'",
    ] {
      let server = ServerConfig(
        host: "db.example", ip: "10.1.2.3", dbname: "my db", port: 5432,
        root: Credentials(name: "root user", password: pw),
        owner: Credentials(name: "o", password: "p"),
        replication: Credentials(name: "pgl", password: "x"))
      let info = server.conninfo(.root)
      var err: UnsafeMutablePointer<CChar>? = nil
      guard let opts = PQconninfoParse(info, &err) else {
        Issue.record("libpq could not parse a conninfo for password \(pw)")
        continue
      }
      defer { PQconninfoFree(opts) }
      var parsed: [String: String] = [:]
      var p = opts
      while let kw = p.pointee.keyword {
        if let v = p.pointee.val { parsed[String(cString: kw)] = String(cString: v) }
        p += 1
      }
      #expect(parsed["password"] == pw)
      #expect(parsed["user"] == "root user")
      #expect(parsed["dbname"] == "my db")
      #expect(parsed["hostaddr"] == "10.1.2.3")
      #expect(!server.credentials(.root).description.contains(pw))
    }
  }

  @Test func durationsParse() throws {
    #expect(try Durations.parse("30s") == 30)
    #expect(try Durations.parse("5m") == 300)
    #expect(try Durations.parse("1h30m") == 5400)
    #expect(try Durations.parse("250ms") == 0.25)
    #expect(try Durations.parse("2.5") == 2.5)
    #expect(throws: BeltError.self) { try Durations.parse("5 minutes") }
  }

  @Test func jsonOutputEscapes() throws {
    let v: Value = .object([("a", "q\"\\\n"), ("b", .array([.null, true, 1, .double(0.5)]))])
    #expect(v.json(indent: 0) == "{\"a\":\"q\\\"\\\\\\n\",\"b\":[null,true,1,0.5]}")
    #expect(try JSONParser.parse(v.json()) == v)
  }
}
