// The operator's dashboard of sync-host (docs/ui.md): a page of plain
// JavaScript over the server's own API, with no framework, no build step and
// nothing fetched from elsewhere. Every figure comes from an API call made
// with the key the page asks for; the key is kept in this tab's
// sessionStorage only. Output is always built as DOM text (textContent,
// createElement), never parsed as HTML, so a customer named `<script>` is
// shown as that text.
'use strict';

(() => {
  const KEY_STORAGE = 'sync-host-api-key';
  // How often a page asks again: a connection's page, live; the list, calmer.
  const CONNECTION_POLL_MS = 2000;
  const LIST_POLL_MS = 5000;
  const RUNS_SHOWN = 50;
  const main = document.getElementById('main');
  const forgetKey = document.getElementById('forget-key');

  // Bumped at each navigation: work of an older page drops its results.
  let generation = 0;
  let pollTimer = null;

  // ---------------------------------------------------------------- DOM

  /** An element with attributes (`on…` are listeners) and children (text is text). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttributes(node, attrs);
    append(node, children);
    return node;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttributes(node, attrs);
    append(node, children);
    return node;
  }

  function setAttributes(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'class') node.setAttribute('class', value);
      else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? '' : String(value));
    }
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  function replace(node, ...children) {
    node.replaceChildren();
    append(node, children);
  }

  const enc = encodeURIComponent;

  // ---------------------------------------------------------------- the API

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function storedKey() {
    return sessionStorage.getItem(KEY_STORAGE);
  }

  /** One call of the server's API, with the key; JSON in and out. */
  async function api(path, { method = 'GET', body, headers = {} } = {}) {
    const sent = { Accept: 'application/json', ...headers };
    const key = storedKey();
    if (key) sent.Authorization = `Bearer ${key}`;
    if (body !== undefined) sent['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: sent,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (error) {
      throw new ApiError(0, 'network', `the server did not answer (${error.message})`);
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(response.status, error.code || String(response.status), error.message || text || response.statusText);
    }
    return data;
  }

  /** Live records per model of each connection, by connection id (from `GET /sync/status`). */
  async function recordCounts(connections) {
    const counts = new Map();
    const integrations = [...new Set(connections.map((c) => c.provider_config_key))];
    await Promise.all(integrations.map(async (integration) => {
      const status = await api(`/sync/status?syncs=*&provider_config_key=${enc(integration)}`);
      for (const sync of status.syncs || []) counts.set(sync.connection_id, sync.recordCount || {});
    }));
    return counts;
  }

  // ---------------------------------------------------------------- formatting

  function utc(ts) {
    if (!ts) return '—';
    const d = new Date(ts);
    return Number.isNaN(d.getTime()) ? ts : `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
  }

  function relative(ts) {
    if (!ts) return '—';
    const seconds = Math.round((new Date(ts).getTime() - Date.now()) / 1000);
    const size = Math.abs(seconds);
    let text;
    if (size < 5) return 'now';
    if (size < 90) text = `${size} s`;
    else if (size < 90 * 60) text = `${Math.round(size / 60)} min`;
    else if (size < 36 * 3600) text = `${Math.round(size / 3600)} h`;
    else text = `${Math.round(size / 86400)} d`;
    return seconds < 0 ? `${text} ago` : `in ${text}`;
  }

  function time(ts) {
    return el('time', { datetime: ts || undefined, title: utc(ts) }, relative(ts));
  }

  function duration(run) {
    if (!run.ended_at) return null;
    return Math.max(0, new Date(run.ended_at).getTime() - new Date(run.started_at).getTime());
  }

  function formatMs(ms) {
    if (ms === null || ms === undefined) return '—';
    if (ms < 1000) return `${ms} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
  }

  const STATUS_TEXT = {
    idle: 'idle', running: 'running', paused: 'paused', failing: 'failing', needs_reauth: 'needs re-authorisation',
  };

  function badge(kind, text) {
    return el('span', { class: `badge badge-${kind}` }, text);
  }

  function statusBadge(status) {
    return badge(status, STATUS_TEXT[status] || status);
  }

  function outcomeBadge(run) {
    if (!run) return badge('none', 'never ran');
    if (!run.outcome) return badge('running', 'running');
    return badge(run.outcome, run.outcome);
  }

  function countsText(summary) {
    if (!summary) return '';
    return `${summary.added} added · ${summary.updated} updated · ${summary.deleted} deleted`;
  }

  function recordsText(counts) {
    if (!counts) return '—';
    const entries = Object.entries(counts);
    if (entries.length === 1) return String(entries[0][1]);
    return entries.map(([model, n]) => `${model}: ${n}`).join(', ') || '0';
  }

  // ---------------------------------------------------------------- pages

  function parseHash() {
    const hash = location.hash.replace(/^#\/?/, '');
    const [path, query] = hash.split('?');
    return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query || '') };
  }

  function go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  }

  function poll(every, work) {
    const mine = generation;
    const tick = async () => {
      if (mine !== generation) return;
      if (!document.hidden) {
        try {
          await work();
          setLiveError(null);
        } catch (error) {
          if (mine !== generation) return;
          if (error instanceof ApiError && error.status === 401) return keyPage(true);
          setLiveError(error);
        }
      }
      if (mine === generation) pollTimer = setTimeout(tick, every);
    };
    pollTimer = setTimeout(tick, every);
  }

  function setLiveError(error) {
    const line = document.getElementById('live-error');
    if (!line) return;
    line.hidden = !error;
    replace(line, error ? `Refreshing failed: ${error.message}` : '');
  }

  function liveErrorLine() {
    return el('p', { id: 'live-error', class: 'error', role: 'status', hidden: true });
  }

  async function route() {
    generation += 1;
    clearTimeout(pollTimer);
    const mine = generation;
    const { parts, params } = parseHash();
    const page = parts[0] === 'records' ? 'records' : 'connections';
    for (const link of document.querySelectorAll('[data-nav]')) {
      if (link.dataset.nav === page) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    forgetKey.hidden = !storedKey();
    try {
      if (parts[0] === 'connections' && parts[1]) await connectionPage(parts[1], mine);
      else if (parts[0] === 'records') await recordsPage(parts[1] || null, params, mine);
      else await connectionsPage(params, mine);
    } catch (error) {
      if (mine !== generation) return;
      if (error instanceof ApiError && error.status === 401) return keyPage(Boolean(storedKey()));
      replace(main, el('h1', {}, 'Something went wrong'), el('p', { class: 'error', role: 'alert' }, error.message));
    }
  }

  /** Asks for the API key; with `refused`, says the one given was refused. Nothing else stays on the page. */
  function keyPage(refused) {
    generation += 1;
    clearTimeout(pollTimer);
    const hadKey = Boolean(storedKey());
    sessionStorage.removeItem(KEY_STORAGE);
    forgetKey.hidden = true;
    const input = el('input', { id: 'api-key', name: 'api-key', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
    const form = el('form', { class: 'key-form', onsubmit: (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY_STORAGE, input.value.trim());
      route();
    } },
    el('label', { for: 'api-key' }, 'API key'),
    input,
    el('button', { type: 'submit' }, 'Continue'));
    replace(main,
      el('h1', {}, 'This server needs its API key'),
      refused && hadKey
        ? el('p', { class: 'error', role: 'alert', id: 'key-refused' }, 'The server refused that key (401 unauthorized). Nothing is shown without the right one.')
        : null,
      el('p', {}, 'Give the key the server was started with (', el('code', {}, 'serve --api-key'), ' or ',
        el('code', {}, 'SYNC_HOST_API_KEY'), '). It is kept in this tab only (sessionStorage) and sent as ',
        el('code', {}, 'Authorization: Bearer'), ' with each request.'),
      form);
    input.focus();
  }

  // ---- connections

  async function connectionsPage(params, mine) {
    const filter = params.get('status') || '';
    const list = await api('/connections');
    let counts = await recordCounts(list.connections).catch(() => new Map());
    if (mine !== generation) return;

    const select = el('select', { id: 'status-filter', onchange: () => go(select.value ? `#/?status=${enc(select.value)}` : '#/') });
    const summary = el('p', { class: 'muted', id: 'connections-summary', role: 'status' });
    const table = el('table', { class: 'data', id: 'connections' },
      el('caption', { class: 'sr-only' }, 'Connections'),
      el('thead', {}, el('tr', {}, ['Connection', 'Integration', 'Status', 'Last run', 'Next run', 'Every', 'Records']
        .map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody'));
    replace(main,
      el('h1', {}, 'Connections'),
      el('div', { class: 'toolbar' }, el('label', { for: 'status-filter' }, 'Status'), select, summary),
      liveErrorLine(),
      el('div', { class: 'scroll' }, table));

    let lastRuns = '';
    const render = (connections) => {
      const byStatus = {};
      for (const c of connections) byStatus[c.status] = (byStatus[c.status] || 0) + 1;
      replace(select, el('option', { value: '' }, `All (${connections.length})`),
        Object.keys(STATUS_TEXT).map((s) => el('option', { value: s, selected: s === filter }, `${STATUS_TEXT[s]} (${byStatus[s] || 0})`)));
      const shown = connections.filter((c) => !filter || c.status === filter);
      replace(summary, `${shown.length} of ${connections.length} connection${connections.length === 1 ? '' : 's'} shown`);
      replace(table.tBodies[0], shown.length ? shown.map((c) => connectionRow(c, counts.get(c.id)))
        : el('tr', {}, el('td', { colspan: 7, class: 'muted' }, filter ? `No connection is ${STATUS_TEXT[filter] || filter}.` : 'No connection is stored yet (sync-host connections add).')));
    };
    render(list.connections);
    lastRuns = list.connections.map((c) => `${c.id}:${c.last_run && c.last_run.id}`).join();

    poll(LIST_POLL_MS, async () => {
      const fresh = await api('/connections');
      if (mine !== generation) return;
      const runs = fresh.connections.map((c) => `${c.id}:${c.last_run && c.last_run.id}`).join();
      if (runs !== lastRuns) {
        counts = await recordCounts(fresh.connections).catch(() => counts);
        lastRuns = runs;
      }
      if (mine === generation) render(fresh.connections);
    });
  }

  function connectionRow(c, counts) {
    const run = c.last_run;
    return el('tr', { 'data-connection': c.id },
      el('th', { scope: 'row' }, el('a', { href: `#/connections/${enc(c.id)}` }, c.id)),
      el('td', {}, c.provider_config_key),
      el('td', { class: 'status-cell' }, statusBadge(c.status), c.status_message ? el('div', { class: 'reason' }, c.status_message) : null),
      el('td', {}, run ? [time(run.ended_at || run.started_at), ' ', outcomeBadge(run), el('div', { class: 'counts' }, countsText(run.summary))] : outcomeBadge(null)),
      el('td', {}, c.next_run_at ? time(c.next_run_at) : '—'),
      el('td', {}, c.every),
      el('td', { class: 'num records-stored' }, recordsText(counts)));
  }

  // ---- one connection

  async function connectionPage(id, mine) {
    const base = `/connections/${enc(id)}`;
    const load = () => Promise.all([api(base), api(`${base}/runs?limit=${RUNS_SHOWN}`), api(`${base}/deliveries?limit=20`)]);
    let [connection, runs, deliveries] = await load();
    let counts = (await recordCounts([connection]).catch(() => new Map())).get(id);
    if (mine !== generation) return;

    const title = el('h1', {}, 'Connection ', el('span', { class: 'mono' }, id), ' ', el('span', { id: 'status' }));
    const live = el('p', { id: 'live', class: 'live', role: 'status', 'aria-live': 'polite' });
    const facts = el('dl', { class: 'facts', id: 'facts' });
    const message = el('p', { id: 'action-result', role: 'status', 'aria-live': 'polite', class: 'action-result' });
    const chart = el('div', { id: 'chart', class: 'chart' });
    const runsBody = el('tbody');
    const deliveriesBody = el('tbody');
    const olderRuns = [];
    let runsCursor = runs.next_cursor;
    const olderDeliveries = [];
    let deliveriesCursor = deliveries.next_cursor;

    const act = (label, call, options = {}) => el('button', { type: 'button', class: options.danger ? 'danger' : '', id: options.id, onclick: async (event) => {
      if (options.confirm && !window.confirm(options.confirm)) return;
      const button = event.currentTarget;
      button.disabled = true;
      replace(message, `${label}…`);
      message.className = 'action-result';
      try {
        connection = await call();
        replace(message, `${label}: done. ${options.done || ''}`);
        await refresh();
      } catch (error) {
        if (error instanceof ApiError && error.status === 401) return keyPage(true);
        message.className = 'action-result error';
        replace(message, `${label}: refused (${error.status} ${error.code}): ${error.message}`);
      } finally {
        button.disabled = false;
        renderActions();
      }
    } }, label);

    const post = (path, body) => () => api(`${base}${path}`, { method: 'POST', body });
    const runNow = act('Run now', post('/sync', {}), { id: 'run-now', done: 'The run is due now; this page follows it.' });
    const resync = act('Reset and resync', post('/sync', { reset: true }), {
      id: 'reset', confirm: `Forget the checkpoint of ${id} and sync everything again? The records are kept.`,
    });
    const empty = act('Reset and empty records', post('/sync', { reset: true, empty: true }), {
      id: 'reset-empty', danger: true,
      confirm: `Delete every record of ${id} from the store and sync everything again? Clients reading the records will see them disappear until the run ends.`,
    });
    const pause = act('Pause', post('/pause'), { id: 'pause' });
    const resume = act('Resume', post('/resume'), { id: 'resume' });
    const every = el('input', { id: 'every', name: 'every', type: 'text', pattern: '^[0-9]+[smhd]$', size: 6, required: true, value: connection.every, 'aria-describedby': 'every-help' });
    const intervalForm = el('form', { class: 'inline-form', onsubmit: (event) => {
      event.preventDefault();
      setEvery.click();
    } },
    el('label', { for: 'every' }, 'Run every'), every,
    el('span', { id: 'every-help', class: 'muted' }, 'e.g. 30s, 15m, 1h, 2d'));
    const setEvery = act('Set interval', () => api(base, { method: 'PATCH', body: { every: every.value.trim() } }), { id: 'set-every' });
    const defaultEvery = act('Use the component\'s interval', () => api(base, { method: 'PATCH', body: { every: null } }), { id: 'default-every' });
    append(intervalForm, [setEvery, defaultEvery]);

    let shownEvery = connection.every;
    const renderActions = () => {
      const paused = connection.status === 'paused';
      pause.hidden = paused;
      resume.hidden = !paused;
    };

    const runsTable = el('table', { class: 'data', id: 'runs' },
      el('caption', { class: 'sr-only' }, 'Run history, newest first'),
      el('thead', {}, el('tr', {}, ['Started', 'Trigger', 'Outcome', 'Took', 'Added', 'Updated', 'Deleted', 'Unchanged', 'Requests', 'Retries']
        .map((h) => el('th', { scope: 'col' }, h)))),
      runsBody);
    const moreRuns = el('button', { type: 'button', id: 'more-runs', onclick: async () => {
      const page = await api(`${base}/runs?limit=${RUNS_SHOWN}&cursor=${enc(runsCursor)}`);
      olderRuns.push(...page.runs);
      runsCursor = page.next_cursor;
      renderRuns();
    } }, 'Older runs');
    const deliveriesTable = el('table', { class: 'data', id: 'deliveries' },
      el('caption', { class: 'sr-only' }, 'Webhook deliveries, newest first'),
      el('thead', {}, el('tr', {}, ['Created', 'Status', 'Attempts', 'Next attempt / delivered', 'Last error', 'To', 'Body']
        .map((h) => el('th', { scope: 'col' }, h)))),
      deliveriesBody);
    const moreDeliveries = el('button', { type: 'button', id: 'more-deliveries', onclick: async () => {
      const page = await api(`${base}/deliveries?limit=20&cursor=${enc(deliveriesCursor)}`);
      olderDeliveries.push(...page.deliveries);
      deliveriesCursor = page.next_cursor;
      renderDeliveries();
    } }, 'Older deliveries');

    replace(main,
      el('p', { class: 'crumbs' }, el('a', { href: '#/' }, 'Connections'), ' / ', id),
      title, live, liveErrorLine(), facts,
      el('section', { 'aria-labelledby': 'actions-h' },
        el('h2', { id: 'actions-h' }, 'Actions'),
        el('div', { class: 'actions' }, runNow, pause, resume, resync, empty),
        intervalForm, message),
      el('section', { 'aria-labelledby': 'chart-h' }, el('h2', { id: 'chart-h' }, 'Runs over time'), chart),
      el('section', { 'aria-labelledby': 'runs-h' }, el('h2', { id: 'runs-h' }, 'Run history'),
        el('div', { class: 'scroll' }, runsTable), moreRuns),
      el('section', { 'aria-labelledby': 'deliveries-h' }, el('h2', { id: 'deliveries-h' }, 'Webhook deliveries'),
        el('div', { class: 'scroll' }, deliveriesTable), moreDeliveries));

    const allRuns = () => dedupe([...runs.runs, ...olderRuns]);
    const renderRuns = () => {
      const list = allRuns();
      replace(runsBody, list.length ? list.map(runRows) : el('tr', {}, el('td', { colspan: 10, class: 'muted' }, 'No run yet.')));
      moreRuns.hidden = !runsCursor;
      replace(chart, runsChart(list.slice(0, RUNS_SHOWN).reverse()));
    };
    const renderDeliveries = () => {
      const list = dedupe([...deliveries.deliveries, ...olderDeliveries]);
      replace(deliveriesBody, list.length ? list.map(deliveryRow) : el('tr', {}, el('td', { colspan: 7, class: 'muted' }, 'No webhook was sent for this connection.')));
      moreDeliveries.hidden = !deliveriesCursor;
    };
    const render = () => {
      replace(document.getElementById('status'), statusBadge(connection.status));
      const current = runs.runs.find((r) => !r.outcome);
      if (current || connection.status === 'running') {
        live.hidden = false;
        replace(live, el('span', { class: 'pulse', 'aria-hidden': 'true' }), ' A run is in progress',
          current ? [' (', current.trigger, ', started ', time(current.started_at), ')'] : '', '; refreshing every 2 s.');
      } else {
        live.hidden = true;
        replace(live);
      }
      replace(facts,
        fact('Status', [statusBadge(connection.status), connection.status_message ? el('div', { class: 'reason', id: 'status-message' }, connection.status_message) : null]),
        fact('Integration', connection.provider_config_key),
        fact('Provider', connection.provider),
        fact('Realm', connection.realm_id || '—'),
        fact('Base URL', el('span', { class: 'mono' }, connection.base_url)),
        fact('Runs every', connection.every),
        fact('Next run', connection.next_run_at ? [time(connection.next_run_at), ' · ', utc(connection.next_run_at)] : '— (not scheduled)'),
        fact('Last run', connection.last_run ? [time(connection.last_run.ended_at), ' ', outcomeBadge(connection.last_run), ' ', countsText(connection.last_run.summary)] : 'never'),
        fact('Records stored', counts
          ? Object.entries(counts).map(([model, n]) => el('a', { class: 'records-link', href: `#/records/${enc(id)}?model=${enc(model)}` }, `${model}: `, el('span', { class: 'records-count', 'data-model': model }, String(n))))
          : '—'),
        fact('Added', utc(connection.created)));
      // The field follows the server's interval when that changes, not while someone types.
      if (connection.every !== shownEvery) {
        shownEvery = connection.every;
        every.value = connection.every;
      }
      renderActions();
      renderRuns();
      renderDeliveries();
    };
    let lastRun = connection.last_run && connection.last_run.id;
    const refresh = async () => {
      [connection, runs, deliveries] = await load();
      const newest = connection.last_run && connection.last_run.id;
      if (newest !== lastRun) {
        lastRun = newest;
        counts = (await recordCounts([connection]).catch(() => new Map())).get(id) || counts;
      }
      if (mine === generation) render();
    };
    render();
    poll(CONNECTION_POLL_MS, refresh);
  }

  function dedupe(items) {
    const seen = new Set();
    return items.filter((item) => !seen.has(item.id) && seen.add(item.id));
  }

  function fact(name, value) {
    return [el('dt', {}, name), el('dd', {}, value)];
  }

  function runRows(run) {
    const s = run.summary || {};
    const n = (v) => el('td', { class: 'num' }, v === undefined ? '—' : String(v));
    const row = el('tr', { 'data-run': run.id, class: run.outcome === 'failure' ? 'failed' : '' },
      el('td', {}, time(run.started_at), el('div', { class: 'muted small' }, utc(run.started_at))),
      el('td', {}, run.trigger),
      el('td', {}, outcomeBadge(run)),
      el('td', { class: 'num' }, formatMs(duration(run))),
      n(s.added), n(s.updated), n(s.deleted), n(s.unchanged), n(s.requests), n(s.retries));
    if (!run.error) return row;
    return [row, el('tr', { class: 'error-row' }, el('td', { colspan: 10 }, el('pre', { class: 'run-error' }, run.error)))];
  }

  function deliveryRow(d) {
    return el('tr', { 'data-delivery': String(d.id) },
      el('td', {}, time(d.created_at)),
      el('td', {}, badge(d.status, d.status.replace('_', ' '))),
      el('td', { class: 'num' }, String(d.attempts)),
      el('td', {}, d.status === 'pending' ? ['next ', time(d.next_attempt_at)] : d.delivered_at ? ['delivered ', time(d.delivered_at)] : '—'),
      el('td', {}, d.last_error ? el('pre', { class: 'run-error' }, d.last_error) : '—'),
      el('td', { class: 'mono small' }, d.url),
      el('td', {}, el('details', {}, el('summary', {}, 'JSON'), el('pre', { class: 'json' }, JSON.stringify(d.body, null, 2)))));
  }

  /** Records added, updated and deleted per run (stacked, on a log scale) above each run's duration. */
  function runsChart(runs) {
    if (!runs.length) return el('p', { class: 'muted' }, 'No run yet.');
    const width = 960;
    const left = 48;
    const slot = (width - left - 8) / Math.max(runs.length, 10);
    const bar = Math.max(2, slot * 0.7);
    const top = { y: 24, h: 120 };
    const bottom = { y: 190, h: 60 };
    const counts = runs.map((r) => (r.summary ? r.summary.added + r.summary.updated + r.summary.deleted : 0));
    const maxCount = Math.max(1, ...counts);
    const logScale = (n) => (n <= 0 ? 0 : Math.log10(1 + n) / Math.log10(1 + maxCount));
    const times = runs.map((r) => duration(r) || 0);
    const maxTime = Math.max(1, ...times);
    const chart = svg('svg', { viewBox: `0 0 ${width} 270`, role: 'img', 'aria-labelledby': 'chart-title chart-desc', class: 'runs-chart' },
      svg('title', { id: 'chart-title' }, 'Runs over time'),
      svg('desc', { id: 'chart-desc' }, `The last ${runs.length} runs, oldest on the left: records added, updated and deleted (log scale, at most ${maxCount}) and how long each run took (at most ${formatMs(maxTime)}).`),
      svg('text', { x: left, y: 14, class: 'chart-label' }, `records changed per run (log scale, max ${maxCount})`),
      svg('text', { x: left, y: bottom.y - 10, class: 'chart-label' }, `duration (max ${formatMs(maxTime)})`),
      svg('line', { x1: left, x2: width - 8, y1: top.y + top.h, y2: top.y + top.h, class: 'axis' }),
      svg('line', { x1: left, x2: width - 8, y1: bottom.y + bottom.h, y2: bottom.y + bottom.h, class: 'axis' }),
      svg('text', { x: left - 6, y: top.y + 4, class: 'tick', 'text-anchor': 'end' }, String(maxCount)),
      svg('text', { x: left - 6, y: top.y + top.h, class: 'tick', 'text-anchor': 'end' }, '0'),
      svg('text', { x: left - 6, y: bottom.y + 4, class: 'tick', 'text-anchor': 'end' }, formatMs(maxTime)));
    runs.forEach((run, i) => {
      const x = left + i * slot + (slot - bar) / 2;
      const s = run.summary || { added: 0, updated: 0, deleted: 0 };
      const total = counts[i];
      const height = logScale(total) * top.h;
      const group = svg('g', { class: 'run-bar' },
        svg('title', {}, `${utc(run.started_at)} · ${run.trigger} · ${run.outcome || 'running'} · ${formatMs(duration(run))}\n${s.added} added, ${s.updated} updated, ${s.deleted} deleted`));
      let y = top.y + top.h;
      for (const [kind, n] of [['added', s.added], ['updated', s.updated], ['deleted', s.deleted]]) {
        if (!n) continue;
        const h = (height * n) / total;
        y -= h;
        group.append(svg('rect', { x, y, width: bar, height: Math.max(h, 1), class: `bar-${kind}` }));
      }
      if (run.outcome === 'failure') {
        group.append(svg('text', { x: x + bar / 2, y: top.y + top.h - 4, class: 'fail-mark', 'text-anchor': 'middle' }, '×'));
      }
      const th = (times[i] / maxTime) * bottom.h;
      group.append(svg('rect', { x, y: bottom.y + bottom.h - th, width: bar, height: Math.max(th, 1), class: run.outcome === 'failure' ? 'bar-failed' : run.outcome ? 'bar-time' : 'bar-running' }));
      chart.append(group);
    });
    const legend = el('ul', { class: 'legend' },
      [['added', 'added'], ['updated', 'updated'], ['deleted', 'deleted'], ['time', 'duration'], ['failed', 'failed run']]
        .map(([kind, text]) => el('li', {}, el('span', { class: `swatch swatch-${kind}`, 'aria-hidden': 'true' }), text)));
    return [chart, legend];
  }

  // ---- records

  async function recordsPage(connectionId, params, mine) {
    const list = await api('/connections');
    if (mine !== generation) return;
    if (!list.connections.length) {
      replace(main, el('h1', {}, 'Records'), el('p', { class: 'muted' }, 'No connection is stored yet.'));
      return;
    }
    const connection = list.connections.find((c) => c.id === connectionId) || list.connections[0];
    const counts = (await recordCounts([connection]).catch(() => new Map())).get(connection.id) || {};
    if (mine !== generation) return;
    const models = Object.keys(counts);
    const model = params.get('model') && models.includes(params.get('model')) ? params.get('model') : models[0];
    const filters = (params.get('filter') || '').split(',').filter(Boolean);
    const limit = params.get('limit') || '50';

    const field = (id, label, input, help) => el('div', { class: 'field' }, el('label', { for: id }, label), input, help ? el('small', { class: 'muted', id: `${id}-help` }, help) : null);
    const connectionSelect = el('select', { id: 'records-connection', name: 'connection' },
      list.connections.map((c) => el('option', { value: c.id, selected: c.id === connection.id }, c.id)));
    const modelSelect = el('select', { id: 'records-model', name: 'model' },
      models.map((m) => el('option', { value: m, selected: m === model }, `${m} (${counts[m]} live)`)));
    const checks = ['added', 'updated', 'deleted'].map((action) => el('label', { class: 'check' },
      el('input', { type: 'checkbox', name: 'filter', value: action, checked: filters.includes(action) }), ` ${action}`));
    const modifiedAfter = el('input', { id: 'records-modified-after', name: 'modified_after', type: 'text', value: params.get('modified_after') || '', placeholder: '2026-01-01T00:00:00Z', 'aria-describedby': 'records-modified-after-help' });
    const ids = el('input', { id: 'records-ids', name: 'ids', type: 'text', value: params.get('ids') || '', placeholder: '58, 61', 'aria-describedby': 'records-ids-help' });
    const limitInput = el('input', { id: 'records-limit', name: 'limit', type: 'number', min: 1, max: 1000, value: limit });
    const form = el('form', { class: 'filters', id: 'records-form', onsubmit: (event) => {
      event.preventDefault();
      const query = new URLSearchParams();
      query.set('model', modelSelect.value);
      const chosen = checks.map((c) => c.firstChild).filter((c) => c.checked).map((c) => c.value);
      if (chosen.length) query.set('filter', chosen.join(','));
      if (modifiedAfter.value.trim()) query.set('modified_after', modifiedAfter.value.trim());
      if (ids.value.trim()) query.set('ids', ids.value.trim());
      query.set('limit', limitInput.value || '50');
      go(`#/records/${enc(connectionSelect.value)}?${query}`);
    } },
    field('records-connection', 'Connection', connectionSelect),
    field('records-model', 'Model', modelSelect),
    el('fieldset', { class: 'field' }, el('legend', {}, 'Last action (none: all)'), checks),
    field('records-modified-after', 'Modified after', modifiedAfter, 'RFC 3339, inclusive'),
    field('records-ids', 'Ids', ids, 'comma-separated'),
    field('records-limit', 'Per page', limitInput),
    el('div', { class: 'field submit' }, el('button', { type: 'submit' }, 'Show')));
    connectionSelect.addEventListener('change', () => go(`#/records/${enc(connectionSelect.value)}`));

    const status = el('p', { id: 'records-status', class: 'muted', role: 'status', 'aria-live': 'polite' });
    const error = el('p', { id: 'records-error', class: 'error', role: 'alert', hidden: true });
    const body = el('tbody');
    const table = el('table', { class: 'data', id: 'records' },
      el('caption', { class: 'sr-only' }, 'Records, in the order the API pages them'),
      el('thead', {}, el('tr', {}, ['Id', 'Name', 'Last action', 'Last modified', 'Deleted'].map((h) => el('th', { scope: 'col' }, h)),
        el('th', { scope: 'col' }, el('span', { class: 'sr-only' }, 'Details')))),
      body);
    const previous = el('button', { type: 'button', id: 'records-previous' }, '← Previous page');
    const next = el('button', { type: 'button', id: 'records-next' }, 'Next page →');
    const detail = el('section', { id: 'record-detail', class: 'detail', 'aria-labelledby': 'record-detail-h', hidden: true });

    replace(main,
      el('h1', {}, 'Records'),
      el('p', { class: 'muted' }, 'The synced records of a connection, as ', el('code', {}, 'GET /records/'), ' (and ', el('code', {}, 'GET /customers'), ') serve them: by last change, keyset-paged.'),
      form, error, status,
      el('div', { class: 'scroll' }, table),
      el('div', { class: 'pager' }, previous, next),
      detail);

    if (!model) {
      replace(status, 'This component declares no model.');
      return;
    }
    // The cursors of the pages before this one: keyset paging goes forward; back is a stack.
    const cursors = [];
    let cursor = null;
    let nextCursor = null;
    let shownBefore = 0;
    let shownNow = 0;
    const load = async () => {
      const query = new URLSearchParams({ model, limit });
      if (filters.length) query.set('filter', filters.join(','));
      if (params.get('modified_after')) query.set('modified_after', params.get('modified_after'));
      for (const id of (params.get('ids') || '').split(/[\s,]+/).filter(Boolean)) query.append('ids', id);
      if (cursor) query.set('cursor', cursor);
      previous.disabled = true;
      next.disabled = true;
      let page;
      try {
        page = await api(`/records/?${query}`, { headers: { 'Connection-Id': connection.id, 'Provider-Config-Key': connection.provider_config_key } });
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) return keyPage(true);
        error.hidden = false;
        replace(error, `The API refused the query (${e.status} ${e.code}): ${e.message}`);
        replace(body);
        replace(status, '');
        previous.disabled = cursors.length === 0;
        return;
      }
      if (mine !== generation) return;
      error.hidden = true;
      nextCursor = page.next_cursor;
      shownNow = page.records.length;
      replace(body, page.records.length ? page.records.map((r) => recordRow(r, () => showRecord(detail, r)))
        : el('tr', {}, el('td', { colspan: 6, class: 'muted' }, 'No record matches.')));
      const page_number = cursors.length + 1;
      replace(status, page.records.length
        ? `Page ${page_number}: records ${shownBefore + 1}–${shownBefore + shownNow}${nextCursor ? '' : ' (the last page)'}`
        : `Page ${page_number}: no records`);
      previous.disabled = cursors.length === 0;
      next.disabled = !nextCursor;
    };
    previous.addEventListener('click', () => {
      cursor = cursors.pop() || null;
      shownBefore = Math.max(0, shownBefore - Number(limit));
      load();
    });
    next.addEventListener('click', () => {
      if (!nextCursor) return;
      cursors.push(cursor);
      cursor = nextCursor;
      shownBefore += shownNow;
      load();
    });
    await load();
  }

  function recordName(record) {
    for (const key of ['display_name', 'name', 'title', 'full_name', 'email', 'primary_email']) {
      if (typeof record[key] === 'string' && record[key]) return record[key];
    }
    return '';
  }

  function recordRow(record, onView) {
    const meta = record._nango_metadata || {};
    return el('tr', { 'data-record': String(record.id) },
      el('td', { class: 'mono record-id' }, String(record.id)),
      el('td', { class: 'record-name' }, recordName(record)),
      el('td', {}, badge(String(meta.last_action || '').toLowerCase(), meta.last_action || '')),
      el('td', {}, time(meta.last_modified_at)),
      el('td', {}, meta.deleted_at ? time(meta.deleted_at) : '—'),
      el('td', {}, el('button', { type: 'button', class: 'link', onclick: onView, 'aria-label': `View record ${record.id}` }, 'View')));
  }

  function showRecord(detail, record) {
    const { _nango_metadata: meta, ...fields } = record;
    detail.hidden = false;
    replace(detail,
      el('h2', { id: 'record-detail-h', tabindex: '-1' }, 'Record ', el('span', { class: 'mono' }, String(record.id))),
      el('div', { class: 'detail-grid' },
        el('div', {}, el('h3', {}, 'Record'), el('pre', { class: 'json', id: 'record-json' }, JSON.stringify(fields, null, 2))),
        el('div', {}, el('h3', {}, '_nango_metadata'), el('pre', { class: 'json', id: 'record-metadata' }, JSON.stringify(meta, null, 2)))));
    detail.querySelector('h2').focus();
  }

  // ---------------------------------------------------------------- start

  forgetKey.addEventListener('click', () => {
    sessionStorage.removeItem(KEY_STORAGE);
    route();
  });
  window.addEventListener('hashchange', route);
  route();
})();
