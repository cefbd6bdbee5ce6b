import fs from 'node:fs';
import { randomBytes } from 'node:crypto';

/**
 * X authorization for one desktop: a fresh MIT-MAGIC-COOKIE-1 in an Xauthority file that Xvnc
 * reads (`-auth`) and the desktop's programs name in XAUTHORITY. Without the cookie no client
 * may open the display, whoever can reach its socket.
 */

const COOKIE_NAME = 'MIT-MAGIC-COOKIE-1';
/** the cookie's size, bytes (what xauth generates) */
const COOKIE_BYTES = 16;
/**
 * FamilyWild (0xffff): matches any host and, with an empty display number, any display, so the
 * same file serves the desktop's clients under every name of the display (`:N`, `unix:N`).
 */
const FAMILY_WILD = 0xffff;

function counted(b: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

/** One Xauthority entry (the format libXau reads: big-endian 16-bit lengths before each field). */
export function xauthorityEntry(cookie: Buffer): Buffer {
  const family = Buffer.alloc(2);
  family.writeUInt16BE(FAMILY_WILD);
  return Buffer.concat([
    family,
    counted(Buffer.alloc(0)), // address
    counted(Buffer.alloc(0)), // display number
    counted(Buffer.from(COOKIE_NAME, 'latin1')),
    counted(cookie),
  ]);
}

/**
 * Writes a new cookie to `file` (0600, owned by `owner` when given) and returns it. The file
 * is replaced, never appended to: an old cookie must not keep working.
 */
export function writeXauthority(file: string, owner?: { uid: number; gid: number }): Buffer {
  const cookie = randomBytes(COOKIE_BYTES);
  fs.rmSync(file, { force: true });
  fs.writeFileSync(file, xauthorityEntry(cookie), { mode: 0o600, flag: 'wx' });
  if (owner) fs.chownSync(file, owner.uid, owner.gid);
  return cookie;
}
