/// Documentation of the Lua API, generated from the same specs that register it.
public enum LuaDocs {
  /// Plain-text reference.
  public static func text() -> String {
    var out = "belt Lua API (Lua 5.4). Every operation takes (dc[, db][, opts]) and returns a record;\n"
    out += "with db = nil it runs on every db of the dc and returns {ok=, databases={...}}.\n"
    out += "Errors are tables {code, message, dc, db, sqlstate, retryable}; use pcall to branch on err.code.\n\n"
    for op in OperationRegistry.all {
      let opts = op.options.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.rawValue)" }.joined(separator: ", ")
      out += "belt.\(op.name)(dc\(op.allowsAllDBs ? "[, db]" : ", db")\(opts.isEmpty ? "" : "[, {\(opts)}]")) -> record\n    \(op.summary)\n"
    }
    out += """

      belt.wait_for(pred[, {timeout="10m", interval="2s", desc=, on_timeout="raise"|"return"}]) -> value
      belt.retry(fn[, {attempts=3, backoff="1s", only_retryable=false}]) -> results of fn
      belt.sleep(d) -> true            durations are seconds or strings like "30s", "5m", "1h"
      belt.on_failure(fn) -> remover   compensation hook, run newest-first when the script fails
      belt.confirm(msg) -> true        interactive; --yes answers yes; fails when not a terminal
      belt.dbs(dc) -> {db...}          belt.config(dc, db) -> table (secrets redacted)
      belt.query(dc, db, side, sql[, params]) -> {row...}   read-only, as root
      belt.log(...) / belt.info(...) / belt.warn(...)       to stderr
      belt.now() -> seconds            belt.duration(d) -> seconds
      """
    return out
  }
}
