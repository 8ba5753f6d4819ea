import ArgumentParser
import BeltRuntime

struct RevokeLogins: RunbookCommand {
  static let operation = "revoke_logins"
  static let configuration = Simple.config("revoke-logins", "Discovers all users in the db who can log in, saves them in the config file, then revokes their permission to log in.", "Use this command to ensure that all writes to the source database have been stopped before syncing sequence values and tables without primary keys.\n\nRoles belong to the server, not to the database: before revoking LOGIN, belt looks for roles that other databases of the same server (outside this run) also use (connected there, owning the database or objects there, holding CONNECT or privileges there), names them and refuses. --fence connect fences only this database instead (REVOKE CONNECT ON DATABASE from PUBLIC and the roles, then their sessions here are terminated); --fence auto picks connect only when a role is shared; --lock-out-shared revokes LOGIN anyway. The fence used is recorded in the config (login_fence) and restore-logins undoes exactly that.", nullDstNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  @OptionGroup var exclude: ExcludeOptions
  @Option(help: "nologin (ALTER ROLE ... NOLOGIN, server-wide), connect (REVOKE CONNECT on this database only) or auto.") var fence: String = "nologin"
  @Flag(help: "Revoke LOGIN even from roles that other databases of the server use.") var lockOutShared = false
  var dcArg: String { dc }
  var dbArg: String? { db }
  var opts: [(String, Value)] { exclude.opts + [("fence", .string(fence)), ("lock_out_shared", .bool(lockOutShared))] }
}

struct RestoreLogins: RunbookCommand {
  static let operation = "restore_logins"
  static let configuration = Simple.config("restore-logins", "Grant permission to log in for any user present in the config file.", "The user must already have a password. This will not generate or modify existing passwords for users.\n\nIntended to be used after revoke-logins in case a rollback is required.", nullDstNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  @OptionGroup var exclude: ExcludeOptions
  var dcArg: String { dc }
  var dbArg: String? { db }
  var opts: [(String, Value)] { exclude.opts }
}

struct Reset: RunbookCommand {
  static let operation = "reset"
  static let configuration = Simple.config("reset", "Reset an in-progress migration before cutover so replication can be started again from the beginning.", "This command:\n1) Stops forward replication\n2) Ensures reverse replication is stopped\n3) Truncates destination tables (all tables in schema, or only config.tables)\n4) Removes indexes from the destination\n5) Removes NOT VALID constraints from the destination\n\nNote: sequence values are intentionally left unchanged. They only need to be synchronized after cutover by running sync-sequences.", bothNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  @Flag(help: "Skip the failsafe that refuses when the destination holds more data than the source.") var force = false
  var dcArg: String { dc }
  var dbArg: String? { db }
  var opts: [(String, Value)] { [("force", .bool(force))] }
}

struct DumpSchema: RunbookCommand {
  static let operation = "dump_schema"
  static let configuration = Simple.config("dump-schema", "Dumps and sanitizes the schema from the source database, then saves it to a file.", "Four files will be generated:\n1. The entire sanitized schema\n2. The schema with all NOT VALID constraints and CREATE INDEX statements removed,\n3. A file that contains only the CREATE INDEX statements\n4. A file that contains only the NOT VALID constraints\nThese files will be saved in the schemas directory.", bothNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  var dcArg: String { dc }
  var dbArg: String? { db }
}

struct LoadSchema: RunbookCommand {
  static let operation = "load_schema"
  static let configuration = Simple.config("load-schema", "Loads the sanitized schema from the file schemas/dc/db/no_invalid_constraints.sql into the destination as the owner user.", "Invalid constraints are omitted because the source database may contain data that was created before the constraint was added. Loading the constraints into the destination before the data will cause replication to fail.", nullSrcNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  var dcArg: String { dc }
  var dbArg: String? { db }
}

struct LoadConstraints: RunbookCommand {
  static let operation = "load_constraints"
  static let configuration = Simple.config("load-constraints", "Loads the NOT VALID constraints from the file schemas/dc/db/invalid_constraints.sql into the destination as the owner user.", "This must only be done after all data is synchronized from the source to the destination database.", nullSrcNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  var dcArg: String { dc }
  var dbArg: String? { db }
}

struct RemoveConstraints: RunbookCommand {
  static let operation = "remove_constraints"
  static let configuration = Simple.config("remove-constraints", "Removes NOT VALID constraints from the target database.", "This must be done before setting up replication, and should only be used if the schema in the target database was loaded outside of belt.", nullSrcNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  var dcArg: String { dc }
  var dbArg: String? { db }
}

struct RemoveIndexes: RunbookCommand {
  static let operation = "remove_indexes"
  static let configuration = Simple.config("remove-indexes", "Removes indexes from the target database.", "This must be done before setting up replication, and should only be used if the schema in the target database was loaded outside of belt.", nullSrcNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  var dcArg: String { dc }
  var dbArg: String? { db }
}

struct CreateIndexes: RunbookCommand {
  static let operation = "create_indexes"
  static let configuration = Simple.config("create-indexes", "Creates indexes from the file schemas/dc/db/indexes.sql into the destination as the owner user.", "This must only be done after most data is synchronized (at minimum after the initializing phase) from the source to the destination database.\n\nAfter creating indexes, the destination database is analyzed so the query planner has up-to-date statistics for the indexes.", nullSrcNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  var dcArg: String { dc }
  var dbArg: String? { db }
}

struct DiffSchemas: RunbookCommand {
  static let operation = "diff_schemas"
  static let configuration = Simple.config("diff-schemas", "Compare source and destination schemas.", "By default, NOT VALID constraints and CREATE INDEX statements are excluded from the comparison since belt loads those in separate steps. Use --full to include them.\n\nDBs with a table list configured are skipped since they represent subset migrations where schemas will naturally differ.", bothNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  @Flag(help: "Include NOT VALID constraints and CREATE INDEX statements in the diff. Without this flag, those are excluded since they are loaded in separate steps.") var full = false
  var dcArg: String { dc }
  var dbArg: String? { db }
  var opts: [(String, Value)] { [("full", .bool(full))] }
}

struct Setup: RunbookCommand {
  static let operation = "setup"
  static let configuration = Simple.config("setup", "Configures pglogical to replicate all compatible tables from the source to the destination db.", "This includes copying the database schema from the source into the destination.\n\nIf you want to set up the schema in the destination db manually you can use the --no-schema option to stop this from happening.", bothNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  @Flag(inversion: .prefixedNo, help: "Copy the schema?") var schema = true
  var dcArg: String { dc }
  var dbArg: String? { db }
  var opts: [(String, Value)] { [("schema", .bool(schema))] }
}

struct SetupBackReplication: RunbookCommand {
  static let operation = "setup_back_replication"
  static let configuration = Simple.config("setup-back-replication", "Configures pglogical to replicate all compatible tables from the destination to the source db.", "Can only complete successfully after the initial load phase is completed for replication from the source to target.\n\nBack replication ensures that dataloss does not occur if a rollback is required after applications are allowed to begin writing data into the destination db.", bothNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  var dcArg: String { dc }
  var dbArg: String? { db }
}

struct SyncSequences: RunbookCommand {
  static let operation = "sync_sequences"
  static let configuration = Simple.config("sync-sequences", "Sync all sequences to the destination database.", "For sequences that back primary key columns, the value is set from max(pk_column) on the destination table.\n\nFor all other sequences, the current value is read from the source and applied to the destination, but only if the source value is >= the current destination value. This prevents regressing sequences if run after cutover.", bothNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  @Option(help: "Pad non-PK sequences by this amount when syncing: loads source_value + stride. Recommended default: --stride 1000.") var stride: Int?
  var dcArg: String { dc }
  var dbArg: String? { db }
  var opts: [(String, Value)] { [("stride", .from(stride))] }
}

struct SyncTables: RunbookCommand {
  static let operation = "sync_tables"
  static let configuration = Simple.config("sync-tables", "Dump tables without primary keys from the source and pipe them directly into the destination database.", "No intermediate files are used: data is streamed with COPY from one connection into the other.\n\nA table will only be loaded into the destination if it currently contains no rows.\n\nYou may also provide specific PK-less tables to sync with the --table option. Need to run like --table table1 --table table2 ...", bothNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  @Option(name: .customLong("table"), help: "Specific tables to sync") var tables: [String] = []
  var dcArg: String { dc }
  var dbArg: String? { db }
  var opts: [(String, Value)] { [("tables", .from(tables))] }
}

struct Analyze: RunbookCommand {
  static let operation = "analyze"
  static let configuration = Simple.config("analyze", "Run ANALYZE in the destination database.", "This should be run after data is completely replicated and before applications are allowed to use the new db.", nullSrcNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  var dcArg: String { dc }
  var dbArg: String? { db }
}

struct ValidateData: RunbookCommand {
  static let operation = "validate_data"
  static let configuration = Simple.config("validate-data", "Compares data in the source and target databases.", "Both a random sample and a sample of the latest rows will be compared for each table. Use --full to compare every row by chunked hashes.", bothNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  @Flag(help: "Compare whole tables by chunks of primary-key ranges hashed on each server.") var full = false
  @Option(help: "Rows per sample (random and latest).") var sample: Int?
  var dcArg: String { dc }
  var dbArg: String? { db }
  var opts: [(String, Value)] { [("full", .bool(full)), ("sample", .from(sample))] }
}

struct Sync: RunbookCommand {
  static let operation = "sync"
  static let configuration = Simple.config("sync", "Sync and validate all data that is not replicated with pglogical.", "This includes all tables without primary keys and all sequences. Also loads any previously omitted NOT VALID constraints into the destination db and runs ANALYZE in the destination.\n\nThis command is equivalent to running the following commands in order: sync-sequences, sync-tables, validate-data, load-constraints, analyze. Though here they may run concurrently when possible.", bothNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  @Flag(inversion: .prefixedNo, help: "Skip the constraint and index steps.") var noSchema = false
  var dcArg: String { dc }
  var dbArg: String? { db }
  var opts: [(String, Value)] { [("no_schema", .bool(noSchema))] }
}

struct TeardownBackReplication: RunbookCommand {
  static let operation = "teardown_back_replication"
  static let configuration = Simple.config("teardown-back-replication", "Stops pglogical replication from the destination database to the source.", "You should only do this once you are certain a rollback will not be required.", nullDstNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  var dcArg: String { dc }
  var dbArg: String? { db }
}

struct TeardownForwardReplication: RunbookCommand {
  static let operation = "teardown_forward_replication"
  static let configuration = Simple.config("teardown-forward-replication", "Stops pglogical replication from the source database to the destination.", "This should be done during your migration downtime before writes are allowed to the destination. Before dropping the subscription it waits until the destination has applied everything the source had written when the command started (--no-wait skips this).", nullSrcNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  @Option(help: "How long to wait for the destination to catch up (seconds or e.g. 5m).") var timeout: String = "5m"
  @Flag(inversion: .prefixedNo, help: "Wait for the destination to catch up before dropping.") var wait = true
  var dcArg: String { dc }
  var dbArg: String? { db }
  var opts: [(String, Value)] { [("timeout", .string(timeout)), ("wait", .bool(wait))] }
}

struct Teardown: RunbookCommand {
  static let operation = "teardown"
  static let configuration = Simple.config("teardown", "Removes all pglogical configuration from both databases.", "If any replication is configured this will stop it. It will also drop the pglogical user.\n\nIf run with --full the pglogical extension will be dropped.\n\nWARNING: running with --full may cause the database to lock up. You should be prepared to reboot the database if you do this.", bothNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  @Flag(inversion: .prefixedNo, help: "Remove pglogical extension") var full = false
  var dcArg: String { dc }
  var dbArg: String? { db }
  var opts: [(String, Value)] { [("full", .bool(full))] }
}

struct DiffSequences: RunbookCommand {
  static let operation = "diff_sequences"
  static let configuration = Simple.config("diff-sequences", "Compare the last value of every targeted sequence on the source and destination databases.", "Targets the config's sequences, or every sequence of schema_name. DST is green when the destination is at or past the source; a sequence missing on one side shows \"—\" and is fine only when it is missing on the source.\n\nUnlike pgbelt, a mismatch exits 1 (--json: result = mismatch).", bothNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  var dcArg: String { dc }
  var dbArg: String? { db }
}

struct CleanupPreviousConfig: RunbookCommand {
  static let operation = "cleanup_previous_config"
  static let configuration = Simple.config("cleanup-previous-config", "Removes pglogical configuration left on the source database by an earlier migration, whatever role it played.", "Drops the subscriptions pg1_pg2 and pg2_pg1, their leftover slots, the replication set pgbelt, the node pg1 or pg2, and the pglogical user when nothing else on the server uses it.\n\nIf run with --full the pglogical extension will be dropped too.", nullDstNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  @Flag(inversion: .prefixedNo, help: "Remove pglogical extension") var full = false
  var dcArg: String { dc }
  var dbArg: String? { db }
  var opts: [(String, Value)] { [("full", .bool(full))] }
}
