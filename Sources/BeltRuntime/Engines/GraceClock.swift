import Foundation

/// Remembers since when a subscription has been seen in a state that usually passes by itself,
/// so that status gives it a grace period (seconds, not the caller's whole timeout) before it
/// calls the subscription down. Lives as long as the process: a runbook's wait loop and
/// `status --watch` see the grace run out; a single `belt status` shows the state as starting.
final class GraceClock: @unchecked Sendable {
  /// The process's clock.
  static let shared = GraceClock()
  private let lock = NSLock()
  private var seen: [String: (condition: String, since: Date)] = [:]

  /// Seconds since `condition` was first seen for `key` without interruption (0 the first time).
  func observe(_ key: String, _ condition: String) -> Double {
    lock.lock()
    defer { lock.unlock() }
    if let s = seen[key], s.condition == condition { return Date().timeIntervalSince(s.since) }
    seen[key] = (condition, Date())
    return 0
  }

  /// Forgets `key` (its state is fine, or definitely down).
  func clear(_ key: String) {
    lock.lock()
    seen[key] = nil
    lock.unlock()
  }
}
