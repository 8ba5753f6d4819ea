import Foundation

/// An extension the dumped schema needs (its objects are used by, or live in, the schema).
public struct ExtensionRef: Equatable, Sendable {
  public var name: String
  /// Schema the extension's objects live in on src.
  public var schema: String

  public init(name: String, schema: String) {
    self.name = name
    self.schema = schema
  }
}

/// The schema files of one pair: `schemas/<dc>/<db>/` (pgbelt's layout) plus `extensions.json`.
public struct SchemaStore: Sendable {
  public var directory: String

  /// Older name of the base file in pgbelt's docs; accepted when reading.
  public static let legacyBaseFileName = "no_invalid_constraints.sql"
  /// Extensions manifest written by dump-schema.
  public static let extensionsFileName = "extensions.json"

  public init(directory: String) { self.directory = directory }

  /// Full path of a file in the directory.
  public func path(_ name: String) -> String { directory + "/" + name }

  /// Writes the four files and the extension manifest, each atomically.
  /// - Returns: the paths written, by file name.
  @discardableResult
  public func write(_ files: SchemaFiles, extensions: [ExtensionRef]) throws -> [(String, String)] {
    do {
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    } catch {
      throw BeltError(.ioError, "\(directory): cannot create the schema directory")
    }
    var written: [(String, String)] = []
    for (name, contents) in files.renderedFiles() {
      try Self.atomicWrite(path(name), contents)
      written.append((name, path(name)))
    }
    let manifest = Value.array(
      extensions.map { .object([("name", .string($0.name)), ("schema", .string($0.schema))]) })
    try Self.atomicWrite(path(Self.extensionsFileName), manifest.json(indent: 2) + "\n")
    return written
  }

  /// Reads and splits one schema file.
  /// - Parameter names: candidate file names, first existing wins (the base file accepts the legacy name).
  /// - Throws: ``BeltError`` naming the expected path when none exists.
  public func read(_ names: [String]) throws -> (path: String, statements: [SQLStatement]) {
    for n in names {
      let p = path(n)
      guard FileManager.default.fileExists(atPath: p) else { continue }
      guard let data = FileManager.default.contents(atPath: p) else {
        throw BeltError(.ioError, "\(p): cannot be read")
      }
      guard let text = String(data: data, encoding: .utf8) else {
        throw BeltError(.ioError, "\(p): is not valid UTF-8")
      }
      return (p, SchemaScript.split(text))
    }
    let first = path(names.first ?? "")
    throw BeltError(.preconditionFailed, "\(first) does not exist: run dump-schema first")
  }

  /// The base file (`no_invalid_constraints_no_indexes.sql`, or the legacy name).
  public func readBase() throws -> (path: String, statements: [SQLStatement]) {
    try read([SchemaFiles.baseFileName, Self.legacyBaseFileName])
  }

  /// The extensions recorded by dump-schema ([] when the manifest is absent, e.g. files from pgbelt).
  public func readExtensions() throws -> [ExtensionRef] {
    let p = path(Self.extensionsFileName)
    guard let data = FileManager.default.contents(atPath: p) else { return [] }
    let v: Value
    do {
      v = try JSONParser.parse(String(decoding: data, as: UTF8.self))
    } catch {
      throw BeltError(.configInvalid, "\(p): \(error)")
    }
    guard let items = v.arrayValue else {
      throw BeltError(.configInvalid, "\(p): must be a JSON array")
    }
    return try items.map { item in
      guard let name = item["name"]?.stringValue, !name.isEmpty,
        let schema = item["schema"]?.stringValue
      else {
        throw BeltError(.configInvalid, "\(p): every entry needs \"name\" and \"schema\" strings")
      }
      return ExtensionRef(name: name, schema: schema)
    }
  }

  /// Writes `contents` to `file` atomically (see ``AtomicFile``).
  public static func atomicWrite(_ file: String, _ contents: String, mode: mode_t = 0o644) throws {
    try AtomicFile.write(contents, to: file, mode: mode)
  }
}
