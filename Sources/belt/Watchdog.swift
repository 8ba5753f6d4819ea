import ArgumentParser
import BeltRuntime
import Foundation

/// `belt _pgbouncer-watchdog DC DB --token T --deadline EPOCH`: the detached process that
/// cutover.lua starts before a PAUSE (see ``PgBouncerWatchdog``). Hidden: belt starts it.
struct Watchdog: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: PgBouncerWatchdog.subcommand,
    abstract: "Watch a pgbouncer pause that cutover.lua started; resume it if belt is gone.",
    shouldDisplay: false)

  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String
  @Option var token: String
  @Option(help: "Seconds since 1970 after which the watchdog acts.")
  var deadline: Double

  func run() throws {
    let store = ConfigStore(root: global.root)
    let say = { (s: String) in
      eprint("\(ISO8601DateFormatter().string(from: Date())) belt watchdog \(dc)/\(db): \(s)")
    }
    say("watching (pid \(getpid())); acts after \(Date(timeIntervalSince1970: deadline))")
    var waitingSaid = false
    while true {
      if case .exit(let why) = PgBouncerWatchdog.verdict(store, dc: dc, db: db, token: token) {
        say("exits: \(why)")
        return
      }
      let now = Date().timeIntervalSince1970
      if now > deadline + PgBouncerWatchdog.giveUp {
        say("gives up \(Int(PgBouncerWatchdog.giveUp)) s after its deadline")
        return
      }
      if now < deadline {
        Thread.sleep(forTimeInterval: min(0.5, deadline - now))
        continue
      }
      // Past the deadline: the runbook takes the flow lock (refused while belt runs) and acts.
      do {
        let session = try Session(
          env: global.makeEnvironment(), output: OutputSink.standard(stderr: true),
          flags: global.flags)
        let r = try session.run(
          file: PgBouncerWatchdog.runbook, dc: dc, db: db, opts: .object([]))
        if r["waiting"] == .bool(true) {
          if !waitingSaid { say("belt still runs the cutover: \(r["message"]?.display ?? "")") }
          waitingSaid = true
          Thread.sleep(forTimeInterval: 1)
          continue
        }
        say(r["message"]?.display ?? "done")
        return
      } catch {
        say("failed: \(error); trying again in 2 s")
        Thread.sleep(forTimeInterval: 2)
      }
    }
  }
}
