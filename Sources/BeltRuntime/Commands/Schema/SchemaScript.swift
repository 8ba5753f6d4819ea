// SchemaScript.swift — lexical splitting, classification and partitioning of
// `pg_dump --schema-only` scripts into the four pgbelt schema files.
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
    return "ALTER \(what) \(c.table.quoted) DROP CONSTRAINT IF EXISTS \(PGConnection.quoteIdent(c.name));"
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
  public static func removingSettings(_ names: Set<String>, from statements: [SQLStatement]) -> [SQLStatement] {
    statements.filter { s in settingName(of: s).map { !names.contains($0) } ?? true }
  }

  /// Classifies a single statement text (a convenience over `split` for one statement).
  public static func classify(_ statementText: String) -> SQLStatement.Kind {
    split(statementText).first?.kind ?? .other
  }

  /// For `ALTER TABLE ... ADD CONSTRAINT c ...`: the table, the constraint name and whether it
  /// is a PRIMARY KEY (used to recognise a re-run of an already applied statement).
  public static func addedConstraint(in statement: SQLStatement) -> (table: QualifiedName, name: String, primaryKey: Bool)? {
    let tokens = Lexer(Array(statement.text.utf8)).tokensOfFirstStatement()
    return TokenView(tokens).addedConstraint()
  }

  /// The FOREIGN KEY / REFERENCES targets named in one statement: referenced table
  /// and referenced column list (only references with an explicit column list).
  public static func foreignKeyReferences(in statement: SQLStatement) -> [(table: QualifiedName, columns: [String])] {
    guard statement.text.range(of: "references", options: .caseInsensitive) != nil else { return [] }
    let tokens = Lexer(Array(statement.text.utf8)).tokensOfFirstStatement()
    return TokenView(tokens).foreignKeyReferences()
  }
}

// MARK: - Tokens

struct Token {
  enum Kind: Equatable {
    case word  // unquoted identifier or keyword; value is ASCII-lower-cased
    case quotedIdent  // "..."; value is unescaped
    case string  // '...', E'...'; value is the (approximately) unescaped body
    case dollarString  // $tag$...$tag$
    case number
    case param  // $1
    case punct  // single byte; value is that character
  }
  var kind: Kind
  var start: Int
  var end: Int
  var value: String
}

private enum Byte {
  static let nl: UInt8 = 0x0A
  static let cr: UInt8 = 0x0D
  static let space: UInt8 = 0x20
  static let tab: UInt8 = 0x09
  static let ff: UInt8 = 0x0C
  static let vt: UInt8 = 0x0B
  static let squote: UInt8 = 0x27
  static let dquote: UInt8 = 0x22
  static let dollar: UInt8 = 0x24
  static let minus: UInt8 = 0x2D
  static let slash: UInt8 = 0x2F
  static let star: UInt8 = 0x2A
  static let backslash: UInt8 = 0x5C
  static let semicolon: UInt8 = 0x3B
  static let lparen: UInt8 = 0x28
  static let rparen: UInt8 = 0x29
  static let dot: UInt8 = 0x2E
  static let comma: UInt8 = 0x2C
  static let underscore: UInt8 = 0x5F

  static func isSpace(_ c: UInt8) -> Bool {
    c == space || c == tab || c == nl || c == cr || c == ff || c == vt
  }
  static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
  static func isAlpha(_ c: UInt8) -> Bool { (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) }
  static func isIdentStart(_ c: UInt8) -> Bool { isAlpha(c) || c == underscore || c >= 0x80 }
  static func isIdentCont(_ c: UInt8) -> Bool { isIdentStart(c) || isDigit(c) || c == dollar }
  static func isTagCont(_ c: UInt8) -> Bool { isIdentStart(c) || isDigit(c) }
  static func lower(_ c: UInt8) -> UInt8 { (c >= 0x41 && c <= 0x5A) ? c + 0x20 : c }
}

// MARK: - Lexer

struct Lexer {
  let b: [UInt8]
  /// When false, plain '...' strings treat backslash as an escape (tracked from SET statements).
  var standardConformingStrings = true

  init(_ bytes: [UInt8]) { self.b = bytes }

  var count: Int { b.count }

  func text(_ from: Int, _ to: Int) -> String {
    String(decoding: b[from..<to], as: UTF8.self)
  }

  /// Skips whitespace, `--` comments and (nested) `/* */` comments.
  func skipTrivia(_ start: Int) -> Int {
    var i = start
    let n = b.count
    while i < n {
      let c = b[i]
      if Byte.isSpace(c) {
        i += 1
      } else if c == Byte.minus, i + 1 < n, b[i + 1] == Byte.minus {
        i += 2
        while i < n, b[i] != Byte.nl { i += 1 }
      } else if c == Byte.slash, i + 1 < n, b[i + 1] == Byte.star {
        i = skipBlockComment(i)
      } else {
        break
      }
    }
    return i
  }

  /// `i` points at `/*`; returns the index after the matching `*/` (or end of input).
  func skipBlockComment(_ start: Int) -> Int {
    var i = start + 2
    var depth = 1
    let n = b.count
    while i < n {
      if b[i] == Byte.slash, i + 1 < n, b[i + 1] == Byte.star {
        depth += 1
        i += 2
      } else if b[i] == Byte.star, i + 1 < n, b[i + 1] == Byte.slash {
        depth -= 1
        i += 2
        if depth == 0 { return i }
      } else {
        i += 1
      }
    }
    return n
  }

  /// Scans a single-quoted literal starting at the quote at `q`; returns (end, body).
  func scanString(_ q: Int, backslashEscapes: Bool) -> (Int, String) {
    var i = q + 1
    let n = b.count
    var body: [UInt8] = []
    while i < n {
      let c = b[i]
      if c == Byte.squote {
        if i + 1 < n, b[i + 1] == Byte.squote {
          body.append(Byte.squote)
          i += 2
          continue
        }
        return (i + 1, String(decoding: body, as: UTF8.self))
      }
      if backslashEscapes, c == Byte.backslash, i + 1 < n {
        body.append(b[i + 1])
        i += 2
        continue
      }
      body.append(c)
      i += 1
    }
    return (n, String(decoding: body, as: UTF8.self))
  }

  /// If a dollar-quote opening tag starts at `i`, returns the tag bytes (including both `$`).
  func dollarTag(at i: Int) -> [UInt8]? {
    let n = b.count
    guard i < n, b[i] == Byte.dollar else { return nil }
    var j = i + 1
    if j < n, b[j] == Byte.dollar { return [Byte.dollar, Byte.dollar] }
    guard j < n, Byte.isIdentStart(b[j]) else { return nil }
    j += 1
    while j < n, Byte.isTagCont(b[j]) { j += 1 }
    guard j < n, b[j] == Byte.dollar else { return nil }
    return Array(b[i...j])
  }

  /// Finds the end (exclusive) of a dollar-quoted string whose opening tag starts at `i`.
  func scanDollarString(_ i: Int, tag: [UInt8]) -> Int {
    let n = b.count
    let t = tag.count
    var j = i + t
    guard let first = tag.first else { return n }
    while j + t <= n {
      if b[j] == first {
        var k = 1
        while k < t, b[j + k] == tag[k] { k += 1 }
        if k == t { return j + t }
      }
      j += 1
    }
    return n
  }

  /// Lexes one token at `i` (which must not be trivia). Returns nil at end of input.
  func token(at i: Int) -> Token? {
    let n = b.count
    guard i < n else { return nil }
    let c = b[i]
    if c == Byte.squote {
      let (end, body) = scanString(i, backslashEscapes: !standardConformingStrings)
      return Token(kind: .string, start: i, end: end, value: body)
    }
    if c == Byte.dquote {
      var j = i + 1
      var body: [UInt8] = []
      while j < n {
        if b[j] == Byte.dquote {
          if j + 1 < n, b[j + 1] == Byte.dquote {
            body.append(Byte.dquote)
            j += 2
            continue
          }
          j += 1
          return Token(kind: .quotedIdent, start: i, end: j, value: String(decoding: body, as: UTF8.self))
        }
        body.append(b[j])
        j += 1
      }
      return Token(kind: .quotedIdent, start: i, end: n, value: String(decoding: body, as: UTF8.self))
    }
    if c == Byte.dollar {
      if i + 1 < n, Byte.isDigit(b[i + 1]) {
        var j = i + 1
        while j < n, Byte.isDigit(b[j]) { j += 1 }
        return Token(kind: .param, start: i, end: j, value: text(i, j))
      }
      if let tag = dollarTag(at: i) {
        let end = scanDollarString(i, tag: tag)
        return Token(kind: .dollarString, start: i, end: end, value: "")
      }
      return Token(kind: .punct, start: i, end: i + 1, value: "$")
    }
    if Byte.isIdentStart(c) {
      // E'...' / e'...' extended string with backslash escapes.
      if (c == 0x45 || c == 0x65), i + 1 < n, b[i + 1] == Byte.squote {
        let (end, body) = scanString(i + 1, backslashEscapes: true)
        return Token(kind: .string, start: i, end: end, value: body)
      }
      var j = i + 1
      while j < n, Byte.isIdentCont(b[j]) { j += 1 }
      let lowered = b[i..<j].map(Byte.lower)
      return Token(kind: .word, start: i, end: j, value: String(decoding: lowered, as: UTF8.self))
    }
    if Byte.isDigit(c) || (c == Byte.dot && i + 1 < n && Byte.isDigit(b[i + 1])) {
      var j = i + 1
      while j < n, Byte.isDigit(b[j]) || Byte.isAlpha(b[j]) || b[j] == Byte.dot || b[j] == Byte.underscore {
        // Stop before ".." (range-like) so `1..` is not swallowed oddly.
        if b[j] == Byte.dot, j + 1 < n, b[j + 1] == Byte.dot { break }
        j += 1
      }
      return Token(kind: .number, start: i, end: j, value: text(i, j))
    }
    return Token(kind: .punct, start: i, end: i + 1, value: String(UnicodeScalar(c)))
  }

  /// Lexes statement tokens from `start` until the terminating `;` (psql rules:
  /// only at parenthesis depth 0 and outside `BEGIN ... END` of a
  /// `CREATE [OR REPLACE] FUNCTION|PROCEDURE`). Returns the tokens (without the
  /// terminator), the end of the statement text and the position to continue from.
  func lexStatement(from start: Int) -> (tokens: [Token], textEnd: Int, next: Int, terminated: Bool) {
    var tokens: [Token] = []
    var i = start
    var parenDepth = 0
    var beginDepth = 0
    var identCount = 0
    var idents: [UInt8] = [0, 0, 0, 0]
    while true {
      i = skipTrivia(i)
      guard let tok = token(at: i) else { break }
      if tok.kind == .punct && tok.value == "\\" && startsLine(tok.start) {
        // A psql backslash line ends an unterminated statement (it is lexed as `.meta`).
        let end = tokens.last?.end ?? start
        return (tokens, end, tok.start, false)
      }
      i = tok.end
      if tok.kind == .punct {
        if tok.value == ";" {
          if parenDepth == 0 && beginDepth == 0 {
            return (tokens, tok.end, tok.end, true)
          }
        } else if tok.value == "(" {
          parenDepth += 1
        } else if tok.value == ")" {
          if parenDepth > 0 { parenDepth -= 1 }
        }
      } else if tok.kind == .word {
        let v = tok.value
        if ["create", "function", "procedure", "or", "replace"].contains(v), identCount < idents.count,
          let f = v.utf8.first
        {
          idents[identCount] = f
        }
        identCount += 1
        let isRoutine =
          idents[0] == UInt8(ascii: "c")
          && (idents[1] == UInt8(ascii: "f") || idents[1] == UInt8(ascii: "p")
            || (idents[1] == UInt8(ascii: "o") && idents[2] == UInt8(ascii: "r")
              && (idents[3] == UInt8(ascii: "f") || idents[3] == UInt8(ascii: "p"))))
        if isRoutine && parenDepth == 0 {
          if v == "begin" {
            beginDepth += 1
          } else if v == "case" {
            if beginDepth >= 1 { beginDepth += 1 }
          } else if v == "end" {
            if beginDepth > 0 { beginDepth -= 1 }
          }
        }
      }
      tokens.append(tok)
    }
    let end = tokens.last?.end ?? start
    return (tokens, end, b.count, false)
  }

  /// True when only spaces/tabs precede `i` on its line.
  func startsLine(_ i: Int) -> Bool {
    var j = i - 1
    while j >= 0 {
      if b[j] == Byte.nl { return true }
      if b[j] != Byte.space && b[j] != Byte.tab { return false }
      j -= 1
    }
    return true
  }

  /// Tokens of the first statement in the buffer (used to re-lex a single statement's text).
  func tokensOfFirstStatement() -> [Token] {
    let s = skipTrivia(0)
    guard s < b.count, b[s] != Byte.backslash else { return [] }
    return lexStatement(from: s).tokens
  }

  /// Splits the whole buffer into statements.
  mutating func splitAll() -> [SQLStatement] {
    var out: [SQLStatement] = []
    var i = 0
    let n = b.count
    while true {
      i = skipTrivia(i)
      guard i < n else { break }
      if b[i] == Byte.backslash {
        var j = i
        while j < n, b[j] != Byte.nl { j += 1 }
        out.append(SQLStatement(text: text(i, j) + "\n", kind: .meta))
        i = min(j + 1, n)
        continue
      }
      let r = lexStatement(from: i)
      let view = TokenView(r.tokens)
      let kind = view.classify()
      var stmtText = text(i, r.textEnd) + "\n"
      i = r.next
      if kind == .set, let on = view.standardConformingStringsSetting() {
        standardConformingStrings = on
      }
      if r.terminated, view.isCopyFromStdin() {
        // COPY ... FROM stdin; is followed by data lines up to a line "\.".
        var j = i
        while j < n, b[j] != Byte.nl { j += 1 }
        j = min(j + 1, n)
        let dataStart = j
        var dataEnd = n
        while j < n {
          var e = j
          while e < n, b[e] != Byte.nl { e += 1 }
          var lineEnd = e
          if lineEnd > j, b[lineEnd - 1] == Byte.cr { lineEnd -= 1 }
          if lineEnd - j == 2, b[j] == Byte.backslash, b[j + 1] == Byte.dot {
            dataEnd = min(e + 1, n)
            break
          }
          j = min(e + 1, n)
        }
        if dataStart < dataEnd {
          stmtText += text(dataStart, dataEnd)
          if !stmtText.hasSuffix("\n") { stmtText += "\n" }
        }
        i = dataEnd
      }
      out.append(SQLStatement(text: stmtText, kind: kind))
    }
    return out
  }
}

// MARK: - Classification over tokens

struct TokenView {
  let t: [Token]
  init(_ tokens: [Token]) { self.t = tokens }

  func word(_ k: Int) -> String? {
    guard k >= 0, k < t.count, t[k].kind == .word else { return nil }
    return t[k].value
  }
  func isWord(_ k: Int, _ w: String) -> Bool { word(k) == w }
  func isPunct(_ k: Int, _ p: String) -> Bool {
    k >= 0 && k < t.count && t[k].kind == .punct && t[k].value == p
  }
  func ident(_ k: Int) -> String? {
    guard k >= 0, k < t.count else { return nil }
    switch t[k].kind {
    case .word, .quotedIdent: return t[k].value
    default: return nil
    }
  }

  /// `ident ( . ident )*` — returns the last two components and the index after the name.
  func qualifiedName(_ k: Int) -> (QualifiedName, Int)? {
    guard let first = ident(k) else { return nil }
    var parts = [first]
    var j = k + 1
    while isPunct(j, "."), let next = ident(j + 1) {
      parts.append(next)
      j += 2
    }
    let name = parts[parts.count - 1]
    let schema = parts.count >= 2 ? parts[parts.count - 2] : nil
    return (QualifiedName(schema: schema, name: name), j)
  }

  /// Skips `IF NOT EXISTS` / `IF EXISTS` at `k`.
  func skipIfExists(_ k: Int) -> Int {
    if isWord(k, "if") && isWord(k + 1, "not") && isWord(k + 2, "exists") { return k + 3 }
    if isWord(k, "if") && isWord(k + 1, "exists") { return k + 2 }
    return k
  }

  func classify() -> SQLStatement.Kind {
    guard let first = word(0) else { return .other }
    switch first {
    case "set":
      return .set
    case "select":
      if isWord(1, "set_config") && isPunct(2, "(") { return .set }
      if isWord(1, "pg_catalog") && isPunct(2, ".") && isWord(3, "set_config") && isPunct(4, "(") { return .set }
      return .other
    case "grant", "revoke":
      return .grantOrRevoke
    case "comment":
      if isWord(1, "on") && isWord(2, "extension") { return .commentOnExtension }
      if isWord(1, "on") && isWord(2, "index"), let (idx, j) = qualifiedName(3), isWord(j, "is") {
        return .indexDependent(index: idx)
      }
      if isWord(1, "on") && isWord(2, "constraint"), let name = ident(3), isWord(4, "on") {
        let onDomain = isWord(5, "domain")
        if let (table, j) = qualifiedName(onDomain ? 6 : 5), isWord(j, "is") {
          return .constraintDependent(table: table, name: name, onDomain: onDomain)
        }
      }
      return .other
    case "create":
      return classifyCreate()
    case "alter":
      return classifyAlter()
    default:
      return .other
    }
  }

  func classifyCreate() -> SQLStatement.Kind {
    var k = 1
    if isWord(k, "or") && isWord(k + 1, "replace") { k += 2 }
    if isWord(k, "extension") {
      let j = skipIfExists(k + 1)
      if let name = ident(j) { return .createExtension(name: name) }
      return .other
    }
    if isWord(k, "schema") {
      let j = skipIfExists(k + 1)
      if isWord(j, "authorization"), let role = ident(j + 1) { return .createSchema(name: role) }
      if let name = ident(j) { return .createSchema(name: name) }
      return .other
    }
    if isWord(k, "unique") || isWord(k, "index") {
      if let info = parseIndex() { return .index(info) }
    }
    return .other
  }

  func parseIndex() -> IndexInfo? {
    var k = 1
    var unique = false
    if isWord(k, "unique") {
      unique = true
      k += 1
    }
    guard isWord(k, "index") else { return nil }
    k += 1
    if isWord(k, "concurrently") { k += 1 }
    k = skipIfExists(k)
    guard !isWord(k, "on") else { return nil }  // unnamed index: cannot manage it
    guard let (rawName, afterName) = qualifiedName(k) else { return nil }
    k = afterName
    guard isWord(k, "on") else { return nil }
    k += 1
    var onOnly = false
    if isWord(k, "only") {
      onOnly = true
      k += 1
    }
    guard let (table, afterTable) = qualifiedName(k) else { return nil }
    k = afterTable
    if isWord(k, "using"), ident(k + 1) != nil { k += 2 }
    guard isPunct(k, "(") else { return nil }
    // Collect the top-level elements of the column list.
    var elements: [[Token]] = [[]]
    var depth = 0
    var j = k + 1
    var closed = false
    while j < t.count {
      let tok = t[j]
      if tok.kind == .punct && tok.value == "(" { depth += 1 }
      if tok.kind == .punct && tok.value == ")" {
        if depth == 0 {
          closed = true
          break
        }
        depth -= 1
      }
      if depth == 0 && tok.kind == .punct && tok.value == "," {
        elements.append([])
      } else {
        elements[elements.count - 1].append(tok)
      }
      j += 1
    }
    guard closed else { return nil }
    var columns: [String]? = []
    for el in elements {
      guard let col = plainColumn(el) else {
        columns = nil
        break
      }
      columns?.append(col)
    }
    // WHERE after the column list at depth 0 → partial index.
    var isPartial = false
    depth = 0
    j += 1
    while j < t.count {
      if isPunct(j, "(") {
        depth += 1
      } else if isPunct(j, ")") {
        if depth > 0 { depth -= 1 }
      } else if depth == 0 && isWord(j, "where") {
        isPartial = true
        break
      }
      j += 1
    }
    let name = QualifiedName(schema: rawName.schema ?? table.schema, name: rawName.name)
    return IndexInfo(
      name: name, table: table, unique: unique, onOnly: onOnly, columns: columns, isPartial: isPartial)
  }

  /// An index element that is a plain column: an identifier optionally followed by
  /// `COLLATE x`, an operator class (possibly qualified), `ASC|DESC`, `NULLS FIRST|LAST`.
  func plainColumn(_ el: [Token]) -> String? {
    guard let head = el.first, head.kind == .word || head.kind == .quotedIdent else { return nil }
    for (idx, tok) in el.enumerated().dropFirst() {
      switch tok.kind {
      case .word, .quotedIdent: continue
      case .punct where tok.value == "." && idx > 1: continue
      default: return nil
      }
    }
    return head.value
  }

  func classifyAlter() -> SQLStatement.Kind {
    if isWord(1, "default") && isWord(2, "privileges") { return .grantOrRevoke }
    if isAlterOwner() { return .alterOwner }
    if isWord(1, "index") {
      let k = skipIfExists(2)
      if let (parent, j) = qualifiedName(k), isWord(j, "attach"), isWord(j + 1, "partition"),
        let (child, _) = qualifiedName(j + 2)
      {
        // pg_dump qualifies both; an unqualified child lives in the parent's schema.
        let c = QualifiedName(schema: child.schema ?? parent.schema, name: child.name)
        return .attachIndexPartition(parentIndex: parent, childIndex: c)
      }
      if let (idx, j) = qualifiedName(k), j < t.count { return .indexDependent(index: idx) }
      return .other
    }
    if isWord(1, "table") || isWord(1, "domain") {
      if let info = parseNotValidConstraint() { return .notValidConstraint(info) }
    }
    if isWord(1, "table") {
      var k = skipIfExists(2)
      if isWord(k, "only") { k += 1 }
      if let (table, j) = qualifiedName(k) {
        // pg_dump names the index unqualified here: it lives in the table's schema.
        if isWord(j, "cluster"), isWord(j + 1, "on"), let (idx, end) = qualifiedName(j + 2), end == t.count {
          return .indexDependent(index: QualifiedName(schema: idx.schema ?? table.schema, name: idx.name))
        }
        if isWord(j, "replica"), isWord(j + 1, "identity"), isWord(j + 2, "using"), isWord(j + 3, "index"),
          let (idx, end) = qualifiedName(j + 4), end == t.count
        {
          return .replicaIdentityIndex(index: QualifiedName(schema: idx.schema ?? table.schema, name: idx.name))
        }
      }
    }
    return .other
  }

  /// `ALTER TABLE [IF EXISTS] [ONLY] t ADD CONSTRAINT c <kind>`: table, name and whether it is a primary key.
  func addedConstraint() -> (table: QualifiedName, name: String, primaryKey: Bool)? {
    guard isWord(0, "alter"), isWord(1, "table") else { return nil }
    var k = skipIfExists(2)
    if isWord(k, "only") { k += 1 }
    guard let (table, j) = qualifiedName(k) else { return nil }
    k = j
    if isPunct(k, "*") { k += 1 }
    guard isWord(k, "add"), isWord(k + 1, "constraint"), let name = ident(k + 2) else { return nil }
    return (table, name, isWord(k + 3, "primary") && isWord(k + 4, "key"))
  }

  /// `ALTER <object> <name> OWNER TO <role>` (and not `RENAME [COLUMN] owner TO x`).
  func isAlterOwner() -> Bool {
    let n = t.count
    guard n >= 5, isWord(n - 3, "owner"), isWord(n - 2, "to"), ident(n - 1) != nil else { return false }
    if let before = word(n - 4), ["rename", "column", "constraint", "attribute"].contains(before),
      !isPunct(n - 5, ".")
    {
      return false
    }
    return true
  }

  func parseNotValidConstraint() -> ConstraintInfo? {
    let onDomain = isWord(1, "domain")
    var k = skipIfExists(2)
    if !onDomain && isWord(k, "only") { k += 1 }
    guard let (table, afterTable) = qualifiedName(k) else { return nil }
    k = afterTable
    if !onDomain && isPunct(k, "*") { k += 1 }
    guard isWord(k, "add"), isWord(k + 1, "constraint"), let name = ident(k + 2) else { return nil }
    k += 3
    let isFK = isWord(k, "foreign") && isWord(k + 1, "key")
    var depth = 0
    var notValid = false
    while k < t.count {
      if isPunct(k, "(") {
        depth += 1
      } else if isPunct(k, ")") {
        if depth > 0 { depth -= 1 }
      } else if depth == 0 && isWord(k, "not") && isWord(k + 1, "valid") {
        notValid = true
        break
      }
      k += 1
    }
    guard notValid else { return nil }
    return ConstraintInfo(name: name, table: table, isForeignKey: isFK, onDomain: onDomain)
  }

  /// Every `REFERENCES table (cols)` in the statement (FOREIGN KEY table constraints and
  /// inline column references). References without a column list are skipped (they
  /// target the primary key, which is a constraint, never a standalone index).
  func foreignKeyReferences() -> [(table: QualifiedName, columns: [String])] {
    var out: [(table: QualifiedName, columns: [String])] = []
    var k = 0
    while k < t.count {
      defer { k += 1 }
      guard isWord(k, "references"), let (table, j) = qualifiedName(k + 1), isPunct(j, "(") else { continue }
      var cols: [String] = []
      var m = j + 1
      var ok = false
      while m < t.count {
        guard let c = ident(m) else { break }
        cols.append(c)
        if isPunct(m + 1, ")") {
          ok = true
          break
        }
        guard isPunct(m + 1, ",") else { break }
        m += 2
      }
      if ok && !cols.isEmpty { out.append((table, cols)) }
    }
    return out
  }

  /// For `SET standard_conforming_strings = on|off`, the new value.
  func standardConformingStringsSetting() -> Bool? {
    var k = 1
    if isWord(k, "session") || isWord(k, "local") { k += 1 }
    guard isWord(k, "standard_conforming_strings"), isPunct(k + 1, "=") || isWord(k + 1, "to"),
      k + 2 < t.count
    else { return nil }
    let v = t[k + 2].value.lowercased()
    switch v {
    case "on", "true", "yes", "1": return true
    case "off", "false", "no", "0": return false
    default: return nil
    }
  }

  /// See ``SchemaScript/settingName(of:)``.
  func settingName() -> String? {
    if isWord(0, "set") {
      var k = 1
      if isWord(k, "session") || isWord(k, "local") { k += 1 }
      guard let name = ident(k), isPunct(k + 1, "=") || isWord(k + 1, "to") else { return nil }
      return name.lowercased()
    }
    var k = 1
    if isWord(k, "pg_catalog") && isPunct(k + 1, ".") { k += 2 }
    guard isWord(0, "select"), isWord(k, "set_config"), isPunct(k + 1, "("), k + 2 < t.count, t[k + 2].kind == .string
    else { return nil }
    return t[k + 2].value.lowercased()
  }

  /// `COPY ... FROM stdin` (followed by inline data in the script).
  func isCopyFromStdin() -> Bool {
    guard isWord(0, "copy") else { return false }
    for k in 0..<t.count where isWord(k, "from") && isWord(k + 1, "stdin") { return true }
    return false
  }
}

// MARK: - Partitioning

private struct Partitioner {
  let statements: [SQLStatement]
  init(_ statements: [SQLStatement]) { self.statements = statements }

  func run() -> SchemaFiles {
    // 1. Foreign key targets (valid and NOT VALID FKs, inline REFERENCES).
    var refs: [(table: QualifiedName, columns: [String])] = []
    for s in statements {
      switch s.kind {
      case .other, .notValidConstraint:
        refs.append(contentsOf: SchemaScript.foreignKeyReferences(in: s))
      default:
        break
      }
    }
    // 2. Unique, non-partial, plain-column indexes whose column set a FK references, and
    //    indexes used as REPLICA IDENTITY (the base schema's ALTER TABLE needs them).
    var required: [QualifiedName] = []
    var created: [QualifiedName] = []
    var replicaIdentity: [QualifiedName] = []
    for s in statements {
      if case .replicaIdentityIndex(let idx) = s.kind, !replicaIdentity.contains(idx) { replicaIdentity.append(idx) }
    }
    for s in statements {
      guard case .index(let info) = s.kind else { continue }
      created.append(info.name)
      guard info.unique, !info.isPartial, let cols = info.columns else { continue }
      let key = cols.sorted()
      let needed = refs.contains { ref in
        ref.table.matches(info.table) && ref.columns.sorted() == key
      }
      if needed && !required.contains(info.name) { required.append(info.name) }
    }
    // 3. Partition indexes attached (transitively) to a required parent must exist
    //    before the ATTACH in base, so they stay in base too.
    var keep = required + replicaIdentity
    var changed = true
    while changed {
      changed = false
      for s in statements {
        guard case .attachIndexPartition(let parent, let child) = s.kind else { continue }
        if keep.contains(where: { $0.matches(parent) }) && !keep.contains(where: { $0.matches(child) }) {
          keep.append(child)
          changed = true
        }
      }
    }
    func kept(_ q: QualifiedName) -> Bool { keep.contains { $0.matches(q) } }
    func isCreatedIndex(_ q: QualifiedName) -> Bool { created.contains { $0.matches(q) } }

    let notValid: [ConstraintInfo] = statements.compactMap {
      if case .notValidConstraint(let c) = $0.kind { return c }
      return nil
    }

    // 4. Distribute.
    var files = SchemaFiles()
    files.fkRequiredUniqueIndexes = required
    for s in statements {
      switch s.kind {
      case .meta, .commentOnExtension, .grantOrRevoke, .alterOwner:
        continue
      case .createExtension(let name):
        if !files.extensions.contains(name) { files.extensions.append(name) }
      case .set:
        files.full.append(s)
        files.base.append(s)
        files.indexes.append(s)
        files.invalidConstraints.append(s)
      case .createSchema:
        files.full.append(s)
        files.base.append(s)
      case .index(let info):
        files.full.append(s)
        if kept(info.name) { files.base.append(s) } else { files.indexes.append(s) }
      case .attachIndexPartition(let parent, _):
        files.full.append(s)
        // Attaches of constraint-backed indexes (PRIMARY KEY / UNIQUE constraints on
        // partitioned tables) belong with their constraints in base.
        if kept(parent) || !isCreatedIndex(parent) { files.base.append(s) } else { files.indexes.append(s) }
      case .notValidConstraint:
        files.full.append(s)
        files.invalidConstraints.append(s)
      case .indexDependent(let idx):
        // Follows its index: into indexes.sql when the index is created there.
        files.full.append(s)
        if isCreatedIndex(idx) && !kept(idx) { files.indexes.append(s) } else { files.base.append(s) }
      case .replicaIdentityIndex:
        files.full.append(s)
        files.base.append(s)
      case .constraintDependent(let table, let name, let onDomain):
        // Follows its constraint: into invalid_constraints.sql when that is NOT VALID.
        files.full.append(s)
        let deferred = notValid.contains { $0.name == name && $0.onDomain == onDomain && $0.table.matches(table) }
        if deferred { files.invalidConstraints.append(s) } else { files.base.append(s) }
      case .other:
        files.full.append(s)
        files.base.append(s)
      }
    }
    return files
  }
}
