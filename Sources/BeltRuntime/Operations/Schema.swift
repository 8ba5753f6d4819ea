/// The schema pipeline: dump-schema, load-schema, load-constraints, remove-constraints,
/// remove-indexes, create-indexes, diff-schemas, analyze. (Being implemented.)
public enum SchemaOps {
  /// All specs of this family.
  public static let all: [OperationSpec] = []

  /// Dumps src's schema and writes the four files under schemas/<dc>/<db>/.
  public static func dumpSchema(_ ctx: PairContext) throws -> Value { throw notYet("dump_schema") }
  /// Applies no_invalid_constraints_no_indexes.sql to dst as the owner (idempotent).
  public static func loadSchema(_ ctx: PairContext) throws -> Value { throw notYet("load_schema") }
  /// Applies invalid_constraints.sql to dst as the owner (idempotent).
  public static func loadConstraints(_ ctx: PairContext) throws -> Value { throw notYet("load_constraints") }
  /// Drops the NOT VALID constraints listed in invalid_constraints.sql from dst.
  public static func removeConstraints(_ ctx: PairContext) throws -> Value { throw notYet("remove_constraints") }
  /// Drops the indexes listed in indexes.sql from dst.
  public static func removeIndexes(_ ctx: PairContext) throws -> Value { throw notYet("remove_indexes") }
  /// Creates the indexes of indexes.sql on dst (tolerating existing ones), then ANALYZE.
  public static func createIndexes(_ ctx: PairContext) throws -> Value { throw notYet("create_indexes") }
  /// ANALYZE on dst with statement_timeout off.
  public static func analyze(_ ctx: PairContext) throws -> Value { throw notYet("analyze") }

  static func notYet(_ name: String) -> BeltError { BeltError(.internal, "\(name) is not implemented yet") }
}
