import Foundation

/// "30s", "5m", "1h30m", "250ms" or a plain number of seconds.
public enum Durations {
  /// Seconds.
  /// - Throws: ``BeltError`` `bad_argument`.
  public static func parse(_ s: String) throws -> Double {
    if let d = Double(s) { return d }
    var total = 0.0
    var num = ""
    var chars = Array(s.trimmingCharacters(in: .whitespaces))
    if chars.isEmpty { throw BeltError(.badArgument, "empty duration") }
    var i = 0
    while i < chars.count {
      let c = chars[i]
      if c.isNumber || c == "." { num.append(c); i += 1; continue }
      guard let n = Double(num) else { throw bad(s) }
      if c == "m", i + 1 < chars.count, chars[i + 1] == "s" {
        total += n / 1000; i += 2
      } else if c == "h" {
        total += n * 3600; i += 1
      } else if c == "m" {
        total += n * 60; i += 1
      } else if c == "s" {
        total += n; i += 1
      } else {
        throw bad(s)
      }
      num = ""
    }
    if !num.isEmpty { throw bad(s) }
    chars.removeAll()
    return total
  }
  private static func bad(_ s: String) -> BeltError {
    BeltError(
      .badArgument,
      "invalid duration \(Value.jsonQuote(s)) (use seconds or e.g. \"30s\", \"5m\", \"1h\")")
  }
}
