import Foundation
import OrderedCollections

/// A dynamic value: the common currency between operations, Lua tables and JSON output.
///
/// Objects keep their insertion order so that JSON output, tables and the config writer are
/// stable, and look keys up by hash.
public enum Value: Equatable, Sendable {
  case null
  case bool(Bool)
  case int(Int)
  case double(Double)
  case string(String)
  case array([Value])
  case object(OrderedDictionary<String, Value>)

  /// An object from pairs in order. A repeated key keeps its first place and its last value,
  /// as JSON readers (Python's `json`, so pgbelt) do.
  public static func object(_ pairs: [(String, Value)]) -> Value {
    var members = OrderedDictionary<String, Value>(minimumCapacity: pairs.count)
    for (k, v) in pairs { members[k] = v }
    return .object(members)
  }

  public static func == (lhs: Value, rhs: Value) -> Bool {
    switch (lhs, rhs) {
    case (.null, .null): return true
    case (.bool(let a), .bool(let b)): return a == b
    case (.int(let a), .int(let b)): return a == b
    case (.double(let a), .double(let b)): return a == b || (a.isNaN && b.isNaN)
    case (.string(let a), .string(let b)): return a == b
    case (.array(let a), .array(let b)): return a == b
    case (.object(let a), .object(let b)): return a == b
    default: return false
    }
  }

  /// Looks up a key of an object (nil for other kinds or a missing key).
  public subscript(key: String) -> Value? {
    guard case .object(let members) = self else { return nil }
    return members[key]
  }

  /// The string payload, if this is a string.
  public var stringValue: String? {
    if case .string(let s) = self { return s }
    return nil
  }

  /// The integer payload (integral doubles are accepted).
  public var intValue: Int? {
    switch self {
    case .int(let i): return i
    case .double(let d) where d.rounded() == d && abs(d) < 9.0e18: return Int(d)
    default: return nil
    }
  }

  /// The boolean payload, if this is a boolean.
  public var boolValue: Bool? {
    if case .bool(let b) = self { return b }
    return nil
  }

  /// The elements, if this is an array.
  public var arrayValue: [Value]? {
    if case .array(let a) = self { return a }
    return nil
  }

  public var isNull: Bool {
    if case .null = self { return true }
    return false
  }

  /// Returns a copy of an object with `key` set (appended when new).
  public func setting(_ key: String, _ value: Value) -> Value {
    guard case .object(var members) = self else { return self }
    members[key] = value
    return .object(members)
  }

  /// Renders a cell for human tables.
  public var display: String {
    switch self {
    case .null: return ""
    case .bool(let b): return b ? "True" : "False"
    case .int(let i): return String(i)
    case .double(let d): return String(d)
    case .string(let s): return s
    case .array(let a): return a.map(\.display).joined(separator: ", ")
    case .object(let o): return o.map { "\($0.key): \($0.value.display)" }.joined(separator: ", ")
    }
  }
}

extension Value: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
  ExpressibleByBooleanLiteral,
  ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
  public init(stringLiteral value: String) { self = .string(value) }
  public init(integerLiteral value: Int) { self = .int(value) }
  public init(booleanLiteral value: Bool) { self = .bool(value) }
  public init(arrayLiteral elements: Value...) { self = .array(elements) }
  public init(dictionaryLiteral elements: (String, Value)...) { self = .object(elements) }
  public init(nilLiteral: ()) { self = .null }
}

extension Value {
  public static func from(_ s: String?) -> Value { s.map(Value.string) ?? .null }
  public static func from(_ i: Int?) -> Value { i.map(Value.int) ?? .null }
  public static func from(_ a: [String]) -> Value { .array(a.map(Value.string)) }

  /// Serialises as JSON. Object keys keep their order.
  public func json(indent: Int = 2) -> String {
    var out = ""
    write(into: &out, indent: indent, level: 0)
    return out
  }

  private func write(into out: inout String, indent: Int, level: Int) {
    let pad = indent > 0 ? String(repeating: " ", count: indent * (level + 1)) : ""
    let closePad = indent > 0 ? String(repeating: " ", count: indent * level) : ""
    let nl = indent > 0 ? "\n" : ""
    let sep = indent > 0 ? ": " : ":"
    switch self {
    case .null: out += "null"
    case .bool(let b): out += b ? "true" : "false"
    case .int(let i): out += String(i)
    case .double(let d): out += d.isFinite ? String(d) : "null"
    case .string(let s): out += Value.jsonQuote(s)
    case .array(let a):
      if a.isEmpty { out += "[]"; return }
      out += "[" + nl
      for (i, v) in a.enumerated() {
        out += pad
        v.write(into: &out, indent: indent, level: level + 1)
        out += (i < a.count - 1 ? "," : "") + nl
      }
      out += closePad + "]"
    case .object(let o):
      if o.isEmpty { out += "{}"; return }
      out += "{" + nl
      for (i, (k, v)) in o.enumerated() {
        out += pad + Value.jsonQuote(k) + sep
        v.write(into: &out, indent: indent, level: level + 1)
        out += (i < o.count - 1 ? "," : "") + nl
      }
      out += closePad + "}"
    }
  }

  public static func jsonQuote(_ s: String) -> String {
    var r = "\""
    for u in s.unicodeScalars {
      switch u {
      case "\"": r += "\\\""
      case "\\": r += "\\\\"
      case "\n": r += "\\n"
      case "\r": r += "\\r"
      case "\t": r += "\\t"
      default:
        if u.value < 0x20 {
          r += String(format: "\\u%04x", u.value)
        } else {
          r.unicodeScalars.append(u)
        }
      }
    }
    return r + "\""
  }
}
