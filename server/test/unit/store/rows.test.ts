import { describe, expect, it } from 'vitest';
import { desktopRow, jsonColumn, poolRow, StoreError } from '../../../src/store/rows.js';

const desktop = {
  id: 'd1',
  pool_id: 'p1',
  name: 'd',
  state: 'in-use' as const,
  owner_user_id: null,
  handle: null as string | null,
  slot: null,
  error: null,
  created_at: 't',
  state_since: 't',
  host: null,
  lease_node: null,
  lease_until: null,
  member: null,
};

const pool = {
  id: 'p1',
  name: 'p',
  description: '',
  provider: 'xvnc' as const,
  assignment: 'floating' as const,
  template: '{}',
  min_size: 0,
  max_size: 1,
  spares: 0,
  disconnected_timeout_sec: 0,
  idle_timeout_sec: 0,
  max_session_sec: 0,
  max_per_user: 1,
  draining: 0,
  created_at: 't',
};

describe('the row boundary', () => {
  it('parses a handle and a template once, keeps every other column, writes them back as text', () => {
    const handle = { display: 7, socket: '/run/x', nested: { pid: 42 } };
    const row = desktopRow({ ...desktop, handle: jsonColumn(handle), provider: 'xvnc' });
    expect(row).toEqual({ ...desktop, handle, provider: 'xvnc' });
    expect(desktopRow(desktop).handle).toBeNull();
    expect(poolRow({ ...pool, template: '{"width":640}' })).toEqual({
      ...pool,
      template: { width: 640 },
    });
    expect(JSON.parse(jsonColumn(handle))).toEqual(handle);
  });

  it('a column that does not hold a JSON object is a coded error naming the row', () => {
    for (const text of ['{not json', '[1,2]', 'null', '"text"', '3']) {
      const err = (() => {
        try {
          desktopRow({ ...desktop, handle: text });
        } catch (e) {
          return e;
        }
      })();
      expect(err, text).toBeInstanceOf(StoreError);
      expect(err).toMatchObject({ code: 'STORE_BAD_JSON' });
      expect((err as Error).message).toContain('desktop d1');
    }
    expect(() => poolRow({ ...pool, id: 'p9', template: '' })).toThrow(/template of pool p9/);
  });
});
