/**
 * Turns a component (.wasm) into something Node can instantiate: jco
 * transpiles it to core modules plus JS glue, cached by the component's
 * SHA-256 so reruns skip the transpile (and do not even load jco).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * Bumped when the transpile options or the WIT contract the host implements
 * change, so old cache entries are not reused.
 */
const CACHE_LAYOUT = 'jco-1.35.0-sync-instantiation-wit-0.2.0-v2';

export const defaultCacheDir = () => join(process.env.XDG_CACHE_HOME || tmpdir(), 'portable-sync-node');

/** @param {Uint8Array} bytes */
export const sha256Hex = (bytes) => createHash('sha256').update(bytes).digest('hex');

/**
 * Reads, hashes and (if not cached yet) transpiles the component.
 *
 * @param {string} wasmPath
 * @param {string} cacheDir
 * @returns {Promise<{ sha256: string, dir: string, cached: boolean }>}
 */
export async function prepareComponent(wasmPath, cacheDir) {
  let bytes;
  try {
    bytes = readFileSync(wasmPath);
  } catch (error) {
    throw new Error(`cannot read component ${wasmPath}: ${error.message}`);
  }
  const sha256 = sha256Hex(bytes);
  const dir = join(cacheDir, CACHE_LAYOUT, sha256);
  if (existsSync(join(dir, 'component.js'))) return { sha256, dir, cached: true };

  // jco is only needed on a cache miss; loading it costs a few hundred ms.
  const { transpile } = await import('@bytecodealliance/jco');
  let files;
  try {
    ({ files } = await transpile(bytes, {
      name: 'component',
      // `instantiate(getCoreModule, imports)`: a fresh instance per run, and
      // imports passed as objects rather than mapped to module paths.
      instantiation: 'sync',
      noTypescript: true,
      quiet: true,
    }));
  } catch (error) {
    throw new Error(`cannot transpile component ${wasmPath}: ${error.message ?? error}`);
  }
  // Written to a sibling temp dir and renamed, so a concurrent run never
  // sees a half-written entry.
  mkdirSync(dirname(dir), { recursive: true });
  const staging = mkdtempSync(`${dir}.tmp-`);
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(dirname(join(staging, name)), { recursive: true });
    writeFileSync(join(staging, name), content);
  }
  try {
    renameSync(staging, dir);
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    // Another run won the race; its entry is as good as ours.
    if (!existsSync(join(dir, 'component.js'))) throw error;
  }
  return { sha256, dir, cached: false };
}

/**
 * Instantiates a prepared component with the given imports.
 *
 * @param {string} dir from `prepareComponent`
 * @param {Record<string, object>} imports by unversioned interface name
 */
export async function instantiateComponent(dir, imports) {
  const { instantiate } = await import(pathToFileURL(join(dir, 'component.js')).href);
  const compile = (name) => new WebAssembly.Module(readFileSync(join(dir, name)));
  return instantiate(compile, imports);
}
