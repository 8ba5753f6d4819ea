import Foundation
import Testing

@testable import BeltRuntime

/// Issue 14: the gate of teardown-forward-replication (the fence marker polled on dst) under a
/// continuous write load, over many cutovers of the same pair: after each gate, dst must hold
/// exactly what src committed, compared by an ordered content hash of every table.
@Suite(.serialized, .enabled(if: PG.available, "needs the clusters from scripts/pg-clusters"))
struct GateTests {
  static let schema = """
    CREATE TABLE acc (id bigserial PRIMARY KEY, v int NOT NULL DEFAULT 0, note text);
    CREATE TABLE log (id bigserial PRIMARY KEY, writer int NOT NULL, at timestamptz NOT NULL DEFAULT now(), payload text);
    INSERT INTO acc (v, note) SELECT g, 'seed ' || g FROM generate_series(1, 2000) g;
    """

  /// Writers that run transactions on src until paused; a pause returns once every writer is
  /// between transactions (the fence: nothing more is written to src).
  final class Writers: @unchecked Sendable {
    private let lock = NSLock()
    private var paused = false
    private var stopped = false
    private var idle = 0
    private(set) var commits = 0
    private(set) var errors: [String] = []
    private var threads: [Thread] = []
    let count: Int

    init(count: Int, connect: @escaping @Sendable () throws -> PGConnection) {
      self.count = count
      for w in 0..<count {
        let t = Thread { [self] in self.loop(w, connect) }
        threads.append(t)
        t.start()
      }
    }

    private func loop(_ w: Int, _ connect: () throws -> PGConnection) {
      do {
        let c = try connect()
        defer { c.close() }
        // Half the writers commit asynchronously: acknowledged before their WAL is written out.
        if w % 2 == 1 { try c.exec("SET synchronous_commit = off") }
        var n = 0
        while true {
          lock.lock()
          if stopped { lock.unlock(); return }
          if paused {
            idle += 1
            while paused && !stopped {
              lock.unlock(); Thread.sleep(forTimeInterval: 0.001); lock.lock()
            }
            idle -= 1
            lock.unlock()
            continue
          }
          lock.unlock()
          n += 1
          let id = Int.random(in: 1...2000)
          switch n % 4 {
          case 0:
            try c.exec("INSERT INTO log (writer, payload) VALUES (\(w), md5(random()::text))")
          case 1:
            try c.exec(
              "BEGIN; UPDATE acc SET v = v + 1, note = 'w\(w) n\(n)' WHERE id = \(id); INSERT INTO log (writer, payload) VALUES (\(w), 'tx \(n)'); COMMIT"
            )
          case 2:
            try c.exec(
              "BEGIN; DELETE FROM log WHERE id = (SELECT min(id) FROM log WHERE writer = \(w)); INSERT INTO acc (v, note) VALUES (\(n), 'new'); COMMIT"
            )
          default:
            try c.exec("UPDATE acc SET v = v - 1 WHERE id = \(id)")
          }
          lock.lock()
          commits += 1
          lock.unlock()
        }
      } catch {
        lock.lock()
        errors.append(BeltError.wrap(error).message)
        idle += 1  // a dead writer writes nothing more
        lock.unlock()
      }
    }

    /// Stops the writers between transactions; returns when all of them are there.
    func pause() {
      lock.lock()
      paused = true
      lock.unlock()
      while true {
        lock.lock()
        let all = idle >= count
        lock.unlock()
        if all { return }
        Thread.sleep(forTimeInterval: 0.001)
      }
    }

    func resume() {
      lock.lock()
      paused = false
      lock.unlock()
    }

    func stop() {
      lock.lock()
      stopped = true
      lock.unlock()
      while threads.contains(where: { !$0.isFinished }) { Thread.sleep(forTimeInterval: 0.01) }
    }
  }

  @Test func fenceGateUnderWriteLoadLosesNothingOverTwentyCutovers() throws {
    let dc = try TestDC()
    defer { Repl.cleanup(dc) }
    let pair = try dc.addPair("gate", srcSQL: Self.schema, dstSQL: Repl.schemaOnly(Self.schema))
    #expect(try dc.run("setup", "gate", ["schema": false])["ok"] == true)
    try Repl.waitStatus(dc, "gate", "replicating") { $0["forward"] == "replicating" }
    let config = try dc.store.load(dc: dc.dc, db: "gate")
    let srcDSN = try config.server(.src).pglogicalDSN
    let writers = Writers(count: 4) { try PG.root(.src, db: pair.dbname) }
    defer { writers.stop() }
    let src = try dc.conn("gate", .src)
    let dst = try dc.conn("gate", .dst)
    defer {
      src.close()
      dst.close()
    }
    let rounds = 20
    var differences: [String] = []
    var gates: [Double] = []
    let t0 = Date()
    for round in 1...rounds {
      writers.resume()
      Thread.sleep(forTimeInterval: Double.random(in: 0.15...0.4))  // writes replicate meanwhile
      writers.pause()
      let r = try dc.run("teardown_forward_replication", "gate")
      #expect(r["dropped"] == true, "round \(round): \(r.json())")
      if case .double(let w) = r["waited_s"] ?? .null {
        gates.append(w)
      } else {
        gates.append(Double(r["waited_s"]?.intValue ?? -1))
      }
      let a = try LoadTests.fingerprint(src)
      let b = try LoadTests.fingerprint(dst)
      if a != b {
        differences.append("round \(round): src \(a) dst \(b) (\(r["message"]?.display ?? ""))")
      }
      // The next cutover of the same pair: subscribe again without a copy (src is quiet, dst
      // equals it), and wait until the apply worker replicates.
      _ = try PGL.ensureSubscription(
        dst, name: PGL.forwardSub, providerDSN: srcDSN, syncData: false)
      try Repl.waitStatus(dc, "gate", "replicating again (round \(round))") {
        $0["forward"] == "replicating"
      }
    }
    writers.stop()
    #expect(writers.errors.isEmpty, "\(writers.errors)")
    #expect(writers.commits > 200, "the writers committed \(writers.commits) transactions")
    #expect(
      differences.isEmpty,
      "\(differences.count) of \(rounds) gates let dst differ: \(differences.prefix(3))")
    let sorted = gates.sorted()
    print(
      "[measure] \(rounds) gates under load (\(writers.commits) commits): median \(String(format: "%.3f", sorted[sorted.count / 2])) s, "
        + "max \(String(format: "%.3f", sorted.last ?? -1)) s; \(String(format: "%.1f", Date().timeIntervalSince(t0))) s in all"
    )
  }
}
