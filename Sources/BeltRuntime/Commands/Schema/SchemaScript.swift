// SchemaScript.swift — the model and entry points of lexical splitting, classification and
// partitioning of `pg_dump --schema-only` scripts into the four pgbelt schema files (the lexer is
// in SchemaLexer.swift, the classifier in SchemaClassifier.swift, the partitioner in
// SchemaPartitioner.swift).
//
// Unlike pgbelt (which tests substrings such as "NOT VALID", "CREATE"+"INDEX",
// "GRANT " anywhere in a statement and splits on `;` or on lines ending in `;`),
// everything here works on real lexical tokens: text inside string literals,
// dollar-quoted bodies, quoted identifiers and comments never influences
// statement boundaries or classification.

import Foundation

// MARK: - Public model

/// One statement or psql meta-command from a `pg_dump --schema-only` script.
public struct SQLStatement: Equatable, Sendable {
  /// Exact original text including the trailing `;` (no leading blank or comment lines),
  /// always terminated by a newline. For `.meta` it is the whole backslash line.
  public var text: String
  /// What the statement is, decided from tokens outside literals and comments.
  public var kind: Kind

  public init(text: String, kind: Kind) {
    self.text = text
    self.kind = kind
  }

  /// Classification of a statement, as needed to build the pgbelt schema files.
  public enum Kind: Equatable, Sendable {
    /// A psql backslash line such as `\restrict KEY`, `\unrestrict KEY` or `\connect db`.
    case meta
    /// `SET ...;` or `SELECT [pg_catalog.]set_config(...);`.
    case set
    /// `CREATE EXTENSION [IF NOT EXISTS] name ...`.
    case createExtension(name: String)
    /// `COMMENT ON EXTENSION ...`.
    case commentOnExtension
    /// `GRANT ...`, `REVOKE ...` and `ALTER DEFAULT PRIVILEGES ...`.
    case grantOrRevoke
    /// `ALTER ... OWNER TO ...`.
    case alterOwner
    /// `CREATE SCHEMA [IF NOT EXISTS] name ...`.
    case createSchema(name: String)
    /// `CREATE [UNIQUE] INDEX ...` (also `ON ONLY` for partitioned parents).
    case index(IndexInfo)
    /// `ALTER INDEX parent ATTACH PARTITION child`.
    case attachIndexPartition(parentIndex: QualifiedName, childIndex: QualifiedName)
    /// `ALTER TABLE [ONLY] t ADD CONSTRAINT c ... NOT VALID` (or the `ALTER DOMAIN` equivalent).
    case notValidConstraint(ConstraintInfo)
    /// A statement that needs an existing index and must follow it: `COMMENT ON INDEX i`,
    /// `ALTER INDEX i ...` (other than ATTACH PARTITION), `ALTER TABLE t CLUSTER ON i`.
    case indexDependent(index: QualifiedName)
    /// `ALTER TABLE [ONLY] t REPLICA IDENTITY USING INDEX i`: the index must be in the base schema.
    case replicaIdentityIndex(index: QualifiedName)
    /// `COMMENT ON CONSTRAINT c ON [DOMAIN] t`: must follow its constraint (which may be NOT VALID).
    case constraintDependent(table: QualifiedName, name: String, onDomain: Bool)
    /// Anything else (tables, types, functions, views, valid constraints, comments, ...).
    case other
  }
}

/// A possibly schema-qualified SQL name. Components are stored unquoted
/// (`"Foo""bar"` → `Foo"bar`); unquoted identifiers are folded to lower case
/// (ASCII only, as PostgreSQL does for multi-byte encodings).
public struct QualifiedName: Equatable, Hashable, Sendable, CustomStringConvertible {
  /// Schema, when the name was qualified.
  public var schema: String?
  public var name: String

  public init(schema: String?, name: String) {
    self.schema = schema
    self.name = name
  }

  /// The name rendered as SQL, every component double-quoted.
  public var quoted: String {
    if let schema { return PGConnection.qualified(schema, name) }
    return PGConnection.quoteIdent(name)
  }

  /// `schema.name` without quoting (for logs).
  public var description: String {
    if let schema { return schema + "." + name }
    return name
  }

  /// Loose match: names equal, and schemas equal unless either side is unqualified.
  public func matches(_ other: QualifiedName) -> Bool {
    guard name == other.name else { return false }
    guard let a = schema, let b = other.schema else { return true }
    return a == b
  }
}

/// Facts about a `CREATE [UNIQUE] INDEX` statement.
public struct IndexInfo: Equatable, Sendable {
  /// Index name; its schema is the table's schema (pg_dump writes index names unqualified).
  public var name: QualifiedName
  /// Indexed table (or partitioned parent for `ON ONLY`).
  public var table: QualifiedName
  /// `CREATE UNIQUE INDEX`.
  public var unique: Bool
  /// `ON ONLY` (index on a partitioned parent, attached to partition indexes later).
  public var onOnly: Bool
  /// Plain column names (key columns only) when every element is a plain column; nil when any is an expression.
  public var columns: [String]?
  /// Has a `WHERE` predicate (partial index).
  public var isPartial: Bool

  public init(
    name: QualifiedName, table: QualifiedName, unique: Bool, onOnly: Bool, columns: [String]?,
    isPartial: Bool
  ) {
    self.name = name
    self.table = table
    self.unique = unique
    self.onOnly = onOnly
    self.columns = columns
    self.isPartial = isPartial
  }
}

/// Facts about an `ALTER TABLE ... ADD CONSTRAINT ... NOT VALID` statement.
public struct ConstraintInfo: Equatable, Sendable {
  /// Constraint name (unquoted).
  public var name: String
  /// Table the constraint is on (the domain, when `onDomain`).
  public var table: QualifiedName
  /// `FOREIGN KEY` constraint.
  public var isForeignKey: Bool
  /// True for `ALTER DOMAIN ... ADD CONSTRAINT ... NOT VALID`.
  public var onDomain: Bool

  public init(name: String, table: QualifiedName, isForeignKey: Bool, onDomain: Bool = false) {
    self.name = name
    self.table = table
    self.isForeignKey = isForeignKey
    self.onDomain = onDomain
  }
}

/// The four pgbelt schema files derived from one dump, plus facts reported alongside.
public struct SchemaFiles: Equatable, Sendable {
  /// `schema.sql`: everything kept after sanitising, in dump order.
  public var full: [SQLStatement]
  /// `no_invalid_constraints_no_indexes.sql`: the base schema loaded before data sync.
  public var base: [SQLStatement]
  /// `indexes.sql`: `CREATE INDEX` and their `ALTER INDEX ... ATTACH PARTITION`, in dump order.
  public var indexes: [SQLStatement]
  /// `invalid_constraints.sql`: `NOT VALID` constraints, applied after data sync.
  public var invalidConstraints: [SQLStatement]
  /// Extension names the dump wanted (`CREATE EXTENSION`), reported, not put in files.
  public var extensions: [String]
  /// Unique indexes kept in base because a FOREIGN KEY references exactly their columns.
  public var fkRequiredUniqueIndexes: [QualifiedName]

  /// File name of `full`.
  public static let fullFileName = "schema.sql"
  /// File name of `base`.
  public static let baseFileName = "no_invalid_constraints_no_indexes.sql"
  /// File name of `indexes`.
  public static let indexesFileName = "indexes.sql"
  /// File name of `invalidConstraints`.
  public static let invalidConstraintsFileName = "invalid_constraints.sql"

  public init(
    full: [SQLStatement] = [], base: [SQLStatement] = [], indexes: [SQLStatement] = [],
    invalidConstraints: [SQLStatement] = [], extensions: [String] = [],
    fkRequiredUniqueIndexes: [QualifiedName] = []
  ) {
    self.full = full
    self.base = base
    self.indexes = indexes
    self.invalidConstraints = invalidConstraints
    self.extensions = extensions
    self.fkRequiredUniqueIndexes = fkRequiredUniqueIndexes
  }

  /// The four files as (file name, rendered contents), in pgbelt's order.
  public func renderedFiles() -> [(name: String, contents: String)] {
    [
      (Self.fullFileName, SchemaScript.render(full)),
      (Self.invalidConstraintsFileName, SchemaScript.render(invalidConstraints)),
      (Self.indexesFileName, SchemaScript.render(indexes)),
      (Self.baseFileName, SchemaScript.render(base)),
    ]
  }
}

// MARK: - Entry points

/// Lexing, classification and partitioning of pg_dump scripts.
public enum SchemaScript {
  /// Splits a pg_dump script into statements by real lexical boundaries
  /// (PostgreSQL/psql rules: quotes, dollar quotes, comments, parentheses,
  /// `BEGIN ATOMIC ... END` bodies, psql backslash lines). Blank and comment-only
  /// text between statements is dropped.
  public static func split(_ script: String) -> [SQLStatement] {
    var lexer = Lexer(Array(script.utf8))
    return lexer.splitAll()
  }

  /// Builds the four pgbelt files from one dump's statements.
  ///
  /// `.meta`, extensions, extension comments, grants/revokes and owner changes are
  /// dropped; `.set` statements are kept in every file in their original position
  /// (pg_dump's header SETs therefore open every file); schemas go to full+base;
  /// indexes (and attaches of those indexes) go to `indexes` unless a FOREIGN KEY
  /// or a REPLICA IDENTITY needs them; NOT VALID constraints go to `invalidConstraints`;
  /// statements about an index (`COMMENT ON INDEX`, `ALTER INDEX ... SET STATISTICS`,
  /// `CLUSTER ON`) or a constraint (`COMMENT ON CONSTRAINT`) follow it into its file;
  /// all else to base.
  public static func partition(_ statements: [SQLStatement]) -> SchemaFiles {
    Partitioner(statements).run()
  }

  /// Joins statement texts with a blank line between them.
  public static func render(_ statements: [SQLStatement]) -> String {
    statements.map(\.text).joined(separator: "\n")
  }

  /// `DROP INDEX IF EXISTS "schema"."name";` for an index (dropping an `ON ONLY`
  /// parent also drops the partition indexes attached to it).
  public static func dropIndexSQL(_ info: IndexInfo) -> String {
    let name = QualifiedName(schema: info.name.schema ?? info.table.schema, name: info.name.name)
    return "DROP INDEX IF EXISTS \(name.quoted);"
  }

  /// `ALTER TABLE "schema"."table" DROP CONSTRAINT IF EXISTS "name";`
  /// (`ALTER DOMAIN` for domain constraints).
  public static func dropConstraintSQL(_ c: ConstraintInfo) -> String {
    let what = c.onDomain ? "DOMAIN" : "TABLE"
    return
      "ALTER \(what) \(c.table.quoted) DROP CONSTRAINT IF EXISTS \(PGConnection.quoteIdent(c.name));"
  }

  /// The setting a `.set` statement changes, lower-cased: `SET [SESSION|LOCAL] name {=|TO} ...`
  /// or `SELECT [pg_catalog.]set_config('name', ...)`; nil for other statements and for the SET
  /// forms without a plain setting name (`SET ROLE`, `SET TIME ZONE`, `SET SESSION
  /// AUTHORIZATION`, a qualified `a.b` name).
  public static func settingName(of statement: SQLStatement) -> String? {
    guard statement.kind == .set else { return nil }
    return TokenView(Lexer(Array(statement.text.utf8)).tokensOfFirstStatement()).settingName()
  }

  /// The settings that `statements` SET, each once, in order (see ``settingName(of:)``).
  public static func settingNames(_ statements: [SQLStatement]) -> [String] {
    var seen = Set<String>()
    return statements.compactMap(settingName(of:)).filter { seen.insert($0).inserted }
  }

  /// `statements` without the SETs of the settings in `names` (a newer pg_dump sets
  /// `transaction_timeout`, which an older server rejects).
  public static func removingSettings(_ names: Set<String>, from statements: [SQLStatement])
    -> [SQLStatement]
  {
    statements.filter { s in settingName(of: s).map { !names.contains($0) } ?? true }
  }

  /// Classifies a single statement text (a convenience over `split` for one statement).
  public static func classify(_ statementText: String) -> SQLStatement.Kind {
    split(statementText).first?.kind ?? .other
  }

  /// For `ALTER TABLE ... ADD CONSTRAINT c ...`: the table, the constraint name and whether it
  /// is a PRIMARY KEY (used to recognise a re-run of an already applied statement).
  public static func addedConstraint(in statement: SQLStatement) -> (
    table: QualifiedName, name: String, primaryKey: Bool
  )? {
    let tokens = Lexer(Array(statement.text.utf8)).tokensOfFirstStatement()
    return TokenView(tokens).addedConstraint()
  }

  /// The FOREIGN KEY / REFERENCES targets named in one statement: referenced table
  /// and referenced column list (only references with an explicit column list).
  public static func foreignKeyReferences(in statement: SQLStatement) -> [(
    table: QualifiedName, columns: [String]
  )] {
    guard statement.text.range(of: "references", options: .caseInsensitive) != nil else {
      return []
    }
    let tokens = Lexer(Array(statement.text.utf8)).tokensOfFirstStatement()
    return TokenView(tokens).foreignKeyReferences()
  }
}
