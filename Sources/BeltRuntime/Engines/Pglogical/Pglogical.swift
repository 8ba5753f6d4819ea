import CSignals
import Foundation

/// pglogical's fixed names, catalog queries and the idempotent steps of the replication commands.
///
/// Every function takes a root connection to one side.
enum PGL {
  static let srcNode = "pg1"
  static let dstNode = "pg2"
  /// The forward subscription (on dst, provider src).
  static let forwardSub = "pg1_pg2"
  /// The back subscription (on src, provider dst).
  static let backSub = "pg2_pg1"
  /// The replication set on both sides.
  static let setName = "pgbelt"

  // MARK: - catalog

  /// Whether the pglogical extension is installed in the connected database.
  static func installed(_ c: PGConnection) throws -> Bool {
    try c.query("SELECT 1 FROM pg_extension WHERE extname = 'pglogical'").values.count == 1
  }

  /// The local node: name, its interface's DSN and interface id.
  struct Node {
    var name: String
    var dsn: String
    var interfaceID: String
  }

  /// The local node, or nil (also nil when the extension is not installed).
  static func localNode(_ c: PGConnection) throws -> Node? {
    guard try installed(c) else { return nil }
    let r = try c.query(
      """
      SELECT n.node_name, i.if_dsn, i.if_id::text AS if_id
        FROM pglogical.local_node l
        JOIN pglogical.node n ON n.node_id = l.node_id
        JOIN pglogical.node_interface i ON i.if_id = l.node_local_interface
      """)
    return r.rows.first.map {
      Node(name: $0.string("node_name"), dsn: $0.string("if_dsn"), interfaceID: $0.string("if_id"))
    }
  }

  /// A subscription as stored in pglogical's catalog.
  struct Subscription {
    var id: String
    var name: String
    var enabled: Bool
    var slotName: String
    var providerDSN: String
    var providerInterfaceID: String
    var sets: [String]
  }

  /// A subscription by name, or nil (also nil when the extension is not installed).
  static func subscription(_ c: PGConnection, _ name: String) throws -> Subscription? {
    guard try installed(c) else { return nil }
    let r = try c.query(
      """
      SELECT s.sub_id::text AS sub_id, s.sub_name, s.sub_enabled, s.sub_slot_name, i.if_dsn, i.if_id::text AS if_id,
             array_to_json(coalesce(s.sub_replication_sets, '{}')) AS sets
        FROM pglogical.subscription s JOIN pglogical.node_interface i ON i.if_id = s.sub_origin_if
       WHERE s.sub_name = $1
      """, [name])
    return r.rows.first.map {
      Subscription(
        id: $0.string("sub_id"), name: $0.string("sub_name"), enabled: $0.bool("sub_enabled"),
        slotName: $0.string("sub_slot_name"),
        providerDSN: $0.string("if_dsn"), providerInterfaceID: $0.string("if_id"),
        sets: $0.array("sets"))
    }
  }

  /// pglogical's status word for a subscription (`initializing`, `replicating`, `down`,
  /// `disabled`, `unknown`), or nil when there is no such subscription.
  static func rawStatus(_ c: PGConnection, _ name: String) throws -> String? {
    guard try installed(c) else { return nil }
    do {
      return try c.query("SELECT status FROM pglogical.show_subscription_status($1)", [name]).scalar
    } catch let e as PGError where e.sqlState == "42704" || e.message.contains("not found") {
      return nil
    }
  }

  /// Per-table initial-copy state of a subscription: (tables synced, tables still syncing,
  /// whether the subscription-level copy is done).
  static func syncProgress(_ c: PGConnection, _ sub: String) throws -> (
    done: Int, pending: Int, fullDone: Bool, fullStatus: String
  ) {
    let r = try c.query(
      """
      SELECT count(*) FILTER (WHERE st.sync_relname IS NOT NULL AND st.sync_status::text IN ('r', 'y')) AS done,
             count(*) FILTER (WHERE st.sync_relname IS NOT NULL AND st.sync_status::text NOT IN ('r', 'y')) AS pending,
             coalesce(bool_and(st.sync_status::text = 'r') FILTER (WHERE st.sync_relname IS NULL), false) AS full_done,
             coalesce(min(st.sync_status::text) FILTER (WHERE st.sync_relname IS NULL), '') AS full_status
        FROM pglogical.local_sync_status st JOIN pglogical.subscription s ON s.sub_id = st.sync_subid
       WHERE s.sub_name = $1
      """, [sub])
    let row = r.rows.first
    return (
      row?.int("done") ?? 0, row?.int("pending") ?? 0, row?.bool("full_done") ?? false,
      row?.string("full_status") ?? ""
    )
  }

  /// The bare names of the tables of `schema` in the local replication set `pgbelt`.
  static func setTables(_ c: PGConnection, schema: String) throws -> [String]? {
    guard try installed(c) else { return nil }
    let set = try c.query(
      """
      SELECT rs.set_id::text FROM pglogical.replication_set rs JOIN pglogical.local_node l ON l.node_id = rs.set_nodeid
       WHERE rs.set_name = $1
      """, [setName]
    ).scalar
    guard let set else { return nil }
    return try c.query(
      """
      SELECT c.relname FROM pglogical.replication_set_table t
        JOIN pg_class c ON c.oid = t.set_reloid JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE t.set_id = $1::oid AND n.nspname = $2 ORDER BY c.relname COLLATE "C"
      """, [set, schema]
    ).rows.map { $0.string("relname") }
  }

  // MARK: - roles and extension

  /// Installs the extension, then the replication role as a superuser (``ReplicationRole``).
  /// - Returns: what was done, for the record.
  static func prepare(
    _ ctx: any EngineContext, _ side: Side, root: PGConnection, owner: PGConnection,
    pgl: Credentials,
    ownerName: String, schema: String, tables: [String]
  ) throws -> [String] {
    var notes: [String] = []
    if try !installed(root) {
      do {
        try root.exec("CREATE EXTENSION IF NOT EXISTS pglogical")
        notes.append("created extension pglogical")
      } catch let e as PGError where e.sqlState == "23505" || e.sqlState == "42710" {
        // created at the same moment in this same database (two pairs naming one database)
      }
    }
    try root.exec("GRANT USAGE ON SCHEMA pglogical TO \(PGConnection.quoteIdent(ownerName))")
    return notes
      + (try ReplicationRole.ensure(
        ctx, side, root: root, owner: owner, role: pgl, ownerName: ownerName, schema: schema,
        tables: tables,
        superuser: true))
  }

  /// Revokes the role's privileges here (pglogical's schema included) and drops it unless other
  /// databases still use it (``ReplicationRole/drop(_:_:_:name:schema:protected:extraSchemas:)``).
  static func dropRole(
    _ ctx: any EngineContext, _ side: Side, _ root: PGConnection, name: String, schema: String,
    protected: [String]
  ) throws -> String? {
    try ReplicationRole.drop(
      ctx, side, root, name: name, schema: schema, protected: protected, extraSchemas: ["pglogical"]
    )
  }

  // MARK: - nodes, sets, subscriptions

  /// Creates the local node `name` or converges an existing one.
  ///
  /// The DSN is updated when the config changed. Refuses when the database already is a node
  /// under another name.
  static func ensureNode(_ c: PGConnection, name: String, dsn: String, side: Side) throws -> String
  {
    if let node = try localNode(c) {
      guard node.name == name else {
        throw BeltError(
          .preconditionFailed,
          "\(side.rawValue) already is pglogical node \"\(node.name)\" (left over from an earlier migration?); "
            + "remove it (belt teardown on that migration) before setting up this one")
      }
      if node.dsn != dsn {
        try c.querySecret(
          "UPDATE pglogical.node_interface SET if_dsn = $1 WHERE if_id = $2::oid",
          [dsn, node.interfaceID])
        return "node \(name) DSN updated"
      }
      return "node \(name) exists"
    }
    try c.querySecret("SELECT pglogical.create_node(node_name := $1, dsn := $2)", [name, dsn])
    return "node \(name) created"
  }

  /// Creates the set `pgbelt` if needed and adds the tables that are not in it yet. Adding a
  /// table locks it; a lock not granted within `lockTimeout` is an error naming the sessions in
  /// the way, rather than a wait that would also queue the application's writes behind it.
  /// - Returns: the tables added.
  static func ensureSet(_ c: PGConnection, side: Side, schema: String, tables: [String]) throws
    -> [String]
  {
    var present = try setTables(c, schema: schema)
    if present == nil {
      do {
        try c.query("SELECT pglogical.create_replication_set($1)", [setName])
      } catch let e as PGError where e.sqlState == "23505" {}
      present = []
    }
    let have = Set(present ?? [])
    var added: [String] = []
    var current = ""
    try LockWait.run(
      c, side: side, what: "adding table \(Value.jsonQuote(current)) to set \(setName)",
      schemas: ["pglogical"]
    ) {
      for t in tables where !have.contains(t) {
        current = t
        do {
          try c.query(
            "SELECT pglogical.replication_set_add_table($1, $2::regclass)",
            [setName, PGConnection.qualified(schema, t)])
          added.append(t)
        } catch let e as PGError where e.sqlState == "23505" {}
      }
    }
    return added
  }

  /// Creates a subscription or converges an existing one (provider DSN, set, enabled).
  /// - Returns: "created", "exists", or what was changed.
  static func ensureSubscription(
    _ c: PGConnection, name: String, providerDSN: String, syncData: Bool
  ) throws -> String {
    guard let sub = try subscription(c, name) else {
      try c.querySecret(
        """
        SELECT pglogical.create_subscription(
          subscription_name := $1, provider_dsn := $2, replication_sets := ARRAY[$3]::text[],
          synchronize_structure := false, synchronize_data := $4::boolean, forward_origins := '{}')
        """, [name, providerDSN, setName, syncData ? "true" : "false"])
      return "created"
    }
    var changes: [String] = []
    if sub.providerDSN != providerDSN {
      try c.querySecret(
        "UPDATE pglogical.node_interface SET if_dsn = $1 WHERE if_id = $2::oid",
        [providerDSN, sub.providerInterfaceID])
      changes.append("provider DSN updated")
    }
    if !sub.sets.contains(setName) {
      try c.query(
        "SELECT pglogical.alter_subscription_add_replication_set($1, $2)", [name, setName])
      changes.append("set \(setName) added")
    }
    if !sub.enabled {
      try c.query("SELECT pglogical.alter_subscription_enable($1, true)", [name])
      changes.append("enabled")
    } else if !changes.isEmpty {
      // Restart the apply worker so it reconnects with the new DSN.
      try c.query("SELECT pglogical.alter_subscription_disable($1, true)", [name])
      try c.query("SELECT pglogical.alter_subscription_enable($1, true)", [name])
      changes.append("restarted")
    } else if try rawStatus(c, name) == "down" {
      // Its worker is not running: it failed (e.g. on a password fixed just now; pglogical
      // retries on its own, slow schedule) or pglogical has not started it yet. Touching the
      // subscription wakes the manager (or the supervisor) now. Nothing runs that this could
      // interrupt.
      let manager = try PglogicalStatus.managerRunning(c)
      try c.query("SELECT pglogical.alter_subscription_enable($1, true)", [name])
      return manager
        ? "exists (was down, retry requested)" : "exists (not started yet, pglogical nudged)"
    }
    return changes.isEmpty ? "exists" : changes.joined(separator: ", ")
  }

  /// Drops a subscription (tolerating its absence) and its slot on the provider.
  ///
  /// Polls instead of sleeping. `provider` is a root connection to the provider side, when
  /// configured.
  /// - Returns: whether a subscription was dropped, and notes.
  static func dropSubscription(
    _ c: PGConnection, name: String, provider: PGConnection?, timeout: Double = 15
  ) throws
    -> (dropped: Bool, notes: [String])
  {
    var notes: [String] = []
    let sub = try subscription(c, name)
    if let sub {
      // pglogical's drop_subscription deletes the subscription's rows and then waits for the
      // apply worker to exit; a worker that is updating its sync status at that moment waits
      // for the dropping transaction: a deadlock nobody detects. So stop the worker first.
      if sub.enabled {
        try c.query("SELECT pglogical.alter_subscription_disable($1, true)", [name])
      }
      try waitForWorkers(c, subscriptionID: sub.id, name: name, timeout: timeout)
      try c.query("SELECT pglogical.drop_subscription($1, true)", [name])
    }
    if let provider {
      notes += try dropSlots(
        provider, subscription: name, slotName: sub?.slotName, timeout: timeout)
    }
    return (sub != nil, notes)
  }

  /// Waits until no pglogical worker (apply or sync) of a subscription runs in this database.
  static func waitForWorkers(
    _ c: PGConnection, subscriptionID: String, name: String, timeout: Double
  ) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
      let pids = try c.query(
        """
        SELECT pid FROM pg_stat_activity
         WHERE datname = current_database() AND backend_type LIKE 'pglogical %'
           AND backend_type ~ (':' || $1 || '($|[^0-9])')
        """, [subscriptionID]
      ).rows.map { $0.string("pid") }
      if pids.isEmpty { return }
      if Date() > deadline {
        throw BeltError(
          .timeout,
          "the pglogical worker(s) of \(name) (pid \(pids.joined(separator: ", "))) did not stop within \(Int(timeout)) s "
            + "after disabling the subscription", retryable: true)
      }
      try LockWait.pause(0.02)
    }
  }

  /// Removes the provider-side slots of a subscription that pglogical left behind.
  ///
  /// pglogical drops them itself when it can reach the provider. Waits for an active slot to
  /// be released.
  static func dropSlots(
    _ provider: PGConnection, subscription: String, slotName: String?, timeout: Double
  ) throws -> [String] {
    let suffix = "_" + subscription
    let find = """
      SELECT slot_name, active, active_pid FROM pg_replication_slots
       WHERE database = current_database() AND plugin = 'pglogical_output'
         AND (slot_name = $1 OR (slot_name LIKE 'pgl\\_%' AND right(slot_name, length($2)) = $2))
      """
    var notes: [String] = []
    let deadline = Date().addingTimeInterval(timeout)
    while true {
      let slots = try provider.query(find, [slotName ?? "", suffix]).rows
      if slots.isEmpty { return notes }
      var waiting: [String] = []
      for s in slots {
        let slot = s.string("slot_name")
        if s.bool("active") {
          waiting.append("\(slot) (pid \(s.string("active_pid")))")
          continue
        }
        do {
          try provider.query("SELECT pg_drop_replication_slot($1)", [slot])
          notes.append("dropped leftover slot \(slot)")
        } catch let e as PGError where e.sqlState == "42704" || e.sqlState == "55006" {}
      }
      if waiting.isEmpty { continue }
      if Date() > deadline {
        throw BeltError(
          .timeout,
          "replication slot \(waiting.joined(separator: ", ")) is still in use \(Int(timeout)) s after dropping "
            + "subscription \(subscription); end that walsender or drop the slot by hand",
          retryable: true)
      }
      try LockWait.pause(0.05)
    }
  }

  /// Drops the set `pgbelt` and the local node `node` (tolerating absence).
  static func dropSetAndNode(_ c: PGConnection, node: String) throws -> [String] {
    guard try installed(c), let local = try localNode(c), local.name == node else { return [] }
    var notes: [String] = []
    if try c.query("SELECT pglogical.drop_replication_set($1, true)", [setName]).scalar == "t" {
      notes.append("dropped set \(setName)")
    }
    if try c.query("SELECT pglogical.drop_node($1, true)", [node]).scalar == "t" {
      notes.append("dropped node \(node)")
    }
    return notes
  }

  /// Drops the extension and the schema it leaves behind, with a lock timeout; when blocked,
  /// names the sessions that hold the locks.
  static func dropExtension(_ c: PGConnection, side: Side) throws -> [String] {
    var notes: [String] = []
    if try installed(c) {
      try LockWait.run(c, side: side, what: "DROP EXTENSION pglogical", schemas: ["pglogical"]) {
        try c.exec("DROP EXTENSION IF EXISTS pglogical")
      }
      notes.append("dropped extension pglogical")
    }
    if try Catalog.schemaExists(c, "pglogical") {
      do {
        try LockWait.run(c, side: side, what: "DROP SCHEMA pglogical", schemas: ["pglogical"]) {
          try c.exec("DROP SCHEMA IF EXISTS pglogical")
        }
        notes.append("dropped schema pglogical")
      } catch let e as PGError where e.sqlState == "2BP01" {
        throw BeltError(
          .preconditionFailed,
          "schema pglogical on \(side.rawValue) still contains objects that are not pglogical's (\(e.detail ?? e.message)); drop them first"
        )
      }
    }
    return notes
  }
}

extension ServerConfig {
  /// The DSN pglogical stores for this server's node (it contains the pglogical user's password,
  /// quoted with libpq's rules; the peer server connects with it).
  var pglogicalDSN: String { conninfo(.replication, connectTimeout: 10) }
}
