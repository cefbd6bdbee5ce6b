/**
 * Published applications (issue 13): a pool whose sessions run one program instead of a
 * desktop. The session is Openbox with a configuration of its own (no key bindings, no root
 * menu, no window decorations, every normal window maximised), started with the program; when
 * the program exits Openbox is told to exit too, so the session's process (Openbox) ends and
 * `appExited` says so. The broker's tick then ends the session with that reason.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { PublishedApp } from '@vdi/shared';
import { processAlive } from '../processes.js';
import type { XvncHandle } from './handle.js';

/** the Openbox configuration of an application session, in the desktop's home */
export const APP_RC = '.config/openbox/vdi-app.xml';

const RC_XML = `<?xml version="1.0" encoding="UTF-8"?>
<!-- written by the VDI server for a published application: one maximised program -->
<openbox_config xmlns="http://openbox.org/3.4/rc">
  <focus><focusNew>yes</focusNew><followMouse>no</followMouse></focus>
  <placement><policy>Smart</policy></placement>
  <desktops><number>1</number></desktops>
  <margins><top>0</top><bottom>0</bottom><left>0</left><right>0</right></margins>
  <keyboard></keyboard>
  <mouse></mouse>
  <menu></menu>
  <applications>
    <application type="normal" class="*">
      <decor>no</decor>
      <maximized>yes</maximized>
      <focus>yes</focus>
    </application>
  </applications>
</openbox_config>
`;

/** A string as one single-quoted sh (and GLib shell-parse) word. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * The session command of an application pool: Openbox with the application configuration,
 * running the program once it manages windows and exiting when the program does.
 */
export function appSessionCommand(app: PublishedApp): string {
  const startup = `/bin/sh -c ${shellQuote(`${app.command}; exec openbox --exit`)}`;
  return `exec openbox --config-file "$HOME/${APP_RC}" --startup ${shellQuote(startup)}`;
}

/** Writes the application session's Openbox configuration into a new desktop's home. */
export function prepareAppHome(home: string, owner?: { uid: number; gid: number }): void {
  const rc = path.join(home, APP_RC);
  const dirs = [path.join(home, '.config'), path.dirname(rc)];
  for (const d of dirs) {
    if (!fs.existsSync(d)) {
      fs.mkdirSync(d, { mode: 0o755 });
      if (owner) fs.chownSync(d, owner.uid, owner.gid);
    }
  }
  // the home is new or the desktop's own: replace, never write through, what is there
  fs.rmSync(rc, { force: true });
  fs.writeFileSync(rc, RC_XML, { flag: 'wx', mode: 0o644 });
  if (owner) fs.chownSync(rc, owner.uid, owner.gid);
}

/** Why an application desktop's session is over (its program exited), or undefined. */
export async function appExitReason(h: XvncHandle): Promise<string | undefined> {
  if (!h.app) return undefined;
  if (await processAlive({ pid: h.sessionPid, startTime: h.sessionStart })) return undefined;
  return `${h.app} exited`;
}
