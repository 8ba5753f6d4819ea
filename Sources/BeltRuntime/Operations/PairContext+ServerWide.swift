import Foundation

extension PairContext {
  /// Runs `body` holding the lock of one side's server (``ServerWide``); the wait is added to
  /// ``serverLockWaitMS``.
  func serverWide<T>(_ side: Side, _ what: String, _ body: (inout ServerWide.Memory) throws -> T)
    throws -> T
  {
    let server = try config.server(side)
    var waited = 0
    defer {
      serverLockWaitMS += waited
      serverLockChanges += 1
    }
    return try ServerWide.change(
      server, what, connectTimeout: env.connectTimeout, logger: logger, waitedMS: &waited, body)
  }
}
