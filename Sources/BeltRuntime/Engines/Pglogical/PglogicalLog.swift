import Foundation

/// Reads pglogical's errors from the server log, where the root user may (superuser, with the
/// logging collector on).
enum ServerLog {
  /// How much of the end of the current log file is read.
  static let tailBytes = 256 * 1024

  /// The latest pglogical ERROR line (with its DETAIL) for the database, or nil when the log
  /// cannot be read. Lines that only say a copy cannot be resumed are passed over when an
  /// earlier line says why it failed.
  /// pglogical writes the provider DSN, password included, into some errors: the line comes
  /// back with `password=...` and every string of `secrets` masked.
  static func latestPglogicalError(
    _ c: PGConnection, dbOid: String, dbName: String, secrets: [String]
  ) -> String? {
    guard let path = try? c.query("SELECT pg_current_logfile()").scalar, !path.isEmpty,
      let size = Int((try? c.query("SELECT size FROM pg_stat_file($1)", [path]).scalar) ?? ""),
      let text = try? c.query(
        "SELECT pg_read_file($1, $2::bigint, $3::bigint)",
        [path, String(max(0, size - tailBytes)), String(tailBytes)]
      ).scalar
    else { return nil }
    let prefix = (try? c.query("SHOW log_line_prefix").scalar) ?? ""
    // With %b the backend type names the database's workers exactly; with %d the database name
    // is on the line; otherwise every pglogical error of the server counts.
    let ours: (String) -> Bool
    if prefix.contains("%b") {
      ours = { line in
        line.contains("pglogical apply \(dbOid):") || line.contains("pglogical manager \(dbOid)")
          || (line.contains("pglogical sync ") && line.contains(" \(dbOid):"))
      }
    } else if prefix.contains("%d") {
      ours = { $0.contains(dbName) }
    } else {
      ours = {
        $0.contains("pglogical") || $0.contains("table copy failed") || $0.contains("subscriber")
      }
    }
    let lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    var found: [String] = []
    for (i, line) in lines.enumerated() where line.contains("ERROR:") && ours(line) {
      var entry = String(line[line.range(of: "ERROR:")!.lowerBound...])
      if i + 1 < lines.count, let r = lines[i + 1].range(of: "DETAIL:") {
        entry += " " + lines[i + 1][r.lowerBound...]
      }
      found.append(entry.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " "))
    }
    guard var why = found.last(where: { !$0.contains("nonrecoverable step") }) ?? found.last else {
      return nil
    }
    why = why.replacingOccurrences(
      of: #"password\s*=\s*('([^'\\]|\\.)*'|[^\s]+)"#, with: "password=***",
      options: .regularExpression)
    for secret in secrets where !secret.isEmpty {
      why = why.replacingOccurrences(of: secret, with: "***")
    }
    return why.count > 400 ? String(why.prefix(400)) + "…" : why
  }
}
