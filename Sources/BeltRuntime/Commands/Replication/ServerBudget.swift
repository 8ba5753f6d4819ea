import Foundation

/// What a whole dc's migration needs of each server, against what the server has free.
///
/// A dc is usually a few servers holding many databases each, and an engine takes its workers,
/// slots and WAL senders out of per-server limits; when they run out, nothing fails at once.
/// So precheck groups the dc's pairs by server (host and port) and asks the pair's engine what
/// they need there (``ReplicationEngine/budgetChecks(_:server:uses:dc:)``).
enum ServerBudget {
  /// The checks for the servers of this pair, counting every pair of the dc.
  static func checks(_ ctx: PairContext) throws -> [ServerCheck] {
    var pairs: [(String, MigrationConfig)] = []
    for db in try ctx.env.store.dbs(dc: ctx.dc) {
      if db == ctx.db { pairs.append((db, ctx.config)); continue }
      // Another pair's broken config is that pair's own error; it counts for nothing here.
      if let c = try? ctx.env.store.load(dc: ctx.dc, db: db) { pairs.append((db, c)) }
    }
    let engine = try ctx.engine
    var out: [ServerCheck] = []
    var seen = Set<String>()
    for side in Side.allCases {
      let server = try ctx.config.server(side)
      let key = "\(server.ip):\(server.port)"
      if !seen.insert(key).inserted { continue }
      var uses: [BudgetUse] = []
      for (db, c) in pairs {
        for s in Side.allCases {
          if let sv = s == .src ? c.src : c.dst, "\(sv.ip):\(sv.port)" == key {
            uses.append(BudgetUse(db: db, dbname: sv.dbname, side: s))
          }
        }
      }
      out += try engine.budgetChecks(ctx.connect(side, .root), server: key, uses: uses, dc: ctx.dc)
    }
    return out
  }
}
