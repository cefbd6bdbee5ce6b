import fs from 'node:fs';
import path from 'node:path';

const SYSTEM_OPENBOX_RC = '/etc/xdg/openbox/rc.xml';

/**
 * Openbox's focus-stealing prevention may leave a new window unfocused when nothing has
 * had user input yet, which is exactly the case for the first terminal of a fresh desktop.
 * A per-application rule asks it to always focus new windows.
 */
const FOCUS_RULE = '  <application class="*"><focus>yes</focus></application>\n';

/**
 * Prepare a new desktop home: an Openbox config (the system one plus the focus rule), unless
 * the user already has one (dedicated desktops keep their home across log-offs).
 */
export function prepareHome(home: string, owner?: { uid: number; gid: number }): void {
  const dir = path.join(home, '.config', 'openbox');
  const rc = path.join(dir, 'rc.xml');
  if (fs.existsSync(rc)) return;
  let xml: string;
  try {
    xml = fs.readFileSync(SYSTEM_OPENBOX_RC, 'utf8');
  } catch {
    return; // no Openbox here: the pool runs some other session
  }
  xml = xml.includes('</applications>')
    ? xml.replace('</applications>', `${FOCUS_RULE}</applications>`)
    : xml.replace(
        '</openbox_config>',
        `<applications>\n${FOCUS_RULE}</applications>\n</openbox_config>`,
      );
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  fs.writeFileSync(rc, xml);
  if (owner) {
    for (const p of [path.join(home, '.config'), dir, rc]) fs.chownSync(p, owner.uid, owner.gid);
  }
}
