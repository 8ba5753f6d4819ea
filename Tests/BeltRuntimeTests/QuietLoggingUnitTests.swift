import Testing

@testable import BeltRuntime

/// Which server settings would log a secret belt sends, for a session that cannot change them
/// (no server: the analysis behind precheck's line and setup's refusal).
@Suite struct QuietLoggingUnitTests {
  static let defaults: [String: String] = [
    "log_statement": "none", "log_min_duration_statement": "-1", "log_min_duration_sample": "-1",
    "log_transaction_sample_rate": "0", "log_parameter_max_length": "-1",
    "log_parameter_max_length_on_error": "0",
    "log_min_error_statement": "error", "log_min_messages": "warning",
  ]

  static func access(_ changes: [String: String] = [:], superuser: Bool) -> QuietLogging.Access {
    let values = defaults.merging(changes) { _, new in new }
    let settable =
      superuser
      ? QuietLogging.settings.map(\.name).filter { values[$0] != nil }
      : ["log_parameter_max_length_on_error"]
    return QuietLogging.Access(values: values, settable: settable, user: "admin")
  }

  @Test func aSuperuserLeaksNothing() {
    let a = Self.access(
      ["log_statement": "all", "log_min_duration_statement": "0"], superuser: true)
    #expect(a.unsettable.isEmpty)
    #expect(QuietLogging.leaks(a).lines.isEmpty)
  }

  @Test func aNonSuperuserIsToldWhichSettingsLogWhat() {
    let quiet = QuietLogging.leaks(Self.access(superuser: false))
    // Defaults: only a subscription that cannot reach its provider logs the DSN.
    #expect(
      quiet.lines == [
        "log_min_messages = warning logs it when a subscription cannot reach its provider"
      ])
    #expect(quiet.settings == ["log_min_messages"])

    let loud = QuietLogging.leaks(
      Self.access(
        [
          "log_statement": "all", "log_min_duration_statement": "0",
          "log_transaction_sample_rate": "0.5",
        ], superuser: false))
    #expect(
      loud.lines.first
        == "log_statement = 'all', log_min_duration_statement = 0, log_transaction_sample_rate = 0.5 logs the pglogical user's password (the DSN given to create_node and create_subscription)"
    )
    #expect(
      loud.settings == [
        "log_statement", "log_min_duration_statement", "log_transaction_sample_rate",
        "log_min_messages",
      ])

    // Bound values cut to nothing by the server's own setting: only the role's hash is in the text.
    let cut = QuietLogging.leaks(
      Self.access(["log_statement": "all", "log_parameter_max_length": "0"], superuser: false))
    #expect(cut.lines.first == "log_statement = 'all' logs the role's password hash")

    // A role set quiet by a superuser (ALTER ROLE ... SET) has nothing to say.
    let fixed = QuietLogging.leaks(
      Self.access(["log_statement": "none", "log_min_messages": "fatal"], superuser: false))
    #expect(fixed.lines.isEmpty)
  }

  /// The native engine's statement: a conninfo inside an SQL literal has its quotes doubled.
  @Test func aConninfoInsideAnSQLLiteralIsRedacted() {
    let sql =
      "CREATE SUBSCRIPTION s CONNECTION 'host=h password=''pa ss\\''w0rd'' user=u' PUBLICATION p"
    let clean = Audit.redact(sql, secrets: [])
    #expect(!clean.contains("pa ss") && !clean.contains("w0rd"), "\(clean)")
    #expect(
      clean.contains("user=u")
        && clean.hasPrefix("CREATE SUBSCRIPTION s CONNECTION 'host=h password=****"), "\(clean)")
  }
}
