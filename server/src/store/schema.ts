import type { Generated, Selectable } from 'kysely';

/**
 * Table types. Portable across SQLite and PostgreSQL: times are ISO-8601 text, booleans are
 * 0/1 integers, structured values are JSON text.
 */
export interface UsersTable {
  id: string;
  username: string;
  display_name: string;
  password_hash: string;
  role: 'user' | 'admin';
  disabled: number;
  created_at: string;
}

export interface GroupsTable {
  id: string;
  name: string;
  description: string;
  created_at: string;
}

export interface GroupMembersTable {
  group_id: string;
  user_id: string;
}

export interface PoolsTable {
  id: string;
  name: string;
  description: string;
  provider: 'xvnc' | 'qemu' | 'vnc' | 'lxd';
  assignment: 'dedicated' | 'floating';
  /** the provider's template for the pool's desktops (JSON text, see rows.ts) */
  template: string;
  min_size: number;
  max_size: number;
  spares: number;
  disconnected_timeout_sec: number;
  idle_timeout_sec: number;
  max_session_sec: number;
  max_per_user: number;
  draining: number;
  created_at: string;
}

export interface EntitlementsTable {
  id: string;
  pool_id: string;
  principal_type: 'user' | 'group';
  principal_id: string;
  created_at: string;
}

/**
 * provisioning → ready (running, no session) → in-use → floating: stopping → row deleted;
 * dedicated: stopped (not running, disk kept for its owner) → provisioning again on Connect.
 * failed: could not start or was lost; the broker cleans it up.
 */
export type DesktopState =
  | 'provisioning'
  | 'ready'
  | 'in-use'
  | 'stopped'
  | 'stopping'
  | 'failed'
  /** moving to another host while it runs (broker/migration.ts); back to ready/in-use after */
  | 'migrating';

export interface DesktopsTable {
  id: string;
  pool_id: string;
  name: string;
  state: DesktopState;
  /** dedicated pools: the user this desktop belongs to */
  owner_user_id: string | null;
  /** provider's record of the running desktop (JSON text, see rows.ts); null while not running */
  handle: string | null;
  slot: number | null;
  error: string | null;
  created_at: string;
  state_since: string;
  /** the host the desktop runs on (hosts.id); null only for rows older than hosts */
  host: string | null;
  /**
   * providers with several hosts: the member placement chose (the handle names it too once
   * the desktop runs); null for providers on one machine
   */
  member: string | null;
  /** the node doing in-flight work on the desktop (starting it) until lease_until */
  lease_node: string | null;
  /** ISO time the lease ends; another node may take over or clean up after it */
  lease_until: string | null;
}

export type SessionStateDb = 'starting' | 'active' | 'disconnected' | 'ended';

export interface SessionsTable {
  id: string;
  user_id: string;
  pool_id: string;
  desktop_id: string;
  state: SessionStateDb;
  created_at: string;
  state_since: string;
  last_input_at: string | null;
  ended_at: string | null;
  ended_reason: string | null;
}

export interface AuditLogTable {
  id: Generated<number>;
  at: string;
  actor: string | null;
  action: string;
  target: string | null;
  detail: string | null;
  ip: string | null;
}

export interface HttpSessionsTable {
  sid: string;
  data: string;
  /** ms since epoch */
  expires_at: number;
}

/**
 * A machine desktops run on. id = its host name. draining: no new desktops placed there;
 * down: not seen (its desktops are unreachable until it returns).
 */
export interface HostsTable {
  id: string;
  address: string;
  state: 'active' | 'draining' | 'down';
  /** 0 = no limit */
  max_sessions: number;
  /** ISO time a node on the host last reported */
  last_seen: string;
}

export interface SettingsTable {
  key: string;
  value: string;
}

export interface Database {
  users: UsersTable;
  groups: GroupsTable;
  group_members: GroupMembersTable;
  pools: PoolsTable;
  entitlements: EntitlementsTable;
  desktops: DesktopsTable;
  sessions: SessionsTable;
  audit_log: AuditLogTable;
  http_sessions: HttpSessionsTable;
  settings: SettingsTable;
  hosts: HostsTable;
}

/** A JSON object kept in a text column: a desktop's handle, a pool's template. */
export type JsonObject = Record<string, unknown>;

export type UserRow = Selectable<UsersTable>;
export type SessionRow = Selectable<SessionsTable>;
export type HostRow = Selectable<HostsTable>;
/**
 * A pools row as the server uses it: the template parsed. Only store/rows.ts turns the
 * column's text into the object and back; everything else reads this type.
 */
export type PoolRow = Omit<Selectable<PoolsTable>, 'template'> & { template: JsonObject };
/** A desktops row as the server uses it: the handle parsed (store/rows.ts). */
export type DesktopRow = Omit<Selectable<DesktopsTable>, 'handle'> & { handle: JsonObject | null };
