import Foundation
import Logging
import Testing

@testable import BeltRuntime

/// belt.exec: a program without a shell, a timeout, its output and status, an explicit
/// environment only, and an audit line.
@Suite(.serialized)
struct ExecTests {
  func runtime() throws -> (LuaRuntime, String) {
    let root = NSTemporaryDirectory() + "belt-exec-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    return (try makeRuntime(root: root).0, root)
  }

  @Test func returnsStatusAndOutputWithNoShellAndNoInheritedSecret() throws {
    setenv("PGPASSWORD", "inherited secret", 1)
    defer { unsetenv("PGPASSWORD") }
    let (rt, _) = try runtime()
    let r = try rt.run(
      source: """
        local r = belt.exec({ "/bin/sh", "-c", "echo out; echo err >&2; echo \\"[$PGPASSWORD][$GIVEN]\\"; exit 3" }, { check = false, env = { GIVEN = "yes" } })
        local lit = belt.exec({ "echo", "$HOME; rm -rf / `id`" })
        local fed = belt.exec({ "cat" }, { stdin = "from stdin" })
        return r.ok, r.status, r.stdout, r.stderr, lit.stdout, fed.stdout
        """, chunkName: "=t", args: [])
    #expect(r[0] == false)
    #expect(r[1] == 3)
    #expect(r[2] == "out\n[][yes]\n", "PGPASSWORD is not passed; GIVEN is")
    #expect(r[3] == "err\n")
    #expect(r[4] == "$HOME; rm -rf / `id`\n", "arguments reach the program unparsed")
    #expect(r[5] == "from stdin")
  }

  @Test func failuresAreErrorsWithTheirCause() throws {
    let (rt, _) = try runtime()
    let r = try rt.run(
      source: """
        local t0 = belt.now()
        local _, slow = pcall(belt.exec, { "sleep", "30" }, { timeout = "200ms" })
        local took = belt.now() - t0
        local _, bad = pcall(belt.exec, { "sh", "-c", "echo 'zone not found' >&2; exit 2" })
        local _, missing = pcall(belt.exec, { "no-such-program-xyz" })
        local _, typo = pcall(belt.exec, { "true" }, { timout = 1 })
        local _, empty = pcall(belt.exec, {})
        return slow.code, took < 3, bad.code, bad.message, missing.code, typo.code, empty.code
        """, chunkName: "=t", args: [])
    #expect(r[0] == "timeout")
    #expect(r[1] == true, "the timeout kills the program")
    #expect(r[2] == "command_failed")
    #expect(
      r[3]
        == "belt.exec: sh -c echo 'zone not found' >&2; exit 2 exited with status 2: zone not found"
    )
    #expect(r[4] == "not_found")
    #expect(r[5] == "bad_argument")
    #expect(r[6] == "bad_argument")
  }

  @Test func aTimeoutKillsTheProgramsChildrenToo() throws {
    let (rt, root) = try runtime()
    let marker = root + "/survived"
    _ = try rt.run(
      source: """
        pcall(belt.exec, { "sh", "-c", "(sleep 1; touch \(marker)) & sleep 30" }, { timeout = "200ms" })
        """, chunkName: "=t", args: [])
    Thread.sleep(forTimeInterval: 1.5)
    #expect(!FileManager.default.fileExists(atPath: marker), "the whole process group is killed")
  }

  @Test func everyRunIsInTheAuditLogWithoutEnvironmentValues() throws {
    let (rt, root) = try runtime()
    _ = try rt.run(
      source: """
        belt.exec({ "true" }, { env = { TOKEN = "s3cret-token" } })
        pcall(belt.exec, { "false" })
        """, chunkName: "=t", args: [])
    let lines = try String(contentsOfFile: root + "/configs/audit.jsonl", encoding: .utf8).split(
      separator: "\n")
    #expect(lines.count == 2)
    let first = try JSONParser.parse(String(lines[0]))
    #expect(
      first["action"] == "exec" && first["argv"] == .array(["true"]) && first["status"] == 0
        && first["outcome"] == "ok")
    #expect(first["env"] == .array(["TOKEN"]) && first["duration_ms"]?.doubleValue != nil)
    #expect(!lines.joined().contains("s3cret-token"))
    #expect(try JSONParser.parse(String(lines[1]))["status"] == 1)
  }
}
