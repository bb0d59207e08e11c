/**
 * The state file shared by the records and checkpoint capabilities:
 *
 *   {"checkpoint": <string|null>,
 *    "records": {"<Model>": {"<id>": {"record": {...}, "deleted": <bool>}}}}
 *
 * Every change is written with write-temp-then-rename, so after a crash the
 * file holds either the previous state or the new one, never a mix (what the
 * WIT asks of `checkpoint.save`, and of a batch's "one transaction").
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** An empty state, as on a connection's first run. */
export const emptyState = () => ({ checkpoint: null, records: {} });

/**
 * Reads the state file; a missing file is an empty state. Anything else that
 * is not the expected shape is refused, rather than silently overwritten.
 *
 * @param {string} path
 */
export function loadState(path) {
  let text;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if (error.code === 'ENOENT') return emptyState();
    throw new Error(`cannot read state file ${path}: ${error.message}`);
  }
  let state;
  try {
    state = JSON.parse(text);
  } catch (error) {
    throw new Error(`state file ${path} is not valid JSON: ${error.message}`);
  }
  const problem = shapeProblem(state);
  if (problem) throw new Error(`state file ${path} is corrupt: ${problem}`);
  return state;
}

function shapeProblem(state) {
  const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObject(state)) return 'not a JSON object';
  if (state.checkpoint !== null && typeof state.checkpoint !== 'string') return '`checkpoint` is neither a string nor null';
  if (!isObject(state.records)) return '`records` is not an object';
  for (const [model, byId] of Object.entries(state.records)) {
    if (!isObject(byId)) return `records of \`${model}\` are not an object`;
    for (const [id, entry] of Object.entries(byId)) {
      if (!isObject(entry) || !isObject(entry.record) || typeof entry.deleted !== 'boolean') {
        return `record \`${id}\` of \`${model}\` is not {"record": {...}, "deleted": bool}`;
      }
    }
  }
  return null;
}

/**
 * Replaces the file at `path` with `state`, atomically and durably: the temp
 * file is fsynced before the rename, and lives in the same directory so the
 * rename cannot cross file systems.
 *
 * @param {string} path
 * @param {object} state
 */
export function saveState(path, state) {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    const fd = openSync(temp, 'w', 0o600);
    try {
      writeSync(fd, JSON.stringify(state));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
  } catch (error) {
    rmSync(temp, { force: true });
    throw new Error(`cannot write state file ${path}: ${error.message}`);
  }
}

/**
 * The state of one run: held in memory, written through on every change.
 * `commit` only adopts the new state once it is on disk, so a failed write
 * leaves memory and file both at the previous state.
 */
export class StateFile {
  /** @param {string} path */
  constructor(path) {
    this.path = path;
    this.state = loadState(path);
  }

  /** @param {object} next the whole new state */
  commit(next) {
    saveState(this.path, next);
    this.state = next;
  }
}
