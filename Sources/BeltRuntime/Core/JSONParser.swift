import OrderedCollections

/// A strict JSON parser that keeps object key order and reports line and column on errors.
public struct JSONParser {
  /// A syntax error with a 1-based position.
  public struct SyntaxError: Error, Equatable, CustomStringConvertible {
    /// What is wrong.
    public var reason: String
    /// 1-based line.
    public var line: Int
    /// 1-based column.
    public var column: Int
    /// One sentence.
    public var description: String { "invalid JSON at line \(line), column \(column): \(reason)" }
  }

  private let bytes: [UInt8]
  private var pos = 0

  /// Parses a complete JSON document.
  /// - Throws: ``SyntaxError``.
  public static func parse(_ text: String) throws -> Value {
    var p = JSONParser(bytes: Array(text.utf8))
    p.skipWS()
    let v = try p.value(depth: 0)
    p.skipWS()
    if p.pos < p.bytes.count { throw p.error("unexpected text after the end of the document") }
    return v
  }

  /// Where a member of an object stands in the text, in UTF-8 byte offsets.
  struct Member {
    var key: String
    var keyStart: Int
    var valueStart: Int
    var valueEnd: Int
  }

  /// The members of the document's top-level object, in order, with where they stand: what
  /// ``ConfigEdit`` needs to replace one member and keep every other byte.
  /// - Throws: ``SyntaxError``, also when the document is not an object.
  static func members(_ text: String) throws -> [Member] {
    var p = JSONParser(bytes: Array(text.utf8))
    p.skipWS()
    guard p.pos < p.bytes.count, p.bytes[p.pos] == UInt8(ascii: "{") else {
      throw p.error("expected an object")
    }
    var out: [Member] = []
    try p.object(depth: 0) { member, _ in out.append(member) }
    p.skipWS()
    if p.pos < p.bytes.count { throw p.error("unexpected text after the end of the document") }
    return out
  }

  private init(bytes: [UInt8]) { self.bytes = bytes }

  /// Reads the object at `pos` (its `{`), calling `each` for every member in order.
  private mutating func object(depth: Int, _ each: (Member, Value) -> Void) throws {
    pos += 1
    skipWS()
    if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return }
    while true {
      skipWS()
      let keyStart = pos
      guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else {
        throw error("expected a string key")
      }
      let k = try string()
      skipWS()
      guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw error("expected ':'") }
      pos += 1
      skipWS()
      let valueStart = pos
      let v = try value(depth: depth + 1)
      each(Member(key: k, keyStart: keyStart, valueStart: valueStart, valueEnd: pos), v)
      skipWS()
      guard pos < bytes.count else { throw error("unexpected end of input in an object") }
      if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
      if bytes[pos] == UInt8(ascii: "}") { pos += 1; return }
      throw error("expected ',' or '}'")
    }
  }

  private func error(_ reason: String) -> SyntaxError {
    var line = 1
    var col = 1
    for b in bytes[0..<min(pos, bytes.count)] {
      if b == 10 { line += 1; col = 1 } else { col += 1 }
    }
    return SyntaxError(reason: reason, line: line, column: col)
  }

  private mutating func skipWS() {
    while pos < bytes.count, [32, 9, 10, 13].contains(bytes[pos]) { pos += 1 }
  }

  private mutating func expect(_ literal: String, _ v: Value) throws -> Value {
    let l = Array(literal.utf8)
    guard pos + l.count <= bytes.count, Array(bytes[pos..<pos + l.count]) == l else {
      throw error("unexpected character")
    }
    pos += l.count
    return v
  }

  private mutating func value(depth: Int) throws -> Value {
    guard depth < 200 else { throw error("nesting too deep") }
    guard pos < bytes.count else { throw error("unexpected end of input") }
    switch bytes[pos] {
    case UInt8(ascii: "{"):
      var members: OrderedDictionary<String, Value> = [:]
      // A repeated key keeps its first place and its last value, as Python's json (pgbelt) does.
      try object(depth: depth) { member, v in members[member.key] = v }
      return .object(members)
    case UInt8(ascii: "["):
      pos += 1
      var items: [Value] = []
      skipWS()
      if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
      while true {
        skipWS()
        items.append(try value(depth: depth + 1))
        skipWS()
        guard pos < bytes.count else { throw error("unexpected end of input in an array") }
        if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
        if bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
        throw error("expected ',' or ']'")
      }
    case UInt8(ascii: "\""): return .string(try string())
    case UInt8(ascii: "t"): return try expect("true", .bool(true))
    case UInt8(ascii: "f"): return try expect("false", .bool(false))
    case UInt8(ascii: "n"): return try expect("null", .null)
    default: return try number()
    }
  }

  private mutating func number() throws -> Value {
    let start = pos
    var isInt = true
    if pos < bytes.count, bytes[pos] == UInt8(ascii: "-") { pos += 1 }
    while pos < bytes.count {
      let b = bytes[pos]
      if b >= 48 && b <= 57 { pos += 1; continue }
      if b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E")
        || b == UInt8(ascii: "+") || b == UInt8(ascii: "-")
      {
        isInt = false
        pos += 1
        continue
      }
      break
    }
    let text = String(decoding: bytes[start..<pos], as: UTF8.self)
    if text.isEmpty || text == "-" { pos = start; throw error("unexpected character") }
    if isInt, let i = Int(text) { return .int(i) }
    if let d = Double(text) { return .double(d) }
    pos = start
    throw error("invalid number")
  }

  private mutating func string() throws -> String {
    pos += 1
    var out: [UInt8] = []
    while pos < bytes.count {
      let b = bytes[pos]
      if b == UInt8(ascii: "\"") { pos += 1; return String(decoding: out, as: UTF8.self) }
      if b < 0x20 { throw error("control character in a string") }
      if b == UInt8(ascii: "\\") {
        pos += 1
        guard pos < bytes.count else { break }
        let e = bytes[pos]
        pos += 1
        switch e {
        case UInt8(ascii: "\""): out.append(0x22)
        case UInt8(ascii: "\\"): out.append(0x5c)
        case UInt8(ascii: "/"): out.append(0x2f)
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0c)
        case UInt8(ascii: "n"): out.append(0x0a)
        case UInt8(ascii: "r"): out.append(0x0d)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "u"):
          var code = try hex4()
          if code >= 0xD800 && code < 0xDC00, pos + 1 < bytes.count,
            bytes[pos] == UInt8(ascii: "\\"),
            bytes[pos + 1] == UInt8(ascii: "u")
          {
            pos += 2
            let low = try hex4()
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
          }
          let scalar = Unicode.Scalar(code) ?? "\u{FFFD}"
          out.append(contentsOf: Array(String(Character(scalar)).utf8))
        default: throw error("invalid escape in a string")
        }
        continue
      }
      out.append(b)
      pos += 1
    }
    throw error("unterminated string")
  }

  private mutating func hex4() throws -> UInt32 {
    guard pos + 4 <= bytes.count,
      let v = UInt32(String(decoding: bytes[pos..<pos + 4], as: UTF8.self), radix: 16)
    else { throw error("invalid \\u escape") }
    pos += 4
    return v
  }
}
