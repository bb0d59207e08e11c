/**
 * The checkpoint capability: one opaque string per connection and sync (the
 * component's `describe().name`), in the store's `checkpoints` table, replaced
 * atomically.
 */
import { WitError } from './errors.mjs';
import { StoreError } from './store.mjs';

/**
 * @param {import('./store.mjs').SqliteStore} store
 * @param {{ connection: string, sync: string }} context `sync` filled in from `describe` before `run`
 */
export function createCheckpoint(store, context) {
  const guarded = (call) => {
    try {
      return call();
    } catch (error) {
      if (error instanceof StoreError) throw new WitError('store', error.message);
      throw error;
    }
  };
  return {
    // `result<option<string>, error>`: the ok value is returned, none is `undefined`.
    get: () => guarded(() => store.checkpoint(context.connection, context.sync)),
    save: (value) => guarded(() => store.saveCheckpoint(context.connection, context.sync, value)),
  };
}
