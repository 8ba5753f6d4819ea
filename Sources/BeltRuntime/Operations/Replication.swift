/// The replication command family.
///
/// setup, setup-back-replication, status, teardown-back-replication,
/// teardown-forward-replication, teardown, reset. The work lives in `Replication/`
/// (ReplicationSteps, ReplicationStatus, PGL).
public enum ReplicationOps {
  /// All specs of this family. (Initialising it also registers the human renderer of status,
  /// which prints why a subscription is down under the table.)
  public static let all: [OperationSpec] = {
    Render.customRenderers["status"] = renderStatus
    return [
      reset, setup, setupBackReplication, status, teardownBackReplication,
      teardownForwardReplication, teardown, cleanupPreviousConfig,
    ]
  }()

  /// The status table (pgbelt's columns), then one line per subscription that is down, with
  /// the reason.
  static func renderStatus(_ recs: [Value]) -> String {
    let columns = status.columns
    let rows = recs.map { r in columns.map { r[$0.1]?.display ?? "" } }
    let bad = recs.map { r in columns.map { r[$0.1]?.stringValue == "down" } }
    var out = Render.table(columns.map(\.0), rows, bad: bad)
    for r in recs {
      let db = r["db"]?.display ?? ""
      for (key, label) in [("forward_error", "src -> dst"), ("back_error", "src <- dst")] {
        if let why = r[key]?.stringValue {
          out += Render.red("\(db): \(label) is down: \(why)") + "\n"
        }
      }
      if let line = CutoverProgress.statusLine(r) { out += Render.yellow(line) + "\n" }
    }
    return out
  }

  /// `belt reset`.
  static let reset = OperationSpec(
    name: "reset",
    summary:
      "Reset an in-progress migration before cutover so replication can be started again from the beginning.",
    sides: .both, options: ["force": .bool]
  ) { ctx in try ReplicationSteps.reset(ctx) }

  /// `belt setup`.
  static let setup = OperationSpec(
    name: "setup",
    summary:
      "Configures pglogical to replicate all compatible tables from the source to the destination db.",
    sides: .both, options: ["schema": .bool]
  ) { ctx in try ReplicationSteps.setup(ctx) }

  /// `belt setup-back-replication`.
  static let setupBackReplication = OperationSpec(
    name: "setup_back_replication",
    summary:
      "Configures pglogical to replicate all compatible tables from the destination to the source db.",
    sides: .both
  ) { ctx in try ReplicationSteps.setupBack(ctx) }

  /// `belt status`.
  static let status = OperationSpec(
    name: "status",
    summary: "Print out a table of status information for one or all of the dbs in a datacenter.",
    sides: .both,
    columns: [
      ("database", "db"), ("src -> dst", "forward"), ("src <- dst", "back"),
      ("sent_lag", "sent_lag"),
      ("flush_lag", "flush_lag"), ("write_lag", "write_lag"), ("replay_lag", "replay_lag"),
      ("src_dataset_size", "src_dataset_size"), ("dst_dataset_size", "dst_dataset_size"),
      ("progress", "progress"),
    ]
  ) { ctx in try ReplicationStatus.run(ctx) }

  /// `belt teardown-back-replication`.
  static let teardownBackReplication = OperationSpec(
    name: "teardown_back_replication",
    summary: "Stops pglogical replication from the destination database to the source.",
    sides: .srcOnly
  ) { ctx in try ReplicationSteps.teardownBack(ctx) }

  /// `belt teardown-forward-replication`.
  static let teardownForwardReplication = OperationSpec(
    name: "teardown_forward_replication",
    summary: "Stops pglogical replication from the source database to the destination.",
    sides: .dstOnly, options: ["timeout": .duration, "wait": .bool]
  ) { ctx in try ReplicationSteps.teardownForward(ctx) }

  /// `belt teardown`.
  static let teardown = OperationSpec(
    name: "teardown",
    summary: "Removes all pglogical configuration from both databases.",
    sides: .both, options: ["full": .bool]
  ) { ctx in try ReplicationSteps.teardown(ctx) }

  /// `belt cleanup-previous-config [--full]`.
  static let cleanupPreviousConfig = OperationSpec(
    name: "cleanup_previous_config",
    summary: "Removes pglogical configuration left on the source database by an earlier migration, whatever role it played.",
    sides: .srcOnly, options: ["full": .bool]
  ) { ctx in try Cleanup.run(ctx) }
}
