/**
 * The records and listing capabilities: the WIT adapters over the SQLite
 * store (`store.mjs`). They check what the guest hands over (declared model,
 * JSON objects with a string `id`, no duplicates) before anything is stored,
 * so a refused call changes nothing, and map store failures onto the WIT
 * error cases. Messages match the Rust host's.
 */
import { WitError } from './errors.mjs';
import { NoListingError, recordHash, StoreError } from './store.mjs';

/**
 * Parses and checks a batch, and hashes each record's canonical JSON.
 *
 * @param {string[]} texts
 * @returns {{ id: string, json: string, hash: Buffer }[]}
 */
export function validateBatch(texts) {
  const seen = new Set();
  return texts.map((text, index) => {
    let record;
    try {
      record = JSON.parse(text);
    } catch (error) {
      throw new WitError('invalid-json', `record ${index} is not valid JSON: ${error.message}`);
    }
    if (record === null || typeof record !== 'object' || Array.isArray(record)) {
      throw new WitError('invalid-json', `record ${index} is not a JSON object`);
    }
    const { id } = record;
    if (typeof id !== 'string' || id === '') {
      throw new WitError('invalid-id', `record ${index} has no string \`id\``);
    }
    if (seen.has(id)) throw new WitError('duplicate-id', `id \`${id}\` appears more than once in the batch`);
    seen.add(id);
    return { id, json: text.trim(), hash: recordHash(record) };
  });
}

/**
 * Checks the ids of a delete batch or a listing's `keep`: none empty, none twice.
 *
 * @param {string[]} ids
 */
export function validateIds(ids) {
  const seen = new Set();
  ids.forEach((id, index) => {
    if (id === '') throw new WitError('invalid-id', `record ${index} has no string \`id\``);
    if (seen.has(id)) throw new WitError('duplicate-id', `id \`${id}\` appears more than once in the batch`);
    seen.add(id);
  });
}

/** Runs a store call, mapping its failures onto the WIT error cases. */
function guarded(call) {
  try {
    return call();
  } catch (error) {
    if (error instanceof NoListingError) throw new WitError('no-listing', error.message);
    if (error instanceof StoreError) throw new WitError('store', error.message);
    throw error;
  }
}

/**
 * @param {import('./store.mjs').SqliteStore} store
 * @param {{ connection: string, models: string[] }} context `models` are those the
 *   component's `describe` declared (filled in before `run`)
 */
export function createRecords(store, context) {
  /** What the whole run changed, for the summary line (listing deletions included). */
  const totals = { added: 0, updated: 0, unchanged: 0, deleted: 0 };
  const count = (outcome) => {
    for (const key of Object.keys(totals)) totals[key] += outcome[key];
    return outcome;
  };

  const checkModel = (model) => {
    if (!context.models.includes(model)) {
      throw new WitError(
        'undeclared-model',
        `model \`${model}\` was not declared by the component (declared: ${context.models.join(', ')})`,
      );
    }
  };

  const records = {
    batchSave(model, texts) {
      checkModel(model);
      const batch = validateBatch(texts);
      return count(guarded(() => store.save(context.connection, model, batch)));
    },
    batchDelete(model, ids) {
      checkModel(model);
      validateIds(ids);
      return count(guarded(() => store.delete(context.connection, model, ids)));
    },
  };

  // u64 listing ids cross the boundary as bigints; `option` none is `undefined`.
  const listing = {
    begin(model) {
      checkModel(model);
      return guarded(() => store.beginListing(context.connection, model));
    },
    current(model) {
      checkModel(model);
      return guarded(() => store.currentListing(context.connection, model));
    },
    keep(model, id, ids) {
      checkModel(model);
      validateIds(ids);
      guarded(() => store.keep(context.connection, model, id, ids));
    },
    end(model, id) {
      checkModel(model);
      return count(guarded(() => store.endListing(context.connection, model, id)));
    },
    abandon(model, id) {
      checkModel(model);
      guarded(() => store.abandonListing(context.connection, model, id));
    },
  };

  return { totals, records, listing };
}
