import CSignals
import Foundation
import OrderedCollections

/// `remote-configs/<dc>/<db>/config.json`: a pair whose credentials live in a secret store.
///
/// pgbelt names a Python resolver class there; belt runs a **command** instead, without a
/// shell and with a timeout:
/// - `"resolver_command": [argv...]` prints the whole config as JSON, or
/// - `"src_resolver_command"` / `"dst_resolver_command"` print one side's object each; the pair
///   is then assembled from the definition (`tables`, `sequences`, `schema_name`,
///   `exclude_users`, `exclude_patterns`) like pgbelt's per-side mode.
///
/// The command gets `resolver_config` (or that side's `src_resolver_config` /
/// `dst_resolver_config`) as JSON on stdin, `{}` when there is none, and `BELT_DC`, `BELT_DB`
/// and `BELT_SIDE` in its environment. What it prints is validated exactly like a config file
/// and kept in memory only: belt writes its own keys (`revoked_logins`, ...) into the
/// definition file, never a resolved secret. A resolver that fails is one line naming the file
/// and the exit status, never its output, which may hold secrets.
enum RemoteConfig {
  /// Keys that configure resolution rather than the pair.
  static let resolverKeys: Set<String> = [
    "resolver_command", "src_resolver_command", "dst_resolver_command", "resolver_config",
    "src_resolver_config",
    "dst_resolver_config", "resolver_timeout", "resolver_path", "src_resolver_path",
    "dst_resolver_path",
  ]
  /// How long a resolver may run, unless `resolver_timeout` (seconds) says otherwise.
  static let defaultTimeout: Double = 30
  /// The most a resolver may print.
  static let maxOutput = 4 << 20

  /// Resolves the definition at `path` into a validated config.
  static func load(path: String, dc: String, db: String) throws -> MigrationConfig {
    guard let data = FileManager.default.contents(atPath: path),
      let text = String(data: data, encoding: .utf8)
    else {
      throw BeltError(.ioError, "\(path): cannot be read", dc: dc, db: db)
    }
    let def: Value
    do { def = try JSONParser.parse(text) } catch let e as JSONParser.SyntaxError {
      throw BeltError(.configInvalid, "\(path): \(e.description)", dc: dc, db: db)
    }
    guard case .object(let fields) = def else {
      throw BeltError(.configInvalid, "\(path): must be a JSON object", dc: dc, db: db)
    }
    let python = ["resolver_path", "src_resolver_path", "dst_resolver_path"].filter {
      def[$0] != nil && def[$0] != .null
    }
    if !python.isEmpty {
      throw BeltError(
        .configInvalid,
        "\(path): \(python.joined(separator: ", ")) names a Python resolver class, which belt cannot run; replace it with "
          + "\"resolver_command\": [argv...] (a command that prints the whole config as JSON) or \"src_resolver_command\" / "
          + "\"dst_resolver_command\" (each prints one side's object), see the README", dc: dc,
        db: db)
    }
    let whole = try argv(def, "resolver_command", path: path, dc: dc, db: db)
    let src = try argv(def, "src_resolver_command", path: path, dc: dc, db: db)
    let dst = try argv(def, "dst_resolver_command", path: path, dc: dc, db: db)
    if whole != nil, src != nil || dst != nil {
      throw BeltError(
        .configInvalid,
        "\(path): give either resolver_command or src_resolver_command/dst_resolver_command, not both",
        dc: dc, db: db)
    }
    if whole == nil, src == nil, dst == nil {
      throw BeltError(
        .configInvalid,
        "\(path): needs \"resolver_command\", or \"src_resolver_command\" and/or \"dst_resolver_command\"",
        dc: dc, db: db)
    }
    var timeout = defaultTimeout
    if let t = def["resolver_timeout"], t != .null {
      guard let n = t.intValue ?? (t.stringValue.flatMap { Int($0) }), n > 0 else {
        throw BeltError(
          .configInvalid, "\(path): field resolver_timeout must be a positive number of seconds",
          dc: dc, db: db)
      }
      timeout = Double(n)
    }
    // The definition's own keys (tables, ..., and what belt wrote: revoked_logins).
    let own = fields.filter { !resolverKeys.contains($0.key) }
    let resolved: Value
    let label: String
    if let whole {
      let out = try run(
        whole, input: def["resolver_config"] ?? .null, key: "resolver_command", side: nil,
        timeout: timeout, path: path, dc: dc, db: db)
      guard case .object(var got) = out else {
        throw BeltError(
          .configInvalid, "\(path): resolver_command did not print a JSON object", dc: dc, db: db)
      }
      for (k, v) in own where got[k] == nil { got[k] = v }
      resolved = .object(got)
      label = "\(path) (as printed by resolver_command)"
    } else {
      var cfg: OrderedDictionary<String, Value> = [
        "db": def["db"] ?? .string(db), "dc": def["dc"] ?? .string(dc),
      ]
      for (side, cmd) in [("src", src), ("dst", dst)] {
        guard let cmd else {
          cfg[side] = .null
          continue
        }
        let out = try run(
          cmd, input: def["\(side)_resolver_config"] ?? .null, key: "\(side)_resolver_command",
          side: side, timeout: timeout,
          path: path, dc: dc, db: db)
        cfg[side] = out
      }
      for (k, v) in own where cfg[k] == nil { cfg[k] = v }
      resolved = .object(cfg)
      label = "\(path) (with the sides printed by its resolver commands)"
    }
    var config = try ConfigStore.parse(resolved.json(indent: 0), path: label, dc: dc, db: db)
    // belt's own edits (revoked_logins, ...) go to the definition, which holds no secret.
    config.path = path
    return config
  }

  /// An argv list, or nil when the key is absent.
  static func argv(_ def: Value, _ key: String, path: String, dc: String, db: String) throws
    -> [String]?
  {
    guard let v = def[key], v != .null else { return nil }
    guard case .array(let items) = v, !items.isEmpty,
      items.allSatisfy({ ($0.stringValue ?? "").isEmpty == false })
    else {
      throw BeltError(
        .configInvalid,
        "\(path): field \(key) must be a non-empty list of strings (the command and its arguments, no shell)",
        dc: dc, db: db)
    }
    return items.compactMap(\.stringValue)
  }

  /// What each resolver printed, in memory for the life of the process (a cutover runs many
  /// operations; the secret store is asked once). Keyed by file, command and input, so an edited
  /// definition asks again.
  nonisolated(unsafe) private static var cache: [String: Value] = [:]
  private static let cacheLock = NSLock()

  /// Runs one resolver (once per process) and parses what it prints.
  static func run(
    _ argv: [String], input: Value, key: String, side: String?, timeout: Double, path: String,
    dc: String, db: String
  ) throws -> Value {
    let cacheKey = [path, key, argv.joined(separator: "\u{0}"), input.json(indent: 0)].joined(
      separator: "\u{1}")
    cacheLock.lock()
    let hit = cache[cacheKey]
    cacheLock.unlock()
    if let hit { return hit }
    let value = try runUncached(
      argv, input: input, key: key, side: side, timeout: timeout, path: path, dc: dc, db: db)
    cacheLock.lock()
    cache[cacheKey] = value
    cacheLock.unlock()
    return value
  }

  static func runUncached(
    _ argv: [String], input: Value, key: String, side: String?, timeout: Double, path: String,
    dc: String, db: String
  ) throws -> Value {
    var cmd = ExternalCommand(argv: argv)
    // The operator's environment: a resolver (vault, aws) reads its own variables from it.
    cmd.inheritsEnvironment = true
    cmd.environment = ["BELT_DC": dc, "BELT_DB": db, "BELT_SIDE": side ?? ""]
    cmd.stdin = (input == .null ? "{}" : input.json(indent: 0)) + "\n"
    cmd.timeout = timeout
    cmd.maxOutput = maxOutput + 1
    let r: ExternalCommand.Outcome
    do {
      r = try cmd.run { belt_interrupted() != 0 }
    } catch let e as BeltError where e.code == .notFound {
      throw BeltError(
        .configInvalid, "\(path): \(key): command \(Value.jsonQuote(argv[0])) not found in PATH",
        dc: dc, db: db)
    } catch {
      throw BeltError(
        .configInvalid,
        "\(path): \(key): cannot start \(Value.jsonQuote(argv[0])): \(BeltError.wrap(error).message)",
        dc: dc, db: db)
    }
    if r.interrupted {
      throw BeltError(
        .interrupted, "interrupted by the user (Ctrl-C) while \(key) (\(argv[0])) ran", dc: dc,
        db: db)
    }
    if r.timedOut {
      throw BeltError(
        .timeout,
        "\(path): \(key) (\(argv[0])) did not finish within \(Int(timeout)) s (resolver_timeout)",
        dc: dc, db: db)
    }
    guard r.ok else {
      let how =
        r.status.map { "exited with status \($0)" } ?? "was killed by signal \(r.signal ?? 0)"
      throw BeltError(
        .configInvalid,
        "\(path): \(key) (\(argv[0])) \(how); its output is not shown (it may hold secrets)",
        dc: dc, db: db)
    }
    guard !r.stdoutTruncated, !r.stdoutInvalidUTF8 else {
      throw BeltError(
        .configInvalid, "\(path): \(key) (\(argv[0])) printed no valid UTF-8 JSON", dc: dc, db: db)
    }
    do {
      return try JSONParser.parse(r.stdout)
    } catch let e as JSONParser.SyntaxError {
      // The position only: the text may hold secrets.
      throw BeltError(
        .configInvalid,
        "\(path): \(key) (\(argv[0])) printed malformed JSON (invalid at line \(e.line), column \(e.column)); its output is not shown",
        dc: dc, db: db)
    }
  }
}
