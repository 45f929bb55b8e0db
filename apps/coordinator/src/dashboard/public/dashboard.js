// The consortium dashboard: reads the coordinator's REST API with the admin
// token and redraws when the /dashboard socket namespace reports a change.
// Plain browser JavaScript, so the coordinator serves it without a build step.
'use strict';

const CLASSES = [
  ['covid19', 'COVID-19'],
  ['cap', 'Community-acquired pneumonia'],
  ['non_pneumonia', 'Non-pneumonia'],
];
const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];
const TOKEN_KEY = 'covnet-admin-token';
const SVG = 'http://www.w3.org/2000/svg';

let token = null;
// The experiment the page shows; null means the coordinator's first, as the REST API defaults.
let experiment = null;
let refreshing = null;
let refreshAgain = false;

function start() {
  // A token in the URL fragment (#token=...) never reaches the server or its logs.
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromHash) {
    sessionStorage.setItem(TOKEN_KEY, fromHash);
    history.replaceState(null, '', location.pathname);
  }
  token = sessionStorage.getItem(TOKEN_KEY);
  document.getElementById('login').addEventListener('submit', (event) => {
    event.preventDefault();
    token = document.getElementById('token').value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    open();
  });
  document.getElementById('experiment').addEventListener('change', (event) => {
    experiment = event.target.value;
    refresh();
  });
  if (token) open();
  else showLogin('');
}

function showLogin(message) {
  document.getElementById('login').hidden = false;
  document.getElementById('dashboard').hidden = true;
  document.getElementById('login-error').textContent = message;
}

async function open() {
  const ok = await refresh();
  if (!ok) return;
  document.getElementById('login').hidden = true;
  document.getElementById('dashboard').hidden = false;
  connectLive();
}

function connectLive() {
  const badge = document.getElementById('connection');
  const socket = io('/dashboard', { auth: { token }, transports: ['websocket'] });
  socket.on('connect', () => setBadge(badge, 'online', 'live'));
  socket.on('disconnect', () => setBadge(badge, 'offline', 'reconnecting'));
  socket.on('connect_error', (error) => setBadge(badge, 'offline', `offline: ${error.message}`));
  socket.on('dashboard:changed', () => refresh());
}

function setBadge(badge, kind, text) {
  badge.className = `badge ${kind}`;
  badge.textContent = text;
}

/** Fetches everything and redraws; changes arriving during a fetch cause one more refresh. */
async function refresh() {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    try {
      const [overview, sites, rounds, models, auc] = await Promise.all(
        ['overview', 'sites', 'rounds', 'models', 'metrics/auc'].map((path) => api(path)),
      );
      renderExperimentPicker(overview);
      renderOverview(overview);
      renderSites(sites);
      renderRounds(rounds);
      renderModels(models);
      renderCharts(auc);
      document.body.dataset.updatedAt = new Date().toISOString();
      return true;
    } catch (error) {
      if (error.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin('The admin token was not accepted.');
      } else if (error.status === 429) {
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin('Too many wrong admin tokens from this address: wait a minute, then enter the token again.');
      } else {
        console.error('dashboard refresh failed', error);
      }
      return false;
    }
  })();
  try {
    return await refreshing;
  } finally {
    refreshing = null;
    if (refreshAgain) {
      refreshAgain = false;
      refresh();
    }
  }
}

// Sites belong to the consortium; every other view belongs to one experiment.
const PER_EXPERIMENT = new Set(['overview', 'rounds', 'models', 'metrics/auc']);

async function api(path) {
  const query = experiment !== null && PER_EXPERIMENT.has(path) ? `?experiment=${encodeURIComponent(experiment)}` : '';
  const response = await fetch(`/api/${path}${query}`, { headers: { authorization: `Bearer ${token}` } });
  if (!response.ok) {
    const error = new Error(`GET /api/${path} failed: HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

// ---- rendering helpers ----

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === 'className') node.className = value;
    else if (key.startsWith('data-') || key === 'title' || key === 'href') node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  return node;
}

function fill(tableId, rows) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...rows);
}

function auc3(value) {
  return value === null || value === undefined ? 'n/a' : value.toFixed(3);
}

function counts(value) {
  return value ? `${value.covid19} / ${value.cap} / ${value.non_pneumonia}` : '—';
}

function time(iso) {
  return iso ? new Date(iso).toLocaleString() : 'never';
}

function duration(seconds) {
  if (seconds === null) return 'running';
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  return `${(seconds / 60).toFixed(1)} min`;
}

function bytes(n) {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

// ---- sections ----

/** Lists the coordinator's experiments; the picker shows only when there is more than one. */
function renderExperimentPicker(o) {
  const picker = document.getElementById('experiment');
  const names = o.experiments ?? [o.experiment];
  picker.replaceChildren(...names.map((name) => element('option', { value: name, selected: name === o.experiment }, name)));
  picker.parentElement.hidden = names.length < 2;
}

function renderOverview(o) {
  const cards = [
    ['experiment', `${o.experiment} (${o.state})`],
    ['rounds done', `${o.roundsDone} of ${o.roundsPlanned}`],
    ['open round', o.openRound ?? '—'],
    ['sites online', `${o.sitesOnline} of ${o.sitesActive}`],
    ['latest model', `v${o.latestModelVersion}`],
    ['best on validation', o.bestModelVersion === null ? '—' : `v${o.bestModelVersion} (AUC ${auc3(o.bestMeanPooledAuc)})`],
  ];
  document.getElementById('overview').replaceChildren(
    ...cards.map(([label, value]) =>
      element('div', { className: 'card', 'data-card': label }, element('div', { className: 'label' }, label), element('div', { className: 'value' }, value)),
    ),
  );
}

function renderSites(sites) {
  fill(
    'sites',
    sites.map((s) => {
      let status = s.online ? 'online' : 'offline';
      if (s.revokedAt) status = 'revoked';
      return element(
        'tr',
        { 'data-site': s.name },
        element('td', {}, s.name),
        element('td', {}, element('span', { className: `badge ${status}` }, status)),
        element('td', {}, time(s.lastSeenAt)),
        element('td', {}, s.backend ? `${s.backend}${s.gpu ? ` on ${s.gpu}` : ''}` : '—'),
        element('td', {}, s.agentVersion ?? '—'),
        element('td', {}, counts(s.trainExams)),
        element('td', {}, counts(s.valExams)),
      );
    }),
  );
}

// A rejected update shows the code sent to its site, e.g. "hospital-c (rejected: update_norm_outlier)".
function leftOutText(l) {
  return l.reason === 'rejected' ? `${l.site} (rejected: ${l.code})` : `${l.site} (${l.reason.replace('_', ' ')})`;
}

function renderRounds(rounds) {
  fill(
    'rounds',
    [...rounds].reverse().map((r) =>
      element(
        'tr',
        { 'data-round': r.round },
        element('td', {}, r.round),
        element('td', {}, r.state),
        element('td', {}, r.modelVersionOut === null ? `v${r.modelVersionIn} →` : `v${r.modelVersionIn} → v${r.modelVersionOut}`),
        element('td', {}, r.participants.join(', ') || '—'),
        element('td', {}, duration(r.durationS)),
        element('td', {}, r.leftOut.map(leftOutText).join(', ') || '—'),
      ),
    ),
  );
}

function renderModels(models) {
  fill(
    'models',
    [...models].reverse().map((m) => {
      const download = element('button', { type: 'button' }, 'download');
      download.addEventListener('click', () => downloadModel(m));
      return element(
        'tr',
        { 'data-version': m.version },
        element('td', {}, `v${m.version} `, m.best ? element('span', { className: 'badge best' }, 'best') : ''),
        element('td', {}, m.round),
        element('td', {}, element('code', { title: m.sha256 }, m.sha256)),
        element('td', {}, bytes(m.byteLength)),
        element('td', {}, auc3(m.meanPooledAuc)),
        element('td', {}, download),
      );
    }),
  );
}

// The download route needs the Authorization header, which a plain link cannot send.
async function downloadModel(model) {
  const response = await fetch(model.downloadUrl, { headers: { authorization: `Bearer ${token}` } });
  if (!response.ok) {
    alert(`Download of model version ${model.version} failed: HTTP ${response.status}`);
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  const link = element('a', { href: url, download: `model-v${model.version}.cvnw` });
  link.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// ---- charts ----

const CHART = { width: 440, height: 250, left: 40, right: 110, top: 12, bottom: 30 };

function renderCharts(series) {
  const container = document.getElementById('charts');
  const sites = series.classes.covid19.sites.map((s) => s.site);
  const colour = new Map(sites.map((site, i) => [site, PALETTE[i % PALETTE.length]]));
  container.replaceChildren(
    ...CLASSES.map(([name, title]) => {
      const figure = element('figure', { className: 'chart', 'data-class': name }, element('h3', {}, title));
      figure.append(chart(series.rounds, series.classes[name], colour));
      return figure;
    }),
  );
}

function chart(rounds, data, colour) {
  const plotWidth = CHART.width - CHART.left - CHART.right;
  const plotHeight = CHART.height - CHART.top - CHART.bottom;
  const maxRound = Math.max(1, ...rounds);
  const x = (round) => CHART.left + (maxRound === 1 ? plotWidth / 2 : ((round - 1) / (maxRound - 1)) * plotWidth);
  const y = (auc) => CHART.top + (1 - auc) * plotHeight;
  const root = svg('svg', {
    viewBox: `0 0 ${CHART.width} ${CHART.height}`,
    role: 'img',
    'data-plot-top': CHART.top,
    'data-plot-height': plotHeight,
  });

  const axis = svg('g', { class: 'axis' });
  for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
    axis.append(svg('line', { x1: CHART.left, x2: CHART.left + plotWidth, y1: y(tick), y2: y(tick) }));
    const label = svg('text', { x: CHART.left - 6, y: y(tick) + 4, 'text-anchor': 'end' });
    label.textContent = tick.toFixed(2);
    axis.append(label);
  }
  for (const round of rounds) {
    const label = svg('text', { x: x(round), y: CHART.height - 10, 'text-anchor': 'middle' });
    label.textContent = `r${round}`;
    axis.append(label);
  }
  root.append(axis);

  // Confidence band of the pooled AUC: upper bounds left to right, lower bounds back.
  const banded = data.pooled.filter((p) => p.low !== null && p.high !== null);
  if (banded.length > 0) {
    const upper = banded.map((p) => `${x(p.round)},${y(p.high)}`);
    const lower = banded.map((p) => `${x(p.round)},${y(p.low)}`).reverse();
    const band = svg('polygon', { class: 'band', points: [...upper, ...lower].join(' ') });
    band.dataset.low = banded.map((p) => p.low).join(',');
    band.dataset.high = banded.map((p) => p.high).join(',');
    root.append(band);
  }

  const lines = [
    ...data.sites.map((s) => ({ name: s.site, points: s.points, colour: colour.get(s.site), pooled: false })),
    { name: 'pooled', points: data.pooled.map((p) => ({ round: p.round, auc: p.auc })), colour: '#1d2430', pooled: true },
  ];
  if (lines.every((line) => line.points.every((p) => p.auc === null))) {
    const empty = svg('text', { class: 'empty', x: CHART.left + plotWidth / 2, y: CHART.top + plotHeight / 2, 'text-anchor': 'middle' });
    empty.textContent = rounds.length === 0 ? 'no evaluation yet' : 'no AUC: no positive or no negative exams';
    root.append(empty);
  }
  lines.forEach((line, index) => {
    const defined = line.points.filter((p) => p.auc !== null);
    const group = svg('g', { 'data-series': line.name });
    if (defined.length > 1) {
      group.append(
        svg('polyline', {
          class: line.pooled ? 'series pooled' : 'series',
          stroke: line.colour,
          points: defined.map((p) => `${x(p.round)},${y(p.auc)}`).join(' '),
        }),
      );
    }
    for (const p of defined) {
      const point = svg('circle', { class: 'point', cx: x(p.round), cy: y(p.auc), r: line.pooled ? 4 : 3, fill: line.colour });
      point.dataset.round = p.round;
      point.dataset.auc = p.auc;
      const title = svg('title');
      title.textContent = `${line.name}, round ${p.round}: AUC ${auc3(p.auc)}`;
      point.append(title);
      group.append(point);
    }
    const legend = svg('text', { class: 'legend', x: CHART.left + plotWidth + 12, y: CHART.top + 12 + index * 15, fill: line.colour });
    legend.textContent = line.name;
    group.append(legend);
    root.append(group);
  });
  return root;
}

start();
