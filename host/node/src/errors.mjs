/**
 * Errors that cross the WIT boundary.
 *
 * jco lowers a thrown value with an own `payload` property into the `err`
 * case of a `result<_, E>` import; any other `Error` traps the component. So
 * every refusal an import means to *return* is a `WitError`, and a plain
 * `Error` is reserved for host bugs, which should stop the run.
 */
export class WitError extends Error {
  /**
   * @param {string} tag the variant case, e.g. `invalid-path`
   * @param {unknown} val its payload
   */
  constructor(tag, val) {
    super(`${tag}: ${typeof val === 'string' ? val : JSON.stringify(val)}`);
    this.name = 'WitError';
    this.payload = { tag, val };
  }
}
