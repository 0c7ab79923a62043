// Tally's web UI: plain JavaScript, no build step. It only calls the public HTTP API, either as a
// signed-in user (an HttpOnly session cookie the script never sees, the project in
// X-Tally-Project and the session's CSRF token on changes) or with a project's read key (kept
// in this browser's localStorage).
'use strict';

const STORE_PROJECTS = 'tally.projects';
const STORE_CURRENT = 'tally.current';
const STORE_RANGE = 'tally.range';
const STORE_CSRF = 'tally.csrf';
const TZ = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

const RANGES = [
  ['today', 'Today'],
  ['yesterday', 'Yesterday'],
  ['past_7_days', 'Past 7 days'],
  ['past_30_days', 'Past 30 days'],
  ['past_90_days', 'Past 90 days'],
  ['month_to_date', 'This month'],
  ['previous_month', 'Last month'],
  ['year_to_date', 'This year'],
];
const CHARTS = [
  ['line', 'Line'], ['area', 'Area'], ['bar', 'Stacked bars'], ['hbar', 'Horizontal bars (top N)'],
  ['pie', 'Pie'], ['donut', 'Donut'], ['number', 'Number with change'],
];
const MEASURES = ['count', 'unique_users', 'sum', 'avg', 'min', 'max', 'p50', 'p90', 'p95', 'p99'];
const OPS = ['eq', 'neq', 'in', 'contains', 'gt', 'lt', 'exists'];
const INTERVALS = [['', 'None (totals)'], ['hour', 'Hour'], ['day', 'Day'], ['week', 'Week'], ['month', 'Month']];
const COLORS = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000'];

// ---------------------------------------------------------------------------------------------
// Small helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'testid') el.dataset.testid = v;
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function select(options, value, attrs) {
  const s = h('select', attrs || {});
  for (const o of options) {
    const [v, label] = Array.isArray(o) ? o : [o, o];
    s.append(h('option', {value: v, selected: v === value}, label));
  }
  if (value !== undefined) s.value = value;
  return s;
}

function field(label, control, hint) {
  const id = control.id || ('f' + Math.random().toString(36).slice(2, 9));
  control.id = id;
  return h('div', {class: 'field'}, h('label', {for: id}, label), control,
    hint ? h('small', {class: 'hint'}, hint) : null);
}

const fmt = new Intl.NumberFormat('en');
function num(n) { return n === null || n === undefined ? '–' : fmt.format(n); }
function share(r) { return r === null || r === undefined || !isFinite(r) ? '–' : (r * 100).toFixed(1) + '%'; }
function pct(r) { return r === null || r === undefined || !isFinite(r) ? '–' : (r >= 0 ? '+' : '') + (r * 100).toFixed(1) + '%'; }
function when(iso) { return iso ? new Date(iso).toLocaleString() : '–'; }
function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function message(text, kind) {
  return h('p', {class: 'msg ' + (kind || 'info'), role: kind === 'error' ? 'alert' : 'status'}, text);
}

// ---------------------------------------------------------------------------------------------
// Projects and the API

function projects() {
  try { return JSON.parse(localStorage.getItem(STORE_PROJECTS)) || []; } catch { return []; }
}
function current() {
  const all = projects();
  return all.find((p) => p.id === localStorage.getItem(STORE_CURRENT)) || all[0] || null;
}
function saveProjects(all, currentId) {
  localStorage.setItem(STORE_PROJECTS, JSON.stringify(all));
  if (currentId) localStorage.setItem(STORE_CURRENT, currentId);
}

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message ? (e.field ? `${e.field}: ${e.message}` : e.message) : `HTTP ${status}`);
    this.status = status;
    this.code = e.code;
    this.field = e.field;
  }
}

// The headers that say who is asking: the project's read key, or the session's project and,
// for changes, its CSRF token.
function authHeaders(method, project) {
  const headers = {};
  if (!project) return headers;
  if (project.key) headers.Authorization = 'Bearer ' + project.key;
  else if (project.session) {
    headers['X-Tally-Project'] = project.id;
    if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = localStorage.getItem(STORE_CSRF) || '';
  }
  return headers;
}

async function request(path, opts = {}) {
  const method = opts.method || 'GET';
  const headers = Object.assign(
    opts.key !== undefined ? authHeaders(method, opts.key ? {key: opts.key} : null) : authHeaders(method, current()),
    opts.headers || {});
  let body = opts.body;
  if (body !== undefined && typeof body !== 'string') {
    body = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  const r = await fetch(path, {method, headers, body, signal: opts.signal, credentials: 'same-origin'});
  if (!r.ok) {
    const b = await r.json().catch(() => null);
    if (r.status === 401 && opts.key === undefined && !opts.public) {
      signOutCurrent((current() || {}).session ? 'Your session has ended; sign in again.' : 'Your key was not accepted any more; sign in again.');
    }
    throw new ApiError(r.status, b);
  }
  if (opts.raw) return r;
  if (r.status === 204) return null;
  const ct = r.headers.get('content-type') || '';
  return ct.includes('json') ? r.json() : r.text();
}
const api = {
  get: (p, o) => request(p, o),
  post: (p, body, o) => request(p, Object.assign({method: 'POST', body}, o)),
  put: (p, body, o) => request(p, Object.assign({method: 'PUT', body}, o)),
  del: (p, o) => request(p, Object.assign({method: 'DELETE'}, o)),
};

// Server-sent events over fetch (EventSource cannot send the Authorization header).
async function eventStream(path, onEvent, signal) {
  while (!signal.aborted) {
    try {
      const r = await fetch(path, {
        headers: Object.assign(authHeaders('GET', current()), {Accept: 'text/event-stream'}), signal,
        credentials: 'same-origin',
      });
      if (!r.ok) {
        const b = await r.json().catch(() => null);
        onEvent('error', (b && b.error) || {message: 'HTTP ' + r.status});
        if (r.status === 401 || r.status === 400) return;
      } else {
        onEvent('open', null);
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          buf += value.replace(/\r\n/g, '\n');
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const chunk = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let event = 'message';
            const data = [];
            for (const line of chunk.split('\n')) {
              if (line.startsWith('event:')) event = line.slice(6).trim();
              else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
            }
            if (data.length) onEvent(event, JSON.parse(data.join('\n')));
          }
        }
      }
    } catch (e) {
      if (signal.aborted) return;
    }
    onEvent('closed', null);
    await sleep(3000);
  }
}

// ---------------------------------------------------------------------------------------------
// Layout and routing

const app = document.getElementById('app');
let pageAbort = new AbortController();

function signOutCurrent(reason) {
  const cur = current();
  // A session signs out of all of its projects at once, and ends on the server first.
  const rest = projects().filter((p) => !cur || (cur.session ? !p.session : p.id !== cur.id));
  const finish = () => {
    saveProjects(rest, rest[0] && rest[0].id);
    if (!rest.length) localStorage.removeItem(STORE_CURRENT);
    location.hash = '#/signin';
    if (reason) sessionStorage.setItem('tally.signin.reason', reason);
    route();
  };
  if (cur && cur.session) {
    const csrf = localStorage.getItem(STORE_CSRF) || '';
    localStorage.removeItem(STORE_CSRF);
    fetch('/v1/session', {method: 'DELETE', credentials: 'same-origin', headers: {'X-CSRF-Token': csrf}})
      .catch(() => {}).finally(finish);
    return;
  }
  finish();
}

function renderHeader(page) {
  const top = document.getElementById('top');
  top.hidden = false;
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.dataset.page === page);
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const picker = document.getElementById('project-picker');
  const cur = current();
  picker.replaceChildren(
    ...projects().map((p) => h('option', {value: p.id, selected: cur && p.id === cur.id}, p.name)),
    h('option', {value: '+'}, 'Add a project…'),
  );
  picker.onchange = () => {
    if (picker.value === '+') { location.hash = '#/signin'; return; }
    localStorage.setItem(STORE_CURRENT, picker.value);
    route();
  };
  document.getElementById('sign-out').onclick = () => signOutCurrent();
}

function route() {
  pageAbort.abort();
  pageAbort = new AbortController();
  const signal = pageAbort.signal;
  const share = location.pathname.match(/^\/share\/([^/]+)$/);
  if (share) return sharedPage(decodeURIComponent(share[1]), signal);
  const parts = (location.hash.replace(/^#\/?/, '') || 'overview').split('/');
  if (!current() || parts[0] === 'signin') return signInPage();
  const page = parts[0];
  renderHeader(page);
  app.replaceChildren();
  const pages = {
    overview: () => overviewPage(signal),
    explore: () => explorePage(signal),
    funnels: () => funnelsPage(signal),
    retention: () => retentionPage(signal),
    dashboards: () => (parts[1] ? dashboardPage(parts[1], signal) : dashboardsPage(signal)),
    reports: () => (parts[1] ? reportPage(parts[1], signal) : reportsPage(signal)),
  };
  (pages[page] || pages.overview)();
  document.title = 'Tally · ' + (current().name || '');
}

window.addEventListener('hashchange', route);
window.addEventListener('DOMContentLoaded', route);

// ---------------------------------------------------------------------------------------------
// Sign in

function signInPage() {
  document.getElementById('top').hidden = projects().length === 0;
  if (projects().length) renderHeader('');
  const reason = sessionStorage.getItem('tally.signin.reason');
  sessionStorage.removeItem('tally.signin.reason');
  const key = h('input', {type: 'password', name: 'key', autocomplete: 'off', required: true,
    placeholder: 'tr_…', testid: 'signin-key'});
  const out = h('div');
  const email = h('input', {type: 'email', name: 'email', autocomplete: 'username', required: true,
    testid: 'signin-email'});
  const password = h('input', {type: 'password', name: 'password', autocomplete: 'current-password',
    required: true, testid: 'signin-password'});
  const accountOut = h('div');
  const account = h('form', {class: 'card signin', testid: 'account-form', onsubmit: async (e) => {
    e.preventDefault();
    accountOut.replaceChildren();
    try {
      const s = await api.post('/v1/session', {email: email.value.trim(), password: password.value}, {key: null});
      if (!s.projects.length) {
        accountOut.append(message('You have no role in any project yet; ask an owner to add you.', 'error'));
        return;
      }
      localStorage.setItem(STORE_CSRF, s.csrf_token);
      const all = projects().filter((x) => !x.session && !s.projects.some((p) => p.id === x.id));
      for (const p of s.projects) all.push({id: p.id, name: p.name, role: p.role, session: true, user: s.user.email});
      saveProjects(all, s.projects[0].id);
      location.hash = '#/overview';
      route();
    } catch (err) {
      accountOut.append(message(err.message, 'error'));
    }
  }},
  h('h1', {}, 'Sign in to Tally'),
  reason ? message(reason, 'error') : null,
  field('Email', email),
  field('Password', password),
  h('button', {type: 'submit', class: 'primary', testid: 'account-submit'}, 'Sign in'),
  accountOut);
  const form = h('form', {class: 'card signin', testid: 'signin-form', onsubmit: async (e) => {
    e.preventDefault();
    out.replaceChildren();
    try {
      const p = await api.get('/v1/project', {key: key.value.trim()});
      if (p.scope !== 'read') {
        out.append(message(`This is ${p.scope === 'admin' ? 'an' : 'a'} ${p.scope} key. Sign in with the project's read key (tr_…), which \`tally project create\` printed.`, 'error'));
        return;
      }
      const all = projects().filter((x) => x.id !== p.id);
      all.push({id: p.id, name: p.name, key: key.value.trim()});
      saveProjects(all, p.id);
      location.hash = '#/overview';
      route();
    } catch (err) {
      out.append(message(err.status === 401 ? 'This key is unknown or revoked.' : err.message, 'error'));
    }
  }},
  h('h2', {}, 'Or with a read key'),
  h('p', {}, 'Use a project\'s read key. It stays in this browser; add more projects later to switch between them.'),
  field('Read key', key),
  h('button', {type: 'submit', class: 'primary', testid: 'signin-submit'}, 'Sign in with the key'),
  out);
  app.replaceChildren(account, form);
  email.focus();
}

// ---------------------------------------------------------------------------------------------
// Overview (live)

function rangeSelect(value, onchange, testid) {
  const s = select(RANGES, value, {testid, 'aria-label': 'Time range'});
  s.onchange = () => onchange(s.value);
  return s;
}

function stat(label, value, testid, extra) {
  return h('div', {class: 'stat'},
    h('span', {class: 'label'}, label),
    h('strong', {testid, 'data-value': value}, num(value)),
    extra || null);
}

function overviewPage(signal) {
  const range = localStorage.getItem(STORE_RANGE) || 'past_7_days';
  const live = h('span', {class: 'live', testid: 'live-status'}, 'connecting…');
  const body = h('div', {testid: 'overview'}, h('p', {class: 'muted'}, 'Loading…'));
  app.append(
    h('div', {class: 'page-head'},
      h('h1', {}, 'Overview'),
      h('div', {class: 'tools'}, live,
        rangeSelect(range, (v) => { localStorage.setItem(STORE_RANGE, v); route(); }, 'overview-range'))),
    body);
  const path = `/v1/overview/stream?range=${range}&timezone=${encodeURIComponent(TZ)}`;
  const hidden = new Set();
  eventStream(path, (event, data) => {
    if (event === 'overview') {
      live.textContent = 'live · updated ' + new Date().toLocaleTimeString();
      live.classList.add('on');
      body.replaceChildren(renderOverview(data, hidden));
    } else if (event === 'open') {
      live.textContent = 'live';
    } else if (event === 'closed') {
      live.textContent = 'reconnecting…';
      live.classList.remove('on');
    } else if (event === 'error') {
      body.prepend(message(data.message || 'The overview failed.', 'error'));
    }
  }, signal);
}

function renderOverview(o, hidden) {
  const r = o.range;
  const delta = (now, before) => h('span', {class: 'delta ' + (now >= before ? 'up' : 'down'),
    title: `previous period: ${num(before)}`}, before ? pct((now - before) / before) : 'new');
  const cards = h('div', {class: 'stats'},
    h('section', {class: 'card'}, h('h2', {}, h('span', {class: 'dot'}), `Now (last 5 min)`),
      h('div', {class: 'row'}, stat('Events', o.now.events, 'now-events'), stat('Persons', o.now.persons, 'now-persons'))),
    h('section', {class: 'card'}, h('h2', {}, 'Today'),
      h('div', {class: 'row'}, stat('Events', o.today.events, 'today-events'), stat('Persons', o.today.persons, 'today-persons'))),
    h('section', {class: 'card'}, h('h2', {}, 'This week'),
      h('div', {class: 'row'}, stat('Events', o.week.events, 'week-events'), stat('Persons', o.week.persons, 'week-persons'))),
    h('section', {class: 'card'}, h('h2', {}, RANGES.find((x) => x[0] === r.relative)?.[1] || r.relative),
      h('div', {class: 'row'},
        stat('Events', r.events, 'range-events', delta(r.events, r.previous_events)),
        stat('Persons', r.persons, 'range-persons', delta(r.persons, r.previous_persons)))),
  );
  const series = {
    labels: o.series.rows.map((x) => x[0]),
    series: [
      {name: 'Events', values: o.series.rows.map((x) => x[1])},
      {name: 'Persons', values: o.series.rows.map((x) => x[2])},
    ],
    interval: o.series.interval,
  };
  const chart = h('section', {class: 'card wide'}, h('h2', {}, `Events and persons per ${o.series.interval}`),
    lineChart(series, hidden));
  const names = {events: 'Top events', pages: 'Top pages', referrers: 'Top referrers',
    countries: 'Countries', browsers: 'Browsers'};
  const tops = h('div', {class: 'tops'}, ...Object.entries(names).map(([k, title]) =>
    h('section', {class: 'card', testid: 'top-' + k}, h('h2', {}, title), topTable(o.top[k] || []))));
  return h('div', {}, cards, chart, tops);
}

function topTable(rows) {
  if (!rows.length) return h('p', {class: 'muted'}, 'No data in this range.');
  const max = Math.max(...rows.map((r) => r.events), 1);
  return h('table', {class: 'toplist'},
    h('thead', {}, h('tr', {}, h('th', {}, ''), h('th', {class: 'n'}, 'Events'), h('th', {class: 'n'}, 'Share'))),
    h('tbody', {}, ...rows.map((r) => h('tr', {},
      h('td', {class: 'bar', style: `--w:${(100 * r.events / max).toFixed(1)}%`, title: String(r.value)}, String(r.value)),
      h('td', {class: 'n', 'data-value': r.events}, num(r.events)),
      h('td', {class: 'n'}, share(r.share))))));
}

// An interactive line chart: hover for values, click a legend entry to hide its series.
function lineChart(data, hidden) {
  const W = 960, H = 260, L = 48, R = 12, T = 12, B = 28;
  const wrap = h('div', {class: 'chart'});
  const legend = h('div', {class: 'legend'});
  const tip = h('div', {class: 'tip', hidden: true});
  const draw = () => {
    const shown = data.series.filter((s) => !hidden.has(s.name));
    const max = Math.max(1, ...shown.flatMap((s) => s.values));
    const n = data.labels.length;
    const x = (i) => L + (n <= 1 ? 0 : (i * (W - L - R)) / (n - 1));
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.setAttribute('role', 'img');
    const add = (tag, attrs, text) => {
      const e = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      if (text !== undefined) e.textContent = text;
      svg.append(e);
      return e;
    };
    for (let k = 0; k <= 4; k++) {
      const v = (max * k) / 4;
      add('line', {x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: '#e4e7eb'});
      add('text', {x: L - 6, y: y(v) + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#616e7c'},
        new Intl.NumberFormat('en', {notation: 'compact'}).format(v));
    }
    const step = Math.max(1, Math.ceil(n / 8));
    data.labels.forEach((l, i) => {
      if (i % step) return;
      const d = new Date(l);
      // The last label ends at its point, so it is not cut off at the right edge.
      add('text', {x: x(i), y: H - 8, 'text-anchor': n > 1 && i === n - 1 ? 'end' : 'middle', 'font-size': 11, fill: '#616e7c'},
        data.interval === 'hour' ? d.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'})
          : d.toLocaleDateString([], {month: 'short', day: 'numeric'}));
    });
    data.series.forEach((s, si) => {
      if (hidden.has(s.name)) return;
      add('polyline', {points: s.values.map((v, i) => `${x(i)},${y(v)}`).join(' '), fill: 'none',
        stroke: COLORS[si], 'stroke-width': 2});
    });
    const cursor = add('line', {x1: 0, x2: 0, y1: T, y2: H - B, stroke: '#9aa5b1', visibility: 'hidden'});
    svg.addEventListener('mousemove', (ev) => {
      const rect = svg.getBoundingClientRect();
      const px = ((ev.clientX - rect.left) / rect.width) * W;
      const i = Math.max(0, Math.min(n - 1, Math.round(((px - L) / (W - L - R)) * (n - 1))));
      if (!n) return;
      cursor.setAttribute('x1', x(i)); cursor.setAttribute('x2', x(i));
      cursor.setAttribute('visibility', 'visible');
      tip.hidden = false;
      tip.replaceChildren(h('b', {}, when(data.labels[i])),
        ...data.series.filter((s) => !hidden.has(s.name)).map((s) => h('div', {}, `${s.name}: ${num(s.values[i])}`)));
      tip.style.left = `${(x(i) / W) * 100}%`;
    });
    svg.addEventListener('mouseleave', () => { tip.hidden = true; cursor.setAttribute('visibility', 'hidden'); });
    legend.replaceChildren(...data.series.map((s, si) => h('button', {type: 'button',
      class: 'key' + (hidden.has(s.name) ? ' off' : ''), 'aria-pressed': String(!hidden.has(s.name)),
      onclick: () => { if (hidden.has(s.name)) hidden.delete(s.name); else hidden.add(s.name); draw(); }},
    h('i', {style: `background:${COLORS[si]}`}), s.name)));
    wrap.replaceChildren(legend, svg, tip);
  };
  draw();
  return wrap;
}

// ---------------------------------------------------------------------------------------------
// Widgets: preview, render, table

function resultTable(t) {
  if (!t || !t.rows || !t.rows.length) return h('p', {class: 'muted'}, 'No rows.');
  const rows = t.rows.slice(0, 200);
  return h('div', {class: 'table-wrap'}, h('table', {class: 'data', testid: 'result-table'},
    h('thead', {}, h('tr', {}, ...t.columns.map((c) => h('th', {}, c)))),
    h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((v) => h('td', {class: typeof v === 'number' ? 'n' : ''},
      typeof v === 'number' ? num(Math.round(v * 1000) / 1000) : v === null ? '–' : String(v))))))),
  t.rows.length > rows.length ? h('p', {class: 'muted'}, `First ${rows.length} of ${t.rows.length} rows.`) : null);
}

// Puts a server-rendered SVG chart into `el` (its markup comes from Tally's ChartGenerator).
function putSvg(el, svgText) {
  const doc = new DOMParser().parseFromString(svgText, 'image/svg+xml');
  const svg = doc.documentElement;
  if (svg.nodeName !== 'svg') throw new Error('not an SVG chart');
  svg.removeAttribute('width');
  svg.removeAttribute('height');
  el.replaceChildren(document.importNode(svg, true));
}

async function previewWidget(widget, chartEl, tableEl, signal) {
  chartEl.replaceChildren(h('p', {class: 'muted'}, 'Running…'));
  tableEl.replaceChildren();
  const body = Object.assign({timezone: TZ}, widget);
  try {
    const [svg, data] = await Promise.all([
      api.post('/v1/widgets/preview?format=svg&width=900&height=340', body, {signal}),
      api.post('/v1/widgets/preview?format=json', body, {signal}),
    ]);
    putSvg(chartEl, svg);
    tableEl.replaceChildren(
      h('p', {class: 'muted'}, `${when(data.time_range.from)} – ${when(data.time_range.to)} (${data.time_range.timezone})`),
      resultTable(data.result));
    return true;
  } catch (e) {
    if (signal.aborted) return false;
    chartEl.replaceChildren(message(e.message, 'error'));
    return false;
  }
}

// "Pin to dashboard": picks a dashboard (or names a new one) and adds the widget.
function pinForm(getWidget, signal) {
  const title = h('input', {type: 'text', testid: 'pin-title', placeholder: 'Widget title'});
  const target = h('select', {testid: 'pin-dashboard', 'aria-label': 'Dashboard'});
  const newName = h('input', {type: 'text', testid: 'pin-new-name', placeholder: 'New dashboard name'});
  const out = h('div');
  const load = async () => {
    const {dashboards} = await api.get('/v1/dashboards', {signal});
    target.replaceChildren(...dashboards.map((d) => h('option', {value: d.id}, d.name)),
      h('option', {value: ''}, 'New dashboard…'));
    newName.hidden = dashboards.length > 0;
  };
  target.onchange = () => { newName.hidden = target.value !== ''; };
  load().catch((e) => out.append(message(e.message, 'error')));
  const form = h('form', {class: 'pin', onsubmit: async (e) => {
    e.preventDefault();
    out.replaceChildren();
    const widget = getWidget();
    widget.title = title.value.trim() || widget.title;
    try {
      let id = target.value;
      if (!id) {
        const d = await api.post('/v1/dashboards', {name: newName.value.trim() || 'My dashboard',
          time_range: widget.time_range || 'past_30_days', timezone: TZ, widgets: []});
        id = d.id;
      }
      delete widget.time_range;
      await api.post(`/v1/dashboards/${id}/widgets`, widget);
      out.append(h('p', {class: 'msg ok', role: 'status', testid: 'pin-done'}, 'Pinned. ',
        h('a', {href: `#/dashboards/${id}`}, 'Open the dashboard')));
      await load();
      target.value = id;
    } catch (err) {
      out.append(message(err.message, 'error'));
    }
  }},
  h('h3', {}, 'Pin to a dashboard'),
  h('div', {class: 'inline'}, title, target, newName,
    h('button', {type: 'submit', testid: 'pin-submit'}, 'Pin')),
  out);
  return {form, title};
}

// ---------------------------------------------------------------------------------------------
// Explore

function filterRow(f) {
  const fieldIn = h('input', {type: 'text', placeholder: 'field, e.g. context.country', value: f ? f[0] : '', class: 'f-field'});
  const op = select(OPS, f ? f[1] : 'eq', {class: 'f-op', 'aria-label': 'Operator'});
  const val = h('input', {type: 'text', placeholder: 'value', value: f && f[2] !== undefined ? String(f[2]) : '', class: 'f-value'});
  const row = h('div', {class: 'filter-row'}, fieldIn, op, val,
    h('button', {type: 'button', class: 'link', title: 'Remove filter', onclick: () => row.remove()}, 'Remove'));
  return row;
}

function readFilters(container) {
  const out = [];
  for (const row of container.querySelectorAll('.filter-row')) {
    const f = row.querySelector('.f-field').value.trim();
    const op = row.querySelector('.f-op').value;
    const raw = row.querySelector('.f-value').value.trim();
    if (!f) continue;
    if (op === 'exists') { out.push([f, op]); continue; }
    let v = raw;
    if (op === 'in') v = raw.split(',').map((s) => s.trim()).filter(Boolean);
    else if ((op === 'gt' || op === 'lt') && raw !== '' && !isNaN(Number(raw))) v = Number(raw);
    out.push([f, op, v]);
  }
  return out;
}

async function eventNames(signal) {
  try {
    const o = await api.get(`/v1/overview?range=past_90_days&timezone=${encodeURIComponent(TZ)}`, {signal});
    return (o.top.events || []).map((r) => r.value);
  } catch { return []; }
}

function eventList(names) {
  const id = 'events-' + Math.random().toString(36).slice(2, 7);
  return {id, list: h('datalist', {id}, ...names.map((n) => h('option', {value: n})))};
}

async function explorePage(signal) {
  const {id: listId, list} = eventList(await eventNames(signal));
  const ev = h('input', {type: 'text', list: listId, placeholder: 'all events', testid: 'explore-event'});
  const measure = select(MEASURES, 'count', {testid: 'explore-measure'});
  const property = h('input', {type: 'text', placeholder: 'properties.value', testid: 'explore-property'});
  const propField = field('Property', property, 'numeric property for sum, avg, min, max and percentiles');
  const filters = h('div', {class: 'filters'});
  const breakdown = h('input', {type: 'text', placeholder: 'e.g. browser, context.country, path', testid: 'explore-breakdown'});
  const interval = select(INTERVALS, 'day', {testid: 'explore-interval'});
  const range = select(RANGES, 'past_30_days', {testid: 'explore-range'});
  const chart = select(CHARTS, 'line', {testid: 'explore-chart'});
  const chartEl = h('div', {class: 'chart', testid: 'explore-result'});
  const tableEl = h('div');
  const showProp = () => { propField.hidden = measure.value === 'count' || measure.value === 'unique_users'; };
  measure.onchange = showProp;
  showProp();
  // Charts without buckets need no interval and the other way round.
  chart.onchange = () => {
    if (['hbar', 'pie', 'donut', 'number'].includes(chart.value)) interval.value = '';
    else if (!interval.value) interval.value = 'day';
  };
  const widget = () => {
    const q = {kind: 'trend', measure: {op: measure.value}};
    if (ev.value.trim()) q.event = ev.value.trim();
    if (!propField.hidden && property.value.trim()) q.measure.property = property.value.trim();
    const fs = readFilters(filters);
    if (fs.length) q.filters = fs;
    if (breakdown.value.trim()) {
      q.group_by = [breakdown.value.trim()];
      q.limit = interval.value ? 5 : 10;
      if (interval.value) q.other = true;
    }
    if (interval.value) q.interval = interval.value;
    const label = (ev.value.trim() || 'All events') + ' · ' + measure.value.replace('_', ' ') +
      (breakdown.value.trim() ? ' by ' + breakdown.value.trim() : '');
    return {title: label, chart: chart.value, query: q, time_range: range.value};
  };
  const pin = pinForm(widget, signal);
  const form = h('form', {class: 'card builder', testid: 'explore-form', onsubmit: async (e) => {
    e.preventDefault();
    const w = widget();
    pin.title.placeholder = w.title;
    await previewWidget(w, chartEl, tableEl, signal);
  }},
  list,
  h('div', {class: 'grid-form'},
    field('Event', ev), field('Measure', measure), propField,
    field('Breakdown', breakdown), field('Interval', interval), field('Range', range), field('Chart', chart)),
  h('div', {class: 'field'}, h('label', {}, 'Filters'), filters,
    h('button', {type: 'button', class: 'link', testid: 'explore-add-filter',
      onclick: () => filters.append(filterRow())}, '+ Add filter')),
  h('button', {type: 'submit', class: 'primary', testid: 'explore-run'}, 'Run'));
  app.append(h('div', {class: 'page-head'}, h('h1', {}, 'Explore')), form,
    h('section', {class: 'card wide'}, chartEl, tableEl, pin.form));
}

// ---------------------------------------------------------------------------------------------
// Funnels and retention

async function funnelsPage(signal) {
  const {id: listId, list} = eventList(await eventNames(signal));
  const steps = h('ol', {class: 'steps', testid: 'funnel-steps'});
  const addStep = (v) => {
    const li = h('li', {}, h('input', {type: 'text', list: listId, value: v || '', placeholder: 'event name', class: 'step'}),
      h('button', {type: 'button', class: 'link', onclick: () => li.remove()}, 'Remove'));
    steps.append(li);
  };
  addStep('signup'); addStep('login'); addStep('purchase');
  const windowIn = h('input', {type: 'text', value: '7d', testid: 'funnel-window', size: 6});
  const breakdown = h('input', {type: 'text', placeholder: 'optional, e.g. context.country'});
  const range = select(RANGES, 'past_30_days');
  const chartEl = h('div', {class: 'chart', testid: 'funnel-result'});
  const tableEl = h('div');
  const widget = () => {
    const q = {kind: 'funnel', steps: [...steps.querySelectorAll('.step')].map((i) => i.value.trim())
      .filter(Boolean).map((e) => ({event: e})), window: windowIn.value.trim() || '7d'};
    if (breakdown.value.trim()) q.breakdown = breakdown.value.trim();
    return {title: 'Funnel: ' + q.steps.map((s) => s.event).join(' → '), chart: 'funnel', query: q, time_range: range.value};
  };
  const pin = pinForm(widget, signal);
  app.append(h('div', {class: 'page-head'}, h('h1', {}, 'Funnels')),
    h('form', {class: 'card builder', onsubmit: async (e) => { e.preventDefault(); await previewWidget(widget(), chartEl, tableEl, signal); }},
      list,
      h('p', {class: 'muted'}, 'A person reaches a step when its events happen in this order, all within the window of the first step.'),
      h('div', {class: 'field'}, h('label', {}, 'Steps'), steps,
        h('button', {type: 'button', class: 'link', onclick: () => addStep('')}, '+ Add step')),
      h('div', {class: 'grid-form'}, field('Window', windowIn, 'e.g. 1h, 1d, 7d'), field('Breakdown', breakdown), field('Range', range)),
      h('button', {type: 'submit', class: 'primary', testid: 'funnel-run'}, 'Run')),
    h('section', {class: 'card wide'}, chartEl, tableEl, pin.form));
}

async function retentionPage(signal) {
  const {id: listId, list} = eventList(await eventNames(signal));
  const cohort = h('input', {type: 'text', list: listId, value: 'signup', testid: 'retention-cohort'});
  const ret = h('input', {type: 'text', list: listId, value: 'pageview', testid: 'retention-return'});
  const period = select([['day', 'Day'], ['week', 'Week'], ['month', 'Month']], 'week');
  const periods = h('input', {type: 'number', min: 1, max: 52, value: 8});
  const range = select(RANGES, 'past_90_days');
  const chartEl = h('div', {class: 'chart', testid: 'retention-result'});
  const tableEl = h('div');
  const widget = () => ({
    title: `Retention: ${cohort.value.trim()} → ${ret.value.trim()}`, chart: 'retention', time_range: range.value,
    query: {kind: 'retention', cohort_event: cohort.value.trim(), return_event: ret.value.trim(),
      period: period.value, periods: Number(periods.value) || 8},
  });
  const pin = pinForm(widget, signal);
  app.append(h('div', {class: 'page-head'}, h('h1', {}, 'Retention')),
    h('form', {class: 'card builder', onsubmit: async (e) => { e.preventDefault(); await previewWidget(widget(), chartEl, tableEl, signal); }},
      list,
      h('p', {class: 'muted'}, 'Cohorts by the period of each person\'s first cohort event; then the share of them who came back in each later period.'),
      h('div', {class: 'grid-form'}, field('Cohort event', cohort), field('Return event', ret), field('Period', period),
        field('Periods', periods), field('Range', range)),
      h('button', {type: 'submit', class: 'primary', testid: 'retention-run'}, 'Run')),
    h('section', {class: 'card wide'}, chartEl, tableEl, pin.form));
}

// ---------------------------------------------------------------------------------------------
// Dashboards

async function dashboardsPage(signal) {
  const list = h('div', {class: 'card', testid: 'dashboard-list'}, h('p', {class: 'muted'}, 'Loading…'));
  const name = h('input', {type: 'text', required: true, placeholder: 'Dashboard name', testid: 'new-dashboard-name'});
  const out = h('div');
  app.append(h('div', {class: 'page-head'}, h('h1', {}, 'Dashboards')),
    h('form', {class: 'card inline', onsubmit: async (e) => {
      e.preventDefault();
      try {
        const d = await api.post('/v1/dashboards', {name: name.value.trim(), timezone: TZ, widgets: []});
        location.hash = `#/dashboards/${d.id}`;
      } catch (err) { out.replaceChildren(message(err.message, 'error')); }
    }}, name, h('button', {type: 'submit', class: 'primary'}, 'Create dashboard'), out),
    list);
  try {
    const {dashboards} = await api.get('/v1/dashboards', {signal});
    list.replaceChildren(dashboards.length
      ? h('ul', {class: 'plain'}, ...dashboards.map((d) => h('li', {},
        h('a', {href: `#/dashboards/${d.id}`}, d.name),
        h('span', {class: 'muted'}, ` · ${d.widgets.length} widget${d.widgets.length === 1 ? '' : 's'} · ${d.time_range}`))))
      : h('p', {class: 'muted'}, 'No dashboards yet. Build a query in Explore, Funnels or Retention and pin it, or create one here.'));
  } catch (e) { if (!signal.aborted) list.replaceChildren(message(e.message, 'error')); }
}

const ROW_PX = 72;

// Draws a dashboard's grid. `widgetPath(w)` is where each widget's SVG comes from.
function dashboardGrid(def, widgetPath, edit, signal) {
  const grid = h('div', {class: 'dash-grid' + (edit ? ' editing' : ''), testid: 'dashboard-grid'});
  if (!def.widgets.length) {
    grid.append(h('p', {class: 'muted'}, 'This dashboard has no widgets yet.'));
  }
  for (const w of def.widgets) {
    const l = w.layout;
    const body = h('div', {class: 'widget-body'}, h('p', {class: 'muted'}, 'Loading…'));
    const tile = h('article', {class: 'widget', testid: 'widget', 'data-widget': w.id,
      style: `grid-column:${l.x + 1} / span ${l.w};grid-row:${l.y + 1} / span ${l.h}`},
    h('header', {}, h('h3', {}, w.title), edit ? edit(w) : null), body);
    grid.append(tile);
    const width = Math.max(240, l.w * 100);
    const height = Math.max(120, l.h * ROW_PX - 56);
    request(widgetPath(w, width, height), {signal, public: true, key: def.key})
      .then((svg) => putSvg(body, svg))
      .catch((e) => { if (!signal.aborted) body.replaceChildren(message(e.message, 'error')); });
  }
  return grid;
}

async function dashboardPage(id, signal) {
  let saved;
  try {
    saved = await api.get(`/v1/dashboards/${encodeURIComponent(id)}`, {signal});
  } catch (e) {
    app.append(message(e.status === 404 ? 'No such dashboard in this project.' : e.message, 'error'));
    return;
  }
  let editing = null; // a working copy of the widgets while editing
  let range = '';
  const head = h('div', {class: 'page-head'});
  const gridHolder = h('div');
  const sharePanel = h('section', {class: 'card', hidden: true, testid: 'share-panel'});
  const out = h('div');
  const render = () => {
    const def = Object.assign({}, saved, {widgets: editing || saved.widgets});
    const tools = editing
      ? [h('button', {type: 'button', class: 'primary', testid: 'dashboard-save', onclick: save}, 'Save layout'),
        h('button', {type: 'button', onclick: () => { editing = null; render(); }}, 'Cancel')]
      : [rangeSelect(range || saved.time_range, (v) => { range = v; render(); }, 'dashboard-range'),
        h('button', {type: 'button', testid: 'dashboard-edit', onclick: () => { editing = structuredClone(saved.widgets); render(); }}, 'Edit'),
        h('button', {type: 'button', testid: 'dashboard-share', onclick: () => showShares(true)}, 'Share'),
        h('button', {type: 'button', class: 'danger', onclick: remove}, 'Delete')];
    head.replaceChildren(h('h1', {testid: 'dashboard-name'}, saved.name), h('div', {class: 'tools'}, ...tools));
    const rangeQ = range ? `&range=${range}` : '';
    gridHolder.replaceChildren(dashboardGrid(def,
      (w, width, height) => `/v1/dashboards/${saved.id}/widgets/${w.id}?format=svg&width=${width}&height=${height}${rangeQ}`,
      editing ? editControls : null, signal));
  };
  const editControls = (w) => {
    const l = w.layout;
    const change = (f) => () => { f(l); l.w = Math.min(12, Math.max(1, l.w)); l.x = Math.min(12 - l.w, Math.max(0, l.x));
      l.h = Math.min(12, Math.max(1, l.h)); l.y = Math.max(0, l.y); render(); };
    const b = (label, title, f, testid) => h('button', {type: 'button', class: 'mini', title, 'aria-label': title, testid, onclick: change(f)}, label);
    return h('div', {class: 'edit-tools'},
      b('←', 'Move left', (x) => { x.x -= 1; }), b('→', 'Move right', (x) => { x.x += 1; }),
      b('↑', 'Move up', (x) => { x.y -= 1; }), b('↓', 'Move down', (x) => { x.y += 1; }),
      b('⇤', 'Narrower', (x) => { x.w -= 1; }, 'widget-narrower'), b('⇥', 'Wider', (x) => { x.w += 1; }, 'widget-wider'),
      b('⤒', 'Shorter', (x) => { x.h -= 1; }), b('⤓', 'Taller', (x) => { x.h += 1; }, 'widget-taller'),
      h('button', {type: 'button', class: 'mini danger', title: 'Remove widget', testid: 'widget-remove',
        onclick: () => { editing = editing.filter((x) => x.id !== w.id); render(); }}, '✕'));
  };
  async function save() {
    out.replaceChildren();
    try {
      const body = {name: saved.name, description: saved.description, time_range: saved.time_range,
        timezone: saved.timezone, widgets: editing};
      saved = await api.put(`/v1/dashboards/${saved.id}`, body);
      editing = null;
      render();
      out.replaceChildren(h('p', {class: 'msg ok', role: 'status', testid: 'dashboard-saved'}, 'Saved.'));
    } catch (e) { out.replaceChildren(message(e.message, 'error')); }
  }
  async function remove() {
    if (!confirm(`Delete the dashboard “${saved.name}” and its share links?`)) return;
    await api.del(`/v1/dashboards/${saved.id}`);
    location.hash = '#/dashboards';
  }
  async function showShares(open, newUrl) {
    sharePanel.hidden = !open;
    const {shares} = await api.get(`/v1/dashboards/${saved.id}/shares`, {signal});
    sharePanel.replaceChildren(
      h('h2', {}, 'Share read-only'),
      h('p', {class: 'muted'}, 'Anyone with a link sees this dashboard, and nothing else, without signing in, until the link is revoked.'),
      h('button', {type: 'button', class: 'primary', testid: 'share-create', onclick: async () => {
        const s = await api.post(`/v1/dashboards/${saved.id}/shares`, {});
        await showShares(true, location.origin + s.path);
      }}, 'Create a share link'),
      newUrl ? h('div', {class: 'msg ok', testid: 'share-created'}, 'New link (shown only now): ',
        h('input', {type: 'text', readonly: true, value: newUrl, testid: 'share-url', size: 60,
          onfocus: (e) => e.target.select()})) : null,
      shares.length ? h('table', {class: 'data', testid: 'share-list'},
        h('thead', {}, h('tr', {}, h('th', {}, 'Link'), h('th', {}, 'Created'), h('th', {}, 'State'), h('th', {}, ''))),
        h('tbody', {}, ...shares.map((s) => h('tr', {},
          h('td', {}, s.prefix + '…'), h('td', {}, s.created_at),
          h('td', {}, s.revoked_at ? 'revoked ' + s.revoked_at : 'active'),
          h('td', {}, s.revoked_at ? '' : h('button', {type: 'button', class: 'danger', testid: 'share-revoke',
            onclick: async () => { await api.del(`/v1/dashboards/${saved.id}/shares/${s.id}`); await showShares(true); }}, 'Revoke'))))))
        : h('p', {class: 'muted'}, 'No links yet.'));
  }
  render();
  app.append(head, out, sharePanel, gridHolder);
}

// The read-only page a share link opens (no sign-in; the token in the URL is the key).
async function sharedPage(token, signal) {
  document.getElementById('top').hidden = true;
  app.replaceChildren(h('p', {class: 'muted'}, 'Loading…'));
  let def;
  try {
    def = await request(`/v1/shared/${encodeURIComponent(token)}`, {key: null, signal});
  } catch (e) {
    app.replaceChildren(h('section', {class: 'card signin', testid: 'share-error'},
      h('h1', {}, 'This link does not work'),
      h('p', {}, e.status === 404 ? 'It was revoked, or it never existed. Ask whoever shared it for a new one.' : e.message)));
    return;
  }
  document.title = 'Tally · ' + def.name;
  def.key = null;
  app.replaceChildren(
    h('div', {class: 'page-head'}, h('h1', {testid: 'dashboard-name'}, def.name),
      h('span', {class: 'badge', testid: 'read-only'}, 'read-only')),
    def.description ? h('p', {class: 'muted'}, def.description) : null,
    dashboardGrid(def, (w, width, height) =>
      `/v1/shared/${encodeURIComponent(token)}/widgets/${w.id}?format=svg&width=${width}&height=${height}`, null, signal),
    h('p', {class: 'muted foot'}, 'Shared from Tally.'));
}

// ---------------------------------------------------------------------------------------------
// Reports

async function reportsPage(signal) {
  const list = h('div', {class: 'card', testid: 'report-list'}, h('p', {class: 'muted'}, 'Loading…'));
  app.append(h('div', {class: 'page-head'}, h('h1', {}, 'Reports')), list);
  try {
    const {reports} = await api.get('/v1/reports', {signal});
    list.replaceChildren(reports.length ? h('table', {class: 'data'},
      h('thead', {}, h('tr', {}, h('th', {}, 'Report'), h('th', {}, 'Range'), h('th', {}, 'Schedule'), h('th', {}, 'Next run'), h('th', {}, 'Delivers to'))),
      h('tbody', {}, ...reports.map((r) => h('tr', {},
        h('td', {}, h('a', {href: `#/reports/${r.id}`}, r.title)),
        h('td', {}, r.time_range),
        h('td', {}, r.schedule ? `${r.schedule.cron} (${r.schedule.timezone || r.timezone || 'UTC'})` : 'on demand'),
        h('td', {}, when(r.next_run_at)),
        h('td', {}, (r.deliver || []).map((d) => d.type).join(', ') || '–')))))
      : h('p', {class: 'muted'}, 'No reports yet. Create them with POST /v1/reports or `tally reports create`.'));
  } catch (e) { if (!signal.aborted) list.replaceChildren(message(e.message, 'error')); }
}

// Shows an HTML rendering (a report's own self-contained page) in a sandboxed frame.
function htmlFrame(html) {
  const url = URL.createObjectURL(new Blob([html], {type: 'text/html'}));
  return h('iframe', {class: 'report-frame', sandbox: '', src: url, title: 'Report'});
}

async function reportPage(id, signal) {
  let report;
  try {
    report = await api.get(`/v1/reports/${encodeURIComponent(id)}`, {signal});
  } catch (e) {
    app.append(message(e.status === 404 ? 'No such report in this project.' : e.message, 'error'));
    return;
  }
  const view = h('div');
  const runs = h('div', {testid: 'run-history'}, h('p', {class: 'muted'}, 'Loading…'));
  const out = h('div');
  const loadRuns = async () => {
    const r = await api.get(`/v1/reports/${report.id}/runs?limit=50`, {signal});
    runs.replaceChildren(r.runs.length ? h('table', {class: 'data'},
      h('thead', {}, h('tr', {}, ...['Started', 'Trigger', 'Status', 'Range at', 'Duration', 'Deliveries', ''].map((c) => h('th', {}, c)))),
      h('tbody', {}, ...r.runs.map((run) => h('tr', {testid: 'run'},
        h('td', {}, when(run.started_at)), h('td', {}, run.trigger),
        h('td', {}, h('span', {class: 'status ' + run.status}, run.status), run.error ? h('div', {class: 'muted'}, run.error) : null),
        h('td', {}, when(run.at)),
        h('td', {class: 'n'}, run.duration_ms === null ? '–' : run.duration_ms + ' ms'),
        h('td', {}, run.deliveries.map((d) => `${d.type}: ${d.status}${d.attempts > 1 ? ` (${d.attempts} attempts)` : ''}`).join('; ') || '–'),
        h('td', {}, ['delivering', 'succeeded', 'failed'].includes(run.status) && run.watermark
          ? h('button', {type: 'button', class: 'link', onclick: async () => {
            try {
              view.replaceChildren(htmlFrame(await api.get(`/v1/reports/${report.id}/runs/${run.id}?format=html`)));
            } catch (e) { view.replaceChildren(message(e.message, 'error')); }
          }}, 'View') : '')))))
      : h('p', {class: 'muted'}, 'No runs yet.'));
  };
  app.append(
    h('div', {class: 'page-head'}, h('h1', {}, report.title), h('div', {class: 'tools'},
      h('button', {type: 'button', testid: 'report-render', onclick: async () => {
        view.replaceChildren(h('p', {class: 'muted'}, 'Rendering…'));
        try { view.replaceChildren(htmlFrame(await api.post(`/v1/reports/${report.id}/run?format=html`))); }
        catch (e) { view.replaceChildren(message(e.message, 'error')); }
      }}, 'Render now'),
      h('button', {type: 'button', class: 'primary', onclick: async () => {
        try {
          await api.post(`/v1/reports/${report.id}/send`);
          out.replaceChildren(h('p', {class: 'msg ok'}, 'Sending: the run appears below within seconds.'));
          setTimeout(() => loadRuns().catch(() => {}), 1500);
        } catch (e) { out.replaceChildren(message(e.message, 'error')); }
      }}, 'Send now'))),
    out,
    h('p', {class: 'muted'}, `${report.time_range} · ${report.sections.length} sections · ` +
      (report.schedule ? `cron ${report.schedule.cron}, next ${when(report.next_run_at)}` : 'no schedule')),
    h('section', {class: 'card wide'}, h('h2', {}, 'Run history'), runs),
    view);
  loadRuns().catch((e) => { if (!signal.aborted) runs.replaceChildren(message(e.message, 'error')); });
}
