import Foundation

/// `belt reset`: stops replication, empties the dst tables and removes what was added to dst
/// after the copy, so that setup can start again.
enum Reset {
  /// `belt reset [--force]`.
  static func reset(_ ctx: PairContext) throws -> Value {
    let force = ctx.options.bool("force")
    let engine = try ctx.engine
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
      let srcTables = try ReplicationSupport.targetTables(ctx, sroot).map(\.name)
      guard !srcTables.isEmpty else {
        throw ctx.refuse(
          "targeted tables not found in the source database (schema \(Value.jsonQuote(schema))); nothing to compare"
        )
      }
      let srcBytes = try ReplicationSupport.tablesSize(sroot, schema: schema, srcTables)
      let dstBytes = try ReplicationSupport.tablesSize(droot, schema: schema, srcTables)
      fields += [("src_bytes", .int(srcBytes)), ("dst_bytes", .int(dstBytes))]
      if srcBytes <= dstBytes {
        throw ctx.refuse(
          "reset aborted by the failsafe: the targeted tables hold \(Fmt.bytes(dstBytes)) on dst but only \(Fmt.bytes(srcBytes)) on src; "
            + "src should hold more (are src and dst swapped in the config?); use --force to reset anyway"
        )
      }
    } else {
      ctx.logger.warning(
        "reset --force: the size failsafe is skipped; dst tables will be truncated whatever they hold"
      )
      fields.append(("warning", .string("size failsafe skipped (--force)")))
    }
    let fwd = try engine.drop(.forward, on: droot, provider: sroot)
    let back = try engine.drop(.back, on: sroot, provider: droot)
    notes += fwd.notes + back.notes
    let dstTables =
      try Catalog.schemaExists(droot, schema) ? try ReplicationSupport.targetTables(ctx, droot) : []
    let names = dstTables.map(\.name)
    if !names.isEmpty {
      let list = names.map { PGConnection.qualified(schema, $0) }.joined(separator: ", ")
      do {
        try droot.transaction {
          try droot.exec("SET LOCAL lock_timeout = '\(LockWait.timeout)'")
          try droot.exec("TRUNCATE TABLE \(list)")
        }
      } catch let e as PGError where e.sqlState == "0A000" {
        throw ctx.refuse(
          "cannot truncate the dst tables: \(e.message) (\(e.detail ?? "")); add the referencing tables to the config's tables "
            + "or empty them yourself")
      } catch let e as PGError where e.sqlState == "55P03" {
        let holders = try LockWait.blockers(droot)
        throw LockWait.error(
          "TRUNCATE on dst", holders: holders, then: "end them and run reset again", dc: ctx.dc,
          db: ctx.db)
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
    if fwd.dropped { stopped.append(engine.name(.forward)) }
    if back.dropped { stopped.append(engine.name(.back)) }
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
