/**
 * The records capability: saves and soft-deletes the records a component
 * produces, with the change tracking of the Rust host's store (and of
 * Nango's records cache): a new id is added; a changed payload, or a deleted
 * id saved again, is updated; an identical payload is unchanged; deleting a
 * live id marks it deleted and keeps its payload; unknown or already deleted
 * ids do nothing.
 */
import { WitError } from './errors.mjs';

/**
 * JSON text with object keys sorted recursively and no whitespace, so key
 * order and formatting never count as a change.
 *
 * @param {unknown} value a parsed JSON value
 */
export function canonicalJson(value) {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * Parses and checks a batch before anything is stored: a refused batch
 * changes nothing. Messages match the Rust host's.
 *
 * @param {string[]} texts
 * @returns {{ id: string, record: object }[]}
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
    return { id, record };
  });
}

/** @param {string[]} ids */
export function validateIds(ids) {
  const seen = new Set();
  ids.forEach((id, index) => {
    if (id === '') throw new WitError('invalid-id', `record ${index} has no string \`id\``);
    if (seen.has(id)) throw new WitError('duplicate-id', `id \`${id}\` appears more than once in the batch`);
    seen.add(id);
  });
}

const zero = () => ({ added: 0, updated: 0, unchanged: 0, deleted: 0 });

/**
 * @param {import('./state.mjs').StateFile} file
 * @param {string[]} declaredModels the models the component's `describe` declared
 */
export function createRecords(file, declaredModels) {
  /** What the whole run changed, for the summary line. */
  const totals = zero();

  const checkModel = (model) => {
    if (!declaredModels.includes(model)) {
      throw new WitError(
        'undeclared-model',
        `model \`${model}\` was not declared by the component (declared: ${declaredModels.join(', ')})`,
      );
    }
  };

  // Builds the next state on a copy of the model's map and commits it in one
  // write: either the whole batch lands, or (on a store failure) none of it.
  const apply = (model, change) => {
    // A null prototype, so an id like `__proto__` is just another key.
    const byId = Object.assign(Object.create(null), file.state.records[model]);
    const outcome = zero();
    change(byId, outcome);
    if (outcome.added + outcome.updated + outcome.deleted > 0) {
      try {
        file.commit({ ...file.state, records: { ...file.state.records, [model]: byId } });
      } catch (error) {
        throw new WitError('store', `${error.message}; the batch was rolled back`);
      }
    }
    for (const key of Object.keys(totals)) totals[key] += outcome[key];
    return outcome;
  };

  return {
    totals,
    wit: {
      batchSave(model, texts) {
        checkModel(model);
        const batch = validateBatch(texts);
        return apply(model, (byId, outcome) => {
          for (const { id, record } of batch) {
            const existing = Object.hasOwn(byId, id) ? byId[id] : undefined;
            if (existing === undefined) {
              outcome.added += 1;
            } else if (existing.deleted || canonicalJson(existing.record) !== canonicalJson(record)) {
              outcome.updated += 1;
            } else {
              outcome.unchanged += 1;
              continue;
            }
            byId[id] = { record, deleted: false };
          }
        });
      },
      batchDelete(model, ids) {
        checkModel(model);
        validateIds(ids);
        return apply(model, (byId, outcome) => {
          for (const id of ids) {
            const existing = Object.hasOwn(byId, id) ? byId[id] : undefined;
            if (existing && !existing.deleted) {
              byId[id] = { record: existing.record, deleted: true };
              outcome.deleted += 1;
            }
          }
        });
      },
    },
  };
}
