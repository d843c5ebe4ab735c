// mesh-relay status page. Reads GET /metrics, GET /meshes and
// GET /meshes/{id}/recent with the admin token, which stays in this tab's
// sessionStorage. Everything is drawn here; nothing is fetched from
// anywhere but this relay.
'use strict';

(function () {
  const TOKEN_KEY = 'mesh-relay-admin-token';
  const POLL_MS = 2000;
  const HISTORY = 150; // points: five minutes at one every two seconds

  const $ = (id) => document.getElementById(id);
  let token = null;
  let timer = null;
  let chosen = null; // meshId whose recorder is shown
  let meshes = [];
  let previous = null; // {t, in, out, refusals, byCode}
  const history = { t: [], in: [], out: [], refusals: [], connections: [] };

  class Refused extends Error {}

  async function api(path, asText) {
    const res = await fetch(path, {
      headers: { Authorization: 'Bearer ' + token },
      cache: 'no-store',
    });
    if (res.status === 401) throw new Refused('token refused');
    if (!res.ok) throw new Error(path + ': HTTP ' + res.status);
    return asText ? res.text() : res.json();
  }

  // ---- Prometheus text format: name{labels} value
  function parseMetrics(text) {
    const out = new Map();
    for (const line of text.split('\n')) {
      if (line === '' || line[0] === '#') continue;
      const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels = {};
      const re = /(\w+)="((?:[^"\\]|\\.)*)"/g;
      let l;
      while ((l = re.exec(m[2] || '')) !== null) labels[l[1]] = l[2].replace(/\\(.)/g, '$1');
      if (!out.has(m[1])) out.set(m[1], []);
      out.get(m[1]).push({ labels, value: Number(m[3]) });
    }
    return out;
  }
  const sum = (metrics, name) => (metrics.get(name) || []).reduce((a, s) => a + s.value, 0);

  // ---- formatting
  const fmt = (n) => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: 1 }) : '-');
  function bytes(n) {
    if (!Number.isFinite(n)) return '-';
    const units = ['B', 'KiB', 'MiB', 'GiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return n.toFixed(i === 0 ? 0 : 1) + ' ' + units[i];
  }
  function duration(s) {
    if (!Number.isFinite(s) || s < 0) return '-';
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d > 0) return d + 'd ' + h + 'h';
    if (h > 0) return h + 'h ' + m + 'm';
    return m + 'm ' + Math.floor(s % 60) + 's';
  }
  function clock(iso) {
    if (!iso) return '-';
    const t = new Date(iso);
    return Number.isNaN(t.getTime()) ? iso : t.toLocaleTimeString([], { hour12: false }) + '.' + String(t.getMilliseconds()).padStart(3, '0');
  }
  function ago(iso) {
    if (!iso) return '-';
    const s = (Date.now() - new Date(iso).getTime()) / 1000;
    return Number.isFinite(s) ? duration(Math.max(0, s)) + ' ago' : iso;
  }
  function cell(row, text, cls) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  // ---- charts: polylines in an SVG, scaled to the largest value shown
  function chart(svg, series, unit) {
    const W = 300, H = 80, top = 12;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const ns = 'http://www.w3.org/2000/svg';
    const max = Math.max(1, ...series.flatMap((s) => s.values));
    const axis = document.createElementNS(ns, 'line');
    axis.setAttribute('x1', 0); axis.setAttribute('x2', W);
    axis.setAttribute('y1', H - 0.5); axis.setAttribute('y2', H - 0.5);
    axis.setAttribute('class', 'axis');
    svg.appendChild(axis);
    const label = document.createElementNS(ns, 'text');
    label.setAttribute('x', 2); label.setAttribute('y', 9);
    label.textContent = 'max ' + fmt(max) + unit;
    svg.appendChild(label);
    const parts = [];
    for (const s of series) {
      if (s.values.length < 2) continue;
      const step = W / (HISTORY - 1);
      const x0 = W - step * (s.values.length - 1);
      const pts = s.values.map((v, i) => (x0 + i * step).toFixed(1) + ',' + (H - 1 - (v / max) * (H - top - 1)).toFixed(1));
      const line = document.createElementNS(ns, 'polyline');
      line.setAttribute('points', pts.join(' '));
      line.setAttribute('class', s.cls);
      svg.appendChild(line);
      parts.push(s.name + ' now ' + fmt(s.values[s.values.length - 1]) + unit);
    }
    svg.setAttribute('aria-label', parts.length ? parts.join(', ') + '; largest ' + fmt(max) + unit : 'No data yet');
  }

  // ---- the figures, from /metrics
  function showMetrics(metrics) {
    const now = Date.now() / 1000;
    const totals = {
      t: now,
      in: sum(metrics, 'mesh_relay_frames_received_total'),
      out: sum(metrics, 'mesh_relay_frames_sent_total'),
      refusals: sum(metrics, 'mesh_relay_errors_sent_total'),
      byCode: new Map((metrics.get('mesh_relay_errors_sent_total') || []).map((s) => [s.labels.code, s.value])),
    };
    let rates = null;
    if (previous && totals.t > previous.t) {
      const dt = totals.t - previous.t;
      rates = {
        in: Math.max(0, (totals.in - previous.in) / dt),
        out: Math.max(0, (totals.out - previous.out) / dt),
        refusals: Math.max(0, (totals.refusals - previous.refusals) / dt),
        dt,
      };
    }
    const connections = sum(metrics, 'mesh_relay_connections');
    $('f-online').textContent = fmt(sum(metrics, 'mesh_relay_meshes_online'));
    $('f-registered').textContent = fmt(sum(metrics, 'mesh_relay_meshes_registered'));
    $('f-connections').textContent = fmt(connections);
    $('f-in').textContent = rates ? fmt(rates.in) : '-';
    $('f-out').textContent = rates ? fmt(rates.out) : '-';
    $('f-argon2').textContent = fmt(sum(metrics, 'mesh_relay_argon2_jobs_queued'));
    $('f-queue').textContent = bytes(sum(metrics, 'mesh_relay_send_queue_bytes'));
    const db = metrics.get('mesh_relay_database_writable');
    const dbValue = db && db.length ? db[0].value : NaN;
    const dbCell = $('f-db');
    dbCell.textContent = dbValue === 1 ? 'yes' : dbValue === 0 ? 'NO' : 'not probed yet';
    dbCell.className = dbValue === 0 ? 'bad' : '';
    const start = sum(metrics, 'mesh_relay_start_time_seconds');
    $('f-uptime').textContent = start > 0 ? duration(now - start) : '-';
    const build = (metrics.get('mesh_relay_build_info') || [])[0];
    $('version').textContent = build ? 'version ' + build.labels.version + ', libwebsockets ' + build.labels.libwebsockets : '';

    // Refusals by code, with their rate.
    const body = $('refusals').tBodies[0];
    body.replaceChildren();
    const codes = [...totals.byCode.entries()].filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]);
    for (const [code, value] of codes) {
      const row = body.insertRow();
      cell(row, code);
      cell(row, fmt(value), 'num');
      const before = previous ? previous.byCode.get(code) || 0 : value;
      cell(row, rates ? fmt(Math.max(0, (value - before) / rates.dt)) : '-', 'num');
    }
    $('no-refusals').hidden = codes.length > 0;

    if (rates) {
      history.in.push(rates.in);
      history.out.push(rates.out);
      history.refusals.push(rates.refusals);
      history.connections.push(connections);
      for (const k of ['in', 'out', 'refusals', 'connections']) {
        if (history[k].length > HISTORY) history[k].shift();
      }
      chart($('c-frames'), [{ name: 'in', values: history.in, cls: 'a' }, { name: 'out', values: history.out, cls: 'b' }], '/s');
      chart($('c-refusals'), [{ name: 'refusals', values: history.refusals, cls: 'a' }], '/s');
      chart($('c-connections'), [{ name: 'connections', values: history.connections, cls: 'a' }], '');
    }
    previous = totals;
  }

  // ---- the meshes table, from /meshes
  function showMeshes() {
    const q = $('search').value.trim().toLowerCase();
    const body = $('meshes').tBodies[0];
    body.replaceChildren();
    const shown = meshes.filter((m) => !q || [m.meshId, m.name, m.address].some((v) => v && v.toLowerCase().includes(q)));
    shown.sort((a, b) => (b.online - a.online) || a.meshId.localeCompare(b.meshId));
    for (const m of shown) {
      const row = body.insertRow();
      row.dataset.mesh = m.meshId;
      if (m.meshId === chosen) row.className = 'chosen';
      const first = document.createElement('td');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'link';
      button.textContent = m.meshId;
      button.setAttribute('aria-label', 'Flight recorder of ' + m.meshId);
      button.addEventListener('click', () => choose(m.meshId));
      first.appendChild(button);
      if (m.name && m.name !== m.meshId) {
        const name = document.createElement('span');
        name.className = 'muted';
        name.textContent = ' ' + m.name;
        first.appendChild(name);
      }
      row.appendChild(first);
      cell(row, m.online ? 'yes' : 'no', m.online ? 'good' : 'muted');
      cell(row, m.address || '-');
      cell(row, m.online ? ago(m.since) : m.lastSeen ? 'seen ' + ago(m.lastSeen) : 'never');
      cell(row, m.frames === undefined ? '-' : fmt(m.frames), 'num');
      cell(row, m.lastRefusal ? m.lastRefusal.code + ', ' + ago(m.lastRefusal.time) : '-', m.lastRefusal ? 'bad' : '');
    }
  }

  // ---- one mesh's flight recorder
  function peerOf(r) {
    if (r.target !== undefined) return 'to ' + r.target;
    if (r.from !== undefined) return 'from ' + r.from;
    if (r.address !== undefined) return r.address;
    if (r.recipients !== undefined) return r.recipients + ' meshes';
    return '-';
  }
  async function showRecorder() {
    if (!chosen) return;
    const doc = await api('/meshes/' + encodeURIComponent(chosen) + '/recent');
    if (doc.meshId !== chosen) return; // another mesh was chosen meanwhile
    $('recorder-title').textContent = 'Flight recorder: ' + chosen + ' (newest first, ' + doc.records.length + ' of ' + doc.total + ' frames)';
    const body = $('records').tBodies[0];
    body.replaceChildren();
    for (const r of [...doc.records].reverse()) {
      const row = body.insertRow();
      cell(row, clock(r.time));
      cell(row, r.direction);
      cell(row, r.type);
      cell(row, r.id === undefined ? '-' : r.id + (r.truncated ? '…' : ''));
      cell(row, fmt(r.size), 'num');
      cell(row, peerOf(r));
      const ok = r.outcome === 'ok' || r.outcome === 'delivered';
      cell(row, r.outcome, ok ? '' : 'bad');
    }
    $('no-records').hidden = doc.records.length > 0;
  }
  async function choose(meshId) {
    chosen = meshId;
    $('recorder').hidden = false;
    showMeshes();
    try {
      await showRecorder();
    } catch (e) {
      failed(e);
    }
    $('recorder-title').focus();
  }

  // ---- polling
  // The meshes come from the admin API; the figures from /metrics, which a
  // proxy may keep from this address (the table still updates then).
  async function poll() {
    try {
      const [metrics, list] = await Promise.allSettled([api('/metrics', true), api('/meshes')]);
      if (list.status === 'rejected') throw list.reason;
      meshes = list.value.meshes;
      showMeshes();
      await showRecorder();
      const time = new Date().toLocaleTimeString([], { hour12: false });
      if (metrics.status === 'fulfilled') {
        showMetrics(parseMetrics(metrics.value));
        $('live').textContent = 'Updated ' + time + '; every ' + POLL_MS / 1000 + ' s.';
      } else {
        $('live').textContent = 'Meshes updated ' + time + '; figures unavailable (' + metrics.reason.message + ').';
      }
    } catch (e) {
      failed(e);
      if (e instanceof Refused) return;
    }
    timer = setTimeout(poll, POLL_MS);
  }
  function failed(e) {
    if (e instanceof Refused) {
      forget('The relay refused the token.');
    } else {
      $('live').textContent = 'Could not reach the relay (' + e.message + '); retrying.';
    }
  }

  function start() {
    $('login').hidden = true;
    $('dashboard').hidden = false;
    $('logout').hidden = false;
    previous = null;
    for (const k of Object.keys(history)) history[k] = [];
    poll();
  }
  function forget(message) {
    clearTimeout(timer);
    token = null;
    chosen = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $('dashboard').hidden = true;
    $('recorder').hidden = true;
    $('logout').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    $('token').value = '';
    $('token').focus();
  }

  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const candidate = $('token').value.trim();
    if (!candidate) return;
    $('login-error').textContent = '';
    token = candidate;
    try {
      await api('/meshes');
    } catch (e) {
      token = null;
      $('login-error').textContent = e instanceof Refused ? 'The relay refused this token.' : 'Could not reach the relay: ' + e.message;
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $('token').value = '';
    start();
  });
  $('logout').addEventListener('click', () => forget(''));
  $('search').addEventListener('input', showMeshes);

  token = sessionStorage.getItem(TOKEN_KEY);
  if (token) {
    start();
  } else {
    $('token').focus();
  }
})();
