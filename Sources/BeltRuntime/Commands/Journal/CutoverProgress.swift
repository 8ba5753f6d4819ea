import Foundation

/// What `status` says about a pair's cutover, from its journal: the state, the step and since
/// when, whether src logins are revoked right now, and the command that continues it.
enum CutoverProgress {
  /// Status fields: `cutover` (none, in_progress, done, compensated, rolled_back), and with a
  /// journal `cutover_step`, `cutover_since`, `cutover_command`, `cutover_finished_at`,
  /// `src_logins_revoked` (true when a role that revoke-logins saved cannot log in now; nil when
  /// src cannot be asked).
  static func statusFields(_ ctx: PairContext) -> [(String, Value)] {
    let path = Journal.path(ctx.env.store, dc: ctx.dc, db: ctx.db, flow: "cutover")
    guard let doc = try? Journal.read(path) else { return [("cutover", "none")] }
    let rec = Journal.record(doc, path: path, flow: "cutover")
    let inProgress = doc["state"] == "in_progress"
    var fields: [(String, Value)] = [
      ("cutover", doc["state"] ?? "none"),
      ("cutover_step", inProgress ? rec["current_step"] ?? .null : .null),
      ("cutover_since", inProgress ? rec["current_step_since"] ?? .null : .null),
      ("cutover_command", inProgress ? doc["data"]?["command"] ?? .null : .null),
      ("cutover_finished_at", doc["finished_at"] ?? .null),
    ]
    // A cutover stopped at diff-schemas names the differences; one finished with some accepted names those.
    let diffStep = (doc["steps"]?.arrayValue ?? []).first { $0["name"] == "diff-schemas" }
    fields.append(
      (
        "cutover_schema_differences",
        inProgress ? diffStep?["data"]?["differences"] ?? .null : .null
      ))
    fields.append(("cutover_accepted_differences", doc["data"]?["accepted_differences"] ?? .null))
    fields.append(("src_logins_revoked", loginsRevoked(ctx).map(Value.bool) ?? .null))
    return fields
  }

  /// Whether any role saved by revoke-logins lacks LOGIN on src right now.
  static func loginsRevoked(_ ctx: PairContext) -> Bool? {
    let saved = Logins.saved(ctx.config.raw, "revoked_logins")
    if saved.isEmpty { return false }
    guard let c = try? ctx.connect(.src, .root),
      let n = try? c.query(
        "SELECT count(*) FROM pg_catalog.pg_roles WHERE NOT rolcanlogin AND rolname = ANY($1::text[])",
        [PGArray.literal(saved)]
      ).scalar
    else { return nil }
    return (Int(n) ?? 0) > 0
  }

  /// The line under the status table for a pair whose cutover is not finished.
  static func statusLine(_ r: Value) -> String? {
    let db = r["db"]?.display ?? ""
    if r["cutover"] == "done", let accepted = r["cutover_accepted_differences"]?.arrayValue,
      !accepted.isEmpty
    {
      return
        "\(db): cut over at \(r["cutover_finished_at"]?.display ?? "?") with schema difference(s) accepted: "
        + accepted.map(\.display).joined(separator: "; ")
    }
    guard r["cutover"] == "in_progress" else { return nil }
    let logins =
      r["src_logins_revoked"]?.boolValue.map {
        $0 ? "revoked (the application is down)" : "not revoked"
      } ?? "unknown"
    let command = r["cutover_command"]?.display ?? "belt run cutover.lua"
    var line =
      "\(db): cutover in progress: step \(r["cutover_step"]?.display ?? "?") since \(r["cutover_since"]?.display ?? "?"); "
      + "src logins \(logins); continue with: \(command)"
    if let diffs = r["cutover_schema_differences"]?.arrayValue, !diffs.isEmpty {
      let names = diffs.map(\.display)
      line +=
        " after fixing dst (schemas differ in \(names.joined(separator: "; "))), or accept them: "
        + (command.contains(" -- ") ? command : command + " --")
        + " accept_diff='\(names.joined(separator: ";"))'"
    }
    return line
  }
}
