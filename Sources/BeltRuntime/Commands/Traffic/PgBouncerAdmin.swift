import Foundation

/// pgbouncer's admin console (the `pgbouncer` database; simple query protocol only) and the
/// `[databases]` line belt rewrites to switch a database to another server.
final class PgBouncerAdmin {
  let config: PgBouncerConfig
  private let conn: PGConnection
  /// Where PAUSE, RESUME and RELOAD are recorded (the pair's audit log).
  private let audit: (log: AuditLog, dc: String, db: String)?

  /// Connects to the admin console.
  init(
    _ config: PgBouncerConfig, connectTimeout: Int,
    audit: (log: AuditLog, dc: String, db: String)? = nil
  ) throws {
    self.config = config
    self.audit = audit
    var pairs: [(String, String)] = []
    pairs.append((ServerConfig.isNumericAddress(config.host) ? "hostaddr" : "host", config.host))
    pairs += [
      ("port", String(config.port)), ("dbname", "pgbouncer"), ("user", config.admin.name),
      ("password", config.admin.password), ("connect_timeout", String(connectTimeout)),
    ]
    do {
      conn = try PGConnection(
        conninfo: ConnInfo.build(pairs), label: "pgbouncer admin (\(config.host):\(config.port))")
    } catch let e as PGError {
      throw BeltError(
        .connectionFailed,
        "pgbouncer's admin console at \(config.host):\(config.port) is not reachable as \(config.admin.name): \(e.message)"
      )
    }
  }

  deinit { conn.close() }

  /// Runs a console command that changes pgbouncer, with its audit line.
  private func command(_ sql: String) throws {
    let t0 = Date()
    var failure: (any Error)?
    defer {
      if let audit {
        let outcome: [(String, Value)] =
          failure.map { [("outcome", "error"), ("error", .string("\($0)"))] } ?? [("outcome", "ok")]
        audit.log.action(
          "pgbouncer",
          [("server", .string("\(config.host):\(config.port)")), ("command", .string(sql))]
            + outcome,
          start: t0, dc: audit.dc, db: audit.db)
      }
    }
    do { _ = try conn.exec(sql) } catch {
      failure = error
      throw error
    }
  }

  /// A setting from `SHOW CONFIG`, or nil.
  func setting(_ key: String) throws -> String? {
    try conn.exec("SHOW CONFIG").rows.first { $0.string("key") == key }.map { $0.string("value") }
  }

  /// One `[databases]` entry as `SHOW DATABASES` reports it.
  struct Entry {
    var name: String
    var host: String
    var port: Int
    var database: String
    var paused: Bool
  }

  /// `SHOW DATABASES`, by name.
  func databases() throws -> [String: Entry] {
    var out: [String: Entry] = [:]
    for row in try conn.exec("SHOW DATABASES").rows {
      let e = Entry(
        name: row.string("name"), host: row.string("host"), port: row.int("port") ?? 0,
        database: row.string("database"), paused: row.string("paused") == "1")
      out[e.name] = e
    }
    return out
  }

  /// The configured database's entry, or an error naming what pgbouncer has.
  func entry() throws -> Entry {
    let all = try databases()
    guard let e = all[config.database] else {
      throw BeltError(
        .preconditionFailed,
        "pgbouncer at \(config.host):\(config.port) has no database \(Value.jsonQuote(config.database)) "
          + "(it has: \(all.keys.sorted().joined(separator: ", ")))")
    }
    return e
  }

  /// `PAUSE db`: returns once pgbouncer has no transaction in flight for it. Gives up after
  /// `timeout` seconds: a `RESUME` from a second connection ends the wait, and traffic goes on.
  func pause(timeout: Double) throws -> Double {
    let t0 = Date()
    let name = try ident(config.database)
    let done = DispatchSemaphore(value: 0)
    let box = ErrorBox()
    nonisolated(unsafe) let me = self  // the connection is used by the waiting thread only until done is signalled
    let t = Thread {
      do { try me.command("PAUSE \(name)") } catch { box.error = error }
      done.signal()
    }
    t.start()
    if done.wait(timeout: .now() + timeout) == .timedOut {
      let other = try PgBouncerAdmin(config, connectTimeout: 5, audit: audit)
      try? other.command("RESUME \(name)")
      done.wait()
      throw BeltError(
        .timeout,
        "PAUSE \(config.database) on pgbouncer did not finish within \(Int(timeout)) s (a transaction stayed open); resumed"
      )
    }
    if let e = box.error {
      // Already paused (a re-run after a crash): that is the state asked for.
      if "\(e)".contains("already") { return Date().timeIntervalSince(t0) }
      throw BeltError.wrap(e)
    }
    return Date().timeIntervalSince(t0)
  }

  /// `RESUME db`; a database that is not paused is fine.
  func resume() throws {
    do {
      try command("RESUME \(try ident(config.database))")
    } catch let e as PGError where e.message.contains("not paused") {}
  }

  /// The lines of `databases_file` and the index of this database's line, or why they cannot
  /// be used (checked before a PAUSE: a switch that cannot rewrite the file must not start).
  func databasesFileLines() throws -> (file: String, lines: [String], index: Int) {
    guard let file = config.databasesFile else {
      throw BeltError(
        .preconditionFailed,
        "pgbouncer.databases_file is not set in the config; switch \(config.database) with your own hook (belt.exec)"
      )
    }
    guard let data = FileManager.default.contents(atPath: file),
      let text = String(data: data, encoding: .utf8)
    else {
      throw BeltError(.ioError, "\(file): cannot be read")
    }
    let dir = (file as NSString).deletingLastPathComponent
    guard access(dir.isEmpty ? "." : dir, W_OK) == 0 else {
      throw BeltError(.ioError, "\(dir): not writable, so \(file) cannot be replaced atomically")
    }
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let found = lines.indices.filter { i in
      let key =
        lines[i].split(separator: "=", maxSplits: 1).first?.trimmingCharacters(in: .whitespaces)
        ?? ""
      return key == config.database && !lines[i].trimmingCharacters(in: .whitespaces).hasPrefix(";")
    }
    guard found.count == 1 else {
      throw BeltError(
        .preconditionFailed,
        "\(file) has \(found.isEmpty ? "no" : "\(found.count)") line(s) for database \(config.database); it needs exactly one"
      )
    }
    return (file, lines, found[0])
  }

  /// Points the database at `server`: rewrites its line in `databases_file` atomically,
  /// `RELOAD`s, and checks that `SHOW DATABASES` shows the new target.
  func pointTo(_ server: ServerConfig) throws -> String {
    var (file, lines, index) = try databasesFileLines()
    lines[index] =
      "\(config.database) = host=\(server.ip) port=\(server.port) dbname=\(server.dbname)"
    try AtomicFile.write(lines.joined(separator: "\n"), to: file)
    try command("RELOAD")
    let now = try entry()
    guard now.port == server.port, now.host == server.ip, now.database == server.dbname else {
      throw BeltError(
        .preconditionFailed,
        "after RELOAD pgbouncer still points \(config.database) at \(now.host):\(now.port)/\(now.database), not "
          + "\(server.ip):\(server.port)/\(server.dbname) (is \(file) the file pgbouncer.ini includes?)"
      )
    }
    return "\(server.ip):\(server.port)/\(server.dbname)"
  }

  /// A database name for the console (which has no bound parameters).
  private func ident(_ s: String) throws -> String {
    guard !s.isEmpty, s.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
      throw BeltError(
        .configInvalid,
        "pgbouncer.database \(Value.jsonQuote(s)): only letters, digits, _ and - are supported")
    }
    return s
  }
}

/// An error handed from a worker thread.
final class ErrorBox: @unchecked Sendable {
  var error: (any Error)?
}
