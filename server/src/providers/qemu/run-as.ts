/**
 * The account QEMU drops to once it has opened its files (`-runas`), when the server runs as
 * root: a VM's own uid from the desktop uid range, one named account for every VM, or none.
 */
import fs from 'node:fs/promises';
import type { UidAllocator } from '../sandbox/accounts.js';
import { ProviderError } from '../types.js';

export interface VmAccount {
  user: string;
  uid: number;
  gid: number;
}

export class RunAs {
  /**
   * @param option a user name, or null for never; 'per-desktop' comes with `uids`
   * @param uids per-desktop accounts (the server runs as root and option is 'per-desktop')
   */
  constructor(
    private readonly option: string | null,
    private readonly uids: UidAllocator | undefined,
  ) {}

  /** whether accounts are the VMs' own (so released when a VM goes) */
  get perDesktop(): boolean {
    return this.uids !== undefined;
  }

  /** The account desktopId's QEMU runs as; undefined when it keeps the server's. */
  async resolve(desktopId: string): Promise<VmAccount | undefined> {
    if (this.option === null || process.getuid?.() !== 0) return undefined;
    if (this.uids) {
      const acct = this.uids.allocate(desktopId);
      return { user: acct.name, uid: acct.uid, gid: acct.gid };
    }
    const ids = await lookupUser(this.option);
    if (!ids) {
      throw new ProviderError(
        'QEMU_NO_USER',
        `user ${this.option} (runAs) does not exist; create it or set runAs: null`,
      );
    }
    if (ids.uid === 0) return undefined;
    return { user: this.option, ...ids };
  }
}

async function lookupUser(name: string): Promise<{ uid: number; gid: number } | undefined> {
  let passwd: string;
  try {
    passwd = await fs.readFile('/etc/passwd', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of passwd.split('\n')) {
    const [user, , uid, gid] = line.split(':');
    if (user === name && uid !== undefined && gid !== undefined)
      return { uid: Number(uid), gid: Number(gid) };
  }
  return undefined;
}
