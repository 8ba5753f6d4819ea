/// The cutover commands, run inside the downtime window: revoke-logins, restore-logins,
/// sync-sequences, sync-tables, validate-data, sync. The work lives in `Cutover/`.
public enum CutoverOps {
  /// All specs of this family.
  public static let all: [OperationSpec] = {
    Render.customRenderers["diff_sequences"] = SequenceDiff.render
    return [revokeLogins, restoreLogins, syncSequences, syncTables, validateData, sync, diffSequences]
  }()

  /// revoke-logins: record `fence`, `revoked`, `saved_logins`, `config_saved`, `config_file`,
  /// `active_sessions`, `shared_roles`, `message`; with the CONNECT fence `database`,
  /// `fenced_roles`, `revoked_connect`, `granted_connect`, `terminated`.
  static let revokeLogins = OperationSpec(
    name: "revoke_logins",
    summary: "Discovers all users in the db who can log in, saves them in the config file, then revokes their permission to log in.",
    sides: .srcOnly,
    options: [
      "exclude_users": .strings, "exclude_patterns": .strings, "reverse": .bool, "fence": .string,
      "lock_out_shared": .bool,
    ]
  ) { ctx in try Logins.revoke(ctx) }

  /// restore-logins: record `restored`, `already_login`, `missing`, `excluded`, `message`; after
  /// a CONNECT fence also `fence`, `granted_connect`, `revoked_connect`.
  static let restoreLogins = OperationSpec(
    name: "restore_logins",
    summary: "Grant permission to log in for any user present in the config file.",
    sides: .srcOnly, options: ["exclude_users": .strings, "exclude_patterns": .strings, "reverse": .bool]
  ) { ctx in try Logins.restore(ctx) }

  /// sync-sequences: record `sequences` [{name, source_value, old_value, new_value, method,
  /// synced, skipped_reason, pk_max?}], `synced`, `skipped`, `failed`, `message`.
  static let syncSequences = OperationSpec(
    name: "sync_sequences", summary: "Sync all sequences to the destination database.",
    sides: .both, options: ["stride": .int, "reverse": .bool]
  ) { ctx in
    let stride = ctx.options.int("stride")
    if let stride, stride < 0 { throw BeltError(.badArgument, "--stride must not be negative (got \(stride))") }
    return try SequenceSync.run(ctx, stride: stride)
  }

  /// sync-tables: record `mode`, `tables` [{name, format, loaded, skipped_reason, rows, bytes,
  /// duration_ms, mb_per_s, error}], `loaded`, `skipped`, `failed`, `rows`, `bytes`, `message`.
  static let syncTables = OperationSpec(
    name: "sync_tables",
    summary: "Dump tables without primary keys from the source and pipe them directly into the destination database.",
    sides: .both, options: ["tables": .strings, "reverse": .bool, "replace": .bool]
  ) { ctx in try TableSync.run(ctx, explicit: ctx.options.strings("tables")) }

  /// validate-data: record `mode`, `sample`, `tables` [{name, strategy, rows_compared, passed,
  /// mismatches, more_mismatches, error}], `rows_compared`, `rows_per_s`, `failed_tables`, `message`.
  static let validateData = OperationSpec(
    name: "validate_data", summary: "Compares data in the source and target databases.",
    sides: .both, options: ["full": .bool, "sample": .int, "reverse": .bool]
  ) { ctx in
    let n = ctx.options.int("sample") ?? 100
    if n < 1 { throw BeltError(.badArgument, "--sample must be at least 1 (got \(n))") }
    return try Validation.run(ctx, settings: Validation.Settings(random: n, latest: n, full: ctx.options.bool("full")))
  }

  /// sync: record `steps` [{name, status, duration_ms, message, result}], `downtime_ms`,
  /// `failed_step`, `message`.
  static let sync = OperationSpec(
    name: "sync", summary: "Sync and validate all data that is not replicated with pglogical.",
    sides: .both, options: ["no_schema": .bool]
  ) { ctx in try SyncAll.run(ctx) }

  /// diff-sequences: record `sequences` [{name, source_value, destination_value,
  /// destination_ok}], `result` (match or mismatch), `message`; fails on a mismatch.
  static let diffSequences = OperationSpec(
    name: "diff_sequences",
    summary: "Compare the last value of every targeted sequence on the source and destination databases.",
    sides: .both
  ) { ctx in try SequenceDiff.run(ctx) }
}
