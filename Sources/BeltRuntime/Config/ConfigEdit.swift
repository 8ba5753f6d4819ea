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
    guard let existing, let current = try? JSONParser.parse(existing),
      case .object(let old) = current,
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
  /// understood. Where the members stand comes from ``JSONParser/members(_:)``.
  static func splice(_ text: String, key: String, value: Value) -> String? {
    guard let members = try? JSONParser.members(text), let first = members.first,
      let last = members.last
    else {
      return nil
    }
    let b = Array(text.utf8)
    let matches = members.filter { $0.key == key }
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
    let out: [UInt8]
    if let m = matches.first {
      out = Array(b[..<m.valueStart]) + renderedBytes + Array(b[m.valueEnd...])
    } else {
      let sep = unit > 0 ? ",\n" + indent : ", "
      out =
        Array(b[..<last.valueEnd]) + Array((sep + Value.jsonQuote(key) + ": ").utf8) + renderedBytes
        + Array(b[last.valueEnd...])
    }
    return String(decoding: out, as: UTF8.self)
  }
}
