import Foundation
import Testing

@testable import BeltRuntime

/// Helpers for the replication lifecycle tests.
enum Repl {
  /// A fixture without its data: the DDL to create the same schema on dst.
  static func schemaOnly(_ sql: String) -> String {
    sql.split(separator: "\n", omittingEmptySubsequences: false)
      .filter { line in
        let t = line.trimmingCharacters(in: .whitespaces)
        return !t.hasPrefix("INSERT") && !t.hasPrefix("SELECT setval")
      }
      .joined(separator: "\n")
  }

  /// The per-database records of a result.
  static func records(_ v: Value) -> [Value] { v["databases"]?.arrayValue ?? [v] }

  /// Polls `cond` every 50 ms until it is true; fails the test after `timeout` seconds.
  @discardableResult
  static func waitFor(
    _ what: String, timeout: Double = 30, sourceLocation: SourceLocation = #_sourceLocation,
    _ cond: () throws -> Bool
  ) throws -> Double {
    let t0 = Date()
    while true {
      if try cond() { return Date().timeIntervalSince(t0) }
      if Date().timeIntervalSince(t0) > timeout {
        Issue.record(
          "timed out after \(timeout) s waiting for \(what)", sourceLocation: sourceLocation)
        throw BeltError(.timeout, "timed out waiting for \(what)")
      }
      Thread.sleep(forTimeInterval: 0.05)
    }
  }

  /// Waits until every record of `belt status` satisfies `cond`; returns the last result.
  @discardableResult
  static func waitStatus(
    _ dc: TestDC, _ db: String?, _ what: String, timeout: Double = 60,
    sourceLocation: SourceLocation = #_sourceLocation, _ cond: (Value) -> Bool
  ) throws -> Value {
    var last: Value = .null
    do {
      try waitFor(what, timeout: timeout, sourceLocation: sourceLocation) {
        last = try dc.run("status", db)
        return records(last).allSatisfy { $0["ok"] == true && cond($0) }
      }
    } catch {
      Issue.record("last status: \(last.json())", sourceLocation: sourceLocation)
      throw error
    }
    return last
  }

  /// Row count and a digest of every row of a table.
  static func digest(_ c: PGConnection, _ schema: String, _ table: String) throws -> String {
    let q = PGConnection.qualified(schema, table)
    return try c.query(
      "SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM \(q) t"
    ).scalar ?? ""
  }

  /// Digests of the same tables on both sides of a pair.
  static func sameRows(_ dc: TestDC, _ db: String, _ tables: [String]) throws -> Bool {
    guard let schema = dc.pairs[db]?.schema else { throw BeltError(.notFound, "no pair \(db)") }
    let s = try dc.conn(db, .src)
    let d = try dc.conn(db, .dst)
    defer { s.close(); d.close() }
    for t in tables where try digest(s, schema, t) != digest(d, schema, t) { return false }
    return true
  }

  /// What pglogical leaves in a pair's database on one side: slots, nodes, subscriptions, the
  /// pglogical role, the extension and its schema.
  struct Leftovers: Equatable, CustomStringConvertible {
    var slots = 0
    var nodes = 0
    var subscriptions = 0
    var role = false
    var ext = false
    var schema = false
    var description: String {
      "slots \(slots), nodes \(nodes), subscriptions \(subscriptions), role \(role), extension \(ext), schema \(schema)"
    }
  }

  static func leftovers(_ dc: TestDC, _ db: String, _ side: Side) throws -> Leftovers {
    guard let p = dc.pairs[db] else { throw BeltError(.notFound, "no pair \(db)") }
    let c = try dc.conn(db, side)
    defer { c.close() }
    var l = Leftovers()
    l.slots =
      Int(
        try c.query("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()")
          .scalar ?? "") ?? -1
    l.role =
      try c.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [p.pglogical.name]).values.count == 1
    l.ext = try c.query("SELECT 1 FROM pg_extension WHERE extname = 'pglogical'").values.count == 1
    l.schema =
      try c.query("SELECT 1 FROM pg_namespace WHERE nspname = 'pglogical'").values.count == 1
    if l.ext {
      l.nodes = Int(try c.query("SELECT count(*) FROM pglogical.node").scalar ?? "") ?? -1
      l.subscriptions =
        Int(try c.query("SELECT count(*) FROM pglogical.subscription").scalar ?? "") ?? -1
    }
    return l
  }

  /// Removes everything (teardown --full), ignoring failures: frees workers and slots.
  static func cleanup(_ dc: TestDC) {
    _ = try? dc.run("teardown", nil, ["full": true])
    // DROP DATABASE hangs with pglogical preloaded, so the databases stay; but the pglogical
    // supervisor starts a manager in every connectable database, over and over, and hundreds
    // of leftover databases delay every new subscription by seconds. Take ours out of its way.
    for p in dc.pairs.values {
      for side in Side.allCases {
        guard let c = try? PG.root(side) else { continue }
        _ = try? c.exec(
          "ALTER DATABASE \(PGConnection.quoteIdent(p.dbname)) ALLOW_CONNECTIONS false")
        c.close()
      }
    }
  }
}

/// Inserts rows into a table on one side, one transaction per row, until stopped.
final class Writer: @unchecked Sendable {
  private let lock = NSLock()
  private var stopFlag = false
  private var done = false
  private(set) var inserted = 0
  private var failure: String?
  private let finished = DispatchSemaphore(value: 0)

  /// Starts writing into `"schema"."UsersCapital"` through `conninfo`.
  init(conninfo: String, schema: String) {
    let t = Thread { [self] in
      defer { self.finished.signal() }
      do {
        let c = try PGConnection(conninfo: conninfo, label: "writer")
        defer { c.close() }
        let table = PGConnection.qualified(schema, "UsersCapital")
        var i = 0
        while !self.shouldStop() {
          i += 1
          try c.query(
            "INSERT INTO \(table) (name, gender, n) VALUES ($1, 'male', $2)", ["w\(i)", String(i)])
          self.count()
        }
      } catch {
        self.fail(String(describing: error))
      }
    }
    t.start()
  }

  private func shouldStop() -> Bool {
    lock.lock()
    defer { lock.unlock() }
    return stopFlag
  }
  private func count() {
    lock.lock()
    inserted += 1
    lock.unlock()
  }
  private func fail(_ s: String) {
    lock.lock()
    failure = s
    lock.unlock()
  }

  /// Stops and waits for the last insert to commit; returns (rows, error).
  func stop() -> (Int, String?) {
    lock.lock()
    stopFlag = true
    lock.unlock()
    finished.wait()
    lock.lock()
    defer { lock.unlock() }
    return (inserted, failure)
  }
}
