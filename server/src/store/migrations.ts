import { sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';

/** Migrations live in code (no files to find at run time). Each works on SQLite and PostgreSQL. */
export function migrations(dialect: 'sqlite' | 'postgres'): MigrationProvider {
  const list: Record<string, Migration> = {
    '0001_initial': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('users')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('username', 'text', (c) => c.notNull().unique())
          .addColumn('display_name', 'text', (c) => c.notNull().defaultTo(''))
          .addColumn('password_hash', 'text', (c) => c.notNull())
          .addColumn('role', 'text', (c) => c.notNull())
          .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('groups')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('name', 'text', (c) => c.notNull().unique())
          .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('group_members')
          .addColumn('group_id', 'text', (c) =>
            c.notNull().references('groups.id').onDelete('cascade'),
          )
          .addColumn('user_id', 'text', (c) =>
            c.notNull().references('users.id').onDelete('cascade'),
          )
          .addPrimaryKeyConstraint('group_members_pk', ['group_id', 'user_id'])
          .execute();
        await db.schema
          .createTable('pools')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('name', 'text', (c) => c.notNull().unique())
          .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
          .addColumn('provider', 'text', (c) => c.notNull())
          .addColumn('assignment', 'text', (c) => c.notNull())
          .addColumn('template', 'text', (c) => c.notNull())
          .addColumn('min_size', 'integer', (c) => c.notNull())
          .addColumn('max_size', 'integer', (c) => c.notNull())
          .addColumn('spares', 'integer', (c) => c.notNull())
          .addColumn('disconnected_timeout_sec', 'integer', (c) => c.notNull())
          .addColumn('idle_timeout_sec', 'integer', (c) => c.notNull())
          .addColumn('max_session_sec', 'integer', (c) => c.notNull())
          .addColumn('max_per_user', 'integer', (c) => c.notNull())
          .addColumn('draining', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('entitlements')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('pool_id', 'text', (c) =>
            c.notNull().references('pools.id').onDelete('cascade'),
          )
          .addColumn('principal_type', 'text', (c) => c.notNull())
          .addColumn('principal_id', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addUniqueConstraint('entitlements_unique', ['pool_id', 'principal_type', 'principal_id'])
          .execute();
        await db.schema
          .createTable('desktops')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('pool_id', 'text', (c) => c.notNull())
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('state', 'text', (c) => c.notNull())
          .addColumn('owner_user_id', 'text')
          .addColumn('handle', 'text')
          .addColumn('slot', 'integer')
          .addColumn('error', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('state_since', 'text', (c) => c.notNull())
          .execute();
        await db.schema
          .createIndex('desktops_pool')
          .on('desktops')
          .columns(['pool_id', 'state'])
          .execute();
        await db.schema
          .createTable('sessions')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('user_id', 'text', (c) => c.notNull())
          .addColumn('pool_id', 'text', (c) => c.notNull())
          .addColumn('desktop_id', 'text', (c) => c.notNull())
          .addColumn('state', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('state_since', 'text', (c) => c.notNull())
          .addColumn('last_input_at', 'text')
          .addColumn('ended_at', 'text')
          .addColumn('ended_reason', 'text')
          .execute();
        await db.schema
          .createIndex('sessions_user')
          .on('sessions')
          .columns(['user_id', 'state'])
          .execute();
        await db.schema
          .createIndex('sessions_desktop')
          .on('sessions')
          .columns(['desktop_id', 'state'])
          .execute();
        // One live session per desktop, enforced by the database (two racers cannot share one).
        await sql`CREATE UNIQUE INDEX sessions_one_live_per_desktop ON sessions (desktop_id) WHERE state <> 'ended'`.execute(
          db,
        );
        await db.schema
          .createTable('audit_log')
          .addColumn('id', dialect === 'postgres' ? 'serial' : 'integer', (c) =>
            dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement(),
          )
          .addColumn('at', 'text', (c) => c.notNull())
          .addColumn('actor', 'text')
          .addColumn('action', 'text', (c) => c.notNull())
          .addColumn('target', 'text')
          .addColumn('detail', 'text')
          .addColumn('ip', 'text')
          .execute();
        await db.schema.createIndex('audit_at').on('audit_log').column('at').execute();
        await db.schema
          .createTable('http_sessions')
          .addColumn('sid', 'text', (c) => c.primaryKey())
          .addColumn('data', 'text', (c) => c.notNull())
          .addColumn('expires_at', 'bigint', (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('settings')
          .addColumn('key', 'text', (c) => c.primaryKey())
          .addColumn('value', 'text', (c) => c.notNull())
          .execute();
      },
    },
    /**
     * Several hosts and nodes (decision 11): the hosts desktops run on, each desktop's owner
     * host, and a lease on a desktop's in-flight work (starting it) held by one node.
     */
    '0002_hosts': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('hosts')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('address', 'text', (c) => c.notNull().defaultTo(''))
          .addColumn('state', 'text', (c) => c.notNull().defaultTo('active'))
          .addColumn('max_sessions', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('last_seen', 'text', (c) => c.notNull())
          .execute();
        // null = written before hosts existed: the first node to reconcile claims it for its host.
        await db.schema.alterTable('desktops').addColumn('host', 'text').execute();
        await db.schema.alterTable('desktops').addColumn('lease_node', 'text').execute();
        await db.schema.alterTable('desktops').addColumn('lease_until', 'text').execute();
        await db.schema
          .createIndex('desktops_host')
          .on('desktops')
          .columns(['host', 'state'])
          .execute();
      },
    },
    /**
     * The member placement chose for a desktop of a provider with several hosts (an LXD
     * cluster), written under the placement lock before the desktop starts: a desktop being
     * started counts towards its host's load on every node, not only on the node starting it.
     */
    '0003_desktop_member': {
      async up(db: Kysely<unknown>) {
        await db.schema.alterTable('desktops').addColumn('member', 'text').execute();
      },
    },
  };
  return { getMigrations: async () => list };
}
