import Foundation

/// cleanup-previous-config (pgbelt 0.15): removes what an earlier migration left on the
/// **source**, whatever role the database played in it: the subscriptions `pg1_pg2` (it was a
/// destination) and `pg2_pg1` (a source with back replication), their leftover slots, the set
/// `pgbelt`, the node (`pg1` or `pg2`), and the pglogical role when nothing else on the server
/// uses it; `--full` also drops the extension. Only belt's and pgbelt's names are touched.
enum Cleanup {
  static func run(_ ctx: PairContext) throws -> Value {
    let src = try ctx.config.server(.src)
    let sroot = try ctx.connect(.src, .root)
    let full = ctx.options.bool("full")
    var notes: [String] = []
    if try PGL.installed(sroot) {
      for name in [PGL.forwardSub, PGL.backSub] {
        try PGL.withLockTimeout(sroot, side: .src, what: "dropping subscription \(name)") {
          if try PGL.dropSubscription(sroot, name: name, provider: nil).dropped {
            notes.append("dropped subscription \(name)")
          }
        }
      }
      if let node = try PGL.localNode(sroot), [PGL.srcNode, PGL.dstNode].contains(node.name) {
        try PGL.withLockTimeout(sroot, side: .src, what: "dropping set \(PGL.setName) and node \(node.name)") {
          notes += try PGL.dropSetAndNode(sroot, node: node.name)
        }
      }
    }
    // This database as the provider of an earlier subscription elsewhere: its slots.
    for name in [PGL.forwardSub, PGL.backSub] {
      notes += try PGL.dropSlots(sroot, subscription: name, slotName: nil, timeout: 15)
    }
    try PGL.withLockTimeout(sroot, side: .src, what: "dropping role \(src.pglogical.name)") {
      if let n = try PGL.dropRole(
        ctx, .src, sroot, name: src.pglogical.name, schema: ctx.schema, protected: [src.root.name, src.owner.name])
      {
        notes.append(n)
      }
    }
    if full { notes += try PGL.dropExtension(sroot, side: .src) }
    let message = notes.isEmpty ? "nothing left from an earlier migration on src" : "src: " + notes.joined(separator: "; ")
    return ["message": .string(message), "full": .bool(full), "notes": .from(notes)]
  }

  /// What precheck says about leftovers on src: a node or subscription that only an earlier
  /// migration, where this database was the destination, would have left.
  static func leftovers(_ sroot: PGConnection) throws -> String? {
    guard try PGL.installed(sroot) else { return nil }
    var found: [String] = []
    if let node = try PGL.localNode(sroot), node.name != PGL.srcNode { found.append("pglogical node \(node.name)") }
    if try PGL.subscription(sroot, PGL.forwardSub) != nil { found.append("subscription \(PGL.forwardSub)") }
    guard !found.isEmpty else { return nil }
    return "src holds \(found.joined(separator: " and ")) from an earlier migration (it was a destination then); "
      + "run cleanup-previous-config before setup"
  }
}
