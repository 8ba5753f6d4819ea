import Foundation

/// teardown-back-replication, teardown-forward-replication (with the cutover's gate) and
/// teardown, through the pair's engine.
enum Teardown {
  /// `belt teardown-back-replication`.
  static func teardownBack(_ ctx: PairContext) throws -> Value {
    let engine = try ctx.engine
    let back = engine.name(.back)
    let sroot = try ctx.connect(.src, .root)
    var notes: [String] = []
    var provider: PGConnection? = nil
    if ctx.config.dst != nil {
      do { provider = try ctx.connect(.dst, .root) } catch {
        notes.append(
          "dst unreachable, its slot for \(back) was not checked: \(BeltError.wrap(error).message)"
        )
      }
    }
    let (dropped, slotNotes) = try engine.drop(.back, on: sroot, provider: provider)
    notes += slotNotes
    let message = dropped ? "dropped \(back)" : "\(back) was not configured (nothing to do)"
    return ["message": .string(message), "dropped": .bool(dropped), "notes": .from(notes)]
  }

  /// `belt teardown-forward-replication`: waits until dst has applied everything src had
  /// written when the command started (the gate), then drops forward replication.
  static func teardownForward(_ ctx: PairContext) throws -> Value {
    let engine = try ctx.engine
    let forward = engine.name(.forward)
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
              + "use --no-wait to drop \(forward) anyway")
        }
        notes.append("src unreachable: its slot for \(forward) was not checked")
      }
    }
    guard let slot = try engine.forwardSlot(droot) else {
      if let sroot {
        notes += try engine.dropProviderSlots(sroot, .forward)
        // A teardown killed between dropping forward and attaching back: attach it now.
        if let attached = try engine.attachBack(ctx, src: sroot, dst: droot) {
          notes.append(attached)
        }
      }
      return [
        "message": .string("\(forward) was not configured (nothing to do)"),
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
      let st = try engine.state(droot, .forward, server: dst)
      if st.state == "initializing" || !st.copyDone {
        throw ctx.refuse(
          "\(forward) is still initializing: dst does not have all of src's data yet, dropping it now would lose data "
            + "(use --no-wait to drop it anyway)")
      }
      // Left disabled by a teardown that stopped between disabling and dropping it (belt
      // killed): nothing would ever reach dst, and the gate would wait until its timeout.
      if let note = try engine.enableForGate(droot) { notes.append(note) }
      // A state in which dst cannot apply anything more is refused before the fence marker.
      if let why = try hopeless(ctx, engine: engine, sroot: sroot, droot: droot, server: dst) {
        // Retryable: once the cause is mended (a password, a missing column), the same call passes.
        throw BeltError(
          .preconditionFailed,
          "dst cannot apply src's writes: \(why); no fence was written and \(forward) was left in place (mend the cause, then retry)",
          dc: ctx.dc, db: ctx.db, retryable: true)
      }
      // The exact fence: a marker row on src, polled for on dst (see ``Fence``). When the fence
      // table cannot be set up (say, no privilege), the slower gate on the slot's confirmed position.
      var fenceReady = false
      do {
        let how = try Fence.ensure(src: sroot, dst: droot, engine: engine)
        if how != "ready" { notes.append("fence table \(Fence.qualified): \(how)") }
        fenceReady = true
      } catch {
        notes.append(
          "fence table \(Fence.qualified) unavailable (\(BeltError.wrap(error).message)); waited for the slot's confirmed position instead"
        )
      }
      let t0 = Date()
      if fenceReady {
        let (token, target) = try Fence.write(sroot)
        // Recorded before waiting: a cutover killed here shows what dst was waiting for.
        try Journal.openStep(ctx.env.store, dc: ctx.dc, db: ctx.db)?.note(
          "teardown_forward_replication", ["target_lsn"], .string(target))
        try waitGate(
          ctx, engine: engine, sroot: sroot, droot: droot, slot: slot, target: target, server: dst,
          timeout: timeout, first: 0.002, growth: 1.5, cap: 0.05, growAfter: 1
        ) { try Fence.arrived(droot, token: token) }
        try Fence.flush(droot)
        let w = Date().timeIntervalSince(t0)
        waited = w
        gate = String(
          format: "waited %.3f s for dst to apply the fence marker (src at %@)", w, target)
        fields += [("target_lsn", .string(target)), ("fence", .string(token))]
      } else {
        let target = try gateTarget(sroot)
        try Journal.openStep(ctx.env.store, dc: ctx.dc, db: ctx.db)?.note(
          "teardown_forward_replication", ["target_lsn"], .string(target))
        var confirmed = "?"
        try waitGate(
          ctx, engine: engine, sroot: sroot, droot: droot, slot: slot, target: target, server: dst,
          timeout: timeout, first: 0.01, growth: 1.5, cap: 0.2, growAfter: 0
        ) {
          guard let row = try SlotFacts.position(sroot, slot: slot, target: target) else {
            throw ctx.refuse(
              "slot \(slot) of \(forward) is missing on src, so belt cannot check that dst applied src's last "
                + "writes; use --no-wait to drop \(forward) anyway")
          }
          confirmed = row.string("lsn")
          return row.bool("done")
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
    let (dropped, slotNotes) = try engine.drop(.forward, on: droot, provider: sroot)
    notes += slotNotes
    // Back replication armed ahead (an engine whose directions cannot run together) starts now,
    // before anything writes to dst.
    if let sroot, let attached = try engine.attachBack(ctx, src: sroot, dst: droot) {
      notes.append(attached)
    }
    fields += [
      ("message", .string("\(gate); dropped \(forward)")), ("dropped", .bool(dropped)),
      ("waited_s", waited.map { .double(($0 * 1000).rounded() / 1000) } ?? .null),
      ("notes", .from(notes)),
    ]
    return .object(fields)
  }

  /// How often (seconds) the gate checks that dst can still apply what it waits for.
  static let healthEvery = 1.0

  /// Why dst cannot apply src's writes now (nil: it can, or may once a restarting worker is
  /// back): forward replication down (the engine's state, after its short grace for a worker
  /// between retries) or schema drift that stops the apply (src has a column dst lacks, ...).
  static func hopeless(
    _ ctx: PairContext, engine: any ReplicationEngine, sroot: PGConnection, droot: PGConnection,
    server: ServerConfig
  ) throws -> String? {
    let st = try engine.state(droot, .forward, server: server)
    if st.state == "down" { return "forward is down: " + (st.reason ?? "cause unknown") }
    if let lock = try ReplicationStatus.lockWait(droot, st, name: engine.name(.forward)),
      lock.seconds >= SubscriptionState.lockGrace
    {
      return lock.text
    }
    let drift = try SchemaDrift.differences(
      src: sroot, dst: droot, engine: engine, schema: ctx.schema, targets: nil)
    return SchemaDrift.summary(drift.filter(\.breaks))
  }

  /// Ends the gate at once (instead of at its timeout) when dst cannot apply what it waits for,
  /// so that a cutover gives the application back within seconds.
  static func stopIfHopeless(
    _ ctx: PairContext, engine: any ReplicationEngine, sroot: PGConnection, droot: PGConnection,
    server: ServerConfig,
    elapsed: Double, timeout: Double
  ) throws {
    guard let why = try hopeless(ctx, engine: engine, sroot: sroot, droot: droot, server: server)
    else { return }
    throw BeltError(
      .preconditionFailed,
      String(
        format:
          "dst cannot apply src's writes: %@; the gate stopped after %.1f s instead of waiting up to %d s; %@ was left in place",
        why, elapsed, Int(timeout), engine.name(.forward)),
      dc: ctx.dc, db: ctx.db, retryable: true)
  }

  /// Polls `arrived` until it holds: the wait of both gates (the fence marker, the slot's
  /// confirmed position), with a timeout and, every `healthEvery` seconds, a check that dst can
  /// still apply (``stopIfHopeless``). The interval starts at `first` and grows by `growth` up to
  /// `cap` once `growAfter` seconds have passed.
  static func waitGate(
    _ ctx: PairContext, engine: any ReplicationEngine, sroot: PGConnection, droot: PGConnection,
    slot: String,
    target: String, server: ServerConfig, timeout: Double, first: Double, growth: Double,
    cap: Double,
    growAfter: Double, _ arrived: () throws -> Bool
  ) throws {
    let t0 = Date()
    var interval = first
    var checked = 0.0
    while try !arrived() {
      let elapsed = Date().timeIntervalSince(t0)
      if elapsed > timeout {
        throw try gateTimeout(
          ctx, sroot: sroot, droot: droot, slot: slot, target: target, timeout: timeout,
          server: server)
      }
      if elapsed - checked >= healthEvery {
        checked = elapsed
        try stopIfHopeless(
          ctx, engine: engine, sroot: sroot, droot: droot, server: server, elapsed: elapsed,
          timeout: timeout)
      }
      try LockWait.pause(interval)
      if elapsed >= growAfter { interval = min(interval * growth, cap) }
    }
  }

  /// The error of a gate that gave up: where the slot is and what state forward replication is in.
  static func gateTimeout(
    _ ctx: PairContext, sroot: PGConnection, droot: PGConnection, slot: String, target: String,
    timeout: Double,
    server: ServerConfig
  ) throws -> BeltError {
    let engine = try ctx.engine
    let now = try engine.state(droot, .forward, server: server)
    var why = "forward is \(now.state)"
    if let reason = now.reason { why += ": \(reason)" }
    let pos = try SlotFacts.position(sroot, slot: slot, target: target)
    let at =
      pos.map { "slot \(slot) at \($0.string("lsn")), \($0.string("behind")) bytes behind" }
      ?? "slot \(slot) missing"
    return BeltError(
      .timeout,
      "dst did not apply src's writes up to \(target) within \(Int(timeout)) s (\(at); \(why)); \(engine.name(.forward)) was left in place",
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
        "BEGIN; SET LOCAL synchronous_commit = on; CREATE TEMP TABLE belt_wal_flush () ON COMMIT DROP; COMMIT"
      )
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
    let engine = try ctx.engine
    let locks = engine.lockSchemas
    // One side that does not answer does not stop the other's teardown: what is left there is
    // named, and the same command removes it once the side answers again.
    var reached: [Side: PGConnection] = [:]
    var unreachable: [(Side, String)] = []
    for side in Side.allCases {
      do { reached[side] = try ctx.connect(side, .root) } catch {
        unreachable.append((side, BeltError.wrap(error).message))
      }
    }
    if unreachable.count == 2 { _ = try ctx.connect(.src, .root) }  // neither answers: src's error
    let sroot = reached[.src]
    let droot = reached[.dst]
    let conns: [(Side, PGConnection, ServerConfig)] =
      [(.src, sroot, src), (.dst, droot, dst)].compactMap { side, c, server in
        c.map { (side, $0, server) }
      }
    var notes: [String] = []
    // Subscriptions first. Only this migration's objects are touched (back and its publication
    // or node on src, forward and its own on dst): a database that is also part of another
    // migration keeps that one's.
    let drops: [(PGConnection?, Side, Direction, PGConnection?)] = [
      (sroot, .src, .back, droot), (droot, .dst, .forward, sroot),
    ]
    for (conn, side, direction, provider) in drops {
      let name = engine.name(direction)
      guard let c = conn else {
        // The subscriber does not answer: its subscription stays; its slot on the provider
        // would hold WAL there until then, so it goes now (the subscription is detached from it
        // when it is dropped later).
        if let provider {
          notes += try engine.dropProviderSlots(provider, direction).map {
            "\(side == .src ? "dst" : "src"): " + $0
          }
        }
        continue
      }
      try LockWait.run(c, side: side, what: "dropping subscription \(name)", schemas: locks) {
        let (dropped, n) = try engine.drop(direction, on: c, provider: provider)
        if dropped { notes.append("\(side.rawValue): dropped subscription \(name)") }
        // Slot notes are about the provider, the other side.
        notes += n.map { "\(side == .src ? "dst" : "src"): " + $0 }
      }
    }
    // An unfinished initial copy of belt's cannot resume without its slot on src.
    if sroot != nil { try SnapshotCopy.abandon(ctx) }
    for (side, c, _) in conns {
      try LockWait.run(
        c, side: side, what: "dropping \(engine.tableGroup) and nodes", schemas: locks
      ) {
        notes += try engine.removeLocal(ctx, c, side: side).map { "\(side.rawValue): " + $0 }
        try Fence.drop(c)
      }
    }
    for (side, c, server) in conns {
      try LockWait.run(
        c, side: side, what: "dropping role \(server.replication.name)", schemas: locks
      ) {
        if let n = try engine.dropRole(
          ctx, side, c, name: server.replication.name, schema: ctx.schema,
          protected: [server.root.name, server.owner.name])
        {
          notes.append("\(side.rawValue): " + n)
        }
      }
    }
    if full {
      for (side, c, _) in conns {
        notes += try engine.removeExtension(c, side: side).map { "\(side.rawValue): " + $0 }
      }
    }
    var fields: [(String, Value)] = []
    for (side, why) in unreachable {
      let left =
        "\(side.rawValue) does not answer (\(why)): what this migration made there (\(engine.name(side == .dst ? .forward : .back)), "
        + "its publication or node, the replication role) is left; run teardown again once it answers"
      notes.append(left)
      fields += [("unreachable", .string(side.rawValue)), ("ok", false)]
    }
    let message = notes.isEmpty ? "nothing to remove" : "removed: " + notes.joined(separator: "; ")
    return .object(
      [("message", .string(message)), ("full", .bool(full)), ("notes", .from(notes))] + fields)
  }
}
