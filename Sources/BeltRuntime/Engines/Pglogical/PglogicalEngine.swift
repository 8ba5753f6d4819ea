import Foundation

/// pglogical 2.x as a replication engine, with pgbelt's names (design.md §6): node `pg1` on src,
/// `pg2` on dst, forward subscription `pg1_pg2` on dst, back subscription `pg2_pg1` on src,
/// replication set `pgbelt` on the provider side.
struct PglogicalEngine: ReplicationEngine {
  var kind: EngineKind { .pglogical }

  var capabilities: EngineCapabilities {
    EngineCapabilities(
      bothDirectionsAtOnce: true, lockedCopyForGenerated: true, streamsTablesWithoutPK: false,
      applyErrorSource: "the subscriber's server log")
  }

  func name(_ direction: Direction) -> String {
    direction == .forward ? PGL.forwardSub : PGL.backSub
  }
  var tableGroup: String { "set \(PGL.setName)" }
  var lockSchemas: [String] { ["pglogical"] }
  /// pglogical's functions that only read (the audit log leaves them out).
  static let readOnlyFunctions: Set<String> = [
    "show_subscription_status", "show_subscription_table", "pglogical_gen_slot_name",
    "pglogical_version",
    "pglogical_version_num", "pglogical_max_proto_version", "pglogical_min_proto_version",
    "show_repset_table_info",
    "table_data_filtered", "pglogical_node_info", "wait_slot_confirm_lsn",
    "wait_for_subscription_sync_complete",
    "wait_for_table_sync_complete", "xact_commit_timestamp_origin",
  ]

  // MARK: what a server needs

  func travel(_ t: TableInfo) -> TableTravel {
    if t.kind == "p" {
      return TableTravel(
        how: .notMoved, label: "unavailable",
        why: "partitioned parent: its partitions are replicated")
    }
    let generated =
      t.generatedColumns.count == 1
      ? "generated column \(t.generatedColumns[0])"
      : "generated columns \(t.generatedColumns.joined(separator: ", "))"
    var reasons: [String] = []
    if !t.hasPK { reasons.append("no primary key") }
    if t.persistence == "u" {
      reasons.append("unlogged (logical replication does not see its changes)")
    }
    if t.hasPK && t.replicaIdentity == "n" {
      reasons.append(
        "REPLICA IDENTITY NOTHING (its UPDATEs and DELETEs cannot be replicated; set it back to DEFAULT to stream it)"
      )
    }
    if !reasons.isEmpty {
      var why = reasons.joined(separator: ", ") + ": copied during cutover by sync-tables"
      if t.hasGenerated { why += " (\(generated) is computed on dst)" }
      return TableTravel(how: .copiedAtCutover, label: "dump_and_load", why: why)
    }
    if t.hasGenerated {
      return TableTravel(
        how: .lockedCopy, label: "locked_copy",
        why:
          "\(generated): copied by belt under a short write lock on this table once the initial copy is done, "
          + "then replicated (pglogical cannot copy it)")
    }
    return TableTravel(how: .streamed, label: "pglogical", why: nil)
  }

  func serverChecks(_ c: PGConnection, side: Side) throws -> [ServerCheck] {
    func setting(_ name: String) throws -> String? {
      try c.query("SELECT setting FROM pg_settings WHERE name = $1", [name]).scalar
    }
    var checks: [ServerCheck] = []
    let spl = try setting("shared_preload_libraries") ?? ""
    let libs = spl.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    let missing = ["pg_stat_statements", "pglogical"].filter { !libs.contains($0) }
    checks.append(
      ServerCheck(
        name: "shared_preload_libraries", value: spl, ok: !missing.contains("pglogical"),
        why: missing.isEmpty
          ? nil : "\(missing.joined(separator: ", ")) missing from shared_preload_libraries"))
    if let opl = try setting("output_plugin_libraries") {
      let list = opl.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
      let ok = list.contains("pglogical_output") || list.contains("*")
      checks.append(
        ServerCheck(
          name: "output_plugin_libraries", value: opl, ok: ok,
          why: ok
            ? nil : "add pglogical_output to output_plugin_libraries, or subscriptions stay down"))
    }
    let avail = try c.query(
      "SELECT default_version FROM pg_available_extensions WHERE name = 'pglogical'"
    ).scalar
    checks.append(
      ServerCheck(
        name: "pglogical_available", value: avail ?? "no", ok: avail != nil,
        why: avail == nil ? "install the pglogical package on this server" : nil))
    return checks
  }

  func budgetChecks(_ c: PGConnection, server key: String, uses: [BudgetUse], dc: String) throws
    -> [ServerCheck]
  {
    try PglogicalBudget.check(c, key: key, uses: uses, dc: dc)
  }

  func leftovers(onSource sroot: PGConnection) throws -> String? {
    guard try PGL.installed(sroot) else { return nil }
    var found: [String] = []
    if let node = try PGL.localNode(sroot), node.name != PGL.srcNode {
      found.append("pglogical node \(node.name)")
    }
    if try PGL.subscription(sroot, PGL.forwardSub) != nil {
      found.append("subscription \(PGL.forwardSub)")
    }
    guard !found.isEmpty else { return nil }
    return
      "src holds \(found.joined(separator: " and ")) from an earlier migration (it was a destination then); "
      + "run cleanup-previous-config before setup"
  }

  // MARK: setting up

  func configured(_ direction: Direction, on c: PGConnection) throws -> Bool {
    try PGL.subscription(c, name(direction)) != nil
  }

  func publishedTables(_ c: PGConnection, schema: String) throws -> [String]? {
    try PGL.setTables(c, schema: schema)
  }

  func prepare(
    _ ctx: any EngineContext, _ side: Side, root: PGConnection, owner: PGConnection, schema: String,
    tables: [String]
  ) throws -> [String] {
    let server = try ctx.config.server(side)
    return try PGL.prepare(
      ctx, side, root: root, owner: owner, pgl: server.replication, ownerName: server.owner.name,
      schema: schema,
      tables: tables)
  }

  func publish(
    _ ctx: any EngineContext, _ side: Side, root: PGConnection, schema: String, tables: [String]
  ) throws
    -> (node: String, added: [String])
  {
    let node = try ensureSubscriberNode(ctx, side, root: root)
    return (node, try PGL.ensureSet(root, side: side, schema: schema, tables: tables))
  }

  func ensureSubscriberNode(_ ctx: any EngineContext, _ side: Side, root: PGConnection) throws
    -> String
  {
    let server = try ctx.config.server(side)
    return try PGL.ensureNode(
      root, name: side == .src ? PGL.srcNode : PGL.dstNode, dsn: server.pglogicalDSN, side: side)
  }

  func withdraw(_ c: PGConnection, schema: String, tables: [String]) throws {
    for t in tables {
      try c.query(
        "SELECT pglogical.replication_set_remove_table($1, $2::regclass)",
        [PGL.setName, PGConnection.qualified(schema, t)])
    }
  }

  func subscribe(
    _ ctx: any EngineContext, _ direction: Direction, on c: PGConnection, copyData: Bool
  ) throws -> String {
    let provider = try ctx.config.server(direction.provider)
    return try PGL.ensureSubscription(
      c, name: name(direction), providerDSN: provider.pglogicalDSN, syncData: copyData)
  }

  func copyAdded(_ droot: PGConnection, schema: String, tables: [String]) throws {
    // One table at a time: alter_subscription_synchronize would also make pglogical copy the
    // set's tables that have a generated column (they have no sync status on dst).
    for t in tables {
      try droot.query(
        "SELECT pglogical.alter_subscription_resynchronize_table($1, $2::regclass, false)",
        [PGL.forwardSub, PGConnection.qualified(schema, t)])
    }
  }

  func publishWithoutCopy(_ sroot: PGConnection, schema: String, table: String) throws {
    try sroot.query(
      "SELECT pglogical.replication_set_add_table($1, $2::regclass, false)",
      [PGL.setName, PGConnection.qualified(schema, table)])
  }

  func backBlocked(src sroot: PGConnection, dst droot: PGConnection) throws -> String? {
    guard try PGL.localNode(sroot)?.name == PGL.srcNode,
      try PGL.localNode(droot)?.name == PGL.dstNode
    else {
      return
        "pglogical nodes \(PGL.srcNode) (src) and \(PGL.dstNode) (dst) are not both configured; run setup first"
    }
    return nil
  }

  func setUpBack(
    _ ctx: any EngineContext, src sroot: PGConnection, dst droot: PGConnection, tables: [String]
  ) throws
    -> (added: [String], subscription: String)
  {
    let (_, added) = try publish(ctx, .dst, root: droot, schema: ctx.schema, tables: tables)
    return (added, try subscribe(ctx, .back, on: sroot, copyData: false))
  }

  func attachBack(_ ctx: any EngineContext, src sroot: PGConnection, dst droot: PGConnection) throws
    -> String?
  { nil }

  // MARK: state

  func state(_ c: PGConnection, _ direction: Direction, server: ServerConfig) throws
    -> SubscriptionState
  {
    try PglogicalStatus.state(c, name(direction), side: direction.subscriber, server: server)
  }

  func backArmed(_ droot: PGConnection) throws -> Bool { false }

  func sourceFacts(_ c: PGConnection, schema: String) throws -> SourceFacts? {
    guard try PGL.installed(c) else { return nil }
    var facts = SourceFacts(publishedTables: try PGL.setTables(c, schema: schema)?.count)
    let slot =
      try c.query(
        "SELECT pglogical.pglogical_gen_slot_name(current_database(), $1, $2)",
        [PGL.srcNode, PGL.forwardSub]
      ).scalar ?? ""
    if let row = try SlotFacts.lag(c, slot: slot) {
      facts.slotLag = row.int("slot_lag")
      facts.lags = ["sent", "write", "flush", "replay"].map { row.int($0).map { max(0, $0) } }
    }
    facts.slotWaitsFor = try SlotFacts.creationWaitsFor(c)
    return facts
  }

  // MARK: the gate and teardown

  func forwardSlot(_ droot: PGConnection) throws -> String? {
    try PGL.subscription(droot, PGL.forwardSub)?.slotName
  }

  func enableForGate(_ droot: PGConnection) throws -> String? {
    guard let sub = try PGL.subscription(droot, PGL.forwardSub), !sub.enabled else { return nil }
    try droot.query("SELECT pglogical.alter_subscription_enable($1, true)", [PGL.forwardSub])
    return
      "\(PGL.forwardSub) was disabled (an earlier teardown stopped before dropping it); enabled it for the gate"
  }

  func fencePublished(_ sroot: PGConnection, qualified: String) throws -> Bool {
    try sroot.query(
      """
      SELECT 1 FROM pglogical.replication_set_table t
        JOIN pglogical.replication_set rs ON rs.set_id = t.set_id
        JOIN pglogical.local_node l ON l.node_id = rs.set_nodeid
       WHERE rs.set_name = $1 AND t.set_reloid = to_regclass($2)
      """, [PGL.setName, qualified]
    ).values.count == 1
  }

  func publishFence(_ sroot: PGConnection, qualified: String) throws {
    try LockWait.run(
      sroot, side: .src, what: "adding \(qualified) to set \(PGL.setName)", schemas: lockSchemas
    ) {
      do {
        try sroot.query(
          "SELECT pglogical.replication_set_add_table($1, $2::regclass, false)",
          [PGL.setName, qualified])
      } catch let e as PGError where e.sqlState == "23505" {}
    }
  }

  func drop(_ direction: Direction, on c: PGConnection, provider: PGConnection?) throws -> (
    dropped: Bool, notes: [String]
  ) {
    try PGL.dropSubscription(c, name: name(direction), provider: provider)
  }

  func dropProviderSlots(_ provider: PGConnection, _ direction: Direction) throws -> [String] {
    try PGL.dropSlots(provider, subscription: name(direction), slotName: nil, timeout: 15)
  }

  func removeLocal(_ ctx: any EngineContext, _ c: PGConnection, side: Side) throws -> [String] {
    try PGL.dropSetAndNode(c, node: side == .src ? PGL.srcNode : PGL.dstNode)
  }

  func dropRole(
    _ ctx: any EngineContext, _ side: Side, _ root: PGConnection, name: String, schema: String,
    protected: [String]
  )
    throws -> String?
  {
    try PGL.dropRole(ctx, side, root, name: name, schema: schema, protected: protected)
  }

  func removeExtension(_ c: PGConnection, side: Side) throws -> [String] {
    try PGL.dropExtension(c, side: side)
  }

  func cleanupPrevious(_ ctx: any EngineContext, _ sroot: PGConnection) throws -> [String] {
    var notes: [String] = []
    guard try PGL.installed(sroot) else { return notes }
    for name in [PGL.forwardSub, PGL.backSub] {
      try LockWait.run(
        sroot, side: .src, what: "dropping subscription \(name)", schemas: lockSchemas
      ) {
        if try PGL.dropSubscription(sroot, name: name, provider: nil).dropped {
          notes.append("dropped subscription \(name)")
        }
      }
    }
    if let node = try PGL.localNode(sroot), [PGL.srcNode, PGL.dstNode].contains(node.name) {
      try LockWait.run(
        sroot, side: .src, what: "dropping set \(PGL.setName) and node \(node.name)",
        schemas: lockSchemas
      ) {
        notes += try PGL.dropSetAndNode(sroot, node: node.name)
      }
    }
    return notes
  }

  // MARK: belt's own initial copy: pglogical copies its tables itself

  func exportSnapshot(_ ctx: any EngineContext) throws -> ExportedSnapshot {
    throw BeltError(.internal, "the pglogical engine copies the initial data itself")
  }

  func snapshotSlot(_ ctx: any EngineContext, _ sroot: PGConnection) throws -> String? { nil }

  func subscribeFromSnapshot(_ ctx: any EngineContext, on droot: PGConnection) throws -> String {
    throw BeltError(.internal, "the pglogical engine copies the initial data itself")
  }
}
