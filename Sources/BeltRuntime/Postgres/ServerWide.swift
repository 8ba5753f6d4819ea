import CSignals
import Foundation
import Logging

/// The one way belt changes a server-wide object (design.md §9): the pglogical role (create,
/// password, superuser or rds grants, the grants it needs in a database, drop), LOGIN revoke and
/// restore, the database-level CONNECT fence.
///
/// A change runs holding the server's lock, which is two locks:
/// - in this process, a mutex per server (`ip:port`), so the databases of a dc that share a
///   server take turns instead of racing (e.g. two DROP ROLEs: "tuple concurrently deleted");
/// - against other belt processes, a session-level advisory lock (``lockKey``) held on a
///   connection of its own to the server's `postgres` database for the duration of the change.
///   Advisory locks are keyed per database, so every belt must take it in the same database:
///   `postgres` exists on every server made by initdb and on the managed services (RDS, Cloud
///   SQL, Azure), and the root user may connect to it. Only when the server says that database
///   does not exist, or refuses CONNECT on it, does belt use `template1`, which every server has
///   (CREATE DATABASE needs it) and which the same root user then reaches for every belt: a
///   session there makes a concurrent `CREATE DATABASE` wait (it waits up to 5 s for other
///   sessions on its template), which a change of a few milliseconds does not exhaust.
///
/// The decision and the change go inside the same `body` ("is this role used by another
/// database?" and DROP ROLE). Locks are never nested: a body touches one server.
/// A session lock dies with its session, so a belt that crashes or loses its network never
/// leaves a server locked. The lock session is kept open for the life of the process (one per
/// server and root user) and reopened when it broke.
public enum ServerWide {
  /// The advisory lock: `pg_advisory_lock(1650814068, 12)`; 1650814068 is "belt" in ASCII.
  public static let lockKey: (Int32, Int32) = (0x6265_6C74, 12)
  /// The databases the lock is taken in, in order of preference.
  public static let lockDatabases = ["postgres", "template1"]
  /// How long a change waits for another belt process before naming it.
  public static let defaultWait: Double = 120

  /// What this process remembers about one server between changes (under the lock).
  public struct Memory: Sendable {
    /// Roles this process made NOLOGIN on the server: each config of a dc that shares the
    /// server records all of them, so restoring any one of the databases gives every login back.
    public var revokedLogins: Set<String> = []
  }

  /// Identifies a server: the address belt connects to and the port.
  public static func key(_ s: ServerConfig) -> String { "\(s.ip):\(s.port)" }

  /// Runs `body` holding the server's lock (see the type's documentation).
  /// - Parameters:
  ///   - what: the change, for the log and for the error when the lock is not granted.
  ///   - waitedMS: adds the milliseconds spent waiting for the lock.
  /// - Throws: ``BeltError`` `timeout` naming the session that holds the lock after `wait`
  ///   seconds, `interrupted` on Ctrl-C, or whatever `body` throws.
  public static func change<T>(
    _ server: ServerConfig, _ what: String, connectTimeout: Int = 10, wait: Double = defaultWait,
    logger: Logger? = nil, waitedMS: inout Int, _ body: (inout Memory) throws -> T
  ) throws -> T {
    let slot = Slots.shared.slot(key(server))
    let t0 = Date()
    slot.mutex.lock()
    defer { slot.mutex.unlock() }
    try slot.acquire(
      server, what: what, connectTimeout: connectTimeout, deadline: t0.addingTimeInterval(wait))
    let t1 = Date()
    waitedMS += Int(t1.timeIntervalSince(t0) * 1000)
    defer {
      slot.release()
      logger?.debug(
        "server-wide change",
        metadata: [
          "server": .string(key(server)), "change": .string(what),
          "lock.wait_ms": .stringConvertible(Int(t1.timeIntervalSince(t0) * 1000)),
          "lock.held_ms": .stringConvertible(Int(Date().timeIntervalSince(t1) * 1000)),
        ])
    }
    return try body(&slot.memory)
  }

  /// The in-process state of every server this process has changed.
  final class Slots: @unchecked Sendable {
    static let shared = Slots()
    private let lock = NSLock()
    private var slots: [String: Slot] = [:]

    func slot(_ key: String) -> Slot {
      lock.lock()
      defer { lock.unlock() }
      if let s = slots[key] { return s }
      let s = Slot()
      slots[key] = s
      return s
    }
  }

  /// One server: the mutex, the lock session (guarded by the mutex) and the memory.
  final class Slot: @unchecked Sendable {
    let mutex = NSLock()
    var memory = Memory()
    private var session: PGConnection?
    private var sessionUser = ""

    /// Takes the advisory lock, opening (or reopening) the lock session as needed.
    func acquire(_ server: ServerConfig, what: String, connectTimeout: Int, deadline: Date) throws {
      var reopened = false
      var interval = 0.01
      while true {
        if session == nil || sessionUser != server.root.name {
          session?.close()
          session = try Self.open(server, connectTimeout: connectTimeout)
          sessionUser = server.root.name
        }
        guard let c = session else { continue }
        let got: Bool
        do {
          got =
            try c.query(
              "SELECT pg_try_advisory_lock($1::int, $2::int)",
              [String(ServerWide.lockKey.0), String(ServerWide.lockKey.1)]
            ).scalar == "t"
        } catch let e as PGError where e.kind == .client && !reopened {
          // The session broke (server restarted, idle_session_timeout): once more, fresh.
          reopened = true
          session?.close()
          session = nil
          continue
        }
        if got { return }
        if belt_interrupted() != 0 {
          throw BeltError(
            .interrupted, "interrupted by the user (Ctrl-C) while waiting for the server lock")
        }
        if Date() > deadline {
          throw BeltError(
            .timeout,
            "\(what) on \(ServerWide.key(server)) waited \(Int(ServerWide.defaultWait)) s for belt's server lock "
              + "(advisory lock \(ServerWide.lockKey.0), \(ServerWide.lockKey.1) in database \(c.label)), held by "
              + (try Self.holder(c)) + "; let that belt finish, or end that session",
            retryable: true)
        }
        Thread.sleep(forTimeInterval: interval)
        interval = min(interval * 1.5, 0.1)
      }
    }

    /// Gives the advisory lock back; a session that cannot is closed, which releases it too.
    func release() {
      guard let c = session else { return }
      do {
        _ = try c.query(
          "SELECT pg_advisory_unlock($1::int, $2::int)",
          [String(ServerWide.lockKey.0), String(ServerWide.lockKey.1)])
      } catch {
        c.close()
        session = nil
      }
    }

    /// A root session in the first of ``ServerWide/lockDatabases`` that the server lets us use.
    static func open(_ server: ServerConfig, connectTimeout: Int) throws -> PGConnection {
      var last: (any Error)?
      for db in ServerWide.lockDatabases {
        var s = server
        s.dbname = db
        do {
          let c = try PGConnection(
            conninfo: s.conninfo(.root, connectTimeout: connectTimeout), label: db)
          try c.exec("SET application_name = 'belt server lock'")
          return c
        } catch let e as PGError
          where e.message.contains("database \"\(db)\" does not exist")
          || e.message.contains("permission denied for database")
        {
          last = e
          continue
        }
      }
      throw last ?? BeltError(.connectionFailed, "no database to take the server lock in")
    }

    /// The session holding the advisory lock, for the error message.
    static func holder(_ c: PGConnection) throws -> String {
      let r = try c.query(
        """
        SELECT a.pid, coalesce(a.usename, '?') AS usename, coalesce(a.application_name, '') AS app,
               coalesce(host(a.client_addr), 'local') AS client,
               coalesce(to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS'), '?') AS since
          FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::int::oid AND l.objid = $2::int::oid
           AND l.objsubid = 2 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        """, [String(ServerWide.lockKey.0), String(ServerWide.lockKey.1)])
      guard let row = r.rows.first else { return "a session that has just released it" }
      return
        "pid \(row.string("pid")) (user \(row.string("usename")), application \(Value.jsonQuote(row.string("app"))), "
        + "from \(row.string("client")), connected since \(row.string("since")))"
    }
  }
}
