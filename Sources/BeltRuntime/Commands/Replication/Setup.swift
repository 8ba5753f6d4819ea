import Foundation

/// setup and setup-back-replication, through the pair's engine: each is idempotent and checks
/// its preconditions before changing anything.
enum Setup {
  /// `belt setup`.
  static func setup(_ ctx: PairContext) throws -> Value {
    let src = try ctx.config.server(.src)
    let dst = try ctx.config.server(.dst)
    try ReplicationSupport.checkReplicationRole(ctx, src, .src)
    try ReplicationSupport.checkReplicationRole(ctx, dst, .dst)
    let engine = try ctx.engine
    try ReplicationSupport.requireEngine(ctx)
    let schema = ctx.schema
    let sroot = try ctx.connect(.src, .root)
    let droot = try ctx.connect(.dst, .root)
    guard try Catalog.schemaExists(sroot, schema) else {
      throw ctx.refuse("schema \(Value.jsonQuote(schema)) does not exist on src")
    }
    let chosen = try ReplicationSupport.targetTables(ctx, sroot)
    let leaves = chosen.filter { $0.kind == "r" }
    // The engine copies and streams these from the start.
    let replicated = leaves.filter { engine.travel($0).how == .streamed }.map(\.name)
    // Tables the engine cannot copy (pglogical: a generated column): belt copies them under a
    // short write lock once the initial copy is done (LockedCopy), then they stream.
    let lockCopied = leaves.filter { engine.travel($0).how == .lockedCopy }.map(\.name)
    // Not streamed (pglogical: without a primary key, unlogged, REPLICA IDENTITY NOTHING):
    // copied during the cutover.
    let noPK = leaves.filter { engine.travel($0).how == .copiedAtCutover }.map(\.name)
    var notes: [String] = []
    // Refused before anything changes: setup grants on every table as the owner.
    let foreign = chosen.filter { $0.owner != src.owner.name }
    guard foreign.isEmpty else {
      let list = foreign.prefix(10).map { "\(Value.jsonQuote($0.name)) (owned by \($0.owner))" }
        .joined(separator: ", ")
      throw ctx.refuse(
        "table(s) \(list)\(foreign.count > 10 ? " and \(foreign.count - 10) more" : "") of schema \(Value.jsonQuote(schema)) "
          + "are not owned by the owner user \(Value.jsonQuote(src.owner.name)); belt grants the replication role access to "
          + "them as the owner. Change their owner (ALTER TABLE ... OWNER TO), or leave them out with the config's tables"
      )
    }
    if let subset = ctx.config.tableSubset {
      let found = Set(chosen.map(\.name))
      let missing = subset.map { Catalog.bareName($0, schema: schema) }.filter {
        !found.contains($0)
      }
      if !missing.isEmpty {
        notes.append("configured tables not found on src: \(Fmt.quoted(missing))")
      }
    }
    guard !(replicated + lockCopied).isEmpty else {
      let which =
        ctx.config.tableSubset.map { "the configured tables (\(Fmt.quoted($0)))" } ?? "all tables"
      throw ctx.refuse(
        "no tables were targeted to replicate: among \(which) of schema \(Value.jsonQuote(schema)) on src, none has a primary key"
      )
    }

    // A first setup also refuses rows already in dst before src changes (checked again below,
    // once the schema is loaded).
    let forwardName = engine.name(.forward)
    // belt copies the data itself (an engine that starts from an exported snapshot); an
    // interrupted copy of it (its record unfinished, its slot still on src) is finished, its
    // rows on dst kept (SnapshotCopy).
    let beltCopy = try SnapshotCopy.wanted(ctx, engine)
    let resuming =
      try beltCopy && !engine.configured(.forward, on: droot) && SnapshotCopy.interrupted(ctx)
      && engine.snapshotSlot(ctx, sroot) != nil
    if try !engine.configured(.forward, on: droot), !resuming {
      let onDst = Set(try Catalog.tables(droot, schema: schema).map(\.name))
      try ReplicationSupport.refuseFilled(
        ctx, droot, schema: schema, (replicated + lockCopied).filter(onDst.contains))
    }

    // A pg_dump able to dump both servers, and every extension the schema needs available on
    // dst, before src changes (the schema is dumped and loaded below).
    if ctx.options.bool("schema", default: true), !resuming,
      try !engine.configured(.forward, on: droot)
    {
      _ = try SchemaOps.dumpTool(ctx)
      try SchemaExtensions.refuseUnavailable(ctx, src: sroot, dst: droot)
    }
    // src: role, extension, grants, what the engine publishes.
    notes += try engine.prepare(
      ctx, .src, root: sroot, owner: try ctx.connect(.src, .owner), schema: schema,
      tables: chosen.map(\.name)
    ).map { "src: " + $0 }
    let (srcNode, added) = try engine.publish(
      ctx, .src, root: sroot, schema: schema, tables: replicated)

    // dst: schema (only before the first subscription), checks, role, subscription.
    let existing = try engine.configured(.forward, on: droot)
    let schemaStep: String
    if !ctx.options.bool("schema", default: true) {
      schemaStep = "skipped (--no-schema)"
    } else if existing {
      schemaStep = "skipped (\(forwardName) already exists)"
    } else if resuming {
      schemaStep = "skipped (finishing an interrupted initial copy)"
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
        "table(s) \(Fmt.quoted(missingOnDst)) of schema \(Value.jsonQuote(schema)) are missing on dst; "
          + "load the schema first (setup without --no-schema, or load-schema)")
    }
    let inSet = Set(try engine.publishedTables(sroot, schema: schema) ?? [])
    let pendingGenerated = !existing ? lockCopied : lockCopied.filter { !inSet.contains($0) }
    let toCopy = !existing ? replicated + pendingGenerated : added
    if !resuming { try ReplicationSupport.refuseFilled(ctx, droot, schema: schema, toCopy) }
    notes += try engine.prepare(
      ctx, .dst, root: droot, owner: try ctx.connect(.dst, .owner), schema: schema,
      tables: chosen.map(\.name).filter { dstTables.contains($0) }
    ).map { "dst: " + $0 }
    let dstNode = try engine.ensureSubscriberNode(ctx, .dst, root: droot)
    if !existing {
      // A new subscription's initial copy takes every published table: one the engine cannot
      // copy (published by an earlier migration, reset since) would make it fail for good.
      try engine.withdraw(sroot, schema: schema, tables: lockCopied.filter(inSet.contains))
    }
    var subStep: String
    var initialCopy: Value = .null
    if !existing, beltCopy {
      let r = try SnapshotCopy.run(
        ctx, engine: engine, sroot: sroot, droot: droot, tables: replicated)
      subStep = r.subscription
      initialCopy = r.record
    } else {
      if existing, beltCopy { try SnapshotCopy.settle(ctx) }
      subStep = try engine.subscribe(ctx, .forward, on: droot, copyData: true)
    }
    if existing, !added.isEmpty {
      try engine.copyAdded(droot, schema: schema, tables: added)
      subStep += ", copying \(added.count) new table(s)"
    }

    // Tables the engine cannot copy, once its initial copy is done.
    var generatedAdded: [Value] = []
    var generatedPending = pendingGenerated
    if !pendingGenerated.isEmpty {
      let forward = try engine.state(droot, .forward, server: dst)
      if try engine.configured(.back, on: sroot) {
        notes.append(
          "\(pendingGenerated.count) table(s) with a generated column (\(Fmt.quoted(pendingGenerated))) are not replicated; "
            + "back replication exists, so belt does not copy them now: the cutover copies them")
      } else if existing, forward.state == "replicating", forward.copyDone {
        generatedAdded = try LockedCopy.addUnderLock(ctx, tables: pendingGenerated)
        generatedPending = []
      } else {
        notes.append(
          "\(pendingGenerated.count) table(s) with a generated column (\(Fmt.quoted(pendingGenerated))) are copied by belt "
            + "under a short write lock once the initial copy is done: migrate.lua does it; by hand, run setup again when "
            + "status shows replicating (until then the cutover would copy them)")
      }
    }

    var message = "replicating \(engine.tableGroup) with \(replicated.count) table(s)"
    if !added.isEmpty, added.count != replicated.count { message += " (\(added.count) added)" }
    message += "; subscription \(forwardName) \(subStep)"
    if !generatedAdded.isEmpty {
      message +=
        "; \(generatedAdded.count) table(s) with a generated column copied under a write lock and added"
    }
    if !generatedPending.isEmpty {
      message +=
        "; \(generatedPending.count) table(s) with a generated column wait for the initial copy"
    }
    if !noPK.isEmpty {
      message +=
        "; \(noPK.count) table(s) without a primary key (or not replicable) are left for sync"
    }
    return [
      "message": .string(message), "tables": .from(replicated), "tables_added": .from(added),
      "generated_added": .array(generatedAdded), "generated_pending": .from(generatedPending),
      "no_pkey": .from(noPK), "schema": .string(schemaStep), "src_node": .string(srcNode),
      "dst_node": .string(dstNode), "subscription": .string(subStep), "notes": .from(notes),
      "initial_copy": initialCopy,
    ]
  }

  // MARK: - setup-back-replication

  /// `belt setup-back-replication`.
  static func setupBack(_ ctx: PairContext) throws -> Value {
    _ = try ctx.config.server(.src)
    let dst = try ctx.config.server(.dst)
    let schema = ctx.schema
    let engine = try ctx.engine
    let sroot = try ctx.connect(.src, .root)
    let droot = try ctx.connect(.dst, .root)
    if let why = try engine.backBlocked(src: sroot, dst: droot) { throw ctx.refuse(why) }
    guard
      try droot.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [dst.replication.name]).values
        .count == 1
    else {
      throw ctx.refuse(
        "the pglogical user \(Value.jsonQuote(dst.replication.name)) does not exist on dst; run setup first"
      )
    }
    let forward = try engine.state(droot, .forward, server: dst)
    // An unfinished copy counts even when the engine reports the subscription down for a moment
    // (a sync worker restarting): publishing dst's tables would queue behind the copy.
    if forward.state == "initializing" || !forward.copyDone {
      let progress =
        forward.tablesDone.map { " (\($0) table(s) copied, \(forward.tablesPending) pending)" }
        ?? ""
      throw ctx.refuse(
        "forward replication \(engine.name(.forward)) is still initializing\(progress); set up back replication once status shows replicating"
      )
    }
    let replicated = try ReplicationSupport.targetTables(ctx, sroot).filter {
      engine.travel($0).streams
    }.map(\.name)
    let dstTables = Set(try Catalog.tables(droot, schema: schema).map(\.name))
    let missing = replicated.filter { !dstTables.contains($0) }
    guard missing.isEmpty else {
      throw ctx.refuse(
        "table(s) \(Fmt.quoted(missing)) are missing on dst; back replication needs the same tables on both sides"
      )
    }
    let (added, sub) = try engine.setUpBack(ctx, src: sroot, dst: droot, tables: replicated)
    var message =
      "replicating \(engine.tableGroup) on dst with \(replicated.count) table(s); subscription \(engine.name(.back)) \(sub)"
    if forward.state != "replicating" {
      message += " (note: forward replication is \(forward.state))"
    }
    return [
      "message": .string(message), "tables": .from(replicated), "tables_added": .from(added),
      "subscription": .string(sub), "forward": .string(forward.state),
    ]
  }
}
