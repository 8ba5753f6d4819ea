import Foundation

/// pgbouncer's admin console (the `pgbouncer` database; simple query protocol only) and the
/// `[databases]` line belt rewrites to switch a database to another server.
final class PgBouncerAdmin {
  let config: PgBouncerConfig
  private let conn: PGConnection

  /// Connects to the admin console.
  init(_ config: PgBouncerConfig, connectTimeout: Int) throws {
    self.config = config
    var pairs: [(String, String)] = []
    pairs.append((ServerConfig.isNumericAddress(config.host) ? "hostaddr" : "host", config.host))
    pairs += [
      ("port", String(config.port)), ("dbname", "pgbouncer"), ("user", config.admin.name),
      ("password", config.admin.password), ("connect_timeout", String(connectTimeout)),
    ]
    do {
      conn = try PGConnection(conninfo: ConnInfo.build(pairs), label: "pgbouncer admin (\(config.host):\(config.port))")
    } catch let e as PGError {
      throw BeltError(
        .connectionFailed,
        "pgbouncer's admin console at \(config.host):\(config.port) is not reachable as \(config.admin.name): \(e.message)")
    }
  }

  deinit { conn.close() }

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
    nonisolated(unsafe) let c = conn  // used by the waiting thread only until done is signalled
    let t = Thread {
      do { _ = try c.exec("PAUSE \(name)") } catch { box.error = error }
      done.signal()
    }
    t.start()
    if done.wait(timeout: .now() + timeout) == .timedOut {
      let other = try PgBouncerAdmin(config, connectTimeout: 5)
      _ = try? other.conn.exec("RESUME \(name)")
      done.wait()
      throw BeltError(
        .timeout,
        "PAUSE \(config.database) on pgbouncer did not finish within \(Int(timeout)) s (a transaction stayed open); resumed")
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
      _ = try conn.exec("RESUME \(try ident(config.database))")
    } catch let e as PGError where e.message.contains("not paused") {}
  }

  /// Points the database at `server`: rewrites its line in `databases_file` atomically,
  /// `RELOAD`s, and checks that `SHOW DATABASES` shows the new target.
  func pointTo(_ server: ServerConfig) throws -> String {
    guard let file = config.databasesFile else {
      throw BeltError(
        .preconditionFailed,
        "pgbouncer.databases_file is not set in the config; switch \(config.database) with your own hook (belt.exec)")
    }
    guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
      throw BeltError(.ioError, "\(file): cannot be read")
    }
    let line = "\(config.database) = host=\(server.ip) port=\(server.port) dbname=\(server.dbname)"
    var replaced = false
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    for (i, l) in lines.enumerated() {
      let key = l.split(separator: "=", maxSplits: 1).first?.trimmingCharacters(in: .whitespaces) ?? ""
      if key == config.database, !l.trimmingCharacters(in: .whitespaces).hasPrefix(";") {
        lines[i] = line
        replaced = true
      }
    }
    guard replaced else {
      throw BeltError(.preconditionFailed, "\(file) has no line for database \(config.database); add one (\(line))")
    }
    try AtomicFile.write(lines.joined(separator: "\n"), to: file)
    _ = try conn.exec("RELOAD")
    let now = try entry()
    guard now.port == server.port, now.host == server.ip, now.database == server.dbname else {
      throw BeltError(
        .preconditionFailed,
        "after RELOAD pgbouncer still points \(config.database) at \(now.host):\(now.port)/\(now.database), not "
          + "\(server.ip):\(server.port)/\(server.dbname) (is \(file) the file pgbouncer.ini includes?)")
    }
    return "\(server.ip):\(server.port)/\(server.dbname)"
  }

  /// A database name for the console (which has no bound parameters).
  private func ident(_ s: String) throws -> String {
    guard !s.isEmpty, s.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
      throw BeltError(.configInvalid, "pgbouncer.database \(Value.jsonQuote(s)): only letters, digits, _ and - are supported")
    }
    return s
  }
}

/// An error handed from a worker thread.
final class ErrorBox: @unchecked Sendable {
  var error: (any Error)?
}
