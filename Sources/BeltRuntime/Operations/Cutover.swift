/// The cutover command family (not yet implemented).
public enum CutoverOps {
  /// All specs of this family.
  public static let all: [OperationSpec] = []
}
