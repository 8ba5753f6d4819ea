import Foundation

/// Edits one top-level key of a config file while keeping every other byte of the file.
///
/// The new text is checked by parsing it back: if the splice does not produce exactly the
/// expected document (an unusual layout, duplicate keys), the whole value is written with
/// ``ConfigStore/save(_:to:)`` instead, which keeps key order and unknown keys.
enum ConfigEdit {
  /// Sets `key` to `value` in the JSON object stored at `file`, atomically.
  /// - Returns: the document as written.
  /// - Throws: ``BeltError`` naming the file.
  @discardableResult
  static func setTopLevel(_ key: String, _ value: Value, file: String, store: ConfigStore) throws -> Value {
    guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
      throw BeltError(.ioError, "\(file): cannot be read")
    }
    let current: Value
    do { current = try JSONParser.parse(text) } catch {
      throw BeltError(.configInvalid, "\(file): \(error)")
    }
    let expected = current.setting(key, value)
    if let spliced = splice(text, key: key, value: value),
      let reparsed = try? JSONParser.parse(spliced), reparsed == expected
    {
      try writeAtomically(spliced, to: file)
    } else {
      try store.save(expected, to: file)
    }
    return expected
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

  /// Writes text atomically, keeping the mode (see ``AtomicFile``).
  static func writeAtomically(_ text: String, to file: String) throws {
    try AtomicFile.write(text, to: file)
  }
}
