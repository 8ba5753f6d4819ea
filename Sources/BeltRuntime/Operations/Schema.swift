/// The schema command family (not yet implemented).
public enum SchemaOps {
  /// All specs of this family.
  public static let all: [OperationSpec] = []
}
