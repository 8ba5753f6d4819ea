import Foundation
import Logging

/// Applies schema statements through libpq, one at a time, in transactions of up to
/// ``batchSize`` statements (bounded so that huge schemas do not exhaust the server's lock table).
///
/// Each statement runs inside a savepoint: an error that only says the object is already there
/// (a re-run) is rolled back to the savepoint and counted as "already present"; any other error
/// stops the load, rolls back the current batch and is reported with the file, the statement and
/// the server's message. Committed batches are recognised as already present on the next run.
public enum SchemaLoader {
  /// What applying one file did.
  public struct Result: Sendable {
    /// Statements that ran (not counting SET statements).
    public var applied = 0
    /// Statements whose object already existed.
    public var alreadyPresent = 0
    /// `SET` statements for settings this server does not know (e.g. pg_dump 17's
    /// `transaction_timeout` on an older server), skipped.
    public var skippedSettings: [String] = []
    /// psql meta lines (`\restrict`), skipped.
    public var skippedMeta = 0
  }

  /// Statements per transaction.
  public static let batchSize = 250

  /// SQLSTATEs that only mean "this object already exists".
  static let duplicateStates: Set<String> = [
    "42P07",  // duplicate_table (relations: tables, views, sequences, indexes)
    "42710",  // duplicate_object (types, domains, constraints, triggers, policies, rules)
    "42723",  // duplicate_function
    "42P06",  // duplicate_schema
    "42701",  // duplicate_column
  ]

  /// Whether `error` from `statement` means the statement's object is already in place.
  /// Some re-runs fail with generic codes; those are confirmed by message or catalog.
  static func isAlreadyPresent(_ error: PGError, statement: SQLStatement, conn: PGConnection)
    -> Bool
  {
    guard error.kind == .server, let state = error.sqlState else { return false }
    if duplicateStates.contains(state) { return true }
    switch state {
    case "42P16":
      // "multiple primary keys for table ... are not allowed": present only if the primary key
      // on that table has the statement's constraint name.
      guard error.message.contains("multiple primary keys"),
        let c = SchemaScript.addedConstraint(in: statement), c.primaryKey
      else { return false }
      let r = try? conn.query(
        "SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = pg_catalog.to_regclass($1) AND conname = $2 AND contype = 'p'",
        [c.table.quoted, c.name])
      return r?.values.count == 1
    case "42809":
      return error.message.contains("is already a partition")
    case "55000":
      return error.message.contains("is already an identity column")
    default:
      return false
    }
  }

  /// The first lines of a statement, for error messages.
  public static func excerpt(_ text: String, maxLines: Int = 4, maxChars: Int = 300) -> String {
    let lines = text.split(separator: "\n", omittingEmptySubsequences: true).map {
      $0.trimmingCharacters(in: .whitespaces)
    }
    var s = lines.prefix(maxLines).joined(separator: " ")
    if s.count > maxChars {
      s = String(s.prefix(maxChars)) + "…"
    } else if lines.count > maxLines {
      s += " …"
    }
    return s
  }

  /// Runs `statements` (from `file`) on `conn` in transactions of up to ``batchSize`` statements.
  /// - Throws: ``BeltError`` `sql_error` naming the file, statement number, statement and server
  ///   message; the statements of the current batch are rolled back.
  public static func apply(
    _ statements: [SQLStatement], file: String, conn: PGConnection, logger: Logger
  ) throws -> Result {
    var result = Result()
    try conn.exec("BEGIN")
    var number = 0
    var committed = 0
    do {
      for s in statements {
        if s.kind == .meta {
          result.skippedMeta += 1
          continue
        }
        if number - committed >= batchSize {
          try conn.exec("COMMIT; BEGIN")
          committed = number
        }
        number += 1
        var text = s.text
        if !text.trimmingCharacters(in: .whitespacesAndNewlines).hasSuffix(";") { text += ";\n" }
        do {
          // One round trip per statement: savepoint, statement, release.
          try conn.exec("SAVEPOINT belt_stmt;\n" + text + "\nRELEASE SAVEPOINT belt_stmt;")
          if s.kind != .set { result.applied += 1 }
        } catch let e as PGError {
          guard e.kind == .server else { throw e }
          try conn.exec("ROLLBACK TO SAVEPOINT belt_stmt; RELEASE SAVEPOINT belt_stmt;")
          if s.kind == .set, e.sqlState == "42704" {
            logger.warning(
              "\(file): skipping a setting this server does not know: \(excerpt(s.text))")
            result.skippedSettings.append(excerpt(s.text))
            continue
          }
          if isAlreadyPresent(e, statement: s, conn: conn) {
            logger.debug("already present: \(excerpt(s.text))")
            result.alreadyPresent += 1
            continue
          }
          throw BeltError(
            .sqlError,
            "\(file): statement \(number) failed: \(e.message)\(e.sqlState.map { " [SQLSTATE \($0)]" } ?? "")"
              + "\(e.detail.map { " (\($0))" } ?? ""); "
              + (committed == 0
                ? "nothing from this file was applied"
                : "statements 1-\(committed) were applied and count as already present when you run it again")
              + "; statement: \(excerpt(s.text))",
            sqlstate: e.sqlState)
        }
      }
      try conn.exec("COMMIT")
    } catch {
      _ = try? conn.exec("ROLLBACK")
      if let b = error as? BeltError { throw b }
      if let p = error as? PGError {
        throw BeltError(
          .sqlError, "\(file): statement \(number): \(p.description)", sqlstate: p.sqlState)
      }
      throw error
    }
    return result
  }
}
