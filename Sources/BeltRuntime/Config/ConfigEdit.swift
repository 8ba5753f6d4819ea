import Foundation

/// How ``ConfigStore/save(_:to:)`` writes over an existing config: the top-level keys whose value
/// changed are spliced into the operator's text, so every other byte (their layout, comments in
/// string values, key order, unknown keys) stays as it was.
///
/// The result is checked by parsing it back: if the splices do not give exactly the document
/// being saved (an unusual layout, duplicate keys, a removed key), the whole document is
/// rendered instead.
enum ConfigEdit {
  /// The text to write for `value`, given the file's current text (nil for a new file).
  static func text(for value: Value, over existing: String?) -> String {
    let whole = value.json(indent: 4) + "\n"
    guard let existing, let current = try? JSONParser.parse(existing), case .object(let old) = current,
      case .object(let new) = value, old.allSatisfy({ k, _ in value[k] != nil })
    else { return whole }
    var text = existing
    for (k, v) in new where current[k] != v {
      guard let spliced = splice(text, key: k, value: v) else { return whole }
      text = spliced
    }
    return (try? JSONParser.parse(text)) == value ? text : whole
  }

  /// The text with the top-level `key` replaced or appended; nil when the layout is not
  /// understood.
  static func splice(_ text: String, key: String, value: Value) -> String? {
    let b = Array(text.utf8)
    var i = 0
    func ws() { while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 } }
    // Skips one JSON string starting at b[i] == '"'; returns its raw bytes without quotes.
    func string() -> [UInt8]? {
      guard i < b.count, b[i] == 0x22 else { return nil }
      let start = i + 1
      i += 1
      while i < b.count {
        if b[i] == 0x5C { i += 2; continue }
        if b[i] == 0x22 { i += 1; return Array(b[start..<(i - 1)]) }
        i += 1
      }
      return nil
    }
    func skipValue() -> Bool {
      guard i < b.count else { return false }
      switch b[i] {
      case 0x22: return string() != nil
      case 0x7B, 0x5B:
        var depth = 0
        while i < b.count {
          switch b[i] {
          case 0x22: if string() == nil { return false }; continue
          case 0x7B, 0x5B: depth += 1
          case 0x7D, 0x5D:
            depth -= 1
            if depth == 0 { i += 1; return true }
          default: break
          }
          i += 1
        }
        return false
      default:
        while i < b.count, !(b[i] == 0x2C || b[i] == 0x7D || b[i] == 0x5D || b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09) { i += 1 }
        return true
      }
    }
    ws()
    guard i < b.count, b[i] == 0x7B else { return nil }
    i += 1
    var members: [(key: [UInt8], keyStart: Int, valueStart: Int, valueEnd: Int)] = []
    var closing = -1
    while true {
      ws()
      guard i < b.count else { return nil }
      if b[i] == 0x7D { closing = i; break }
      let keyStart = i
      guard let k = string() else { return nil }
      ws()
      guard i < b.count, b[i] == 0x3A else { return nil }
      i += 1
      ws()
      let vs = i
      guard skipValue() else { return nil }
      members.append((k, keyStart, vs, i))
      ws()
      guard i < b.count else { return nil }
      if b[i] == 0x2C { i += 1; continue }
      if b[i] == 0x7D { closing = i; break }
      return nil
    }
    guard closing >= 0, let first = members.first else { return nil }
    let keyBytes = Array(key.utf8)
    let matches = members.filter { $0.key == keyBytes }
    if matches.count > 1 { return nil }
    // Indentation of members: the whitespace after the last newline before the first key.
    var indent = ""
    var unit = 0
    if let nl = b[..<first.keyStart].lastIndex(of: 0x0A) {
      indent = String(decoding: b[(nl + 1)..<first.keyStart], as: UTF8.self)
      if !indent.allSatisfy({ $0 == " " }) { return nil }
      unit = indent.count
    }
    var rendered = value.json(indent: unit)
    if unit > 0 { rendered = rendered.replacingOccurrences(of: "\n", with: "\n" + indent) }
    let renderedBytes = Array(rendered.utf8)
    var out: [UInt8]
    if let m = matches.first {
      out = Array(b[..<m.valueStart]) + renderedBytes + Array(b[m.valueEnd...])
    } else {
      guard let last = members.last else { return nil }
      let sep = unit > 0 ? ",\n" + indent : ", "
      out = Array(b[..<last.valueEnd]) + Array(sep.utf8) + Array(Value.jsonQuote(key).utf8)
        + Array((unit > 0 ? ": " : ": ").utf8) + renderedBytes + Array(b[last.valueEnd...])
    }
    return String(decoding: out, as: UTF8.self)
  }
}
