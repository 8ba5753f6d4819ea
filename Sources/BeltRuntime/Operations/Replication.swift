/// The replication command family (not yet implemented).
public enum ReplicationOps {
  /// All specs of this family.
  public static let all: [OperationSpec] = []
}
