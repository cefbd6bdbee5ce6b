/** Display formatting of times and rates. */

const MINUTE = 60_000; // ms
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

export function parseTime(iso: string | null | undefined): Date | null {
  if (!iso) return null;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** "just now", "5 min ago", "3 h ago", "2 days ago" */
export function ago(iso: string | null | undefined, now = Date.now()): string {
  const d = parseTime(iso);
  if (!d) return '—';
  const ms = Math.max(0, now - d.getTime());
  if (ms < MINUTE) return 'just now';
  if (ms < HOUR) return `${Math.floor(ms / MINUTE)} min ago`;
  if (ms < DAY) return `${Math.floor(ms / HOUR)} h ago`;
  const days = Math.floor(ms / DAY);
  return days === 1 ? '1 day ago' : `${days} days ago`;
}

/** Local date and time, short: always both ("30 Nov 2026, 18:05"). */
export function when(iso: string | null | undefined): string {
  const d = parseTime(iso);
  if (!d) return '—';
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/** "1 desktop", "2 desktops" (English plurals with an s) */
export function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** "since 10:32 (5 min ago)" */
export function since(iso: string | null | undefined): string {
  if (!parseTime(iso)) return '';
  return `since ${when(iso)} (${ago(iso)})`;
}

export function kbps(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  if (value >= 10_000) return `${(value / 1000).toFixed(1)} Mbit/s`;
  return `${Math.round(value)} kbit/s`;
}

export function num(value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  return value.toFixed(digits);
}

export function seconds(value: number): string {
  if (value === 0) return 'never';
  if (value % 3600 === 0) return `${value / 3600} h`;
  if (value % 60 === 0) return `${value / 60} min`;
  return `${value} s`;
}

export const providerLabel: Record<string, string> = {
  xvnc: 'Linux desktop (Xvnc)',
  qemu: 'Virtual machine (QEMU)',
  vnc: 'VNC host',
};
