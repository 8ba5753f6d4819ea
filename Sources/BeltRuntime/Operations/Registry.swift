/// Every operation belt has: the one table the CLI, Lua bindings and docs derive from.
public enum OperationRegistry {
  /// All operations, in `belt --help` order: pgbelt's commands in pgbelt's order (users coming
  /// from pgbelt find them where they were), then belt's own in family order.
  public static let all: [OperationSpec] = {
    let families =
      InspectionOps.all + SchemaOps.all + ReplicationOps.all + CutoverOps.all + JournalOps.all
      + TrafficOps.all
    func rank(_ i: Int) -> Int {
      pgbeltOrder.firstIndex(of: families[i].name) ?? pgbeltOrder.count + i
    }
    return families.indices.sorted { rank($0) < rank($1) }.map { families[$0] }
  }()

  /// pgbelt 0.20's `belt --help`.
  static let pgbeltOrder = [
    "connections", "src_dsn", "dst_dsn", "check_pkeys", "check_connectivity", "revoke_logins",
    "restore_logins",
    "precheck", "reset", "dump_schema", "load_schema", "load_constraints", "remove_constraints",
    "remove_indexes",
    "create_indexes", "diff_schemas", "setup", "setup_back_replication", "status", "sync_sequences",
    "sync_tables",
    "analyze", "validate_data", "sync", "diff_sequences", "teardown_back_replication",
    "teardown_forward_replication", "teardown", "cleanup_previous_config",
  ]

  /// Finds an operation by its snake_case or CLI name.
  public static func find(_ name: String) -> OperationSpec? {
    let n = name.replacingOccurrences(of: "-", with: "_")
    return all.first { $0.name == n }
  }
}
