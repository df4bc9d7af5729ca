/**
 * RFC 3339 timestamps: strict parsing (any offset), truncation to the millisecond, and the
 * one output form the API uses (`YYYY-MM-DDTHH:mm:ss.sssZ`, UTC). Times are carried as integer
 * milliseconds since the Unix epoch everywhere inside the process and in every store.
 */

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/** Smallest and largest instants whose UTC form still has a four-digit year. */
export const MAX_TIME_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
const MIN_MS = (() => {
  const d = new Date(0);
  d.setUTCFullYear(0, 0, 1);
  d.setUTCHours(0, 0, 0, 0);
  return d.getTime();
})();

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/**
 * Parses an RFC 3339 date-time into epoch milliseconds, truncating sub-millisecond digits.
 * Returns `null` for anything that is not a valid RFC 3339 date-time (wrong shape, day 31 of
 * a 30-day month, offset out of range) or whose UTC year falls outside 0000-9999.
 */
export function parseTime(input: string): number | null {
  const m = RFC3339.exec(input);
  if (!m) return null;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const hour = Number(m[4]);
  const minute = Number(m[5]);
  const second = Number(m[6]);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return null;
  if (hour > 23 || minute > 59 || second > 60) return null;
  const ms = m[7] ? Number(m[7].slice(0, 3).padEnd(3, "0")) : 0;
  let offsetMinutes = 0;
  if (!m[8]) {
    const oh = Number(m[10]);
    const om = Number(m[11]);
    if (oh > 23 || om > 59) return null;
    offsetMinutes = (m[9] === "-" ? -1 : 1) * (oh * 60 + om);
  }
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute, second, ms);
  const t = d.getTime() - offsetMinutes * 60_000;
  if (!Number.isFinite(t) || t < MIN_MS || t > MAX_TIME_MS) return null;
  return t;
}

/** Formats epoch milliseconds as `YYYY-MM-DDTHH:mm:ss.sssZ` (UTC). */
export function formatTime(ms: number): string {
  return new Date(ms).toISOString();
}

/** A clock, injected wherever "now" matters so tests can control it. */
export interface Clock {
  /** Current time in epoch milliseconds. */
  now(): number;
}

/** The wall clock. */
export const systemClock: Clock = { now: () => Date.now() };
