import Foundation
import Logging

/// The replication seam (design.md §6). A pair replicates with one engine, chosen by its
/// config's `"engine"`. Commands and runbooks never name an engine's objects: they ask the
/// engine, and what differs between engines is data (``EngineCapabilities``, ``TableTravel``),
/// never an `if engine == …` in a command.
///
/// Every function takes root connections to the sides it touches; the engine keeps no state.
protocol ReplicationEngine: Sendable {
  var kind: EngineKind { get }
  /// What the engine can do whatever the servers.
  var capabilities: EngineCapabilities { get }
  /// What the engine can do for one pair, given its servers (native runs both directions at
  /// once only when both are PostgreSQL 16 or newer).
  func capabilities(src sroot: PGConnection, dst droot: PGConnection) throws -> EngineCapabilities
  /// The name of the replication object of a direction, as status and messages show it
  /// (pglogical: the subscriptions `pg1_pg2` and `pg2_pg1`).
  func name(_ direction: Direction) -> String
  /// How the forward direction groups its tables, for messages ("set pgbelt").
  var tableGroup: String { get }
  /// Schemas whose locks name the sessions in the way when a replication step times out.
  var lockSchemas: [String] { get }

  // MARK: what a server needs

  /// How a table travels with this engine, and why.
  func travel(_ table: TableInfo) -> TableTravel
  /// Libraries, settings, extensions and versions this engine needs of one server.
  func serverChecks(_ c: PGConnection, side: Side) throws -> [ServerCheck]
  /// The per-server budget (workers, slots, WAL senders) for every pair of a dc on this server.
  func budgetChecks(_ c: PGConnection, server key: String, uses: [BudgetUse], dc: String) throws
    -> [ServerCheck]
  /// What an earlier migration, where this database was the destination, left on src.
  func leftovers(onSource sroot: PGConnection) throws -> String?

  // MARK: setting up

  /// Whether the direction's replication object exists on its subscriber side.
  func configured(_ direction: Direction, on c: PGConnection) throws -> Bool
  /// The bare names of the tables of `schema` that the direction's provider side publishes
  /// (nil when nothing is set up there).
  func publishedTables(_ c: PGConnection, schema: String) throws -> [String]?
  /// The replication role, its grants on `tables` and what the engine installs in the database;
  /// server-wide changes run under the server's lock.
  func prepare(
    _ ctx: any EngineContext, _ side: Side, root: PGConnection, owner: PGConnection, schema: String,
    tables: [String]
  ) throws -> [String]
  /// Makes this side a provider publishing `tables` (adding those not in yet).
  /// - Returns: what was done to the side's node, and the tables added.
  func publish(
    _ ctx: any EngineContext, _ side: Side, root: PGConnection, schema: String, tables: [String]
  ) throws
    -> (node: String, added: [String])
  /// Makes this side a subscriber node (pglogical) or nothing (engines without nodes).
  func ensureSubscriberNode(_ ctx: any EngineContext, _ side: Side, root: PGConnection) throws
    -> String
  /// Takes `tables` out of the provider's publication (a table that must not be copied by a new
  /// subscription).
  func withdraw(_ c: PGConnection, schema: String, tables: [String]) throws
  /// Creates the direction's subscription on its subscriber side, or converges it.
  func subscribe(
    _ ctx: any EngineContext, _ direction: Direction, on c: PGConnection, copyData: Bool
  ) throws -> String
  /// Has an existing forward subscription copy `tables` that were published since.
  func copyAdded(_ droot: PGConnection, schema: String, tables: [String]) throws
  /// Publishes one table without an initial copy, inside the caller's transaction on src (the
  /// locked copy's last step: see ``LockedCopy``).
  func publishWithoutCopy(_ sroot: PGConnection, schema: String, table: String) throws
  /// Whether back replication may be set up now: nil, or why not.
  func backBlocked(src sroot: PGConnection, dst droot: PGConnection) throws -> String?
  /// Sets up back replication of `tables` (dst to src): at once when both directions may run
  /// together, else armed, to be attached by ``attachBack(_:src:dst:)`` once forward is dropped.
  /// - Returns: the tables dst publishes anew, and what was done to the back subscription.
  func setUpBack(
    _ ctx: any EngineContext, src sroot: PGConnection, dst droot: PGConnection, tables: [String]
  ) throws
    -> (added: [String], subscription: String)
  /// Attaches back replication armed ahead of the cutover, right after forward is dropped
  /// (nil: nothing armed, or it was attached when set up).
  func attachBack(_ ctx: any EngineContext, src sroot: PGConnection, dst droot: PGConnection) throws
    -> String?

  // MARK: state

  /// The state of one direction, read on its subscriber side, with a cause when it is down.
  func state(_ c: PGConnection, _ direction: Direction, server: ServerConfig) throws
    -> SubscriptionState
  /// Whether back replication is armed on dst, to be attached at the cutover (read on dst).
  func backArmed(_ droot: PGConnection) throws -> Bool
  /// What src says about forward replication: published tables, lag, what the slot waits for.
  func sourceFacts(_ sroot: PGConnection, schema: String) throws -> SourceFacts?

  // MARK: the gate and teardown

  /// The forward subscription's slot on src (nil: not set up).
  func forwardSlot(_ droot: PGConnection) throws -> String?
  /// Re-enables a forward subscription left disabled (a teardown killed between disabling and
  /// dropping it). - Returns: a note when it did.
  func enableForGate(_ droot: PGConnection) throws -> String?
  /// Adds the fence table (``Fence``) to what src publishes, without a copy.
  func publishFence(_ sroot: PGConnection, qualified: String) throws
  /// Whether the fence table is published on src.
  func fencePublished(_ sroot: PGConnection, qualified: String) throws -> Bool
  /// Drops the direction's subscription (tolerating its absence) and its slot on the provider.
  func drop(_ direction: Direction, on c: PGConnection, provider: PGConnection?) throws -> (
    dropped: Bool, notes: [String]
  )
  /// Drops slots the direction left on its provider.
  func dropProviderSlots(_ provider: PGConnection, _ direction: Direction) throws -> [String]
  /// Removes this side's publication/node (after its subscriptions are gone), and undoes what the
  /// engine changed on the application's tables there.
  func removeLocal(_ ctx: any EngineContext, _ c: PGConnection, side: Side) throws -> [String]
  /// Drops the replication role unless other databases of the server still use it.
  func dropRole(
    _ ctx: any EngineContext, _ side: Side, _ root: PGConnection, name: String, schema: String,
    protected: [String]
  )
    throws -> String?
  /// What `--full` removes besides (the extension).
  func removeExtension(_ c: PGConnection, side: Side) throws -> [String]
  /// cleanup-previous-config: what an earlier migration left on src, whatever role it played.
  func cleanupPrevious(_ ctx: any EngineContext, _ sroot: PGConnection) throws -> [String]

  // MARK: belt's own initial copy (``SnapshotCopy``; only when `startsFromExportedSnapshot`)

  /// Creates the forward slot on src and exports the snapshot of its consistent point (the
  /// publication must exist before). The snapshot lives while the returned connection stays
  /// open and idle: every copy session imports it before ``ExportedSnapshot/release()``.
  func exportSnapshot(_ ctx: any EngineContext) throws -> ExportedSnapshot
  /// The forward slot that ``exportSnapshot(_:)`` makes, when it exists on src.
  func snapshotSlot(_ ctx: any EngineContext, _ sroot: PGConnection) throws -> String?
  /// Creates the forward subscription on dst on that slot, without a copy: it streams what
  /// src committed after the slot's consistent point.
  func subscribeFromSnapshot(_ ctx: any EngineContext, on droot: PGConnection) throws -> String
}

/// A snapshot exported by a replication slot's creation, alive while its connection is open
/// and idle (native-replication.md §3).
final class ExportedSnapshot {
  /// The id that copy sessions import with `SET TRANSACTION SNAPSHOT`.
  let id: String
  let slot: String
  /// The slot's consistent point: streaming starts there.
  let lsn: String
  private var connection: PGConnection?

  init(id: String, slot: String, lsn: String, connection: PGConnection) {
    self.id = id
    self.slot = slot
    self.lsn = lsn
    self.connection = connection
  }

  /// Ends the snapshot (closes the replication connection); the slot stays.
  func release() {
    connection?.close()
    connection = nil
  }

  deinit { release() }
}

extension ReplicationEngine {
  func capabilities(src sroot: PGConnection, dst droot: PGConnection) throws -> EngineCapabilities {
    capabilities
  }
}

/// What an engine can do, as data.
struct EngineCapabilities: Sendable {
  /// Whether forward and back replication may run at the same time without looping.
  var bothDirectionsAtOnce: Bool
  /// Why not, when they may not (nil: they may).
  var bothDirectionsWhyNot: String? = nil
  /// Whether a table with a stored generated column is copied by belt under a short write lock
  /// before it streams (the engine cannot copy it itself).
  var lockedCopyForGenerated: Bool
  /// Whether tables without a primary key stream (with a replica identity) instead of being
  /// copied inside the cutover window.
  var streamsTablesWithoutPK: Bool
  /// Where the latest apply error can be read.
  var applyErrorSource: String
  /// Whether belt may copy the initial data itself from a snapshot exported by the forward
  /// slot's creation, and then start the forward direction from that slot without a copy
  /// (``SnapshotCopy``). Otherwise the engine copies the tables itself.
  var startsFromExportedSnapshot: Bool = false
}

/// One direction of replication.
public enum Direction: String, Sendable {
  /// src to dst: the subscription lives on dst.
  case forward
  /// dst to src (for a rollback): the subscription lives on src.
  case back
  var subscriber: Side { self == .forward ? .dst : .src }
  var provider: Side { self == .forward ? .src : .dst }
}

/// How one table travels with an engine.
struct TableTravel: Sendable, Equatable {
  enum How: Sendable, Equatable {
    /// Copied by the engine, then streamed.
    case streamed
    /// Copied by belt under a short write lock once the initial copy is done, then streamed.
    case lockedCopy
    /// Copied by belt inside the cutover window (sync-tables).
    case copiedAtCutover
    /// Not moved itself (a partitioned parent: its partitions are).
    case notMoved
  }
  var how: How
  /// What precheck shows in its `replication` column.
  var label: String
  var why: String?
  /// Streamed from the start or after belt's locked copy.
  var streams: Bool { how == .streamed || how == .lockedCopy }
}

/// The state of one subscription, as belt reports it.
struct SubscriptionState: Sendable {
  /// `unconfigured`, `initializing`, `replicating` or `down`.
  var state: String
  /// Why it is down, when known.
  var reason: String?
  /// Tables whose initial copy is done (nil when unconfigured).
  var tablesDone: Int?
  /// Tables whose initial copy has not finished.
  var tablesPending: Int
  /// The subscription's slot name on the provider.
  var slotName: String?
  /// Whether the initial copy is finished (every table, and the initial full sync).
  var copyDone: Bool = true
  /// Whether the direction's apply worker runs now (nil: the engine cannot tell).
  var workerRunning: Bool? = nil
  /// Seconds since the running apply worker started (nil: unknown). A worker that fails on every
  /// change is restarted every few seconds and is only up for a moment each time.
  var workerUptime: Double? = nil
  /// The running apply worker's process id on the subscriber (nil: not running or unknown).
  var workerPid: Int? = nil

  /// How long an apply worker must have stayed up to count as settled: longer than the retry
  /// interval after a failure (5 s for pglogical, `wal_retrieve_retry_interval` for native).
  static let settledAfter: Double = 8
  /// How long an apply worker may wait for a lock on the subscriber before the direction counts
  /// as down (a session holding a table of the migration locked blocks every later change).
  static let lockGrace: Double = 15

  /// Why this direction is not healthy enough to fence the application on (nil: healthy): it
  /// must be replicating, its apply worker running and settled, with nothing amiss.
  var unhealthy: String? {
    if state != "replicating" { return "it is \(state)" + (reason.map { ": \($0)" } ?? "") }
    if let reason { return reason }
    if workerRunning == false { return "its apply worker is not running" }
    if let up = workerUptime, up < Self.settledAfter {
      return String(
        format: "its apply worker started %.0f s ago (it must stay up %.0f s to count as settled)",
        up, Self.settledAfter)
    }
    return nil
  }

  static let unconfigured = SubscriptionState(
    state: "unconfigured", reason: nil, tablesDone: nil, tablesPending: 0, slotName: nil)
}

/// What src says about forward replication.
struct SourceFacts: Sendable {
  /// Tables src publishes for this migration.
  var publishedTables: Int?
  /// Forward lag in bytes (sent, write, flush, replay) from the walsender.
  var lags: [Int?] = [nil, nil, nil, nil]
  /// Bytes between src's WAL position and what the forward slot has confirmed.
  var slotLag: Int?
  /// The sessions whose open transactions the forward slot's creation waits for.
  var slotWaitsFor: [String] = []
}

/// One row of precheck's server checks.
struct ServerCheck: Sendable {
  var name: String
  var value: String
  var ok: Bool
  var why: String?
  var v: Value {
    .object([
      ("name", .string(name)), ("value", .string(value)), ("ok", .bool(ok)), ("why", .from(why)),
    ])
  }
}

/// One side of one pair of the dc, on some server (for the budget).
struct BudgetUse: Sendable {
  var db: String
  var dbname: String
  var side: Side
}

/// What an engine may ask of the operation that calls it (``PairContext`` conforms): the pair,
/// connections and the server-wide lock, without the engine naming the layers above it.
protocol EngineContext: AnyObject {
  var dc: String { get }
  var db: String { get }
  var schema: String { get }
  var config: MigrationConfig { get }
  var logger: Logger { get }
  func connect(_ side: Side, _ role: Role, noTimeout: Bool) throws -> PGConnection
  /// The audit identity for a connection the engine opens itself (a replication connection).
  func auditContext(_ side: Side, _ role: Role) throws -> AuditContext
  func serverWide<T>(_ side: Side, _ what: String, _ body: (inout ServerWide.Memory) throws -> T)
    throws -> T
  func refuse(_ message: String) -> BeltError
  /// Records `value` under `key` in the pair's config (written before the change it records).
  func remember(_ key: String, _ value: Value) throws
}

/// The engines, by kind.
enum Engines {
  static let pglogical: PglogicalEngine = {
    // Its functions that only read, so that the audit log leaves them out.
    Audit.registerReadOnly(schema: "pglogical", PglogicalEngine.readOnlyFunctions)
    return PglogicalEngine()
  }()

  static let native = NativeEngine()

  /// Every engine this build runs.
  static var all: [any ReplicationEngine] { [pglogical, native] }

  /// The engine a pair's config asks for.
  static func of(_ config: MigrationConfig) throws -> any ReplicationEngine {
    switch config.engine {
    case .pglogical: return pglogical
    case .native: return native
    }
  }
}
