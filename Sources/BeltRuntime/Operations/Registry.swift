/// Every operation belt has: the one table the CLI, Lua bindings and docs derive from.
public enum OperationRegistry {
  /// All operations, in `belt --help` order.
  public static let all: [OperationSpec] =
    InspectionOps.all + SchemaOps.all + ReplicationOps.all + CutoverOps.all + JournalOps.all + TrafficOps.all

  /// Finds an operation by its snake_case or CLI name.
  public static func find(_ name: String) -> OperationSpec? {
    let n = name.replacingOccurrences(of: "-", with: "_")
    return all.first { $0.name == n }
  }
}
