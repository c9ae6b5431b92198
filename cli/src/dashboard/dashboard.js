// The till's dashboard: the mesh at a glance, from GET /v1/status, redrawn
// when the event stream says something happened and every few seconds. The
// last status read is kept in this browser, so that with the daemon down the
// page shows it, marked stale, with its age. (EVENT_KINDS is put before this
// file by the daemon, from the event stream's own list.)
'use strict';

const KEPT = 'tillmesh-last-status';
const POLL_MS = 5000;
const $ = (id) => document.getElementById(id);

function esc(v) {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function span(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

function ago(at) {
  return at == null ? '' : `${span(Date.now() - at)} ago`;
}

function size(n) {
  if (n == null) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function state(t) {
  if (t.membership === 'self') return ['this till', 'self'];
  if (t.membership === 'revoked') return ['revoked', 'bad'];
  if (t.membership !== 'member') return [t.membership, 'warn'];
  return t.online ? ['online', 'ok'] : ['offline', 'bad'];
}

function tillRow(t) {
  const [label, cls] = state(t);
  const path = t.path === 'self' ? '' : t.path + (t.path_at && (t.path === 'drive' || t.path === 'usb') ? ` (${ago(t.path_at)})` : '');
  const only = t.unreplicated == null ? '' : (t.unreplicated === 0 ? '0' : `${t.unreplicated}${t.unreplicated_oldest_s != null ? ` (oldest ${span(t.unreplicated_oldest_s * 1000)})` : ''}`);
  const tenths = t.clock_skew_ms == null ? null : Math.round(t.clock_skew_ms / 100);
  const skew = tenths == null ? '' : `${tenths > 0 ? '+' : tenths < 0 ? '-' : ''}${(Math.abs(tenths) / 10).toFixed(1)} s`;
  return `<tr data-till="${esc(t.name)}" data-online="${t.online}" title="${esc(t.last_error || t.id)}">` +
    `<td><b>${esc(t.name)}</b> <span class="muted">${esc(t.role)}</span></td>` +
    `<td><span class="pill ${cls}">${esc(label)}</span></td>` +
    `<td>${esc(path)}</td>` +
    `<td>${t.rtt_ms == null ? '' : `${t.rtt_ms.toFixed(1)} ms`}</td>` +
    `<td>${esc(ago(t.last_sync))}</td>` +
    `<td>${t.lag_changes ?? ''}</td>` +
    `<td>${esc(only)}</td>` +
    `<td>${esc(skew)}</td></tr>`;
}

function sinkRow(s) {
  const space = s.quota_limit ? `${Math.round((100 * s.quota_used) / s.quota_limit)} % of ${size(s.quota_limit)} used`
    : (s.free_bytes != null ? `${size(s.free_bytes)} free` : '');
  const problem = !s.present ? 'not present' : (s.failures ? `${s.failures} failures: ${s.last_error || ''}` : '');
  return `<tr data-sink="${esc(s.name)}"><td><b>${esc(s.name)}</b> <span class="muted">${esc(s.path)}</span></td>` +
    `<td>${s.last_backup ? esc(ago(s.last_backup)) : 'none yet'}</td><td>${esc(size(s.last_bytes))}</td>` +
    `<td>${esc(space)}</td><td>${esc(problem)}</td></tr>`;
}

function render(r, keptAt) {
  document.title = `${r.store_name} · Tillmesh`;
  $('store').textContent = `${r.store_name}`;
  $('me').textContent = `till ${r.self.name} (${r.self.role}) · daemon ${r.self.daemon ? 'running' : 'stopped'} · version ${r.self.version}`;
  const v = $('verdict');
  v.textContent = r.verdict;
  v.className = `verdict ${r.verdict.startsWith('OK') ? 'ok' : r.verdict.startsWith('CHECK') ? 'check' : 'action'}`;
  const online = r.tills.filter((t) => t.online).length;
  $('count').textContent = `${online} of ${r.tills.length} online`;
  $('tills').tBodies[0].innerHTML = r.tills.map(tillRow).join('');
  $('sinks').tBodies[0].innerHTML = r.sinks.length ? r.sinks.map(sinkRow).join('')
    : '<tr><td colspan="5" class="muted">No backup sink (tillmesh sink add)</td></tr>';
  $('alerts').innerHTML = (r.alert_details || []).length
    ? r.alert_details.map((a) => `<li class="${esc(a.severity)}" data-kind="${esc(a.kind)}">${esc(a.message)}</li>`).join('')
    : '<li class="muted">None</li>';
  const stale = $('stale');
  if (keptAt == null) {
    stale.hidden = true;
    document.body.dataset.state = 'live';
    $('updated').textContent = `Live · read ${new Date().toLocaleTimeString()}`;
  } else {
    stale.hidden = false;
    stale.textContent = `The daemon cannot be reached: this is the state read at ${new Date(keptAt).toLocaleString()}, ${ago(keptAt)}.`;
    document.body.dataset.state = 'stale';
    $('updated').textContent = 'Stale';
  }
}

function kept() {
  try { return JSON.parse(localStorage.getItem(KEPT) || 'null'); } catch (_) { return null; }
}

function unreachable(why) {
  const k = kept();
  if (k) {
    render(k.report, k.at);
  } else {
    document.body.dataset.state = 'stale';
    $('verdict').textContent = `The daemon cannot be reached (${why}), and this browser has no earlier state of it.`;
  }
}

function signedOut() {
  const k = kept();
  if (k) render(k.report, k.at);
  document.body.dataset.state = 'signed-out';
  const stale = $('stale');
  stale.hidden = false;
  stale.textContent = 'This page is not signed in to the daemon (it restarted, or the session ended): run `tillmesh dashboard` on the till and open the address it prints.';
}

let loading = false;
async function load() {
  if (loading) return;
  loading = true;
  try {
    const res = await fetch('/v1/status', { cache: 'no-store', credentials: 'same-origin' });
    if (res.status === 401) {
      signedOut();
      return;
    }
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const report = await res.json();
    try { localStorage.setItem(KEPT, JSON.stringify({ at: Date.now(), report })); } catch (_) { /* full: shown anyway */ }
    render(report, null);
  } catch (e) {
    unreachable(e.message);
  } finally {
    loading = false;
  }
}

let soon = null;
function loadSoon() {
  if (soon) return;
  soon = setTimeout(() => { soon = null; load(); }, 300);
}

// Long work on this till (backups, USB and Drive syncs, verifications), by job id, as its
// progress events tell it: shown while it runs, gone when it ends.
const jobs = new Map();

function renderJobs() {
  const list = $('jobs');
  list.innerHTML = [...jobs.values()].map((j) => {
    const pct = j.total ? Math.round((100 * j.done) / j.total) : 0;
    return `<li data-job="${esc(j.job)}">${esc(j.kind)}: ${esc(j.step)} <progress max="${esc(j.total)}" value="${esc(j.done)}"></progress> ${esc(j.done)}/${esc(j.total)} (${pct} %)</li>`;
  }).join('');
  $('work').hidden = jobs.size === 0;
}

function jobEvent(kind) {
  const [what, phase] = kind.split('.');
  return (e) => {
    let d = null;
    try { d = JSON.parse(e.data).data; } catch (_) { return; }
    if (d == null || d.job == null) return;
    if (phase === 'progress' || phase === 'started') {
      const j = jobs.get(d.job) || { job: d.job, kind: what, step: 'starting', done: 0, total: 0 };
      if (d.step != null) Object.assign(j, { step: d.step, done: d.done, total: d.total });
      jobs.set(d.job, j);
    } else {
      jobs.delete(d.job);
    }
    renderJobs();
  };
}

function follow() {
  if (!window.EventSource) return;
  const es = new EventSource('/v1/events');
  for (const kind of EVENT_KINDS) {
    es.addEventListener(kind, loadSoon);
    if (/^(backup|usb|verify)\.(started|progress|finished|failed)$/.test(kind)) es.addEventListener(kind, jobEvent(kind));
  }
  // Lost (the daemon stopped): the next poll shows it; the browser reconnects.
  es.onerror = loadSoon;
}

async function signIn() {
  const params = new URLSearchParams(location.search);
  const code = params.get('code');
  if (!code) return;
  // The code works once: it leaves the address bar at once.
  history.replaceState(null, '', '/');
  const res = await fetch('/dashboard/session', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ code }),
    credentials: 'same-origin',
  }).catch(() => null);
  if (!res || !res.ok) {
    $('verdict').textContent = 'This sign-in address was used already or has expired: run `tillmesh dashboard` again.';
  }
}

async function main() {
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('/sw.js').catch(() => { /* works without it, online only */ });
  }
  const k = kept();
  if (k) render(k.report, k.at);
  await signIn();
  await load();
  follow();
  setInterval(load, POLL_MS);
}

main();
