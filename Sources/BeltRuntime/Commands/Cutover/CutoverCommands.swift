/// The cutover commands, run inside the downtime window: revoke-logins, restore-logins,
/// sync-sequences, sync-tables, validate-data, sync, diff-sequences, sync-large-objects; and
/// refresh-matviews, after it. The work is in this folder.
public enum CutoverOps {
  public static let all: [OperationSpec] = [
    revokeLogins, restoreLogins, syncSequences, syncTables, validateData, sync, diffSequences,
    syncLargeObjects, refreshMatviews,
  ]

  /// revoke-logins: record `fence`, `revoked`, `saved_logins`, `config_saved`, `config_file`,
  /// `active_sessions`, `shared_roles`, `message`; with the CONNECT fence `database`,
  /// `fenced_roles`, `revoked_connect`, `granted_connect`, `terminated`.
  static let revokeLogins = OperationSpec(
    name: "revoke_logins",
    summary:
      "Discovers all users in the db who can log in, saves them in the config file, then revokes their permission to log in.",
    details: """
      Use this command to ensure that all writes to the source database have been stopped before syncing sequence values and tables without primary keys.

      Roles belong to the server, not to the database: before revoking LOGIN, belt looks for roles that other databases of the same server (outside this run) also use (connected there, owning the database or objects there, holding CONNECT or privileges there), names them and refuses. --fence connect fences only this database instead (REVOKE CONNECT ON DATABASE from PUBLIC and the roles, then their sessions here are terminated); --fence auto picks connect only when a role is shared; --lock-out-shared revokes LOGIN anyway. The fence used is recorded in the config (login_fence) and restore-logins undoes exactly that.
      """,
    sides: .srcOnly,
    options: InspectionOps.excludeOptions + [
      OptionSpec(
        "fence", .string,
        "nologin (ALTER ROLE ... NOLOGIN, server-wide), connect (REVOKE CONNECT on this database only) or auto.",
        default: "nologin", choices: ["nologin", "connect", "auto"]),
      OptionSpec(
        "lock_out_shared", .bool,
        "Revoke LOGIN even from roles that other databases of the server use."),
      InspectionOps.reverseOption,
    ]
  ) { ctx in try Logins.revoke(ctx) }

  /// restore-logins: record `restored`, `already_login`, `missing`, `excluded`, `message`; after
  /// a CONNECT fence also `fence`, `granted_connect`, `revoked_connect`.
  static let restoreLogins = OperationSpec(
    name: "restore_logins",
    summary: "Grant permission to log in for any user present in the config file.",
    details: """
      The user must already have a password. This will not generate or modify existing passwords for users.

      Intended to be used after revoke-logins in case a rollback is required.
      """,
    sides: .srcOnly, options: InspectionOps.excludeOptions + [InspectionOps.reverseOption]
  ) { ctx in try Logins.restore(ctx) }

  /// sync-sequences: record `sequences` [{name, source_value, old_value, new_value, method,
  /// synced, skipped_reason, pk_max?}], `synced`, `skipped`, `failed`, `message`.
  static let syncSequences = OperationSpec(
    name: "sync_sequences", summary: "Sync all sequences to the destination database.",
    details: """
      For sequences that back primary key columns, the value is set from max(pk_column) on the destination table.

      For all other sequences, the current value is read from the source and applied to the destination, but only if the source value is >= the current destination value. This prevents regressing sequences if run after cutover.
      """,
    sides: .both,
    options: [
      OptionSpec(
        "stride", .int,
        "Pad non-PK sequences by this amount when syncing: loads source_value + stride. Recommended default: --stride 1000.",
        minimum: 0),
      InspectionOps.reverseOption,
    ]
  ) { ctx in try SequenceSync.run(ctx, stride: ctx.options.int("stride")) }

  /// sync-tables: record `mode`, `tables` [{name, format, loaded, skipped_reason, rows, bytes,
  /// duration_ms, mb_per_s, error}], `loaded`, `skipped`, `failed`, `rows`, `bytes`, `message`.
  static let syncTables = OperationSpec(
    name: "sync_tables",
    summary:
      "Dump tables without primary keys from the source and pipe them directly into the destination database.",
    details: """
      No intermediate files are used: data is streamed with COPY from one connection into the other.

      A table will only be loaded into the destination if it currently contains no rows.

      You may also provide specific PK-less tables to sync with the --table option. Need to run like --table table1 --table table2 ...
      """,
    sides: .both,
    options: [
      OptionSpec("tables", .strings, "Specific tables to sync", cli: CLISpelling("table")),
      InspectionOps.reverseOption,
      OptionSpec(
        "replace", .bool,
        "Empty each destination table and load it again in one transaction, even when it has rows (rollback.lua).",
        cli: nil),
    ]
  ) { ctx in try TableSync.run(ctx, explicit: ctx.options.strings("tables")) }

  /// validate-data: record `mode`, `sample`, `tables` [{name, strategy, rows_compared, passed,
  /// mismatches, more_mismatches, error}], `rows_compared`, `rows_per_s`, `failed_tables`, `message`.
  static let validateData = OperationSpec(
    name: "validate_data", summary: "Compares data in the source and target databases.",
    details: """
      Both a random sample and a sample of the latest rows will be compared for each table. Use --full to compare every row by chunked hashes.
      """,
    sides: .both,
    options: [
      OptionSpec(
        "full", .bool, "Compare whole tables by chunks of primary-key ranges hashed on each server."
      ),
      OptionSpec("sample", .int, "Rows per sample (random and latest).", default: 100, minimum: 1),
      InspectionOps.reverseOption,
    ]
  ) { ctx in
    let n = ctx.options.int("sample") ?? 100
    return try Validation.run(
      ctx, settings: Validation.Settings(random: n, latest: n, full: ctx.options.bool("full")))
  }

  /// sync: record `steps` [{name, status, duration_ms, message, result}], `downtime_ms`,
  /// `failed_step`, `message`.
  static let sync = OperationSpec(
    name: "sync", summary: "Sync and validate all data that is not replicated with pglogical.",
    details: """
      This includes all tables without primary keys, all sequences and the large objects that changed since the last sync-large-objects. Also loads any previously omitted NOT VALID constraints into the destination db and runs ANALYZE in the destination.

      This command is equivalent to running the following commands in order: sync-sequences, sync-tables, sync-large-objects, validate-data, load-constraints, analyze. Though here they may run concurrently when possible.
      """,
    sides: .both,
    options: [
      OptionSpec("no_schema", .bool, "Skip the constraint and index steps.", cli: .inverted)
    ]
  ) { ctx in try SyncAll.run(ctx) }

  /// diff-sequences: record `sequences` [{name, source_value, destination_value,
  /// destination_ok}], `result` (match or mismatch), `message`; fails on a mismatch.
  static let diffSequences = OperationSpec(
    name: "diff_sequences",
    summary:
      "Compare the last value of every targeted sequence on the source and destination databases.",
    details: """
      Targets the config's sequences, or every sequence of schema_name. DST is green when the destination is at or past the source; a sequence missing on one side shows "—" and is fine only when it is missing on the source.

      Unlike pgbelt, a mismatch exits 1 (--json: result = mismatch).
      """,
    sides: .both,
    render: SequenceDiff.render
  ) { ctx in try SequenceDiff.run(ctx) }

  /// refresh-matviews: record `matviews` [{name, status (refreshed, failed or skipped),
  /// duration_s, concurrently, was_populated, error}], `refreshed`, `failed`, `duration_s`,
  /// `message`; fails when a view could not be refreshed.
  static let refreshMatviews = OperationSpec(
    name: "refresh_matviews",
    summary:
      "Refresh every materialized view of the schema on dst, in dependency order, each one timed.",
    details: """
      The schema load creates materialized views WITH NO DATA on dst and replication does not fill them: cutover.lua runs this after the switch (refresh_matviews=false turns it off). A view over another is refreshed after it; one that fails is reported with its error and the views that read it are skipped; the others go on. A view already populated that has a unique index is refreshed CONCURRENTLY (readers are not blocked). Safe to run again.
      """,
    sides: .dstOnly
  ) { ctx in try Matviews.run(ctx) }

  /// sync-large-objects: record `src_objects`, `dst_objects`, `created`, `replaced`,
  /// `unlinked`, `bytes`, `missing_roles`, `compare_ms`, `copy_ms`, `message`.
  static let syncLargeObjects = OperationSpec(
    name: "sync_large_objects",
    summary:
      "Copy large objects from the source to the destination: only those that differ (OID, owner, privileges, content).",
    details: """
      Logical replication carries no large object, so belt copies them: each server lists its objects (OID, owner, ACL, size and an md5 of the content, computed there in one pass: no object crosses the network to be compared), and only what differs moves. An object missing or different on the destination is created there with the source's OID, content, owner and grants; one the source no longer has is unlinked. Content streams in 1 MB chunks through COPY, never held whole.

      migrate.lua runs it before the window and the cutover's sync runs it again inside it, so the window pays only for what changed since. An owner or grantee role the destination lacks is left out (the object stays owned by the destination's root user) and named in the record. rollback.lua copies them back (reverse).
      """,
    sides: .both, options: [InspectionOps.reverseOption]
  ) { ctx in try LargeObjects.sync(ctx) }
}
