import Foundation

/// cleanup-previous-config (pgbelt 0.15): removes what an earlier migration left on the
/// **source**, whatever role the database played in it (for pglogical: the subscriptions
/// `pg1_pg2` and `pg2_pg1`, the set `pgbelt`, the node `pg1` or `pg2`), the slots it provided to
/// another database, and the replication role when nothing else on the server uses it; `--full`
/// also drops the extension. Only belt's and pgbelt's names are touched.
enum Cleanup {
  static func run(_ ctx: PairContext) throws -> Value {
    let src = try ctx.config.server(.src)
    let engine = try ctx.engine
    let sroot = try ctx.connect(.src, .root)
    let full = ctx.options.bool("full")
    var notes = try engine.cleanupPrevious(ctx, sroot)
    // This database as the provider of an earlier subscription elsewhere: its slots.
    for direction in [Direction.forward, .back] {
      notes += try engine.dropProviderSlots(sroot, direction)
    }
    try LockWait.run(
      sroot, side: .src, what: "dropping role \(src.replication.name)", schemas: engine.lockSchemas
    ) {
      if let n = try engine.dropRole(
        ctx, .src, sroot, name: src.replication.name, schema: ctx.schema,
        protected: [src.root.name, src.owner.name])
      {
        notes.append(n)
      }
    }
    if full { notes += try engine.removeExtension(sroot, side: .src) }
    let message =
      notes.isEmpty
      ? "nothing left from an earlier migration on src" : "src: " + notes.joined(separator: "; ")
    return ["message": .string(message), "full": .bool(full), "notes": .from(notes)]
  }
}
