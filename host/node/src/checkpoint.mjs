/**
 * The checkpoint capability: one opaque string per connection (one state file
 * is one connection), replaced atomically by `StateFile.commit`.
 */
import { WitError } from './errors.mjs';

/** @param {import('./state.mjs').StateFile} file */
export function createCheckpoint(file) {
  return {
    // `result<option<string>, error>`: the ok value is returned, none is `undefined`.
    get: () => file.state.checkpoint ?? undefined,
    save: (value) => {
      try {
        file.commit({ ...file.state, checkpoint: value });
      } catch (error) {
        throw new WitError('store', error.message);
      }
    },
  };
}
