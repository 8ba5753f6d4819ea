/// The replication command family.
///
/// setup, setup-back-replication, status, teardown-back-replication,
/// teardown-forward-replication, teardown, reset, cleanup-previous-config. The work is in this
/// folder (Setup, Teardown, Reset, Cleanup, ReplicationStatus), engine-neutral; each engine's
/// own mechanics are in `Engines/`.
public enum ReplicationOps {
  /// All specs of this family.
  public static let all: [OperationSpec] = [
    reset, setup, setupBackReplication, status, teardownBackReplication,
    teardownForwardReplication, teardown, cleanupPreviousConfig, applyDDL,
  ]

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
      if r["forward"]?.stringValue != "down", let drift = r["schema_drift"]?.arrayValue,
        !drift.isEmpty
      {
        let lines = drift.compactMap(\.stringValue)
        out +=
          Render.yellow(
            "\(db): schema drift (the cutover refuses until it is mended): \(lines.joined(separator: "; "))"
          ) + "\n"
      }
      if let why = r["copy_interrupted"]?.stringValue {
        out += Render.yellow("\(db): \(why)") + "\n"
      }
      if let why = r["forward_waiting"]?.stringValue {
        out += Render.yellow("\(db): src -> dst waits: \(why)") + "\n"
      }
      if let line = CutoverProgress.statusLine(r) { out += Render.yellow(line) + "\n" }
    }
    return out
  }

  static let reset = OperationSpec(
    name: "reset",
    summary:
      "Reset an in-progress migration before cutover so replication can be started again from the beginning.",
    details: """
      This command:
      1) Stops forward replication
      2) Ensures reverse replication is stopped
      3) Truncates destination tables (all tables in schema, or only config.tables)
      4) Removes indexes from the destination
      5) Removes NOT VALID constraints from the destination

      Note: sequence values are intentionally left unchanged. They only need to be synchronized after cutover by running sync-sequences.
      """,
    sides: .both,
    options: [
      OptionSpec(
        "force", .bool,
        "Skip the failsafe that refuses when the destination holds more data than the source.")
    ]
  ) { ctx in try Reset.reset(ctx) }

  static let setup = OperationSpec(
    name: "setup",
    summary:
      "Configures pglogical to replicate all compatible tables from the source to the destination db.",
    details: """
      This includes copying the database schema from the source into the destination.

      If you want to set up the schema in the destination db manually you can use the --no-schema option to stop this from happening.
      """,
    sides: .both,
    options: [
      OptionSpec("schema", .bool, "Copy the schema?", default: true, cli: .inverted),
      OptionSpec(
        "copy", .string,
        "Who copies the initial data on an engine that can start from an exported snapshot (native): belt (in parallel, resumable table by table) or engine (the subscription's own copy); default: the config's \"initial_copy\", else belt.",
        choices: ["belt", "engine"]),
      OptionSpec(
        "copy_jobs", .int,
        "Parallel COPY sessions of belt's initial copy (default: the config's \"copy_jobs\", else 4 bounded by --jobs).",
        minimum: 1),
      OptionSpec(
        "copy_split_mb", .number,
        "Tables bigger than this (MB) are copied by belt as ctid block ranges in parallel (default: the config's \"copy_split_mb\", else 256)."
      ),
      OptionSpec(
        "index_jobs", .int,
        "Indexes built at once after belt's initial copy (default: the config's \"index_jobs\", else 4 bounded by --jobs).",
        minimum: 1),
      LoggedSecrets.option,
    ]
  ) { ctx in try LoggedSecrets.guarded(ctx, [.src, .dst]) { try Setup.setup(ctx) } }

  static let setupBackReplication = OperationSpec(
    name: "setup_back_replication",
    summary:
      "Configures pglogical to replicate all compatible tables from the destination to the source db.",
    details: """
      Can only complete successfully after the initial load phase is completed for replication from the source to target.

      Back replication ensures that dataloss does not occur if a rollback is required after applications are allowed to begin writing data into the destination db.
      """,
    sides: .both, options: [LoggedSecrets.option]
  ) { ctx in try LoggedSecrets.guarded(ctx, [.src]) { try Setup.setupBack(ctx) } }

  static let status = OperationSpec(
    name: "status",
    summary: "Print out a table of status information for one or all of the dbs in a datacenter.",
    details: """
      Contains the pglogical replication status for both directions of replication and replication lag data for forward replication. Possible replication statuses are as follows:

      unconfigured: No replication has been set up in this direction yet.

      initializing: Pglogical is performing an initial data dump to bring the follower up to speed. You can not begin replication in the opposite direction during this stage.

      replicating: Pglogical is replicating only net new writes in this direction.

      down: Pglogical has encountered an error and has stopped replicating entirely. Check the postgres logs on both dbs to determine the cause.
      """,
    sides: .both,
    columns: [
      ("database", "db"), ("src -> dst", "forward"), ("src <- dst", "back"),
      ("sent_lag", "sent_lag"),
      ("flush_lag", "flush_lag"), ("write_lag", "write_lag"), ("replay_lag", "replay_lag"),
      ("src_dataset_size", "src_dataset_size"), ("dst_dataset_size", "dst_dataset_size"),
      ("progress", "progress"),
    ],
    render: renderStatus
  ) { ctx in try ReplicationStatus.run(ctx) }

  static let teardownBackReplication = OperationSpec(
    name: "teardown_back_replication",
    summary: "Stops pglogical replication from the destination database to the source.",
    details: "You should only do this once you are certain a rollback will not be required.",
    sides: .srcOnly
  ) { ctx in try Teardown.teardownBack(ctx) }

  static let teardownForwardReplication = OperationSpec(
    name: "teardown_forward_replication",
    summary: "Stops pglogical replication from the source database to the destination.",
    details: """
      This should be done during your migration downtime before writes are allowed to the destination. Before dropping the subscription it waits until the destination has applied everything the source had written when the command started (--no-wait skips this).
      """,
    sides: .dstOnly,
    options: [
      OptionSpec(
        "timeout", .duration,
        "How long to wait for the destination to catch up (seconds or e.g. 5m).", default: "5m"),
      OptionSpec(
        "wait", .bool, "Wait for the destination to catch up before dropping.", default: true,
        cli: .inverted),
    ]
  ) { ctx in try Teardown.teardownForward(ctx) }

  static let teardown = OperationSpec(
    name: "teardown",
    summary: "Removes all pglogical configuration from both databases.",
    details: """
      If any replication is configured this will stop it. It will also drop the pglogical user.

      If run with --full the pglogical extension will be dropped.

      WARNING: running with --full may cause the database to lock up. You should be prepared to reboot the database if you do this.
      """,
    sides: .both, options: [OptionSpec("full", .bool, "Remove pglogical extension", cli: .inverted)]
  ) { ctx in try Teardown.teardown(ctx) }

  static let applyDDL = OperationSpec(
    name: "apply_ddl",
    summary:
      "Changes the schema of a replicating pair on both sides, each statement on the side that must change first.",
    details: """
      Additive changes (ADD COLUMN, CREATE TABLE, a new enum value, DROP NOT NULL, DROP CONSTRAINT, DROP INDEX) run on dst first, then src; removals and tightenings (DROP COLUMN, DROP TABLE, ADD CONSTRAINT, SET NOT NULL, CREATE UNIQUE INDEX) on src first. Statements that no order makes safe (ALTER COLUMN TYPE, RENAME, SET SCHEMA, CREATE TABLE AS, data changes, GRANTs) are refused before anything runs.

      A table it creates in the pair's schema is published and copied when the engine streams it. The schema files (schemas/dc/db/) are dumped again from src. Each statement runs as the owner user, in the audit log.

      --dst-only brings dst in line when the change already ran on src (dst's apply stopped on it: belt status names the drift); replication then resumes where it stopped.
      """,
    sides: .both,
    options: [
      OptionSpec("sql", .string, "The statements to apply (separated by semicolons)."),
      OptionSpec("file", .string, "A file holding the statements to apply."),
      OptionSpec(
        "dst_only", .bool, "Apply on dst only: src already has the change.", cli: .inverted),
    ]
  ) { ctx in try ApplyDDL.run(ctx) }

  static let cleanupPreviousConfig = OperationSpec(
    name: "cleanup_previous_config",
    summary:
      "Removes pglogical configuration left on the source database by an earlier migration, whatever role it played.",
    details: """
      Drops the subscriptions pg1_pg2 and pg2_pg1, their leftover slots, the replication set pgbelt, the node pg1 or pg2, and the pglogical user when nothing else on the server uses it.

      If run with --full the pglogical extension will be dropped too.
      """,
    sides: .srcOnly,
    options: [OptionSpec("full", .bool, "Remove pglogical extension", cli: .inverted)]
  ) { ctx in try Cleanup.run(ctx) }
}
