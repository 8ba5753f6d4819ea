import Foundation

/// Finds, loads, validates and saves `configs/<dc>/<db>/config.json` under a root directory.
public struct ConfigStore: Sendable {
  /// The directory that holds `configs/` (and where `schemas/` is written).
  public var root: String

  public init(root: String) {
    self.root = root
  }

  /// `configs/<dc>` under the root.
  public func dcDirectory(_ dc: String) -> String { "\(root)/configs/\(dc)" }

  /// The config file path of one pair.
  public func path(dc: String, db: String) -> String { "\(root)/configs/\(dc)/\(db)/config.json" }

  /// `remote-configs/<dc>` under the root (pairs whose credentials a resolver command prints).
  public func remoteDCDirectory(_ dc: String) -> String { "\(root)/remote-configs/\(dc)" }

  /// The remote-config definition path of one pair.
  public func remotePath(dc: String, db: String) -> String {
    "\(root)/remote-configs/\(dc)/\(db)/config.json"
  }

  /// The schema files directory of one pair, `schemas/<dc>/<db>`.
  public func schemaDirectory(dc: String, db: String) -> String { "\(root)/schemas/\(dc)/\(db)" }

  /// Rejects names that would escape the configs directory.
  static func checkName(_ name: String, what: String) throws {
    if name.isEmpty || name == "." || name == ".." || name.contains("/") || name.contains("\0") {
      throw BeltError(
        .notFound, "invalid \(what) name \(Value.jsonQuote(name)): a name, not a path")
    }
  }

  /// The names of every database pair in a dc, sorted.
  /// - Throws: ``BeltError`` `not_found` when the dc directory does not exist or holds no pair
  ///   (a dc is named to act on its databases: none is a mistake, never "nothing to do").
  public func dbs(dc: String) throws -> [String] {
    try checkDC(dc)
    let dir = dcDirectory(dc)
    let remote = remoteDCDirectory(dc)
    // The union of both places, like pgbelt (a pair in both is refused when it is loaded).
    let local = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
      .filter { FileManager.default.fileExists(atPath: path(dc: dc, db: $0)) }
    let resolved = ((try? FileManager.default.contentsOfDirectory(atPath: remote)) ?? [])
      .filter { FileManager.default.fileExists(atPath: remotePath(dc: dc, db: $0)) }
    guard !local.isEmpty || !resolved.isEmpty else {
      throw BeltError(
        .notFound, "dc \"\(dc)\" has no databases: no \(dir)/<db>/config.json", dc: dc)
    }
    return Array(Set(local).union(resolved)).sorted()
  }

  /// - Throws: ``BeltError`` `not_found` unless `dc` is a directory of configs/ or remote-configs/
  ///   (it may hold no pair yet).
  public func checkDC(_ dc: String) throws {
    try Self.checkName(dc, what: "dc")
    func isDirectory(_ d: String) -> Bool {
      var isDir: ObjCBool = false
      return FileManager.default.fileExists(atPath: d, isDirectory: &isDir) && isDir.boolValue
    }
    guard isDirectory(dcDirectory(dc)) || isDirectory(remoteDCDirectory(dc)) else {
      throw BeltError(
        .notFound,
        "unknown dc \"\(dc)\": no directory \(dcDirectory(dc)) (nor \(remoteDCDirectory(dc)))",
        dc: dc)
    }
  }

  /// Loads and validates one pair's config.
  /// - Throws: ``BeltError`` naming the file and the field.
  public func load(dc: String, db: String) throws -> MigrationConfig {
    try Self.checkName(dc, what: "dc")
    try Self.checkName(db, what: "db")
    let file = path(dc: dc, db: db)
    let remote = remotePath(dc: dc, db: db)
    if FileManager.default.fileExists(atPath: remote) {
      if FileManager.default.fileExists(atPath: file) {
        throw BeltError(
          .configInvalid,
          "pair \(dc)/\(db) is defined twice: \(file) and \(remote); keep one of them", dc: dc,
          db: db)
      }
      return try Self.checkIdentity(RemoteConfig.load(path: remote, dc: dc, db: db), dc: dc, db: db)
    }
    guard FileManager.default.fileExists(atPath: file) else {
      try checkDC(dc)
      throw BeltError(
        .notFound, "unknown db \"\(db)\" in dc \"\(dc)\": no file \(file)", dc: dc, db: db)
    }
    guard let data = FileManager.default.contents(atPath: file) else {
      throw BeltError(.ioError, "\(file): cannot be read", dc: dc, db: db)
    }
    guard let text = String(data: data, encoding: .utf8) else {
      throw BeltError(.configInvalid, "\(file): not valid UTF-8", dc: dc, db: db)
    }
    return try Self.checkIdentity(Self.parse(text, path: file, dc: dc, db: db), dc: dc, db: db)
  }

  /// A pair is named by its path: `configs/<dc>/<db>/`. A file whose "dc" or "db" field says
  /// otherwise (copied from another pair and not edited, say) would make belt reload another
  /// pair's config and write another pair's schema files, so it is refused, naming both.
  static func checkIdentity(_ c: MigrationConfig, dc: String, db: String) throws -> MigrationConfig
  {
    var wrong: [String] = []
    if c.dc != dc {
      wrong.append(
        "\"dc\" is \(Value.jsonQuote(c.dc)) but the file is in dc \(Value.jsonQuote(dc))")
    }
    if c.db != db {
      wrong.append(
        "\"db\" is \(Value.jsonQuote(c.db)) but the file is in db directory \(Value.jsonQuote(db))")
    }
    guard wrong.isEmpty else {
      throw BeltError(
        .configInvalid, "\(c.path): \(wrong.joined(separator: " and ")); make them agree", dc: dc,
        db: db)
    }
    return c
  }

  /// Parses and validates config text.
  public static func parse(_ text: String, path: String, dc: String? = nil, db: String? = nil)
    throws -> MigrationConfig
  {
    let raw: Value
    do {
      raw = try JSONParser.parse(text)
    } catch let e as JSONParser.SyntaxError {
      throw BeltError(.configInvalid, "\(path): \(e.description)", dc: dc, db: db)
    }
    let v = FieldReader(path: path, dc: dc, db: db)
    guard case .object = raw else { throw v.fail("", "must be a JSON object") }
    let cfgDB = try v.requiredString(raw, "db")
    let cfgDC = try v.requiredString(raw, "dc")
    return MigrationConfig(
      path: path, raw: raw, db: cfgDB, dc: cfgDC,
      src: try v.server(raw, "src"), dst: try v.server(raw, "dst"),
      tables: try v.stringList(raw, "tables"), sequences: try v.stringList(raw, "sequences"),
      schemaName: try v.optionalString(raw, "schema_name") ?? "public",
      excludeUsers: try v.stringList(raw, "exclude_users") ?? [],
      excludePatterns: try v.stringList(raw, "exclude_patterns") ?? [],
      pgbouncer: try v.pgbouncer(raw), engine: try v.engine(raw))
  }

  /// Writes a config atomically (see ``AtomicFile``), keeping the existing file's mode (0600 for
  /// a new file: it holds passwords) and, over an existing file, the bytes of every top-level
  /// key that did not change (see ``ConfigEdit``). The one way belt writes a config.
  public func save(_ value: Value, to file: String) throws {
    let existing = FileManager.default.contents(atPath: file).flatMap {
      String(data: $0, encoding: .utf8)
    }
    try AtomicFile.write(ConfigEdit.text(for: value, over: existing), to: file)
  }

  /// Sets one top-level key of the config stored at `file` (appended when new), through ``save(_:to:)``.
  /// - Throws: ``BeltError`` naming the file when it cannot be read or is not valid JSON.
  public func setTopLevel(_ key: String, _ value: Value, file: String) throws {
    guard let data = FileManager.default.contents(atPath: file),
      let text = String(data: data, encoding: .utf8)
    else {
      throw BeltError(.ioError, "\(file): cannot be read")
    }
    let current: Value
    do { current = try JSONParser.parse(text) } catch {
      throw BeltError(.configInvalid, "\(file): \(error)")
    }
    try save(current.setting(key, value), to: file)
  }
}

/// Reads fields with messages that name the file and the dotted field path.
struct FieldReader {
  var path: String
  var dc: String?
  var db: String?

  func fail(_ field: String, _ what: String) -> BeltError {
    let f = field.isEmpty ? "" : "field \(field) "
    return BeltError(.configInvalid, "\(path): \(f)\(what)", dc: dc, db: db)
  }

  static func kind(_ v: Value) -> String {
    switch v {
    case .null: return "null"
    case .bool: return "a boolean"
    case .int, .double: return "a number"
    case .string: return "a string"
    case .array: return "an array"
    case .object: return "an object"
    }
  }

  func requiredString(_ obj: Value, _ key: String, prefix: String = "") throws -> String {
    let name = prefix + key
    guard let v = obj[key] else { throw fail(name, "is missing") }
    guard case .string(let s) = v else { throw fail(name, "must be a string, got \(Self.kind(v))") }
    if s.isEmpty { throw fail(name, "must not be empty") }
    return s
  }

  /// `"engine"`: absent or null is pglogical (pgbelt's configs).
  func engine(_ obj: Value) throws -> EngineKind {
    guard let name = try optionalString(obj, "engine") else { return .pglogical }
    guard let kind = EngineKind(rawValue: name) else {
      throw fail(
        "engine",
        "must be one of \(EngineKind.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")), got \(Value.jsonQuote(name))"
      )
    }
    return kind
  }

  func optionalString(_ obj: Value, _ key: String) throws -> String? {
    guard let v = obj[key], !v.isNull else { return nil }
    guard case .string(let s) = v else { throw fail(key, "must be a string, got \(Self.kind(v))") }
    if s.isEmpty { throw fail(key, "must not be empty") }
    return s
  }

  func stringList(_ obj: Value, _ key: String) throws -> [String]? {
    guard let v = obj[key], !v.isNull else { return nil }
    guard case .array(let items) = v else {
      throw fail(key, "must be a list of strings or null, got \(Self.kind(v))")
    }
    return try items.enumerated().map { i, item in
      guard case .string(let s) = item, !s.isEmpty else {
        throw fail("\(key)[\(i)]", "must be a non-empty string, got \(Self.kind(item))")
      }
      return s
    }
  }

  func server(_ obj: Value, _ key: String) throws -> ServerConfig? {
    guard let v = obj[key], !v.isNull else { return nil }
    guard case .object = v else {
      throw fail(key, "must be an object or null, got \(Self.kind(v))")
    }
    let p = key + "."
    let portValue = v["port"]
    let port: Int
    switch portValue {
    case .none: throw fail(p + "port", "is missing")
    case .some(.string(let s)):
      guard let n = Int(s.trimmingCharacters(in: .whitespaces)), (1...65535).contains(n) else {
        throw fail(
          p + "port", "must be a port number between 1 and 65535, got \(Value.jsonQuote(s))")
      }
      port = n
    case .some(let other):
      switch other {
      case .int, .double:
        guard let n = other.intValue, (1...65535).contains(n) else {
          throw fail(p + "port", "must be a port number between 1 and 65535, got \(other.display)")
        }
        port = n
      default:
        throw fail(p + "port", "must be a port number (string or number), got \(Self.kind(other))")
      }
    }
    return ServerConfig(
      host: try requiredString(v, "host", prefix: p), ip: try requiredString(v, "ip", prefix: p),
      dbname: try requiredString(v, "db", prefix: p), port: port,
      root: try user(v, "root_user", prefix: p), owner: try user(v, "owner_user", prefix: p),
      replication: try user(v, "pglogical_user", prefix: p))
  }

  func pgbouncer(_ obj: Value) throws -> PgBouncerConfig? {
    guard let v = obj["pgbouncer"], !v.isNull else { return nil }
    guard case .object = v else {
      throw fail("pgbouncer", "must be an object or null, got \(Self.kind(v))")
    }
    let port: Int
    switch v["port"] {
    case .none: throw fail("pgbouncer.port", "is missing")
    case .some(let p):
      guard
        let n = p.intValue
          ?? p.stringValue.flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }),
        (1...65535).contains(n)
      else {
        throw fail("pgbouncer.port", "must be a port number between 1 and 65535")
      }
      port = n
    }
    var file: String? = nil
    if let f = v["databases_file"], !f.isNull {
      guard let s = f.stringValue, s.hasPrefix("/") else {
        throw fail(
          "pgbouncer.databases_file",
          "must be an absolute path (the file pgbouncer.ini includes) or null")
      }
      file = s
    }
    return PgBouncerConfig(
      host: try requiredString(v, "host", prefix: "pgbouncer."), port: port,
      admin: try user(v, "admin_user", prefix: "pgbouncer."),
      database: try requiredString(v, "database", prefix: "pgbouncer."),
      databasesFile: file)
  }

  func user(_ obj: Value, _ key: String, prefix: String) throws -> Credentials {
    let name = prefix + key
    guard let v = obj[key] else { throw fail(name, "is missing") }
    guard case .object = v else {
      throw fail(name, "must be an object {\"name\", \"pw\"}, got \(Self.kind(v))")
    }
    return Credentials(
      name: try requiredString(v, "name", prefix: name + "."),
      password: try requiredString(v, "pw", prefix: name + "."))
  }
}
