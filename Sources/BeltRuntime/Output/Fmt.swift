import Foundation

/// Small formatting helpers for human messages.
enum Fmt {
  /// "1.2 s" or "340 ms".
  static func duration(ms: Int) -> String {
    ms >= 10_000 ? String(format: "%.1f s", Double(ms) / 1000) : "\(ms) ms"
  }
  /// A byte count for people: "812 bytes", "45 kB", "3 MB" (a unit once the number passes 10240).
  static func bytes(_ n: Int) -> String {
    let units = ["bytes", "kB", "MB", "GB", "TB"]
    var v = Double(n)
    var u = 0
    while v >= 10240, u < units.count - 1 {
      v /= 1024
      u += 1
    }
    return u == 0 ? "\(n) bytes" : "\(Int(v.rounded())) \(units[u])"
  }
  /// Truncates a value for display.
  static func short(_ s: String?, _ max: Int = 80) -> Value {
    guard let s else { return .null }
    return .string(s.count > max ? String(s.prefix(max)) + "…" : s)
  }
  /// `"a", "b"` for messages, each name JSON-quoted.
  static func quoted(_ names: [String], limit: Int = 10) -> String {
    let shown = names.prefix(limit).map { Value.jsonQuote($0) }.joined(separator: ", ")
    return names.count > limit ? shown + " and \(names.count - limit) more" : shown
  }
  /// `a, b` for messages.
  static func names(_ items: [String], limit: Int = 10) -> String {
    let shown = items.prefix(limit).joined(separator: ", ")
    return items.count > limit ? shown + ", … (\(items.count - limit) more)" : shown
  }
}
