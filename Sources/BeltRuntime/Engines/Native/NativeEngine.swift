import Foundation

/// PostgreSQL's own logical replication (publications, subscriptions, pgoutput) as an engine
/// (design.md §6, native-replication.md). Names, per database:
/// - forward: publication `belt_fwd` on src, subscription `belt_fwd` on dst, its slot on src
///   `belt_fwd_<hash of src's database name>` (slots are per server: a fleet shares it);
/// - back: publication `belt_back` on dst, slot `belt_back_<hash>` on dst made by
///   setup-back-replication ("armed"), subscription `belt_back` on src attached by the gate once
///   forward is dropped. PostgreSQL before 16 has no `origin` filter, so the two directions
///   never run at once: an INSERT would come back as a duplicate key, an UPDATE ping-pong.
///   With both servers on 16 or newer, both subscriptions get `origin = none` (each sends only
///   the changes made on its own side) and setup-back-replication subscribes src at once.
/// Tables without a primary key stream with `REPLICA IDENTITY FULL`, set on src before they are
/// published (recorded in the pair's config under ``riKey``, audited, restored at teardown).
struct NativeEngine: ReplicationEngine {
  static let forwardName = "belt_fwd"
  static let backName = "belt_back"
  /// The config key recording the tables whose replica identity belt set to FULL.
  static let riKey = "replica_identity_full"

  var kind: EngineKind { .native }

  var capabilities: EngineCapabilities {
    EngineCapabilities(
      bothDirectionsAtOnce: false, lockedCopyForGenerated: false, streamsTablesWithoutPK: true,
      applyErrorSource:
        "pg_stat_subscription_stats (the message is in the subscriber's server log)",
      startsFromExportedSnapshot: true
    )
  }

  /// Both directions at once when both servers have the `origin` filter (PostgreSQL 16) and src
  /// receives nothing from a publisher of its own (forward with `origin = none` would leave
  /// that out).
  func capabilities(src sroot: PGConnection, dst droot: PGConnection) throws -> EngineCapabilities {
    var c = capabilities
    let old = [(Side.src, sroot), (.dst, droot)].filter { $0.1.serverVersion < 16 }
    if !old.isEmpty {
      c.bothDirectionsWhyNot =
        old.map { "\($0.0.rawValue) is PostgreSQL \($0.1.serverVersion)" }.joined(separator: ", ")
        + ": no origin filter before 16, so back replication is attached only once forward is dropped"
    } else if let other = try sroot.query(
      """
      SELECT string_agg(subname, ', ' ORDER BY subname) FROM pg_subscription
       WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND subname <> $1
      """, [Self.backName]
    ).scalar {
      c.bothDirectionsWhyNot =
        "src subscribes to another publisher (\(other)): forward with origin = none would leave out what it receives, "
        + "so back replication is attached only once forward is dropped"
    }
    c.bothDirectionsAtOnce = c.bothDirectionsWhyNot == nil
    return c
  }

  func name(_ direction: Direction) -> String {
    direction == .forward ? Self.forwardName : Self.backName
  }
  var tableGroup: String { "publication \(Self.forwardName)" }
  var lockSchemas: [String] { [] }

  /// The slot of a direction on its provider, named after the provider's database (slots are
  /// per server, and a fleet's databases share servers).
  static func slotName(_ direction: Direction, providerDB: String) -> String {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in providerDB.utf8 {
      h ^= UInt64(b)
      h = h &* 0x100_0000_01b3
    }
    let hex = String(h, radix: 16)
    return
      "\(direction == .forward ? forwardName : backName)_\(String(repeating: "0", count: 16 - hex.count))\(hex)"
  }

  // MARK: what a server needs

  func travel(_ t: TableInfo) -> TableTravel {
    if t.kind == "p" {
      return TableTravel(
        how: .notMoved, label: "unavailable",
        why: "partitioned parent: its partitions are replicated")
    }
    if t.persistence == "u" {
      return TableTravel(
        how: .copiedAtCutover, label: "dump_and_load",
        why:
          "unlogged (logical replication does not see its changes): copied during cutover by sync-tables"
      )
    }
    if t.replicaIdentity == "n" {
      return TableTravel(
        how: .copiedAtCutover, label: "dump_and_load",
        why:
          "REPLICA IDENTITY NOTHING (publishing it would make its UPDATEs and DELETEs fail on src): copied during cutover by sync-tables"
      )
    }
    if !t.hasPK && t.replicaIdentity == "d" {
      return TableTravel(
        how: .streamed, label: "native",
        why:
          "no primary key: belt sets REPLICA IDENTITY FULL on src before publishing it (restored at teardown); "
          + "dst finds each changed row with an index on the table if it has one, else by a scan")
    }
    return TableTravel(how: .streamed, label: "native", why: nil)
  }

  func serverChecks(_ c: PGConnection, side: Side) throws -> [ServerCheck] {
    let r = try c.query(
      """
      SELECT current_setting('server_version_num')::int AS num,
             current_setting('max_logical_replication_workers', true) AS workers,
             (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS super
      """)
    guard let row = r.rows.first else { return [] }
    let num = row.int("num") ?? 0
    var checks = [
      ServerCheck(
        name: "native_replication", value: "PostgreSQL \(num / 10000)", ok: num >= 100000,
        why: num >= 100000 ? nil : "publications and subscriptions need PostgreSQL 10 or later")
    ]
    let workers = Int(row.string("workers")) ?? 0
    checks.append(
      ServerCheck(
        name: "max_logical_replication_workers", value: "\(workers)", ok: workers >= 2,
        why: workers >= 2 ? nil : "needs at least 2 (an apply worker and a table sync worker)"))
    let superuser = row.bool("super")
    checks.append(
      ServerCheck(
        name: "native_privileges", value: superuser ? "superuser" : "not superuser", ok: superuser,
        why: superuser
          ? nil : "the root user must be a superuser to create publications and subscriptions"))
    return checks
  }

  func budgetChecks(_ c: PGConnection, server key: String, uses: [BudgetUse], dc: String) throws
    -> [ServerCheck]
  {
    let r = try c.query(
      """
      SELECT current_setting('max_replication_slots')::int AS max_slots,
             current_setting('max_wal_senders')::int AS max_senders,
             current_setting('max_logical_replication_workers')::int AS max_lr,
             (SELECT count(*) FROM pg_replication_slots) AS slots,
             (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender') AS senders,
             (SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('logical replication worker',
                'logical replication apply worker', 'logical replication tablesync worker')) AS lr,
             (SELECT count(*) FROM pg_stat_subscription w JOIN pg_subscription s ON s.oid = w.subid
                JOIN pg_database d ON d.oid = s.subdbid
               WHERE d.datname = ANY($1::text[]) AND w.pid IS NOT NULL AND w.relid IS NULL) AS ours
      """, [PGArray.literal(Array(Set(uses.map(\.dbname))))])
    guard let row = r.rows.first else { return [] }
    // One slot and one WAL sender per database this server provides for (src: forward, dst: the
    // back slot, armed ahead); one apply worker per subscription it holds at some point (forward
    // on dst, back on src after the cutover), those already running aside, plus one for the
    // table copies (they queue for it).
    let provides = uses.count
    let applies = max(0, uses.count - (row.int("ours") ?? 0)) + 1
    func item(_ name: String, max: Int, used: Int, needed: Int, what: String) -> ServerCheck {
      let free = Swift.max(0, max - used)
      return ServerCheck(
        name: "\(name) \(key)", value: "\(max)", ok: needed <= free,
        why: needed <= free
          ? "\(needed) needed, \(free) free (\(used) in use)"
          : "server \(key) needs \(needed) more \(what) but only \(free) of \(name) = \(max) are free (\(used) in use); "
            + "raise \(name) there and restart it")
    }
    return [
      item(
        "max_replication_slots", max: row.int("max_slots") ?? 0, used: row.int("slots") ?? 0,
        needed: provides,
        what: "replication slots (one per database of dc \(dc) this server provides for)"),
      item(
        "max_wal_senders", max: row.int("max_senders") ?? 0, used: row.int("senders") ?? 0,
        needed: provides,
        what: "WAL senders"),
      item(
        "max_logical_replication_workers", max: row.int("max_lr") ?? 0, used: row.int("lr") ?? 0,
        needed: applies,
        what:
          "logical replication workers (an apply worker per subscription, and one for table copies)"
      ),
    ]
  }

  func leftovers(onSource sroot: PGConnection) throws -> String? {
    guard try subscription(sroot, Self.forwardName) != nil else { return nil }
    return
      "src holds subscription \(Self.forwardName) from an earlier migration (it was a destination then); "
      + "run cleanup-previous-config before setup"
  }

  // MARK: catalog

  struct Subscription {
    var enabled: Bool
    var slot: String?
    var conninfo: String
  }

  func subscription(_ c: PGConnection, _ name: String) throws -> Subscription? {
    try c.query(
      """
      SELECT subenabled, subslotname, subconninfo FROM pg_subscription
       WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
      """, [name]
    ).rows.first.map {
      Subscription(
        enabled: $0.bool("subenabled"), slot: $0["subslotname"] ?? nil,
        conninfo: $0.string("subconninfo"))
    }
  }

  func publicationExists(_ c: PGConnection, _ name: String) throws -> Bool {
    try c.query("SELECT 1 FROM pg_publication WHERE pubname = $1", [name]).values.count == 1
  }

  func publishedTables(_ c: PGConnection, schema: String) throws -> [String]? {
    guard try publicationExists(c, Self.forwardName) else { return nil }
    return try c.query(
      "SELECT tablename FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 ORDER BY 1",
      [Self.forwardName, schema]
    ).rows.map { $0.string("tablename") }
  }

  // MARK: setting up

  func configured(_ direction: Direction, on c: PGConnection) throws -> Bool {
    try subscription(c, name(direction)) != nil
  }

  func prepare(
    _ ctx: any EngineContext, _ side: Side, root: PGConnection, owner: PGConnection, schema: String,
    tables: [String]
  ) throws -> [String] {
    let server = try ctx.config.server(side)
    return try ReplicationRole.ensure(
      ctx, side, root: root, owner: owner, role: server.replication, ownerName: server.owner.name,
      schema: schema,
      tables: tables, superuser: false)
  }

  /// On src, the forward publication (on dst, the back one), with the fence table in it from the
  /// start (the gate then needs no refresh inside the window). Tables without a primary key get
  /// `REPLICA IDENTITY FULL` first: publishing them without one would make their UPDATEs and
  /// DELETEs fail on src at once.
  func publish(
    _ ctx: any EngineContext, _ side: Side, root: PGConnection, schema: String, tables: [String]
  ) throws
    -> (node: String, added: [String])
  {
    let pub = side == .src ? Self.forwardName : Self.backName
    let all = try Catalog.tables(root, schema: schema)
    let byName = Dictionary(all.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    let needRI = tables.compactMap { byName[$0] }.filter { !$0.hasPK && $0.replicaIdentity == "d" }
      .map(\.name)
    if !needRI.isEmpty {
      // Recorded before the change, so a teardown after a crash restores them too.
      let key = side == .src ? Self.riKey : Self.riKey + "_dst"
      let before = ctx.config.raw[key]?.arrayValue?.compactMap(\.stringValue) ?? []
      try ctx.remember(key, .from(Array(Set(before + needRI)).sorted()))
      for t in needRI {
        try LockWait.run(root, side: side, what: "ALTER TABLE \(t) REPLICA IDENTITY FULL") {
          try root.exec("ALTER TABLE \(PGConnection.qualified(schema, t)) REPLICA IDENTITY FULL")
        }
      }
    }
    try root.exec("SET client_min_messages = warning; " + Fence.createSQL)
    var added: [String] = []
    var node: String
    let list = tables.map { PGConnection.qualified(schema, $0) }
    if try !publicationExists(root, pub) {
      let what = (list + (side == .src ? [Fence.qualified] : [])).joined(separator: ", ")
      try LockWait.run(root, side: side, what: "CREATE PUBLICATION \(pub)") {
        try root.exec("CREATE PUBLICATION \(PGConnection.quoteIdent(pub)) FOR TABLE \(what)")
      }
      added = tables
      node = "publication \(pub) created"
    } else {
      let have = Set(
        try root.query(
          "SELECT tablename FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2",
          [pub, schema]
        ).rows.map { $0.string("tablename") })
      added = tables.filter { !have.contains($0) }
      if !added.isEmpty {
        let more = added.map { PGConnection.qualified(schema, $0) }.joined(separator: ", ")
        try LockWait.run(root, side: side, what: "ALTER PUBLICATION \(pub) ADD TABLE") {
          try root.exec("ALTER PUBLICATION \(PGConnection.quoteIdent(pub)) ADD TABLE \(more)")
        }
      }
      node = "publication \(pub) exists"
    }
    if !needRI.isEmpty {
      node += "; REPLICA IDENTITY FULL set on \(needRI.count) table(s) without a primary key"
    }
    return (node, added)
  }

  func ensureSubscriberNode(_ ctx: any EngineContext, _ side: Side, root: PGConnection) throws
    -> String
  {
    try root.exec("SET client_min_messages = warning; " + Fence.createSQL)
    return "no node (native)"
  }

  /// Takes `tables` out of the forward publication; those not in it are left alone (DROP TABLE
  /// has no IF EXISTS, and a run interrupted after withdrawing does it again).
  func withdraw(_ c: PGConnection, schema: String, tables: [String]) throws {
    guard !tables.isEmpty, try publicationExists(c, Self.forwardName) else { return }
    let members = Set(
      try c.query(
        "SELECT c.relname FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid "
          + "JOIN pg_class c ON c.oid = pr.prrelid WHERE p.pubname = $1 AND c.relnamespace = $2::regnamespace",
        [Self.forwardName, PGConnection.quoteIdent(schema)]
      ).rows.map { $0.string("relname") })
    let present = tables.filter(members.contains)
    guard !present.isEmpty else { return }
    let list = present.map { PGConnection.qualified(schema, $0) }.joined(separator: ", ")
    try c.exec("ALTER PUBLICATION \(PGConnection.quoteIdent(Self.forwardName)) DROP TABLE \(list)")
  }

  func subscribe(
    _ ctx: any EngineContext, _ direction: Direction, on c: PGConnection, copyData: Bool
  ) throws -> String {
    let provider = try ctx.config.server(direction.provider)
    let sub = name(direction)
    let dsn = provider.conninfo(.replication, connectTimeout: 10)
    guard let existing = try subscription(c, sub) else {
      let slot = Self.slotName(direction, providerDB: provider.dbname)
      try c.execSecret(
        "CREATE SUBSCRIPTION \(PGConnection.quoteIdent(sub)) CONNECTION \(try c.literal(dsn)) "
          + "PUBLICATION \(PGConnection.quoteIdent(sub)) WITH (copy_data = \(copyData), slot_name = \(try c.literal(slot)))"
      )
      return "created"
    }
    var changes: [String] = []
    if existing.conninfo != dsn {
      try c.execSecret(
        "ALTER SUBSCRIPTION \(PGConnection.quoteIdent(sub)) CONNECTION \(try c.literal(dsn))")
      changes.append("connection updated")
    }
    if !existing.enabled {
      try c.exec("ALTER SUBSCRIPTION \(PGConnection.quoteIdent(sub)) ENABLE")
      changes.append("enabled")
    }
    return changes.isEmpty ? "exists" : changes.joined(separator: ", ")
  }

  func copyAdded(_ droot: PGConnection, schema: String, tables: [String]) throws {
    guard !tables.isEmpty else { return }
    try droot.exec(
      "ALTER SUBSCRIPTION \(PGConnection.quoteIdent(Self.forwardName)) REFRESH PUBLICATION WITH (copy_data = true)"
    )
  }

  func publishWithoutCopy(_ sroot: PGConnection, schema: String, table: String) throws {
    throw BeltError(
      .internal, "the native engine copies every streamed table itself; no locked copy is needed")
  }

  func backBlocked(src sroot: PGConnection, dst droot: PGConnection) throws -> String? {
    try publicationExists(sroot, Self.forwardName)
      ? nil : "publication \(Self.forwardName) does not exist on src; run setup first"
  }

  /// Back replication ahead of the cutover: the publication on dst and the back slot, made now
  /// (its creation waits for dst's open write transactions, which are few before the switch).
  /// With both directions at once (``capabilities(src:dst:)``), src subscribes to it at once,
  /// after forward runs with `origin = none`. Otherwise it is advanced by the gate once forward
  /// is dropped (``attachBack``), and nothing streams back until then. Once forward is gone
  /// (after a cutover), it is attached at once.
  func setUpBack(
    _ ctx: any EngineContext, src sroot: PGConnection, dst droot: PGConnection, tables: [String]
  ) throws
    -> (added: [String], subscription: String)
  {
    let (_, added) = try publish(ctx, .dst, root: droot, schema: ctx.schema, tables: tables)
    if try configured(.back, on: sroot) {
      return (added, try subscribe(ctx, .back, on: sroot, copyData: false))
    }
    let dst = try ctx.config.server(.dst)
    let slot = Self.slotName(.back, providerDB: dst.dbname)
    var how = "armed (slot \(slot) exists; attached when forward is dropped at cutover)"
    if try droot.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", [slot]).values
      .isEmpty
    {
      try droot.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot])
      how = "armed (slot \(slot) made on dst; attached when forward is dropped at cutover)"
    }
    if try configured(.forward, on: droot),
      try capabilities(src: sroot, dst: droot).bothDirectionsAtOnce
    {
      let waited = try filterForwardOrigin(ctx, src: sroot, dst: droot)
      // Not advanced: what dst's slot holds from forward carries forward's origin and is not
      // sent; what was written on dst itself since the slot was made is.
      try createBack(sroot, dst: dst, slot: slot)
      return (
        added,
        String(
          format:
            "created with origin = none beside forward (%@ runs with origin = none, checked on src after %.1f s); both directions run at once",
          Self.forwardName, waited)
      )
    }
    if try !configured(.forward, on: droot),
      let attached = try attachBack(ctx, src: sroot, dst: droot)
    {
      how = attached
    }
    return (added, how)
  }

  /// Moves the armed back slot to dst's current position (everything forward applied is behind
  /// it, so nothing loops back) and subscribes src to it without a copy.
  func attachBack(_ ctx: any EngineContext, src sroot: PGConnection, dst droot: PGConnection) throws
    -> String?
  {
    guard try !configured(.back, on: sroot) else { return nil }
    let dst = try ctx.config.server(.dst)
    let slot = Self.slotName(.back, providerDB: dst.dbname)
    guard
      try droot.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", [slot]).values
        .count == 1
    else {
      return nil
    }
    try droot.query("SELECT pg_replication_slot_advance($1, pg_current_wal_lsn())", [slot])
    try createBack(sroot, dst: dst, slot: slot)
    return "attached \(Self.backName) to slot \(slot) (advanced to dst's current position)"
  }

  /// The back subscription on src, on dst's existing slot, without a copy; with `origin = none`
  /// where src has the filter (16 or newer), so that it never sends on what forward applied.
  private func createBack(_ sroot: PGConnection, dst: ServerConfig, slot: String) throws {
    let dsn = dst.conninfo(.replication, connectTimeout: 10)
    let origin = sroot.serverVersion >= 16 ? ", origin = none" : ""
    try sroot.execSecret(
      "CREATE SUBSCRIPTION \(PGConnection.quoteIdent(Self.backName)) CONNECTION \(try sroot.literal(dsn)) "
        + "PUBLICATION \(PGConnection.quoteIdent(Self.backName)) "
        + "WITH (copy_data = false, create_slot = false, slot_name = \(try sroot.literal(slot))\(origin))"
    )
  }

  /// Sets `origin = none` on the forward subscription (src then sends only changes made on src,
  /// not those back replication applied there), and waits until src's stream runs with it: a
  /// running apply worker keeps the options it started with, and is restarted by the server
  /// moments after the change. The proof is on src: the command of the walsender holding
  /// forward's slot asks for `origin 'none'`.
  /// - Returns: the seconds waited.
  func filterForwardOrigin(
    _ ctx: any EngineContext, src sroot: PGConnection, dst droot: PGConnection,
    timeout: Double = 120
  ) throws -> Double {
    let t0 = Date()
    let q = PGConnection.quoteIdent(Self.forwardName)
    let origin = try droot.query(
      """
      SELECT suborigin FROM pg_subscription
       WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
      """, [Self.forwardName]
    ).scalar
    if origin != "none" { try droot.exec("ALTER SUBSCRIPTION \(q) SET (origin = none)") }
    guard let slot = try forwardSlot(droot) else {
      throw ctx.refuse("subscription \(Self.forwardName) has no slot on src; run setup again")
    }
    while true {
      let command = try sroot.query(
        """
        SELECT a.query FROM pg_replication_slots s JOIN pg_stat_activity a ON a.pid = s.active_pid
         WHERE s.slot_name = $1
        """, [slot]
      ).scalar
      if let command, command.contains("origin 'none'") { break }
      if Date().timeIntervalSince(t0) > timeout {
        throw BeltError(
          .timeout,
          "src's stream for \(Self.forwardName) did not restart with origin = none within \(Int(timeout)) s "
            + "(its walsender runs: \(command.map { String($0.prefix(160)) } ?? "none")); back replication was not subscribed: "
            + "check that forward is replicating, then run setup-back-replication again",
          dc: ctx.dc, db: ctx.db, retryable: true)
      }
      try LockWait.pause(0.1)
    }
    return Date().timeIntervalSince(t0)
  }

  // MARK: state

  func state(_ c: PGConnection, _ direction: Direction, server: ServerConfig) throws
    -> SubscriptionState
  {
    let sub = name(direction)
    guard let s = try subscription(c, sub) else { return .unconfigured }
    let r = try c.query(
      """
      SELECT count(*) FILTER (WHERE sr.srsubstate IN ('r', 's')) AS done,
             count(*) FILTER (WHERE sr.srsubstate NOT IN ('r', 's')) AS pending,
             (SELECT count(*) FROM pg_stat_subscription w WHERE w.subid = x.oid AND w.pid IS NOT NULL AND w.relid IS NULL) AS apply,
             (SELECT min(w.pid) FROM pg_stat_subscription w WHERE w.subid = x.oid AND w.relid IS NULL) AS apply_pid,
             (SELECT count(*) FROM pg_stat_subscription w WHERE w.subid = x.oid AND w.pid IS NOT NULL AND w.relid IS NOT NULL) AS syncs,
             coalesce((SELECT apply_error_count FROM pg_stat_subscription_stats t WHERE t.subid = x.oid), 0) AS errors,
             coalesce((SELECT sync_error_count FROM pg_stat_subscription_stats t WHERE t.subid = x.oid), 0) AS sync_errors
        FROM pg_subscription x LEFT JOIN pg_subscription_rel sr ON sr.srsubid = x.oid
       WHERE x.subname = $1 AND x.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
       GROUP BY x.oid
      """, [sub])
    let row = r.rows.first
    let done = row?.int("done") ?? 0
    let pending = row?.int("pending") ?? 0
    var st = SubscriptionState(
      state: pending == 0 ? "replicating" : "initializing", reason: nil, tablesDone: done,
      tablesPending: pending,
      slotName: s.slot, copyDone: pending == 0)
    st.workerRunning = (row?.int("apply") ?? 0) > 0
    st.workerPid = row?.int("apply_pid")
    if !s.enabled {
      st.state = "down"
      st.reason = "subscription \(sub) is disabled"
      return st
    }
    let key = "\(server.ip):\(server.port)/\(server.dbname)/\(sub)"
    if (row?.int("apply") ?? 0) == 0 {
      let errors = row?.int("errors") ?? 0
      let waited = GraceClock.shared.observe(key, "apply")
      if errors > 0 || waited >= PglogicalStatus.grace {
        st.state = "down"
        st.reason =
          "the apply worker of \(sub) is not running"
          + (errors > 0
            ? " (\(errors) apply or copy error(s) counted in pg_stat_subscription_stats)"
            : " (for \(Int(waited)) s)")
          + "; the message is in the \(direction.subscriber.rawValue) server log (\(server.ip):\(server.port))"
        return st
      }
      st.reason = "the apply worker of \(sub) is starting"
      return st
    }
    if pending > 0, (row?.int("syncs") ?? 0) == 0, (row?.int("sync_errors") ?? 0) > 0 {
      // A table copy that fails is retried by a new sync worker every few seconds, for ever.
      let waited = GraceClock.shared.observe(key, "sync \(pending)")
      if waited >= PglogicalStatus.grace {
        st.state = "down"
        st.reason =
          "the initial copy of \(pending) table(s) is failing (\(row?.int("sync_errors") ?? 0) copy error(s) counted in "
          + "pg_stat_subscription_stats); the message is in the \(direction.subscriber.rawValue) server log (\(server.ip):\(server.port))"
        return st
      }
      return st
    }
    GraceClock.shared.clear(key)
    return st
  }

  /// Whether back replication is armed on dst: its publication and slot exist.
  func backArmed(_ droot: PGConnection) throws -> Bool {
    try droot.query(
      """
      SELECT 1 FROM pg_publication p, pg_replication_slots s
       WHERE p.pubname = $1 AND s.slot_name LIKE $2 AND s.database = current_database()
      """, [Self.backName, Self.backName + "\\_%"]
    ).values.count > 0
  }

  func sourceFacts(_ c: PGConnection, schema: String) throws -> SourceFacts? {
    guard let tables = try publishedTables(c, schema: schema) else { return nil }
    var facts = SourceFacts(publishedTables: tables.count)
    let slot = try c.query(
      "SELECT slot_name FROM pg_replication_slots WHERE database = current_database() AND slot_name LIKE $1",
      [Self.forwardName + "\\_%"]
    ).scalar
    if let slot, let row = try SlotFacts.lag(c, slot: slot) {
      facts.slotLag = row.int("slot_lag")
      facts.lags = ["sent", "write", "flush", "replay"].map { row.int($0).map { max(0, $0) } }
    }
    facts.slotWaitsFor = try SlotFacts.creationWaitsFor(c)
    return facts
  }

  // MARK: the gate and teardown

  func forwardSlot(_ droot: PGConnection) throws -> String? {
    try subscription(droot, Self.forwardName)?.slot
  }

  func enableForGate(_ droot: PGConnection) throws -> String? {
    guard let s = try subscription(droot, Self.forwardName), !s.enabled else { return nil }
    try droot.exec("ALTER SUBSCRIPTION \(PGConnection.quoteIdent(Self.forwardName)) ENABLE")
    return
      "\(Self.forwardName) was disabled (an earlier teardown stopped before dropping it); enabled it for the gate"
  }

  func fencePublished(_ sroot: PGConnection, qualified: String) throws -> Bool {
    try sroot.query(
      "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
      [Self.forwardName, Fence.schema, Fence.table]
    ).values.count == 1
  }

  func publishFence(_ sroot: PGConnection, qualified: String) throws {
    // The fence is published from the start (``publish``); a pair whose publication lacks it
    // cannot get it without a refresh on dst, which the gate does not do inside the window.
    throw BeltError(
      .preconditionFailed,
      "the fence table \(qualified) is not in publication \(Self.forwardName); run setup again before the cutover"
    )
  }

  /// Drops the direction's subscription. When its provider does not answer, the subscription
  /// is detached from its slot first (`slot_name = NONE`) and the slot left there is named; run
  /// teardown again once the provider is back to drop it.
  func drop(_ direction: Direction, on c: PGConnection, provider: PGConnection?) throws -> (
    dropped: Bool, notes: [String]
  ) {
    let sub = name(direction)
    var notes: [String] = []
    guard let s = try subscription(c, sub) else {
      if let provider { notes += try dropProviderSlots(provider, direction) }
      return (false, notes)
    }
    let q = PGConnection.quoteIdent(sub)
    if s.enabled { try c.exec("ALTER SUBSCRIPTION \(q) DISABLE") }
    // Its slot already gone from the provider (dropped by a teardown that ran while this side
    // did not answer): detach, or DROP SUBSCRIPTION would fail to drop it there.
    let slotGone =
      try provider.map { p in
        try s.slot.map {
          try p.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", [$0]).values
            .isEmpty
        } ?? true
      } ?? false
    if slotGone {
      try c.exec("ALTER SUBSCRIPTION \(q) SET (slot_name = NONE)")
      try c.exec("DROP SUBSCRIPTION \(q)")
    } else if provider != nil {
      do {
        try c.exec("DROP SUBSCRIPTION \(q)")
      } catch let e as PGError
        where e.sqlState == "08006" || e.sqlState == "08001"
        || e.message.contains("could not connect")
      {
        try detachAndDrop(c, q, slot: s.slot, notes: &notes)
      }
    } else {
      try detachAndDrop(c, q, slot: s.slot, notes: &notes)
    }
    if let provider { notes += try dropProviderSlots(provider, direction) }
    return (true, notes)
  }

  private func detachAndDrop(_ c: PGConnection, _ q: String, slot: String?, notes: inout [String])
    throws
  {
    try c.exec("ALTER SUBSCRIPTION \(q) SET (slot_name = NONE)")
    try c.exec("DROP SUBSCRIPTION \(q)")
    if let slot {
      notes.append(
        "slot \(slot) was left on the provider (it did not answer); it holds WAL there until dropped: run the same teardown again once it is back"
      )
    }
  }

  func dropProviderSlots(_ provider: PGConnection, _ direction: Direction) throws -> [String] {
    let slots = try provider.query(
      "SELECT slot_name, active FROM pg_replication_slots WHERE database = current_database() AND slot_name LIKE $1",
      [name(direction) + "\\_%"]
    ).rows
    var notes: [String] = []
    for s in slots where !s.bool("active") {
      do {
        try provider.query("SELECT pg_drop_replication_slot($1)", [s.string("slot_name")])
        notes.append("dropped slot \(s.string("slot_name"))")
      } catch let e as PGError where e.sqlState == "42704" || e.sqlState == "55006" {}
    }
    return notes
  }

  func removeLocal(_ ctx: any EngineContext, _ c: PGConnection, side: Side) throws -> [String] {
    var notes = try restoreReplicaIdentity(ctx, side, c)
    for pub in [Self.forwardName, Self.backName] where try publicationExists(c, pub) {
      try c.exec("DROP PUBLICATION IF EXISTS \(PGConnection.quoteIdent(pub))")
      notes.append("dropped publication \(pub)")
    }
    return notes
  }

  /// Restores `REPLICA IDENTITY DEFAULT` on the tables belt set to FULL (recorded in the config).
  func restoreReplicaIdentity(_ ctx: any EngineContext, _ side: Side, _ c: PGConnection) throws
    -> [String]
  {
    let key = side == .src ? Self.riKey : Self.riKey + "_dst"
    let names = ctx.config.raw[key]?.arrayValue?.compactMap(\.stringValue) ?? []
    guard !names.isEmpty else { return [] }
    let full = Set(
      try c.query(
        """
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND c.relreplident = 'f'
        """, [ctx.schema, PGArray.literal(names)]
      ).rows.map { $0.string("relname") })
    for t in names where full.contains(t) {
      try LockWait.run(c, side: side, what: "ALTER TABLE \(t) REPLICA IDENTITY DEFAULT") {
        try c.exec("ALTER TABLE \(PGConnection.qualified(ctx.schema, t)) REPLICA IDENTITY DEFAULT")
      }
    }
    try ctx.remember(key, .null)
    return full.isEmpty ? [] : ["REPLICA IDENTITY DEFAULT restored on \(full.count) table(s)"]
  }

  func dropRole(
    _ ctx: any EngineContext, _ side: Side, _ root: PGConnection, name: String, schema: String,
    protected: [String]
  )
    throws -> String?
  {
    try ReplicationRole.drop(
      ctx, side, root, name: name, schema: schema, protected: protected, extraSchemas: [])
  }

  func removeExtension(_ c: PGConnection, side: Side) throws -> [String] { [] }

  func cleanupPrevious(_ ctx: any EngineContext, _ sroot: PGConnection) throws -> [String] {
    var notes: [String] = []
    for direction in [Direction.forward, .back]
    where try drop(direction, on: sroot, provider: nil).dropped {
      notes.append("dropped subscription \(name(direction))")
    }
    notes += try removeLocal(ctx, sroot, side: .src)
    return notes
  }

  // MARK: belt's own initial copy

  /// `CREATE_REPLICATION_SLOT … LOGICAL pgoutput (SNAPSHOT 'export')` on a replication
  /// connection to src as root (`EXPORT_SNAPSHOT` before PostgreSQL 15).
  func exportSnapshot(_ ctx: any EngineContext) throws -> ExportedSnapshot {
    let src = try ctx.config.server(.src)
    let slot = Self.slotName(.forward, providerDB: src.dbname)
    guard try publicationExists(try ctx.connect(.src, .root, noTimeout: false), Self.forwardName)
    else {
      throw BeltError(
        .internal, "publication \(Self.forwardName) must exist on src before the slot is created")
    }
    let c = try PGConnection(
      conninfo: src.conninfo(.root, extra: [("replication", "database")]),
      label: "src as root, replication (\(src.ip):\(src.port)/\(src.dbname))")
    c.audit = try ctx.auditContext(.src, .root)
    let how = c.serverVersion >= 15 ? "(SNAPSHOT 'export')" : "EXPORT_SNAPSHOT"
    let r = try c.exec(
      "CREATE_REPLICATION_SLOT \(PGConnection.quoteIdent(slot)) LOGICAL pgoutput \(how)")
    guard let row = r.rows.first, let id = row["snapshot_name"] ?? nil else {
      c.close()
      throw BeltError(.internal, "CREATE_REPLICATION_SLOT \(slot) returned no snapshot")
    }
    ctx.logger.info(
      "slot \(slot) created on src at \(row.string("consistent_point")), snapshot \(id)")
    return ExportedSnapshot(
      id: id, slot: slot, lsn: row.string("consistent_point"), connection: c)
  }

  func snapshotSlot(_ ctx: any EngineContext, _ sroot: PGConnection) throws -> String? {
    let slot = Self.slotName(.forward, providerDB: try ctx.config.server(.src).dbname)
    return try sroot.query(
      "SELECT slot_name FROM pg_replication_slots WHERE slot_name = $1", [slot]
    )
    .scalar
  }

  func subscribeFromSnapshot(_ ctx: any EngineContext, on droot: PGConnection) throws -> String {
    guard try subscription(droot, Self.forwardName) == nil else {
      return try subscribe(ctx, .forward, on: droot, copyData: false)
    }
    let src = try ctx.config.server(.src)
    let slot = Self.slotName(.forward, providerDB: src.dbname)
    let dsn = src.conninfo(.replication, connectTimeout: 10)
    try droot.execSecret(
      "CREATE SUBSCRIPTION \(PGConnection.quoteIdent(Self.forwardName)) CONNECTION \(try droot.literal(dsn)) "
        + "PUBLICATION \(PGConnection.quoteIdent(Self.forwardName)) "
        + "WITH (copy_data = false, create_slot = false, slot_name = \(try droot.literal(slot)))")
    return "created on slot \(slot) (no copy: belt copied the data)"
  }
}
