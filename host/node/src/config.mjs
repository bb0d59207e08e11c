/**
 * The connection-config capability: read-only settings of a connection.
 * Credentials never live here; they stay with the proxy.
 *
 * @param {Record<string, string>} values e.g. `{ realmId: '123' }`
 */
export function createConfig(values) {
  const map = new Map(Object.entries(values));
  return {
    // `option<string>` lowers from `undefined` for none.
    get: (key) => map.get(key),
  };
}
