import Foundation
import Logging

/// Logs the progress of long `CREATE INDEX` builds from `pg_stat_progress_create_index`, polling
/// on its own connection and thread while the build runs on another connection.
public final class IndexBuildMonitor: @unchecked Sendable {
  private let cond = NSCondition()
  /// The builds running now, by backend pid, and when each is next due a progress line.
  private var builds: [Int: (name: String, started: Date, due: Date)] = [:]
  private var stopped = false
  private var thread: Thread?
  private let conninfo: String
  private let label: String
  private let logger: Logger
  private let interval: Double

  /// Creates a monitor; `conninfo` is used on the monitor's thread only and never logged.
  /// - Parameter interval: seconds between progress lines (first one after `interval`).
  public init(conninfo: String, label: String, logger: Logger, interval: Double = 5) {
    self.conninfo = conninfo
    self.label = label
    self.logger = logger
    self.interval = max(0.05, interval)
  }

  /// Seconds between progress lines: `BELT_INDEX_PROGRESS_SECONDS` or 5.
  public static var defaultInterval: Double {
    ProcessInfo.processInfo.environment["BELT_INDEX_PROGRESS_SECONDS"].flatMap(Double.init) ?? 5
  }

  /// Starts the polling thread.
  public func start() {
    let t = Thread { [self] in self.loop() }
    t.name = "belt-index-progress"
    thread = t
    t.start()
  }

  /// Marks the start of a build on backend `pid` (several builds may run at once).
  public func begin(name: String, pid: Int) {
    cond.lock()
    let now = Date()
    builds[pid] = (name, now, now.addingTimeInterval(interval))
    cond.broadcast()
    cond.unlock()
  }

  /// Marks the end of the build on backend `pid`.
  public func end(pid: Int) {
    cond.lock()
    builds[pid] = nil
    cond.broadcast()
    cond.unlock()
  }

  /// Stops the thread (waits at most one poll).
  public func stop() {
    cond.lock()
    stopped = true
    cond.broadcast()
    cond.unlock()
  }

  private func loop() {
    var conn: PGConnection? = nil
    var gaveUp = false
    defer { conn?.close() }
    while true {
      cond.lock()
      // Sleep until a build is due a line (it has run for `interval` since it began or since
      // its last line), or until stopped.
      while !stopped {
        if let due = builds.values.map(\.due).min() {
          if Date() >= due { break }
          _ = cond.wait(until: due)
        } else {
          cond.wait()
        }
      }
      if stopped {
        cond.unlock()
        return
      }
      let now = Date()
      let due = builds.filter { $0.value.due <= now }.sorted { $0.value.name < $1.value.name }
      for (pid, _) in due { builds[pid]?.due = now.addingTimeInterval(interval) }
      cond.unlock()
      if !gaveUp && conn == nil {
        do {
          conn = try PGConnection(conninfo: conninfo, label: label)
        } catch {
          logger.warning("index progress is not available: \(error)")
          gaveUp = true
        }
      }
      for (pid, build) in due {
        let elapsed = Int(now.timeIntervalSince(build.started))
        var line = "index \(build.name): building for \(elapsed) s"
        if let conn,
          let r = try? conn.query(
            """
            SELECT phase, blocks_total, blocks_done, tuples_total, tuples_done
              FROM pg_catalog.pg_stat_progress_create_index WHERE pid = $1
            """, [String(pid)]), let row = r.rows.first
        {
          line += ", \(row.string("phase"))"
          if let tt = row.int("tuples_total"), tt > 0, let td = row.int("tuples_done") {
            line += " \(td * 100 / tt)% (\(td)/\(tt) tuples)"
          } else if let bt = row.int("blocks_total"), bt > 0, let bd = row.int("blocks_done"),
            bd < bt
          {
            line += " \(bd * 100 / bt)% (\(bd)/\(bt) blocks)"
          }
        }
        logger.notice("\(line)")
      }
    }
  }
}
