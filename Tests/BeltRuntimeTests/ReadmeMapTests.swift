import Foundation
import Testing

/// The README's Development map against the tree: every folder of Sources/BeltRuntime (and every
/// command family under Commands/) is named in the map, and every folder the map names exists.
@Suite struct ReadmeMapTests {
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent()
    .deletingLastPathComponent()

  static func folders(_ relative: String) throws -> Set<String> {
    let url = root.appendingPathComponent(relative)
    let names = try FileManager.default.contentsOfDirectory(atPath: url.path)
    return Set(
      names.filter { name in
        var dir: ObjCBool = false
        return FileManager.default.fileExists(
          atPath: url.appendingPathComponent(name).path, isDirectory: &dir) && dir.boolValue
      })
  }

  /// The map's lines under "Sources/BeltRuntime", each indented entry's first word.
  static func mapEntries() throws -> (runtime: Set<String>, families: Set<String>) {
    let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
    let lines = readme.components(separatedBy: "\n")
    guard let start = lines.firstIndex(where: { $0.hasPrefix("Sources/BeltRuntime") }) else {
      return ([], [])
    }
    var runtime = Set<String>(), families = Set<String>()
    for line in lines[(start + 1)...] {
      guard line.hasPrefix("  ") else { break }
      let word = line.drop { $0 == " " }.prefix { $0 != " " }
      guard word.hasSuffix("/") else { continue }
      let name = String(word.dropLast())
      if line.hasPrefix("    ") { families.insert(name) } else { runtime.insert(name) }
    }
    return (runtime, families)
  }

  @Test func mapNamesEveryFolderAndOnlyFoldersThatExist() throws {
    let map = try Self.mapEntries()
    let runtime = try Self.folders("Sources/BeltRuntime")
    #expect(!runtime.isEmpty)
    #expect(map.runtime.subtracting(["Commands/<family>"]).union(["Commands"]) == runtime)
    let families = try Self.folders("Sources/BeltRuntime/Commands")
    #expect(map.families == families)
  }

  /// Each command family's folder holds its specs in <Family>Commands.swift.
  @Test func everyFamilyHasItsCommandsFile() throws {
    for family in try Self.folders("Sources/BeltRuntime/Commands") {
      let file = Self.root.appendingPathComponent(
        "Sources/BeltRuntime/Commands/\(family)/\(family)Commands.swift")
      #expect(FileManager.default.fileExists(atPath: file.path), "\(file.path)")
    }
  }
}
