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
    "resolver_command", "src_resolver_command", "dst_resolver_command", "resolver_config", "src_resolver_config",
    "dst_resolver_config", "resolver_timeout", "resolver_path", "src_resolver_path", "dst_resolver_path",
  ]
  /// How long a resolver may run, unless `resolver_timeout` (seconds) says otherwise.
  static let defaultTimeout: Double = 30
  /// The most a resolver may print.
  static let maxOutput = 4 << 20

  /// Resolves the definition at `path` into a validated config.
  static func load(path: String, dc: String, db: String) throws -> MigrationConfig {
    guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
      throw BeltError(.ioError, "\(path): cannot be read", dc: dc, db: db)
    }
    let def: Value
    do { def = try JSONParser.parse(text) } catch let e as JSONParser.SyntaxError {
      throw BeltError(.configInvalid, "\(path): \(e.description)", dc: dc, db: db)
    }
    guard case .object(let fields) = def else {
      throw BeltError(.configInvalid, "\(path): must be a JSON object", dc: dc, db: db)
    }
    let python = ["resolver_path", "src_resolver_path", "dst_resolver_path"].filter { def[$0] != nil && def[$0] != .null }
    if !python.isEmpty {
      throw BeltError(
        .configInvalid,
        "\(path): \(python.joined(separator: ", ")) names a Python resolver class, which belt cannot run; replace it with "
          + "\"resolver_command\": [argv...] (a command that prints the whole config as JSON) or \"src_resolver_command\" / "
          + "\"dst_resolver_command\" (each prints one side's object), see the README", dc: dc, db: db)
    }
    let whole = try argv(def, "resolver_command", path: path, dc: dc, db: db)
    let src = try argv(def, "src_resolver_command", path: path, dc: dc, db: db)
    let dst = try argv(def, "dst_resolver_command", path: path, dc: dc, db: db)
    if whole != nil, src != nil || dst != nil {
      throw BeltError(
        .configInvalid, "\(path): give either resolver_command or src_resolver_command/dst_resolver_command, not both", dc: dc, db: db)
    }
    if whole == nil, src == nil, dst == nil {
      throw BeltError(
        .configInvalid, "\(path): needs \"resolver_command\", or \"src_resolver_command\" and/or \"dst_resolver_command\"", dc: dc, db: db)
    }
    var timeout = defaultTimeout
    if let t = def["resolver_timeout"], t != .null {
      guard let n = t.intValue ?? (t.stringValue.flatMap { Int($0) }), n > 0 else {
        throw BeltError(.configInvalid, "\(path): field resolver_timeout must be a positive number of seconds", dc: dc, db: db)
      }
      timeout = Double(n)
    }
    // The definition's own keys (tables, ..., and what belt wrote: revoked_logins).
    let own = fields.filter { !resolverKeys.contains($0.key) }
    let resolved: Value
    let label: String
    if let whole {
      let out = try run(whole, input: def["resolver_config"] ?? .null, key: "resolver_command", side: nil, timeout: timeout, path: path, dc: dc, db: db)
      guard case .object(var got) = out else {
        throw BeltError(.configInvalid, "\(path): resolver_command did not print a JSON object", dc: dc, db: db)
      }
      for (k, v) in own where got[k] == nil { got[k] = v }
      resolved = .object(got)
      label = "\(path) (as printed by resolver_command)"
    } else {
      var cfg: OrderedDictionary<String, Value> = ["db": def["db"] ?? .string(db), "dc": def["dc"] ?? .string(dc)]
      for (side, cmd) in [("src", src), ("dst", dst)] {
        guard let cmd else {
          cfg[side] = .null
          continue
        }
        let out = try run(
          cmd, input: def["\(side)_resolver_config"] ?? .null, key: "\(side)_resolver_command", side: side, timeout: timeout,
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
  static func argv(_ def: Value, _ key: String, path: String, dc: String, db: String) throws -> [String]? {
    guard let v = def[key], v != .null else { return nil }
    guard case .array(let items) = v, !items.isEmpty, items.allSatisfy({ ($0.stringValue ?? "").isEmpty == false }) else {
      throw BeltError(
        .configInvalid, "\(path): field \(key) must be a non-empty list of strings (the command and its arguments, no shell)",
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
    _ argv: [String], input: Value, key: String, side: String?, timeout: Double, path: String, dc: String, db: String
  ) throws -> Value {
    let cacheKey = [path, key, argv.joined(separator: "\u{0}"), input.json(indent: 0)].joined(separator: "\u{1}")
    cacheLock.lock()
    let hit = cache[cacheKey]
    cacheLock.unlock()
    if let hit { return hit }
    let value = try runUncached(argv, input: input, key: key, side: side, timeout: timeout, path: path, dc: dc, db: db)
    cacheLock.lock()
    cache[cacheKey] = value
    cacheLock.unlock()
    return value
  }

  static func runUncached(
    _ argv: [String], input: Value, key: String, side: String?, timeout: Double, path: String, dc: String, db: String
  ) throws -> Value {
    let p = Process()
    if argv[0].contains("/") {
      p.executableURL = URL(fileURLWithPath: argv[0])
    } else {
      let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
      guard let dir = dirs.first(where: { FileManager.default.isExecutableFile(atPath: "\($0)/\(argv[0])") }) else {
        throw BeltError(.configInvalid, "\(path): \(key): command \(Value.jsonQuote(argv[0])) not found in PATH", dc: dc, db: db)
      }
      p.executableURL = URL(fileURLWithPath: "\(dir)/\(argv[0])")
    }
    p.arguments = Array(argv.dropFirst())
    var env = ProcessInfo.processInfo.environment
    env["BELT_DC"] = dc
    env["BELT_DB"] = db
    env["BELT_SIDE"] = side ?? ""
    p.environment = env
    let stdout = Pipe()
    // stdin is a socket, not a pipe: a resolver that exits without reading it must not kill
    // belt with SIGPIPE (send with MSG_NOSIGNAL gets EPIPE instead).
    var sv: [Int32] = [-1, -1]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &sv) == 0 else {
      throw BeltError(.ioError, "\(path): \(key): cannot create a socket for the resolver's input", dc: dc, db: db)
    }
    let childIn = FileHandle(fileDescriptor: sv[1], closeOnDealloc: true)
    defer { close(sv[0]) }
    p.standardOutput = stdout
    p.standardInput = childIn
    p.standardError = FileHandle.nullDevice
    let done = DispatchSemaphore(value: 0)
    p.terminationHandler = { _ in done.signal() }
    do { try p.run() } catch {
      throw BeltError(.configInvalid, "\(path): \(key): cannot start \(Value.jsonQuote(argv[0])): \(error.localizedDescription)", dc: dc, db: db)
    }
    let collected = OutputBuffer()
    let reader = Thread {
      collected.set(stdout.fileHandleForReading.readDataToEndOfFile())
    }
    reader.start()
    try? childIn.close()
    let payload = Array(((input == .null ? "{}" : input.json(indent: 0)) + "\n").utf8)
    var sent = 0
    while sent < payload.count {
      let n = payload[sent...].withUnsafeBytes { send(sv[0], $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      if n <= 0 { break }  // the resolver does not read its input: fine
      sent += n
    }
    shutdown(sv[0], Int32(SHUT_WR))
    if done.wait(timeout: .now() + timeout) == .timedOut {
      p.terminate()
      if done.wait(timeout: .now() + 2) == .timedOut { kill(p.processIdentifier, SIGKILL); done.wait() }
      throw BeltError(.timeout, "\(path): \(key) (\(argv[0])) did not finish within \(Int(timeout)) s (resolver_timeout)", dc: dc, db: db)
    }
    let out = collected.wait()
    guard p.terminationReason == .exit, p.terminationStatus == 0 else {
      let how = p.terminationReason == .exit ? "exited with status \(p.terminationStatus)" : "was killed by signal \(p.terminationStatus)"
      throw BeltError(.configInvalid, "\(path): \(key) (\(argv[0])) \(how); its output is not shown (it may hold secrets)", dc: dc, db: db)
    }
    guard out.count <= maxOutput, let text = String(data: out, encoding: .utf8) else {
      throw BeltError(.configInvalid, "\(path): \(key) (\(argv[0])) printed no valid UTF-8 JSON", dc: dc, db: db)
    }
    do {
      return try JSONParser.parse(text)
    } catch let e as JSONParser.SyntaxError {
      // The position only: the text may hold secrets.
      throw BeltError(
        .configInvalid,
        "\(path): \(key) (\(argv[0])) printed malformed JSON (invalid at line \(e.line), column \(e.column)); its output is not shown",
        dc: dc, db: db)
    }
  }
}

/// The bytes a reader thread collected.
final class OutputBuffer: @unchecked Sendable {
  private let lock = NSCondition()
  private var data: Data?
  func set(_ d: Data) {
    lock.lock()
    data = d
    lock.signal()
    lock.unlock()
  }
  func wait() -> Data {
    lock.lock()
    defer { lock.unlock() }
    while data == nil { lock.wait() }
    return data ?? Data()
  }
}
