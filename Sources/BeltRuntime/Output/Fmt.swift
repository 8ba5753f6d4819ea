import Foundation

/// Small formatting helpers for human messages.
enum Fmt {
  /// "1.2 s" or "340 ms".
  static func duration(ms: Int) -> String {
    ms >= 10_000 ? String(format: "%.1f s", Double(ms) / 1000) : "\(ms) ms"
  }
  /// "45.1 MB".
  static func megabytes(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1_048_576) }
  /// Truncates a value for display.
  static func short(_ s: String?, _ max: Int = 80) -> Value {
    guard let s else { return .null }
    return .string(s.count > max ? String(s.prefix(max)) + "…" : s)
  }
  /// `"a", "b"` for messages.
  static func names(_ items: [String], limit: Int = 10) -> String {
    let shown = items.prefix(limit).joined(separator: ", ")
    return items.count > limit ? shown + ", … (\(items.count - limit) more)" : shown
  }
}
