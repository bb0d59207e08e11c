/**
 * The logging capability: guest messages on stderr, tagged with the
 * connection and the run id, filtered by level.
 */
import { writeSync } from 'node:fs';

export const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];
/** Longest guest message kept, so a guest cannot flood the host's logs. */
const MAX_MESSAGE = 4096;

/**
 * A logger writing synchronously to fd 2: the main thread spends most of a
 * run blocked in `Atomics.wait`, so asynchronous stream writes could lag or
 * be lost on exit.
 *
 * @param {{ level: string, connection: string, runId: string }} options
 *   `level` is the lowest level shown, or `off`.
 */
export function createLogger({ level, connection, runId }) {
  const threshold = level === 'off' ? LEVELS.length : LEVELS.indexOf(level);
  if (threshold < 0) throw new Error(`unknown log level \`${level}\` (one of ${LEVELS.join(', ')}, off)`);
  const write = (lvl, target, message) => {
    if (LEVELS.indexOf(lvl) < threshold) return;
    const text = [...message].length > MAX_MESSAGE ? `${[...message].slice(0, MAX_MESSAGE).join('')}…` : message;
    const line = `${new Date().toISOString()} ${lvl.toUpperCase().padStart(5)} ${target} connection=${connection} run=${runId}: ${text}\n`;
    writeSync(2, line);
  };
  return {
    /** The host's own messages (e.g. proxy retries). */
    host: (lvl, message) => write(lvl, 'host', message),
    /** The WIT `logging` interface. It never fails. */
    wit: { log: (lvl, message) => write(lvl, 'guest', String(message)) },
  };
}
