// Floe console: a browser client of the catalog's own REST API. Every call
// carries the signed-in principal's token, so the console shows exactly what
// that principal may read. Nothing here builds HTML from strings: elements
// are created and given text, so catalog names cannot inject markup.
'use strict';

const store = window.sessionStorage;
const state = {
  authOn: document.querySelector('meta[name="floe-auth"]').content !== 'off',
  token: store.getItem('floe.token'),
  who: store.getItem('floe.who'),
  warehouse: store.getItem('floe.warehouse'),
  prefix: null,
  admin: false,
  // A success message to show on the page the next route() renders.
  done: null,
};
// The OpenID Connect issuer the console may sign in through, and its client
// id there (both empty when there is none).
const oidc = {
  issuer: document.querySelector('meta[name="floe-oidc-issuer"]').content,
  client: document.querySelector('meta[name="floe-oidc-client"]').content,
};
const PAGE = 50;
const main = document.getElementById('main');

// ---- exact JSON -------------------------------------------------------------

// Parses JSON keeping integers of 16 digits or more exact, as strings:
// snapshot ids and sequence numbers are 64-bit, past what a JavaScript
// number holds.
function exactJson(text) {
  let out = '';
  let last = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 34) {
      i++;
      while (i < n) {
        const d = text.charCodeAt(i);
        if (d === 92) i += 2;
        else if (d === 34) { i++; break; } else i++;
      }
    } else if (c === 45 || (c >= 48 && c <= 57)) {
      const start = i;
      i++;
      while (i < n && '0123456789eE.+-'.includes(text[i])) i++;
      const token = text.slice(start, i);
      if (/^-?\d{16,}$/.test(token)) {
        out += text.slice(last, start) + '"' + token + '"';
        last = i;
      }
    } else {
      i++;
    }
  }
  return JSON.parse(out + text.slice(last));
}

// ---- elements ---------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function table(headers, rows, caption) {
  return h('table', {},
    caption ? h('caption', { text: caption }) : null,
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col', text: x })))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c ?? ''))))));
}

function section(title, ...body) {
  return h('section', { 'aria-label': title }, h('h2', { text: title }), ...body);
}

function time(ms) {
  if (ms === undefined || ms === null) return '';
  const d = new Date(Number(ms));
  return isNaN(d) ? String(ms) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

function notice(message, kind) {
  const el = document.getElementById('notice');
  el.textContent = message || '';
  el.className = 'notice ' + (kind || 'error');
  el.hidden = !message;
}

// After a change: show `message` on the page rendered next, at `hash` (or
// this page again).
function done(message, hash) {
  state.done = message;
  if (hash && location.hash !== hash) location.hash = hash;
  else route();
}

function show(...nodes) {
  main.replaceChildren(...nodes);
  main.focus({ preventScroll: true });
}

// ---- the REST API -----------------------------------------------------------

class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

async function api(method, path, body, form) {
  const headers = { Accept: 'application/json' };
  if (state.token) headers.Authorization = 'Bearer ' + state.token;
  let payload;
  if (form) {
    headers['Content-Type'] = 'application/x-www-form-urlencoded';
    payload = new URLSearchParams(form).toString();
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const res = await fetch(path, { method, headers, body: payload, credentials: 'omit' });
  const text = await res.text();
  let data = null;
  try { data = text ? exactJson(text) : null; } catch { data = null; }
  if (!res.ok) {
    const err = (data && data.error) || {};
    if (res.status === 401 && !form) {
      signOut('Your session ended; sign in again.');
    }
    throw new ApiError(res.status, err.type || '', err.message || err.error_description
      || (data && data.error_description) || res.statusText || 'Request failed');
  }
  return data;
}

const enc = encodeURIComponent;
const nsPath = (levels) => levels.map(enc).join('%1F');
const catalog = (rest) => `/v1/${enc(state.prefix)}/${rest}`;

// ---- sign-in ----------------------------------------------------------------

function signOut(message) {
  state.token = null;
  state.who = null;
  state.admin = false;
  store.removeItem('floe.token');
  store.removeItem('floe.who');
  location.hash = '#/signin';
  if (message) notice(message);
}

// ---- OpenID Connect: authorization code with PKCE ---------------------------

function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const redirectUri = () => `${location.origin}/ui/`;

// Sends the browser to the issuer's sign-in page; the verifier and state
// wait in this tab's storage for the way back.
async function oidcSignIn() {
  const discovery = await fetch(`${oidc.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`, { credentials: 'omit' });
  if (!discovery.ok) throw new Error(`The identity provider's configuration could not be read (${discovery.status}).`);
  const config = await discovery.json();
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const challenge = base64url(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))));
  const nonce = base64url(crypto.getRandomValues(new Uint8Array(16)));
  store.setItem('floe.oidc', JSON.stringify({ verifier, state: nonce, tokenEndpoint: config.token_endpoint }));
  const target = new URL(config.authorization_endpoint);
  target.search = new URLSearchParams({
    response_type: 'code', client_id: oidc.client, redirect_uri: redirectUri(), scope: 'openid',
    state: nonce, code_challenge: challenge, code_challenge_method: 'S256',
  }).toString();
  location.assign(target.toString());
}

// On the way back from the issuer (?code=…&state=…): trades the code for a
// token. Returns whether this load was such a return.
async function oidcReturn() {
  const params = new URLSearchParams(location.search);
  if (!params.has('code') && !params.has('error')) return false;
  const saved = JSON.parse(store.getItem('floe.oidc') || 'null');
  store.removeItem('floe.oidc');
  history.replaceState(null, '', `${location.pathname}#/`);
  try {
    if (params.has('error')) throw new Error(`The identity provider refused the sign-in: ${params.get('error_description') || params.get('error')}`);
    if (!saved || params.get('state') !== saved.state) throw new Error('That sign-in was not started from this tab; sign in again.');
    const answer = await fetch(saved.tokenEndpoint, {
      method: 'POST',
      credentials: 'omit',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code', code: params.get('code'), redirect_uri: redirectUri(),
        client_id: oidc.client, code_verifier: saved.verifier,
      }).toString(),
    });
    const body = await answer.json().catch(() => ({}));
    if (!answer.ok || !body.access_token) throw new Error(`The identity provider gave no token: ${body.error_description || body.error || answer.status}`);
    state.token = body.access_token;
    let subject = 'OpenID Connect';
    try { subject = JSON.parse(atob(state.token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).sub || subject; } catch { /* an opaque token */ }
    state.who = subject;
    await api('GET', '/v1/config');
    store.setItem('floe.token', state.token);
    store.setItem('floe.who', state.who);
  } catch (e) {
    state.token = null;
    history.replaceState(null, '', `${location.pathname}#/signin`);
    await route();
    notice(e.status === 401 ? 'The identity provider\'s token was not accepted here.' : e.message);
    return true;
  }
  return false;
}

function signInPage() {
  const wantsKey = h('input', { type: 'radio', name: 'kind', id: 'kind-key', value: 'key' });
  const wantsClient = h('input', { type: 'radio', name: 'kind', id: 'kind-client', value: 'client', checked: true });
  const clientFields = h('div', { class: 'fields' },
    h('label', { for: 'client-id', text: 'Client id' }),
    h('input', { id: 'client-id', name: 'client_id', autocomplete: 'username', required: true }),
    h('label', { for: 'client-secret', text: 'Client secret' }),
    h('input', { id: 'client-secret', name: 'client_secret', type: 'password', autocomplete: 'current-password', required: true }));
  const keyFields = h('div', { class: 'fields', hidden: true },
    h('label', { for: 'api-key', text: 'API key' }),
    h('input', { id: 'api-key', name: 'api_key', type: 'password', autocomplete: 'off' }));
  const toggle = () => {
    const key = wantsKey.checked;
    keyFields.hidden = !key;
    clientFields.hidden = key;
    keyFields.querySelector('input').required = key;
    clientFields.querySelectorAll('input').forEach((i) => { i.required = !key; });
  };
  wantsKey.addEventListener('change', toggle);
  wantsClient.addEventListener('change', toggle);
  const form = h('form', { class: 'signin', 'aria-label': 'Sign in' },
    h('h1', { text: 'Sign in to Floe' }),
    h('fieldset', {}, h('legend', { text: 'With' }),
      wantsClient, h('label', { for: 'kind-client', text: 'OAuth client credentials' }),
      wantsKey, h('label', { for: 'kind-key', text: 'API key' })),
    clientFields, keyFields,
    h('button', { type: 'submit', text: 'Sign in' }));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    notice('');
    try {
      if (wantsKey.checked) {
        state.token = keyFields.querySelector('input').value.trim();
        state.who = 'API key ' + state.token.split('.')[0].slice(0, 24);
      } else {
        const id = clientFields.querySelector('#client-id').value.trim();
        const answer = await api('POST', '/v1/oauth/tokens', undefined, {
          grant_type: 'client_credentials',
          client_id: id,
          client_secret: clientFields.querySelector('#client-secret').value,
          scope: 'catalog',
        });
        state.token = answer.access_token;
        state.who = id;
      }
      // The credential must work before it is kept.
      await api('GET', '/v1/config');
      store.setItem('floe.token', state.token);
      store.setItem('floe.who', state.who);
      state.prefix = null;
      location.hash = '#/';
    } catch (e) {
      state.token = null;
      notice(e.status === 401 ? 'Those credentials were not accepted.' : e.message);
    }
  });
  const nodes = [form];
  if (oidc.issuer && oidc.client) {
    const host = new URL(oidc.issuer).host;
    const button = h('button', { type: 'button', class: 'oidc', text: `Sign in with ${host}` });
    button.addEventListener('click', () => oidcSignIn().catch((e) => notice(e.message)));
    nodes.push(h('section', { class: 'signin', 'aria-label': 'Single sign-on' },
      h('h2', { text: 'Single sign-on' }), button));
  }
  show(...nodes);
  form.querySelector('input:not([type=radio])').focus();
}

// ---- warehouse --------------------------------------------------------------

async function openWarehouse() {
  if (state.prefix) return;
  const query = state.warehouse ? `?warehouse=${enc(state.warehouse)}` : '';
  const config = await api('GET', '/v1/config' + query);
  const prefix = (config.overrides && config.overrides.prefix) || (config.defaults && config.defaults.prefix);
  state.prefix = prefix || state.warehouse || 'default';
  state.warehouse = state.prefix;
  store.setItem('floe.warehouse', state.warehouse);
  document.getElementById('warehouse').value = state.warehouse;
  try {
    const list = await api('GET', '/management/v1/warehouses');
    state.admin = true;
    const names = (list.warehouses || list || []).map((w) => w.name);
    document.getElementById('warehouse-names').replaceChildren(...names.map((n) => h('option', { value: n })));
  } catch {
    state.admin = false;
  }
  document.querySelectorAll('[data-admin]').forEach((el) => { el.hidden = !state.admin; });
}

// ---- pages: namespaces --------------------------------------------------------

// A list that fetches page after page on request ("Show more").
function pagedList(title, fetchPage, render) {
  const list = h('ul', { class: 'list' });
  const more = h('button', { type: 'button', class: 'more', text: 'Show more', hidden: true });
  const empty = h('p', { class: 'muted', text: 'None.', hidden: true });
  let token = null;
  const load = async () => {
    more.disabled = true;
    try {
      const page = await fetchPage(token);
      for (const item of page.items) list.append(h('li', {}, render(item)));
      token = page.next || null;
      more.hidden = !token;
      empty.hidden = list.children.length > 0;
    } catch (e) {
      notice(e.message);
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener('click', load);
  load();
  return section(title, list, empty, more);
}

function crumbs(levels, last) {
  const parts = [h('a', { href: '#/', text: state.prefix })];
  levels.forEach((level, i) => {
    parts.push(' / ');
    parts.push(h('a', { href: '#/ns/' + nsPath(levels.slice(0, i + 1)), text: level }));
  });
  if (last) parts.push(' / ', h('span', { text: last }));
  return h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, parts);
}

function namespacePage(levels) {
  const nodes = [crumbs(levels), h('h1', { text: levels.length ? levels.join('.') : `Warehouse ${state.prefix}` })];
  const parent = levels.length ? `&parent=${nsPath(levels)}` : '';
  nodes.push(pagedList('Namespaces', async (token) => {
    const page = await api('GET', catalog(`namespaces?pageSize=${PAGE}${parent}&pageToken=${token ? enc(token) : ''}`));
    return { items: page.namespaces || [], next: page['next-page-token'] };
  }, (ns) => h('a', { href: '#/ns/' + nsPath(ns), text: ns.join('.') })));
  if (levels.length) {
    const base = `namespaces/${nsPath(levels)}`;
    for (const [title, kind, key] of [['Tables', 'tables', 'table'], ['Views', 'views', 'view']]) {
      nodes.push(pagedList(title, async (token) => {
        const page = await api('GET', catalog(`${base}/${kind}?pageSize=${PAGE}&pageToken=${token ? enc(token) : ''}`));
        return { items: page.identifiers || [], next: page['next-page-token'] };
      }, (id) => h('a', { href: `#/${key}/${nsPath(levels)}/${enc(id.name)}`, text: id.name })));
    }
    nodes.push(namespaceProperties(levels));
    nodes.push(dropNamespace(levels));
  }
  nodes.push(createNamespace(levels));
  show(...nodes);
}

function namespaceProperties(levels) {
  const holder = section('Properties', h('p', { text: 'Loading…' }));
  api('GET', catalog(`namespaces/${nsPath(levels)}`)).then((ns) => {
    holder.replaceChildren(h('h2', { text: 'Properties' }),
      propertyEditor(ns.properties || {}, async (updates, removals) => {
        await api('POST', catalog(`namespaces/${nsPath(levels)}/properties`), { updates, removals });
      }, 'namespace'));
  }).catch((e) => notice(e.message));
  return holder;
}

function createNamespace(levels) {
  const input = h('input', { id: 'new-namespace', required: true, autocomplete: 'off' });
  const form = h('form', { class: 'inline' },
    h('label', { for: 'new-namespace', text: levels.length ? 'New child namespace' : 'New namespace' }),
    input, h('button', { type: 'submit', text: 'Create' }));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const namespace = [...levels, input.value.trim()];
      await api('POST', catalog('namespaces'), { namespace, properties: {} });
      done(`Created ${namespace.join('.')}.`);
    } catch (e) { notice(e.message); }
  });
  return section('Create', form);
}

function dropNamespace(levels) {
  const button = h('button', { type: 'button', class: 'danger', text: `Drop namespace ${levels.join('.')}` });
  button.addEventListener('click', async () => {
    if (!window.confirm(`Drop the namespace ${levels.join('.')}? It must be empty.`)) return;
    try {
      await api('DELETE', catalog(`namespaces/${nsPath(levels)}`));
      done(`Dropped ${levels.join('.')}.`, levels.length > 1 ? '#/ns/' + nsPath(levels.slice(0, -1)) : '#/');
    } catch (e) { notice(e.message); }
  });
  return section('Drop', button);
}

// Properties as a table with inline editing; `save(updates, removals)`.
function propertyEditor(properties, save, what) {
  const rows = h('tbody');
  const addRow = (k, v) => {
    const key = h('input', { value: k, 'aria-label': 'Property name', autocomplete: 'off' });
    const value = h('input', { value: v, 'aria-label': `Value of ${k || 'new property'}`, autocomplete: 'off' });
    const remove = h('button', { type: 'button', text: 'Remove', 'aria-label': `Remove ${k || 'new property'}` });
    const tr = h('tr', { 'data-original': k }, h('td', {}, key), h('td', {}, value), h('td', {}, remove));
    remove.addEventListener('click', () => { tr.hidden = true; tr.dataset.removed = '1'; });
    rows.append(tr);
  };
  for (const [k, v] of Object.entries(properties).sort()) addRow(k, v);
  const add = h('button', { type: 'button', text: 'Add property' });
  add.addEventListener('click', () => { addRow('', ''); rows.lastChild.querySelector('input').focus(); });
  const form = h('form', { class: 'properties', 'aria-label': `Edit ${what} properties` },
    h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'Value', ''].map((x) => h('th', { scope: 'col', text: x })))), rows),
    add, h('button', { type: 'submit', text: 'Save properties' }));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const updates = {};
    const removals = [];
    for (const tr of rows.children) {
      const original = tr.dataset.original;
      const [key, value] = [...tr.querySelectorAll('input')].map((i) => i.value);
      if (tr.dataset.removed) {
        if (original) removals.push(original);
        continue;
      }
      if (!key) continue;
      if (original && original !== key) removals.push(original);
      if (original !== key || properties[key] !== value) updates[key] = value;
    }
    try {
      await save(updates, removals.filter((r) => !(r in updates)));
      done('Properties saved.');
    } catch (e) { notice(e.message); }
  });
  return form;
}

// ---- pages: tables ----------------------------------------------------------

function typeText(type) {
  if (typeof type === 'string') return type;
  if (type.type === 'list') return 'list';
  if (type.type === 'map') return 'map';
  return type.type || 'struct';
}

// A schema's fields as a nested list (structs, lists and maps open up).
function fieldTree(fields, identifiers) {
  const item = (f, label) => {
    const kids = [];
    const t = f.type;
    if (t && typeof t === 'object') {
      if (t.type === 'struct') kids.push(fieldTree(t.fields, identifiers));
      if (t.type === 'list') kids.push(h('ul', {}, item({ id: t['element-id'], name: 'element', required: t['element-required'], type: t.element }, 'element')));
      if (t.type === 'map') {
        kids.push(h('ul', {},
          item({ id: t['key-id'], name: 'key', required: true, type: t.key }, 'key'),
          item({ id: t['value-id'], name: 'value', required: t['value-required'], type: t.value }, 'value')));
      }
    }
    return h('li', {},
      h('span', { class: 'field' },
        h('code', { text: label || f.name }), ' ',
        h('span', { class: 'type', text: typeText(t) }),
        f.required ? h('span', { class: 'tag', text: 'required' }) : h('span', { class: 'tag muted', text: 'optional' }),
        identifiers.includes(f.id) ? h('span', { class: 'tag key', text: 'identifier' }) : null,
        h('span', { class: 'muted', text: ` id ${f.id}` }),
        f.doc ? h('span', { class: 'doc', text: ` — ${f.doc}` }) : null),
      kids);
  };
  return h('ul', { class: 'tree' }, (fields || []).map((f) => item(f)));
}

function schemaSection(metadata) {
  const schemas = metadata.schemas || [];
  const current = metadata['current-schema-id'];
  const holder = h('div');
  const pick = h('select', { id: 'schema-id' }, schemas.map((s) => h('option', {
    value: s['schema-id'], selected: s['schema-id'] === current,
    text: `Schema ${s['schema-id']}${s['schema-id'] === current ? ' (current)' : ''}`,
  })));
  const render = () => {
    const s = schemas.find((x) => String(x['schema-id']) === pick.value) || schemas[0];
    holder.replaceChildren(s ? fieldTree(s.fields, s['identifier-field-ids'] || []) : h('p', { text: 'No schema.' }));
  };
  pick.addEventListener('change', render);
  render();
  return section('Schema', h('label', { for: 'schema-id', text: 'Version ' }), pick, holder);
}

function fieldNames(metadata) {
  const names = new Map();
  const walk = (fields, prefix) => {
    for (const f of fields || []) {
      names.set(f.id, prefix + f.name);
      if (f.type && f.type.type === 'struct') walk(f.type.fields, prefix + f.name + '.');
    }
  };
  for (const s of metadata.schemas || []) walk(s.fields, '');
  return names;
}

function snapshotTimeline(metadata) {
  const snapshots = [...(metadata.snapshots || [])].sort((a, b) => Number(b['timestamp-ms']) - Number(a['timestamp-ms']));
  const current = metadata['current-snapshot-id'];
  const list = h('ol', { class: 'timeline' });
  const more = h('button', { type: 'button', class: 'more', text: 'Older snapshots' });
  const count = h('p', { class: 'muted' });
  let shown = 0;
  const showMore = () => {
    for (const s of snapshots.slice(shown, shown + PAGE)) {
      const sum = s.summary || {};
      const id = String(s['snapshot-id']);
      list.append(h('li', { 'data-snapshot-id': id },
        h('div', {}, h('strong', { text: sum.operation || 'snapshot' }), ' ',
          h('code', { class: 'snapshot-id', text: id }),
          String(current) === id ? h('span', { class: 'tag key', text: 'current' }) : null),
        h('div', { class: 'muted', text: `${time(s['timestamp-ms'])}${s['parent-snapshot-id'] !== undefined ? ' · parent ' + s['parent-snapshot-id'] : ''} · sequence ${s['sequence-number'] ?? ''}` }),
        h('div', { class: 'summary', text: [
          ['added-data-files', 'files added'], ['deleted-data-files', 'files removed'],
          ['added-records', 'records added'], ['deleted-records', 'records removed'],
          ['total-records', 'records in total'],
        ].filter(([k]) => sum[k] !== undefined).map(([k, label]) => `${sum[k]} ${label}`).join(' · ') })));
    }
    shown = Math.min(snapshots.length, shown + PAGE);
    more.hidden = shown >= snapshots.length;
    count.textContent = `${shown} of ${snapshots.length} snapshots shown, newest first.`;
  };
  more.addEventListener('click', showMore);
  showMore();
  return section('Snapshots', count, list, more);
}

function tablePage(levels, name) {
  show(crumbs(levels, name), h('h1', { text: name }), h('p', { text: 'Loading…' }));
  api('GET', catalog(`namespaces/${nsPath(levels)}/tables/${enc(name)}`)).then((answer) => {
    const m = answer.metadata;
    const names = fieldNames(m);
    const refs = Object.entries(m.refs || {});
    show(crumbs(levels, name), h('h1', { text: name }),
      section('Overview', h('dl', { class: 'facts' }, [
        ['Location', m.location], ['Metadata file', answer['metadata-location']],
        ['Format version', m['format-version']], ['Table UUID', m['table-uuid']],
        ['Current snapshot', m['current-snapshot-id'] ?? 'none'],
        ['Last updated', time(m['last-updated-ms'])],
      ].flatMap(([k, v]) => [h('dt', { text: k }), h('dd', {}, h('code', { text: String(v ?? '') }))]))),
      schemaSection(m),
      section('Partition specs', ...(m['partition-specs'] || []).map((spec) => table(
        ['Field', 'Source', 'Transform', 'Field id'],
        (spec.fields || []).map((f) => [f.name, names.get(f['source-id']) ?? String(f['source-id']), f.transform, String(f['field-id'])]),
        `Spec ${spec['spec-id']}${spec['spec-id'] === m['default-spec-id'] ? ' (default)' : ''}`))),
      section('Sort orders', ...(m['sort-orders'] || []).map((order) => !(order.fields || []).length
        ? h('p', { text: `Order ${order['order-id']}: unsorted${order['order-id'] === m['default-sort-order-id'] ? ' (default)' : ''}` })
        : table(
        ['Source', 'Transform', 'Direction', 'Nulls'],
        (order.fields || []).map((f) => [names.get(f['source-id']) ?? String(f['source-id']), f.transform, f.direction, f['null-order']]),
        `Order ${order['order-id']}${order['order-id'] === m['default-sort-order-id'] ? ' (default)' : ''}`))),
      section('Properties', propertyEditor(m.properties || {}, async (updates, removals) => {
        const changes = [];
        if (Object.keys(updates).length) changes.push({ action: 'set-properties', updates });
        if (removals.length) changes.push({ action: 'remove-properties', removals });
        if (!changes.length) return;
        await api('POST', catalog(`namespaces/${nsPath(levels)}/tables/${enc(name)}`), {
          requirements: [{ type: 'assert-table-uuid', uuid: m['table-uuid'] }],
          updates: changes,
        });
      }, 'table')),
      snapshotTimeline(m),
      section('Branches and tags', refs.length ? table(['Name', 'Kind', 'Snapshot'],
        refs.map(([r, v]) => [r, v.type, h('code', { text: String(v['snapshot-id']) })])) : h('p', { class: 'muted', text: 'None.' })),
      section('Metadata log', table(['When', 'File'],
        [...(m['metadata-log'] || [])].reverse().map((e) => [time(e['timestamp-ms']), h('code', { text: e['metadata-file'] })]))),
      tableActions(levels, name));
  }).catch((e) => {
    notice(e.message);
    show(crumbs(levels, name), h('h1', { text: name }), h('p', { text: e.status === 404 ? 'No such table.' : 'Could not load this table.' }));
  });
}

function tableActions(levels, name) {
  const newName = h('input', { id: 'rename-to', value: name, required: true, autocomplete: 'off' });
  const rename = h('form', { class: 'inline' },
    h('label', { for: 'rename-to', text: 'Rename to' }), newName, h('button', { type: 'submit', text: 'Rename' }));
  rename.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await api('POST', catalog('tables/rename'), {
        source: { namespace: levels, name },
        destination: { namespace: levels, name: newName.value.trim() },
      });
      done('Renamed.', `#/table/${nsPath(levels)}/${enc(newName.value.trim())}`);
    } catch (e) { notice(e.message); }
  });
  const purge = h('input', { type: 'checkbox', id: 'purge' });
  const confirmName = h('input', { id: 'drop-confirm', autocomplete: 'off', required: true });
  const drop = h('form', { class: 'inline' },
    purge, h('label', { for: 'purge', text: 'Also delete its data and metadata files (purge)' }),
    h('label', { for: 'drop-confirm', text: `Type ${name} to confirm` }), confirmName,
    h('button', { type: 'submit', class: 'danger', text: 'Drop table' }));
  drop.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (confirmName.value !== name) { notice(`Type ${name} to confirm.`); return; }
    try {
      await api('DELETE', catalog(`namespaces/${nsPath(levels)}/tables/${enc(name)}${purge.checked ? '?purgeRequested=true' : ''}`));
      done(`Dropped ${name}.`, '#/ns/' + nsPath(levels));
    } catch (e) { notice(e.message); }
  });
  return section('Actions', rename, drop);
}

// ---- pages: views -------------------------------------------------------------

function viewPage(levels, name) {
  show(crumbs(levels, name), h('h1', { text: name }), h('p', { text: 'Loading…' }));
  api('GET', catalog(`namespaces/${nsPath(levels)}/views/${enc(name)}`)).then((answer) => {
    const m = answer.metadata;
    const versions = [...(m.versions || [])].sort((a, b) => b['version-id'] - a['version-id']);
    const current = versions.find((v) => v['version-id'] === m['current-version-id']);
    const sql = (v) => (v.representations || []).filter((r) => r.type === 'sql').map((r) =>
      h('figure', {}, h('figcaption', { text: r.dialect }), h('pre', {}, h('code', { text: r.sql }))));
    const schemas = new Map((m.schemas || []).map((s) => [s['schema-id'], s]));
    show(crumbs(levels, name), h('h1', { text: name }),
      section('Overview', h('dl', { class: 'facts' }, [
        ['Location', m.location], ['View UUID', m['view-uuid']], ['Current version', m['current-version-id']],
      ].flatMap(([k, v]) => [h('dt', { text: k }), h('dd', {}, h('code', { text: String(v ?? '') }))]))),
      section('SQL', current ? sql(current) : h('p', { text: 'No version.' })),
      section('Schema', current && schemas.get(current['schema-id'])
        ? fieldTree(schemas.get(current['schema-id']).fields, []) : h('p', { text: 'No schema.' })),
      section('Versions', ...versions.map((v) => h('details', {},
        h('summary', { text: `Version ${v['version-id']} · ${time(v['timestamp-ms'])}` }), sql(v)))),
      section('Properties', propertyEditor(m.properties || {}, async (updates, removals) => {
        const changes = [];
        if (Object.keys(updates).length) changes.push({ action: 'set-properties', updates });
        if (removals.length) changes.push({ action: 'remove-properties', removals });
        if (!changes.length) return;
        await api('POST', catalog(`namespaces/${nsPath(levels)}/views/${enc(name)}`), {
          requirements: [{ type: 'assert-view-uuid', uuid: m['view-uuid'] }],
          updates: changes,
        });
      }, 'view')));
  }).catch((e) => {
    notice(e.message);
    show(crumbs(levels, name), h('h1', { text: name }), h('p', { text: e.status === 404 ? 'No such view.' : 'Could not load this view.' }));
  });
}

// ---- pages: administration (admins on every warehouse) -------------------------

// A secret the server shows once, with the note that it will not be again.
function secretShown(label, value) {
  return h('div', { class: 'secret', role: 'status' },
    h('strong', { text: `${label} (shown once, copy it now): ` }), h('code', { class: 'new-secret', text: value }));
}

function grantText(g) {
  return `${g.role} on ${g.warehouse}${g.namespace && g.namespace.length ? ' / ' + g.namespace.join('.') : ''}`;
}

// ---- pages: the cluster ------------------------------------------------------

function duration(seconds) {
  const s = Number(seconds);
  if (!Number.isFinite(s)) return '';
  const [d, hr, m] = [Math.floor(s / 86400), Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60];
  return d ? `${d} d ${hr} h` : hr ? `${hr} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

function bytes(n) {
  const v = Number(n);
  if (v >= 1 << 30) return `${(v / (1 << 30)).toFixed(1)} GiB`;
  if (v >= 1 << 20) return `${(v / (1 << 20)).toFixed(1)} MiB`;
  if (v >= 1 << 10) return `${(v / (1 << 10)).toFixed(1)} KiB`;
  return `${v} B`;
}

async function clusterPage() {
  if (!state.admin) {
    show(h('h1', { text: 'Cluster' }), h('p', { text: 'Only an admin of every warehouse may see the cluster.' }));
    return;
  }
  const report = await api('GET', '/management/v1/cluster');
  const yes = (b) => (b ? 'yes' : 'no');
  const refresh = h('button', { type: 'button', text: 'Refresh' });
  refresh.addEventListener('click', () => route());
  show(h('h1', { text: 'Cluster' }),
    h('p', { text: 'What the edge serving this page knows: itself, and every origin it balances over with that origin\'s own report.' }),
    refresh,
    section('Edges', table(
      ['Version', 'Uptime', 'Event stream', 'Reconnects', 'Cache', 'Entries', 'Bytes', 'Hits', '304s', 'Misses', 'Hit ratio'],
      (report.edges || []).map((e) => [e.version, duration(e['uptime-seconds']),
        e['event-stream'].up ? 'up' : 'down', String(e['event-stream'].reconnects),
        e.cache.enabled ? 'serving' : 'bypassed', String(e.cache.entries), bytes(e.cache.bytes),
        String(e.cache.hits), String(e.cache['not-modified']), String(e.cache.misses),
        e.cache['hit-ratio'] === undefined ? '' : `${(100 * e.cache['hit-ratio']).toFixed(1)} %`]))),
    section('Origins', table(
      ['Address', 'Healthy', 'Version', 'Uptime', 'Database', 'Problem'],
      (report.origins || []).map((o) => [o.address ?? 'this origin', o.healthy === undefined ? '' : yes(o.healthy),
        o.version ?? '', o['uptime-seconds'] === undefined ? '' : duration(o['uptime-seconds']),
        o.database ?? '', o.error ?? '']))));
}

async function adminPage() {
  if (!state.admin) {
    show(h('h1', { text: 'Administration' }), h('p', { text: 'Only an admin of every warehouse may manage warehouses, clients and keys.' }));
    return;
  }
  const [warehouses, clients, keys] = await Promise.all([
    api('GET', '/management/v1/warehouses'),
    api('GET', '/management/v1/clients'),
    api('GET', '/management/v1/api-keys'),
  ]);
  const shown = h('div');
  const act = (method, path, body, after) => async () => {
    try {
      const answer = await api(method, path, body);
      await adminPage();
      if (after) shown.replaceChildren(after(answer));
      main.prepend(shown);
    } catch (e) { notice(e.message); }
  };
  const button = (text, handler, cls) => {
    const b = h('button', { type: 'button', text, class: cls });
    b.addEventListener('click', handler);
    return b;
  };

  const newName = h('input', { id: 'new-client', required: true, autocomplete: 'off' });
  const newRole = h('select', { id: 'new-client-role' }, ['reader', 'writer', 'admin'].map((r) => h('option', { value: r, text: r })));
  const newWarehouse = h('input', { id: 'new-client-warehouse', value: state.prefix, required: true, autocomplete: 'off' });
  const newNamespace = h('input', { id: 'new-client-namespace', placeholder: 'all', autocomplete: 'off' });
  const create = h('form', { class: 'inline', 'aria-label': 'Create a client' },
    h('label', { for: 'new-client', text: 'Name' }), newName,
    h('label', { for: 'new-client-role', text: 'Role' }), newRole,
    h('label', { for: 'new-client-warehouse', text: 'Warehouse' }), newWarehouse,
    h('label', { for: 'new-client-namespace', text: 'Namespace' }), newNamespace,
    h('button', { type: 'submit', text: 'Create client' }));
  create.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const namespace = newNamespace.value.trim() ? newNamespace.value.trim().split('.') : [];
    act('POST', '/management/v1/clients', {
      name: newName.value.trim(),
      grants: [{ warehouse: newWarehouse.value.trim(), namespace, role: newRole.value }],
    }, (c) => secretShown(`Secret of ${c['client-id']}`, c['client-secret'] || ''))();
  });

  const clientRows = (clients.clients || []).map((c) => {
    const id = c['client-id'];
    const path = `/management/v1/clients/${enc(id)}`;
    return [
      h('code', { text: id }),
      c.disabled ? 'disabled' : 'active',
      h('ul', { class: 'grants' }, (c.grants || []).map((g) => h('li', {}, grantText(g), ' ',
        button('Revoke', act('POST', `${path}/revoke-grant`, g), 'small')))),
      h('div', { class: 'actions' },
        button(c.disabled ? 'Enable' : 'Disable', act('POST', `${path}/${c.disabled ? 'enable' : 'disable'}`)),
        c['has-secret'] ? button('Rotate secret', act('POST', `${path}/rotate`, undefined,
          (s) => secretShown(`New secret of ${id}`, s['client-secret'] || ''))) : null,
        button('Revoke tokens', act('POST', `${path}/revoke-tokens`)),
        button('New API key', act('POST', `${path}/api-keys`, { name: 'console' },
          (k) => secretShown(`API key ${k['key-id']} of ${id}`, k['api-key'])))),
    ];
  });

  const grantClient = h('select', { id: 'grant-client' }, (clients.clients || []).map((c) => h('option', { value: c['client-id'], text: c['client-id'] })));
  const grantRole = h('select', { id: 'grant-role' }, ['reader', 'writer', 'admin'].map((r) => h('option', { value: r, text: r })));
  const grantWarehouse = h('input', { id: 'grant-warehouse', value: state.prefix, required: true, autocomplete: 'off' });
  const grantNamespace = h('input', { id: 'grant-namespace', placeholder: 'all', autocomplete: 'off' });
  const grant = h('form', { class: 'inline', 'aria-label': 'Grant a role' },
    h('label', { for: 'grant-client', text: 'Client' }), grantClient,
    h('label', { for: 'grant-role', text: 'Role' }), grantRole,
    h('label', { for: 'grant-warehouse', text: 'Warehouse' }), grantWarehouse,
    h('label', { for: 'grant-namespace', text: 'Namespace' }), grantNamespace,
    h('button', { type: 'submit', text: 'Grant' }));
  grant.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const namespace = grantNamespace.value.trim() ? grantNamespace.value.trim().split('.') : [];
    act('POST', `/management/v1/clients/${enc(grantClient.value)}/grant`,
      { warehouse: grantWarehouse.value.trim(), namespace, role: grantRole.value })();
  });

  // A warehouse: a name and a storage root; S3 settings for s3:// roots.
  const field = (id, label, attrs) => [h('label', { for: id, text: label }), h('input', { id, autocomplete: 'off', ...attrs })];
  const addWarehouse = h('form', { class: 'inline', 'aria-label': 'Create a warehouse' },
    ...field('new-warehouse', 'Name', { required: true }),
    ...field('new-warehouse-location', 'Location', { required: true, placeholder: 's3://bucket/path or file:///path' }),
    h('details', {}, h('summary', { text: 'S3 settings' }),
      ...field('new-warehouse-endpoint', 'Endpoint', { placeholder: 'AWS when empty' }),
      ...field('new-warehouse-region', 'Region', {}),
      h('input', { type: 'checkbox', id: 'new-warehouse-path-style' }),
      h('label', { for: 'new-warehouse-path-style', text: 'Path-style addressing' }),
      ...field('new-warehouse-key-id', 'Access key id', {}),
      ...field('new-warehouse-secret', 'Secret access key', { type: 'password' })),
    h('button', { type: 'submit', text: 'Create warehouse' }));
  addWarehouse.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const value = (id) => addWarehouse.querySelector('#' + id).value.trim() || undefined;
    act('POST', '/management/v1/warehouses', {
      name: value('new-warehouse'),
      location: value('new-warehouse-location'),
      s3: {
        endpoint: value('new-warehouse-endpoint'),
        region: value('new-warehouse-region'),
        path_style_access: addWarehouse.querySelector('#new-warehouse-path-style').checked,
        access_key_id: value('new-warehouse-key-id'),
        secret_access_key: value('new-warehouse-secret'),
      },
    }, (w) => h('p', { class: 'notice ok', role: 'status', text: `Created warehouse ${w.name}.` }))();
  });

  show(h('h1', { text: 'Administration' }),
    section('Warehouses', table(['Name', 'Location', ''],
      (warehouses.warehouses || []).map((w) => [w.name, h('code', { text: w.location }),
        button('Delete', () => {
          if (window.confirm(`Delete the warehouse ${w.name}? It must hold no namespaces.`)) {
            act('DELETE', `/management/v1/warehouses/${enc(w.name)}`, undefined,
              () => h('p', { class: 'notice ok', role: 'status', text: `Deleted warehouse ${w.name}.` }))();
          }
        }, 'small')])), addWarehouse),
    section('Clients', table(['Client', 'State', 'Grants', 'Actions'], clientRows), create, grant),
    section('API keys', table(['Key', 'Client', 'Name', 'State', ''],
      (keys['api-keys'] || []).map((k) => [h('code', { text: k['key-id'] }), k['client-id'], k.name,
        k.revoked ? 'revoked' : 'active',
        k.revoked ? '' : button('Revoke', act('DELETE', `/management/v1/api-keys/${enc(k['key-id'])}`))]))));
}

// ---- routing ------------------------------------------------------------------

function splitNamespace(part) {
  return decodeURIComponent(part).split('\x1f');
}

async function route() {
  notice(state.done || '', 'ok');
  state.done = null;
  const hash = location.hash.replace(/^#/, '') || '/';
  const signedIn = Boolean(state.token) || !state.authOn;
  document.getElementById('auth-off').hidden = state.authOn;
  document.getElementById('sign-out').hidden = !state.token;
  document.getElementById('warehouse-form').hidden = !signedIn;
  document.getElementById('who').textContent = state.token ? `Signed in: ${state.who}` : '';
  if (hash === '/signin' || !signedIn) {
    if (state.authOn) { signInPage(); return; }
  }
  try {
    await openWarehouse();
    const parts = hash.split('/').filter(Boolean);
    if (parts.length === 0) namespacePage([]);
    else if (parts[0] === 'ns' && parts[1]) namespacePage(splitNamespace(parts[1]));
    else if (parts[0] === 'table' && parts.length === 3) tablePage(splitNamespace(parts[1]), decodeURIComponent(parts[2]));
    else if (parts[0] === 'view' && parts.length === 3) viewPage(splitNamespace(parts[1]), decodeURIComponent(parts[2]));
    else if (parts[0] === 'admin') await adminPage();
    else if (parts[0] === 'cluster') await clusterPage();
    else show(h('h1', { text: 'Not found' }), h('p', {}, h('a', { href: '#/', text: 'Back to the catalog' })));
  } catch (e) {
    notice(e.message);
    show(h('h1', { text: 'Cannot open the catalog' }), h('p', { text: e.message }));
  }
}

document.getElementById('sign-out').addEventListener('click', () => signOut());
document.getElementById('warehouse-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  state.warehouse = document.getElementById('warehouse').value.trim();
  state.prefix = null;
  location.hash = '#/';
  route();
});
window.addEventListener('hashchange', route);
oidcReturn().then((handled) => { if (!handled) route(); });
