import Foundation

/// The bodies of the replication commands other than status.
///
/// setup, setup-back-replication, the teardowns and reset: each is idempotent and checks its
/// preconditions before changing anything.
enum ReplicationSteps {
  // MARK: - shared

  /// Refuses when the pglogical user would be the root or owner user (belt makes it a superuser
  /// and drops it at teardown).
  static func checkPglogicalUser(_ ctx: PairContext, _ server: ServerConfig, _ side: Side) throws {
    let name = server.pglogical.name
    if name.isEmpty {
      throw BeltError(
        .configInvalid, "\(ctx.config.path): \(side.rawValue).pglogical_user.name is empty",
        dc: ctx.dc, db: ctx.db)
    }
    if name == server.root.name || name == server.owner.name {
      throw ctx.refuse(
        "\(side.rawValue).pglogical_user \"\(name)\" is also the root or owner user; belt makes the pglogical user a "
          + "superuser and drops it at teardown, so it must be a role of its own")
    }
  }

  /// Leaf tables (ordinary tables and partitions, not partitioned parents) of the schema on one
  /// side, filtered by the config's subset.
  static func targetTables(_ ctx: PairContext, _ c: PGConnection) throws -> [TableInfo] {
    Catalog.filter(
      try Catalog.tables(c, schema: ctx.schema), subset: ctx.config.tableSubset, schema: ctx.schema)
  }

  /// The tables of `names` that hold at least one row.
  static func nonEmpty(_ c: PGConnection, schema: String, _ names: [String]) throws -> [String] {
    var out: [String] = []
    var i = 0
    while i < names.count {
      let chunk = Array(names[i..<min(i + 200, names.count)])
      let probes = chunk.map { "EXISTS (SELECT 1 FROM \(PGConnection.qualified(schema, $0)))" }
        .joined(separator: ", ")
      let flags = try JSONParser.parse(try c.query("SELECT array_to_json(ARRAY[\(probes)])").scalar ?? "[]")
      for (n, f) in zip(chunk, flags.arrayValue ?? []) where f == true { out.append(n) }
      i += 200
    }
    return out
  }

  /// Refuses when any of `names` (tables of dst that pglogical's initial copy fills) holds rows.
  static func refuseFilled(_ ctx: PairContext, _ droot: PGConnection, schema: String, _ names: [String]) throws {
    let filled = try nonEmpty(droot, schema: schema, names)
    guard filled.isEmpty else {
      throw ctx.refuse(
        "dst table(s) \(quotedList(filled)) already hold rows; pglogical's initial copy needs them empty "
          + "(run reset first, or empty them)")
    }
  }

  /// Total size of the named tables (those that exist).
  static func tablesSize(_ c: PGConnection, schema: String, _ names: [String]) throws -> Int {
    let r = try c.query(
      """
      SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname = ANY($2::text[])
      """, [schema, PGArray.literal(names)])
    return Int(r.scalar ?? "0") ?? 0
  }

  /// "a", "b" for messages.
  static func quotedList(_ names: [String], limit: Int = 10) -> String {
    let shown = names.prefix(limit).map { Value.jsonQuote($0) }.joined(separator: ", ")
    return names.count > limit ? shown + " and \(names.count - limit) more" : shown
  }

  /// Human byte count.
  static func bytes(_ n: Int) -> String {
    let units = ["bytes", "kB", "MB", "GB", "TB"]
    var v = Double(n)
    var u = 0
    while v >= 10240, u < units.count - 1 {
      v /= 1024
      u += 1
    }
    return u == 0 ? "\(n) bytes" : "\(Int(v.rounded())) \(units[u])"
  }

  // MARK: - setup

  /// `belt setup`.
  static func setup(_ ctx: PairContext) throws -> Value {
    let src = try ctx.config.server(.src)
    let dst = try ctx.config.server(.dst)
    try checkPglogicalUser(ctx, src, .src)
    try checkPglogicalUser(ctx, dst, .dst)
    let schema = ctx.schema
    let sroot = try ctx.connect(.src, .root)
    let droot = try ctx.connect(.dst, .root)
    guard try Catalog.schemaExists(sroot, schema) else {
      throw ctx.refuse("schema \(Value.jsonQuote(schema)) does not exist on src")
    }
    let chosen = try targetTables(ctx, sroot)
    let leaves = chosen.filter { $0.kind == "r" }
    // pglogical copies and streams these from the start.
    let replicated = leaves.filter(\.replicatedFromStart).map(\.name)
    // A primary key and a generated column: belt copies them under a short write lock once the
    // initial copy is done (GeneratedColumns), never pglogical.
    let lockCopied = leaves.filter { $0.replicable && $0.hasGenerated }.map(\.name)
    // Without a primary key, unlogged, or REPLICA IDENTITY NOTHING: copied during the cutover.
    let noPK = leaves.filter { !$0.replicable }.map(\.name)
    var notes: [String] = []
    // Refused before anything changes: setup grants on every table as the owner.
    let foreign = chosen.filter { $0.owner != src.owner.name }
    guard foreign.isEmpty else {
      let list = foreign.prefix(10).map { "\(Value.jsonQuote($0.name)) (owned by \($0.owner))" }
        .joined(separator: ", ")
      throw ctx.refuse(
        "table(s) \(list)\(foreign.count > 10 ? " and \(foreign.count - 10) more" : "") of schema \(Value.jsonQuote(schema)) "
          + "are not owned by the owner user \(Value.jsonQuote(src.owner.name)); belt grants the pglogical user access to "
          + "them as the owner. Change their owner (ALTER TABLE ... OWNER TO), or leave them out with the config's tables")
    }
    if let subset = ctx.config.tableSubset {
      let found = Set(chosen.map(\.name))
      let missing = subset.map { Catalog.bareName($0, schema: schema) }.filter {
        !found.contains($0)
      }
      if !missing.isEmpty {
        notes.append("configured tables not found on src: \(quotedList(missing))")
      }
    }
    guard !(replicated + lockCopied).isEmpty else {
      let which =
        ctx.config.tableSubset.map { "the configured tables (\(quotedList($0)))" } ?? "all tables"
      throw ctx.refuse(
        "no tables were targeted to replicate: among \(which) of schema \(Value.jsonQuote(schema)) on src, none has a primary key"
      )
    }

    // A first setup also refuses rows already in dst before src changes (checked again below,
    // once the schema is loaded).
    if try PGL.subscription(droot, PGL.forwardSub) == nil {
      let onDst = Set(try Catalog.tables(droot, schema: schema).map(\.name))
      try refuseFilled(ctx, droot, schema: schema, (replicated + lockCopied).filter(onDst.contains))
    }

    // Extensions the schema load will need: refused before the first change when dst lacks one.
    if ctx.options.bool("schema", default: true), try PGL.subscription(droot, PGL.forwardSub) == nil {
      try SchemaExtensions.refuseUnavailable(ctx, src: sroot, dst: droot)
    }
    // src: role, extension, grants, node pg1, set pgbelt.
    notes += try PGL.prepare(
      ctx, .src, root: sroot, owner: try ctx.connect(.src, .owner), pgl: src.pglogical,
      ownerName: src.owner.name,
      schema: schema, tables: chosen.map(\.name)
    ).map { "src: " + $0 }
    let srcNode = try PGL.ensureNode(sroot, name: PGL.srcNode, dsn: src.pglogicalDSN, side: .src)
    let added = try PGL.ensureSet(sroot, side: .src, schema: schema, tables: replicated)

    // dst: schema (only before the first subscription), checks, role, node pg2, subscription.
    let existing = try PGL.subscription(droot, PGL.forwardSub)
    let schemaStep: String
    if !ctx.options.bool("schema", default: true) {
      schemaStep = "skipped (--no-schema)"
    } else if existing != nil {
      schemaStep = "skipped (\(PGL.forwardSub) already exists)"
    } else {
      // The schema pipeline (SchemaOps) dumps src's schema and applies it to dst.
      _ = try SchemaOps.dumpSchema(ctx)
      _ = try SchemaOps.loadSchema(ctx)
      schemaStep = "loaded"
    }
    guard try Catalog.schemaExists(droot, schema) else {
      throw ctx.refuse(
        "schema \(Value.jsonQuote(schema)) does not exist on dst; load the schema first (setup without --no-schema)"
      )
    }
    let dstTables = Set(try Catalog.tables(droot, schema: schema).map(\.name))
    let missingOnDst = replicated.filter { !dstTables.contains($0) }
    guard missingOnDst.isEmpty else {
      throw ctx.refuse(
        "table(s) \(quotedList(missingOnDst)) of schema \(Value.jsonQuote(schema)) are missing on dst; "
          + "load the schema first (setup without --no-schema, or load-schema)")
    }
    let inSet = Set(try PGL.setTables(sroot, schema: schema) ?? [])
    let pendingGenerated = existing == nil ? lockCopied : lockCopied.filter { !inSet.contains($0) }
    let toCopy = existing == nil ? replicated + pendingGenerated : added
    try refuseFilled(ctx, droot, schema: schema, toCopy)
    notes += try PGL.prepare(
      ctx, .dst, root: droot, owner: try ctx.connect(.dst, .owner), pgl: dst.pglogical,
      ownerName: dst.owner.name,
      schema: schema, tables: chosen.map(\.name).filter { dstTables.contains($0) }
    ).map { "dst: " + $0 }
    let dstNode = try PGL.ensureNode(droot, name: PGL.dstNode, dsn: dst.pglogicalDSN, side: .dst)
    if existing == nil {
      // A new subscription's initial copy takes every table of the set: one with a generated
      // column (in the set from an earlier migration, reset since) would make it fail for good.
      for t in lockCopied where inSet.contains(t) {
        try sroot.query(
          "SELECT pglogical.replication_set_remove_table($1, $2::regclass)",
          [PGL.setName, PGConnection.qualified(schema, t)])
      }
    }
    var subStep = try PGL.ensureSubscription(
      droot, name: PGL.forwardSub, providerDSN: src.pglogicalDSN, syncData: true)
    if existing != nil, !added.isEmpty {
      // One table at a time: alter_subscription_synchronize would also make pglogical copy
      // the set's tables that have a generated column (they have no sync status on dst).
      for t in added {
        try droot.query(
          "SELECT pglogical.alter_subscription_resynchronize_table($1, $2::regclass, false)",
          [PGL.forwardSub, PGConnection.qualified(schema, t)])
      }
      subStep += ", copying \(added.count) new table(s)"
    }

    // Tables with a generated column, once pglogical's initial copy is done.
    var generatedAdded: [Value] = []
    var generatedPending = pendingGenerated
    if !pendingGenerated.isEmpty {
      let forward = try ReplicationStatus.state(droot, PGL.forwardSub, side: .dst, server: dst)
      if try PGL.subscription(sroot, PGL.backSub) != nil {
        notes.append(
          "\(pendingGenerated.count) table(s) with a generated column (\(quotedList(pendingGenerated))) are not replicated; "
            + "back replication exists, so belt does not copy them now: the cutover copies them")
      } else if existing != nil, forward.state == "replicating", forward.copyDone {
        generatedAdded = try GeneratedColumns.addUnderLock(ctx, tables: pendingGenerated)
        generatedPending = []
      } else {
        notes.append(
          "\(pendingGenerated.count) table(s) with a generated column (\(quotedList(pendingGenerated))) are copied by belt "
            + "under a short write lock once the initial copy is done: migrate.lua does it; by hand, run setup again when "
            + "status shows replicating (until then the cutover would copy them)")
      }
    }

    var message = "replicating set \(PGL.setName) with \(replicated.count) table(s)"
    if !added.isEmpty, added.count != replicated.count { message += " (\(added.count) added)" }
    message += "; subscription \(PGL.forwardSub) \(subStep)"
    if !generatedAdded.isEmpty {
      message += "; \(generatedAdded.count) table(s) with a generated column copied under a write lock and added"
    }
    if !generatedPending.isEmpty {
      message += "; \(generatedPending.count) table(s) with a generated column wait for the initial copy"
    }
    if !noPK.isEmpty {
      message += "; \(noPK.count) table(s) without a primary key (or not replicable) are left for sync"
    }
    return [
      "message": .string(message), "tables": .from(replicated), "tables_added": .from(added),
      "generated_added": .array(generatedAdded), "generated_pending": .from(generatedPending),
      "no_pkey": .from(noPK), "schema": .string(schemaStep), "src_node": .string(srcNode),
      "dst_node": .string(dstNode), "subscription": .string(subStep), "notes": .from(notes),
    ]
  }

  // MARK: - setup-back-replication

  /// `belt setup-back-replication`.
  static func setupBack(_ ctx: PairContext) throws -> Value {
    _ = try ctx.config.server(.src)
    let dst = try ctx.config.server(.dst)
    let schema = ctx.schema
    let sroot = try ctx.connect(.src, .root)
    let droot = try ctx.connect(.dst, .root)
    guard try PGL.localNode(sroot)?.name == PGL.srcNode,
      try PGL.localNode(droot)?.name == PGL.dstNode
    else {
      throw ctx.refuse(
        "pglogical nodes \(PGL.srcNode) (src) and \(PGL.dstNode) (dst) are not both configured; run setup first"
      )
    }
    guard
      try droot.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [dst.pglogical.name]).values
        .count == 1
    else {
      throw ctx.refuse(
        "the pglogical user \(Value.jsonQuote(dst.pglogical.name)) does not exist on dst; run setup first"
      )
    }
    let forward = try ReplicationStatus.state(droot, PGL.forwardSub, side: .dst, server: dst)
    // An unfinished copy counts even when pglogical reports the subscription down for a moment
    // (a sync worker restarting): adding dst's tables to a set would queue behind the copy.
    if forward.state == "initializing" || !forward.copyDone {
      let progress =
        forward.tablesDone.map { " (\($0) table(s) copied, \(forward.tablesPending) pending)" }
        ?? ""
      throw ctx.refuse(
        "forward replication \(PGL.forwardSub) is still initializing\(progress); set up back replication once status shows replicating"
      )
    }
    let replicated = try targetTables(ctx, sroot).filter(\.replicable).map(\.name)
    let dstTables = Set(try Catalog.tables(droot, schema: schema).map(\.name))
    let missing = replicated.filter { !dstTables.contains($0) }
    guard missing.isEmpty else {
      throw ctx.refuse(
        "table(s) \(quotedList(missing)) are missing on dst; back replication needs the same tables on both sides"
      )
    }
    let added = try PGL.ensureSet(droot, side: .dst, schema: schema, tables: replicated)
    let sub = try PGL.ensureSubscription(
      sroot, name: PGL.backSub, providerDSN: dst.pglogicalDSN, syncData: false)
    var message =
      "replicating set \(PGL.setName) on dst with \(replicated.count) table(s); subscription \(PGL.backSub) \(sub)"
    if forward.state != "replicating" {
      message += " (note: forward replication is \(forward.state))"
    }
    return [
      "message": .string(message), "tables": .from(replicated), "tables_added": .from(added),
      "subscription": .string(sub), "forward": .string(forward.state),
    ]
  }

  // MARK: - teardowns

  /// `belt teardown-back-replication`.
  static func teardownBack(_ ctx: PairContext) throws -> Value {
    let sroot = try ctx.connect(.src, .root)
    var notes: [String] = []
    var provider: PGConnection? = nil
    if ctx.config.dst != nil {
      do { provider = try ctx.connect(.dst, .root) } catch {
        notes.append(
          "dst unreachable, its slot for \(PGL.backSub) was not checked: \(BeltError.wrap(error).message)"
        )
      }
    }
    let (dropped, slotNotes) = try PGL.dropSubscription(
      sroot, name: PGL.backSub, provider: provider)
    notes += slotNotes
    let message =
      dropped ? "dropped \(PGL.backSub)" : "\(PGL.backSub) was not configured (nothing to do)"
    return ["message": .string(message), "dropped": .bool(dropped), "notes": .from(notes)]
  }

  /// `belt teardown-forward-replication`: waits until dst has applied everything src had
  /// written when the command started, then drops pg1_pg2.
  static func teardownForward(_ ctx: PairContext) throws -> Value {
    let dst = try ctx.config.server(.dst)
    let droot = try ctx.connect(.dst, .root)
    let wait = ctx.options.bool("wait", default: true)
    let timeout = ctx.options.seconds("timeout") ?? 300
    var notes: [String] = []
    var sroot: PGConnection? = nil
    if ctx.config.src != nil {
      do { sroot = try ctx.connect(.src, .root) } catch {
        if wait {
          throw ctx.refuse(
            "src is unreachable (\(BeltError.wrap(error).message)), so belt cannot check that dst applied src's last writes; "
              + "use --no-wait to drop \(PGL.forwardSub) anyway")
        }
        notes.append("src unreachable: its slot for \(PGL.forwardSub) was not checked")
      }
    }
    guard let sub = try PGL.subscription(droot, PGL.forwardSub) else {
      if let sroot {
        notes += try PGL.dropSlots(sroot, subscription: PGL.forwardSub, slotName: nil, timeout: 15)
      }
      return [
        "message": .string("\(PGL.forwardSub) was not configured (nothing to do)"),
        "dropped": false,
        "waited_s": .null, "notes": .from(notes),
      ]
    }
    var fields: [(String, Value)] = []
    var waited: Double? = nil
    var gate = ""
    if !wait {
      gate = "did not wait (--no-wait)"
    } else if let sroot {
      let st = try ReplicationStatus.state(droot, PGL.forwardSub, side: .dst, server: dst)
      if st.state == "initializing" || !st.copyDone {
        throw ctx.refuse(
          "\(PGL.forwardSub) is still initializing: dst does not have all of src's data yet, dropping it now would lose data "
            + "(use --no-wait to drop it anyway)")
      }
      if !sub.enabled {
        // Left disabled by a teardown that stopped between disabling and dropping it (belt
        // killed): nothing would ever reach dst, and the gate would wait until its timeout.
        try droot.query("SELECT pglogical.alter_subscription_enable($1, true)", [PGL.forwardSub])
        notes.append("\(PGL.forwardSub) was disabled (an earlier teardown stopped before dropping it); enabled it for the gate")
      }
      // The exact fence: a marker row on src, polled for on dst (see ``Fence``). When the fence
      // table cannot be set up (say, no privilege), the slower gate on the slot's confirmed position.
      var fenceReady = false
      do {
        let how = try Fence.ensure(src: sroot, dst: droot)
        if how != "ready" { notes.append("fence table \(Fence.qualified): \(how)") }
        fenceReady = true
      } catch {
        notes.append(
          "fence table \(Fence.qualified) unavailable (\(BeltError.wrap(error).message)); waited for the slot's confirmed position instead")
      }
      let t0 = Date()
      if fenceReady {
        let (token, target) = try Fence.write(sroot)
        // Recorded before waiting: a cutover killed here shows what dst was waiting for.
        try Journal.openStep(ctx.env.store, dc: ctx.dc, db: ctx.db)?.note("teardown_forward_replication", ["target_lsn"], .string(target))
        var interval = 0.002
        while try !Fence.arrived(droot, token: token) {
          let elapsed = Date().timeIntervalSince(t0)
          if elapsed > timeout {
            throw try gateTimeout(ctx, sroot: sroot, droot: droot, sub: sub, target: target, timeout: timeout, server: dst)
          }
          try PGL.pause(interval)
          if elapsed > 1 { interval = min(interval * 1.5, 0.05) }
        }
        try Fence.flush(droot)
        let w = Date().timeIntervalSince(t0)
        waited = w
        gate = String(format: "waited %.3f s for dst to apply the fence marker (src at %@)", w, target)
        fields += [("target_lsn", .string(target)), ("fence", .string(token))]
      } else {
        let target = try gateTarget(sroot)
        try Journal.openStep(ctx.env.store, dc: ctx.dc, db: ctx.db)?.note("teardown_forward_replication", ["target_lsn"], .string(target))
        var interval = 0.01
        var confirmed = "?"
        while true {
          guard let row = try slotPosition(sroot, sub: sub, target: target) else {
            throw ctx.refuse(
              "slot \(sub.slotName) of \(PGL.forwardSub) is missing on src, so belt cannot check that dst applied src's last "
                + "writes; use --no-wait to drop \(PGL.forwardSub) anyway")
          }
          confirmed = row.string("lsn")
          if row.bool("done") { break }
          if Date().timeIntervalSince(t0) > timeout {
            throw try gateTimeout(ctx, sroot: sroot, droot: droot, sub: sub, target: target, timeout: timeout, server: dst)
          }
          try PGL.pause(interval)
          interval = min(interval * 1.5, 0.2)
        }
        let w = Date().timeIntervalSince(t0)
        waited = w
        gate = String(format: "waited %.2f s for dst to reach %@", w, target)
        fields += [("target_lsn", .string(target)), ("confirmed_lsn", .string(confirmed))]
      }
    } else {
      gate = "did not wait: src is null in the config, so dst's catch-up could not be checked"
      fields.append(("warning", .string(gate)))
    }
    let (dropped, slotNotes) = try PGL.dropSubscription(
      droot, name: PGL.forwardSub, provider: sroot)
    notes += slotNotes
    fields += [
      ("message", .string("\(gate); dropped \(PGL.forwardSub)")), ("dropped", .bool(dropped)),
      ("waited_s", waited.map { .double(($0 * 1000).rounded() / 1000) } ?? .null),
      ("notes", .from(notes)),
    ]
    return .object(fields)
  }

  /// src's slot of the forward subscription: its confirmed position, whether it has reached
  /// `target`, and how many bytes it is behind (nil: no such slot).
  static func slotPosition(_ sroot: PGConnection, sub: PGL.Subscription, target: String) throws -> PGRow? {
    try sroot.query(
      """
      SELECT confirmed_flush_lsn::text AS lsn, confirmed_flush_lsn >= $2::pg_lsn AS done,
             pg_wal_lsn_diff($2::pg_lsn, confirmed_flush_lsn)::bigint AS behind
        FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()
      """, [sub.slotName, target]
    ).rows.first
  }

  /// The error of a gate that gave up: where the slot is and what state forward replication is in.
  static func gateTimeout(
    _ ctx: PairContext, sroot: PGConnection, droot: PGConnection, sub: PGL.Subscription, target: String, timeout: Double,
    server: ServerConfig
  ) throws -> BeltError {
    let now = try ReplicationStatus.state(droot, PGL.forwardSub, side: .dst, server: server)
    var why = "forward is \(now.state)"
    if let reason = now.reason { why += ": \(reason)" }
    let slot = try slotPosition(sroot, sub: sub, target: target)
    let at = slot.map { "slot \(sub.slotName) at \($0.string("lsn")), \($0.string("behind")) bytes behind" } ?? "slot \(sub.slotName) missing"
    return BeltError(
      .timeout,
      "dst did not apply src's writes up to \(target) within \(Int(timeout)) s (\(at); \(why)); \(PGL.forwardSub) was left in place",
      dc: ctx.dc, db: ctx.db,
      retryable: true)
  }

  /// The LSN dst must have applied before the forward subscription may be dropped: the end of
  /// everything inserted into src's WAL so far. (`pg_current_wal_lsn()` is only what has been
  /// written out; with `synchronous_commit = off`, commits already acknowledged to
  /// applications can lie beyond it for up to three times `wal_writer_delay`.) A transaction
  /// that writes WAL and commits with `synchronous_commit = on` first flushes all of it, so
  /// the walsender can send it at once instead of after the WAL writer's next round. (A
  /// commit that wrote no other WAL, such as one that only took an xid, does not flush.)
  static func gateTarget(_ sroot: PGConnection) throws -> String {
    do {
      try sroot.exec(
        "BEGIN; SET LOCAL synchronous_commit = on; CREATE TEMP TABLE belt_wal_flush () ON COMMIT DROP; COMMIT")
    } catch {
      // No TEMP privilege, say: the gate is still right, only slower. An error inside the
      // block leaves it open and aborted.
      _ = try? sroot.exec("ROLLBACK")
    }
    return try sroot.query("SELECT pg_current_wal_insert_lsn()::text").scalar ?? "0/0"
  }

  /// `belt teardown [--full]`.
  static func teardown(_ ctx: PairContext) throws -> Value {
    let src = try ctx.config.server(.src)
    let dst = try ctx.config.server(.dst)
    let full = ctx.options.bool("full")
    let sroot = try ctx.connect(.src, .root)
    let droot = try ctx.connect(.dst, .root)
    let conns: [(Side, PGConnection, ServerConfig)] = [(.src, sroot, src), (.dst, droot, dst)]
    var notes: [String] = []
    // Subscriptions first. Only this migration's objects are touched (pg2_pg1 and node pg1 on
    // src, pg1_pg2 and node pg2 on dst): a database that is also part of another migration
    // keeps that one's (the remote node entries go with the subscriptions).
    let drops: [(PGConnection, Side, String, PGConnection?)] = [
      (sroot, .src, PGL.backSub, droot), (droot, .dst, PGL.forwardSub, sroot),
    ]
    for (c, side, name, provider) in drops {
      try PGL.withLockTimeout(c, side: side, what: "dropping subscription \(name)") {
        let (dropped, n) = try PGL.dropSubscription(c, name: name, provider: provider)
        if dropped { notes.append("\(side.rawValue): dropped subscription \(name)") }
        // Slot notes are about the provider, the other side.
        notes += n.map { "\(side == .src ? "dst" : "src"): " + $0 }
      }
    }
    for (side, c, _) in conns {
      try PGL.withLockTimeout(c, side: side, what: "dropping set \(PGL.setName) and nodes") {
        notes += try PGL.dropSetAndNode(c, node: side == .src ? PGL.srcNode : PGL.dstNode)
          .map { "\(side.rawValue): " + $0 }
        if try Catalog.schemaExists(c, Fence.schema) { try Fence.drop(c) }
      }
    }
    for (side, c, server) in conns {
      try PGL.withLockTimeout(c, side: side, what: "dropping role \(server.pglogical.name)") {
        if let n = try PGL.dropRole(
          ctx, side, c, name: server.pglogical.name, schema: ctx.schema,
          protected: [server.root.name, server.owner.name])
        {
          notes.append("\(side.rawValue): " + n)
        }
      }
    }
    if full {
      for (side, c, _) in conns {
        notes += try PGL.dropExtension(c, side: side).map { "\(side.rawValue): " + $0 }
      }
    }
    let message = notes.isEmpty ? "nothing to remove" : "removed: " + notes.joined(separator: "; ")
    return ["message": .string(message), "full": .bool(full), "notes": .from(notes)]
  }

  // MARK: - reset

  /// `belt reset [--force]`.
  static func reset(_ ctx: PairContext) throws -> Value {
    let force = ctx.options.bool("force")
    let schema = ctx.schema
    let sroot: PGConnection
    do { sroot = try ctx.connect(.src, .root) } catch {
      throw ctx.refuse(
        "src is unreachable (\(BeltError.wrap(error).message)); reset needs src to compare dataset sizes and to make sure "
          + "back replication is stopped")
    }
    let droot = try ctx.connect(.dst, .root)
    var notes: [String] = []
    var fields: [(String, Value)] = []
    if !force {
      let srcTables = try targetTables(ctx, sroot).map(\.name)
      guard !srcTables.isEmpty else {
        throw ctx.refuse(
          "targeted tables not found in the source database (schema \(Value.jsonQuote(schema))); nothing to compare"
        )
      }
      let srcBytes = try tablesSize(sroot, schema: schema, srcTables)
      let dstBytes = try tablesSize(droot, schema: schema, srcTables)
      fields += [("src_bytes", .int(srcBytes)), ("dst_bytes", .int(dstBytes))]
      if srcBytes <= dstBytes {
        throw ctx.refuse(
          "reset aborted by the failsafe: the targeted tables hold \(bytes(dstBytes)) on dst but only \(bytes(srcBytes)) on src; "
            + "src should hold more (are src and dst swapped in the config?); use --force to reset anyway"
        )
      }
    } else {
      ctx.logger.warning(
        "reset --force: the size failsafe is skipped; dst tables will be truncated whatever they hold"
      )
      fields.append(("warning", .string("size failsafe skipped (--force)")))
    }
    let fwd = try PGL.dropSubscription(droot, name: PGL.forwardSub, provider: sroot)
    let back = try PGL.dropSubscription(sroot, name: PGL.backSub, provider: droot)
    notes += fwd.notes + back.notes
    let dstTables = try Catalog.schemaExists(droot, schema) ? try targetTables(ctx, droot) : []
    let names = dstTables.map(\.name)
    if !names.isEmpty {
      let list = names.map { PGConnection.qualified(schema, $0) }.joined(separator: ", ")
      do {
        try droot.transaction {
          try droot.exec("SET LOCAL lock_timeout = '\(PGL.lockTimeout)'")
          try droot.exec("TRUNCATE TABLE \(list)")
        }
      } catch let e as PGError where e.sqlState == "0A000" {
        throw ctx.refuse(
          "cannot truncate the dst tables: \(e.message) (\(e.detail ?? "")); add the referencing tables to the config's tables "
            + "or empty them yourself")
      } catch let e as PGError where e.sqlState == "55P03" {
        let holders = try PGL.blockers(droot)
        throw PGL.lockWaitError("TRUNCATE on dst", holders: holders, then: "end them and run reset again", ctx)
      }
    }
    let dir = ctx.env.store.schemaDirectory(dc: ctx.dc, db: ctx.db)
    var indexes =
      "skipped: \(dir)/indexes.sql does not exist (nothing was dumped, nothing to remove)"
    if FileManager.default.fileExists(atPath: dir + "/indexes.sql") {
      _ = try SchemaOps.removeIndexes(ctx)
      indexes = "removed"
    }
    var constraints =
      "skipped: \(dir)/invalid_constraints.sql does not exist (nothing was dumped, nothing to remove)"
    if FileManager.default.fileExists(atPath: dir + "/invalid_constraints.sql") {
      _ = try SchemaOps.removeConstraints(ctx)
      constraints = "removed"
    }
    var stopped: [String] = []
    if fwd.dropped { stopped.append(PGL.forwardSub) }
    if back.dropped { stopped.append(PGL.backSub) }
    let message =
      (stopped.isEmpty
        ? "replication was already stopped" : "stopped \(stopped.joined(separator: " and "))")
      + "; truncated \(names.count) dst table(s); indexes \(indexes.hasPrefix("removed") ? "removed" : "skipped")"
      + "; NOT VALID constraints \(constraints.hasPrefix("removed") ? "removed" : "skipped")"
    fields += [
      ("message", .string(message)), ("stopped", .from(stopped)), ("truncated", .from(names)),
      ("indexes", .string(indexes)), ("constraints", .string(constraints)), ("notes", .from(notes)),
    ]
    return .object(fields)
  }
}
