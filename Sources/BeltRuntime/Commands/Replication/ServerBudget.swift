import Foundation

/// What a whole dc's migration needs of each server, against what the server has free.
///
/// A dc is usually a few servers holding many databases each, and an engine takes its workers,
/// slots and WAL senders out of per-server limits; when they run out, nothing fails at once.
/// So precheck groups the dc's pairs by server (host and port) and asks the pair's engine what
/// they need there (``ReplicationEngine/budgetChecks(_:server:uses:dc:)``). A pair whose
/// migration is over (``tornDown(_:db:config:conns:)``) takes nothing any more and is left out.
enum ServerBudget {
  /// The checks for the servers of this pair, counting every pair of the dc that is still to
  /// migrate or migrating.
  static func checks(_ ctx: PairContext) throws -> [ServerCheck] {
    var pairs: [(String, MigrationConfig)] = []
    var conns: [String: PGConnection] = [:]
    defer { for c in conns.values { c.close() } }
    for db in try ctx.env.store.dbs(dc: ctx.dc) {
      if db == ctx.db { pairs.append((db, ctx.config)); continue }
      // Another pair's broken config is that pair's own error; it counts for nothing here.
      if let c = try? ctx.env.store.load(dc: ctx.dc, db: db),
        !tornDown(ctx, db: db, config: c, conns: &conns)
      {
        pairs.append((db, c))
      }
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

  /// Whether another pair of the dc is done with its servers: its cutover finished (journal)
  /// and no logical replication slot is left in its database on either of its servers (every
  /// subscription of either engine, either direction, holds one on its provider; teardown drops
  /// them). A pair not yet set up, migrating, or after its cutover with back replication still
  /// running counts; so does one whose servers do not answer.
  static func tornDown(
    _ ctx: PairContext, db: String, config c: MigrationConfig, conns: inout [String: PGConnection]
  ) -> Bool {
    let path = Journal.path(ctx.env.store, dc: ctx.dc, db: db, flow: "cutover")
    guard (try? Journal.read(path))??["state"] == "done" else { return false }
    let other = PairContext(config: c, db: db, env: ctx.env, options: Options([:]))
    for side in Side.allCases {
      guard let sv = side == .src ? c.src : c.dst else { return false }
      // pg_replication_slots is the server's: one connection per server serves every pair.
      let key = "\(sv.ip):\(sv.port)"
      do {
        let conn = try conns[key] ?? other.newConnection(side, .root)
        conns[key] = conn
        if try !conn.query(
          "SELECT 1 FROM pg_replication_slots WHERE slot_type = 'logical' AND database = $1",
          [sv.dbname]
        ).values.isEmpty {
          return false
        }
      } catch {
        return false
      }
    }
    return true
  }
}
