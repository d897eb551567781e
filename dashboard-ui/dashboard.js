// Titanium dashboard: polls the load balancer's /stats every 2 s and draws what it says, and its
// traces/recent every 5 s (a chosen trace opens as a waterfall from traces/{id}).
// Every figure on the page comes from that JSON; a figure it does not report is shown as "—".
// URLs are relative ("stats", "traces/recent", "api/ws-heartbeat") so the page also works behind a path prefix.
(function () {
  'use strict';

  const POLL_MS = 2000;
  const FETCH_TIMEOUT_MS = 4000; // the load balancer waits at most 2 s for each service
  const HISTORY_MS = 5 * 60 * 1000;
  const HEARTBEAT_EVERY_MS = 5000;
  const HEARTBEAT_RECONNECT_MS = 2000;
  const MAX_ALARMS = 100;
  const DASH = '—';

  const $ = (id) => document.getElementById(id);

  // ---- Formatting (tests/browser/test_dashboard.py reads these back) ----

  const fmt = {
    rps: (v) => v.toFixed(1),
    ms: (v) => (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)) + ' ms',
    percent: (v) => (v === 1 ? '100' : v === 0 ? '0' : (v * 100).toFixed(2)) + '%',
    uptime: (seconds) => {
      const s = Math.floor(seconds);
      const pad = (n) => String(n).padStart(2, '0');
      if (s < 60) return s + 's';
      if (s < 3600) return Math.floor(s / 60) + 'm ' + pad(s % 60) + 's';
      if (s < 86400) return Math.floor(s / 3600) + 'h ' + pad(Math.floor((s % 3600) / 60)) + 'm';
      return Math.floor(s / 86400) + 'd ' + pad(Math.floor((s % 86400) / 3600)) + 'h';
    },
    clock: (ms) => {
      const d = new Date(ms);
      const pad = (n) => String(n).padStart(2, '0');
      return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
    },
  };

  const isNumber = (v) => typeof v === 'number' && Number.isFinite(v);

  // A figure element: visible text, the raw value for tests and tools, a title explaining a dash.
  function setFigure(el, value, format, whyMissing) {
    if (isNumber(value)) {
      el.textContent = format(value);
      el.dataset.value = String(value);
      el.removeAttribute('title');
    } else {
      el.textContent = DASH;
      el.dataset.value = '';
      if (whyMissing) el.title = whyMissing; else el.removeAttribute('title');
    }
  }

  // ---- Injected faults (/admin/faults): shown as such, never as if they were organic ----

  // "latency 300 ms ±50, 20% 503, hang, cache down" from a fault of /stats (services[].stats.faults).
  function describeFault(fault) {
    const kinds = Array.isArray(fault.kinds) ? fault.kinds : [];
    const parts = [];
    if (kinds.includes('latency')) parts.push('latency ' + fault.latency_ms + ' ms' + (fault.jitter_ms ? ' ±' + fault.jitter_ms : ''));
    if (kinds.includes('error')) parts.push(+(fault.error_rate * 100).toFixed(1) + '% ' + (fault.error_status || 503));
    if (kinds.includes('hang')) parts.push('hang');
    if (kinds.includes('dependency')) parts.push((fault.dependency || 'a dependency') + ' down');
    let text = parts.join(', ') || 'active';
    const routes = Array.isArray(fault.routes) ? fault.routes : [];
    if (routes.length) text += ' on ' + (routes.length > 2 ? routes.slice(0, 2).join(' ') + ' +' + (routes.length - 2) : routes.join(' '));
    return text;
  }

  function faultBadge(fault) {
    const badge = document.createElement('span');
    badge.className = 'fault-badge';
    badge.dataset.kinds = (fault.kinds || []).join(' ');
    const left = isNumber(fault.remaining_s) ? ', ' + fmt.uptime(Math.max(0, fault.remaining_s)) + ' left' : '';
    badge.textContent = 'FAULT: ' + describeFault(fault) + left;
    badge.title = 'Injected on purpose through /admin/faults' +
      (fault.applied_at ? ' at ' + fmt.clock(Date.parse(fault.applied_at)) : '') +
      (fault.expires_at ? '; expires by itself at ' + fmt.clock(Date.parse(fault.expires_at)) : '');
    return badge;
  }

  // The services with a dependency fault on `name` ("cache"), for the tile and the alarms.
  function injectedDependency(rows, name) {
    return [...new Set(rows.filter((r) => r.fault && r.fault.dependency === name).map((r) => r.name))];
  }

  function setState(el, status) {
    const text = typeof status === 'string' && status ? status.toUpperCase() : 'UNKNOWN';
    el.textContent = text;
    el.dataset.state = text === 'ONLINE' ? 'online' : text === 'OFFLINE' ? 'offline' : 'unknown';
  }

  // ---- Overall status ----

  const BADGES = {
    healthy: ['✓', 'HEALTHY'],
    degraded: ['▲', 'DEGRADED'],
    down: ['✕', 'DOWN'],
    idle: ['○', 'IDLE'],
    unknown: ['?', 'UNKNOWN'],
  };

  // DOWN and DEGRADED come from the services' own answers and win over IDLE; IDLE says that no
  // real traffic (nor a heartbeat) flowed in the last 10 s, so "healthy" would claim too much.
  function overallState(stats) {
    const system = String((stats.system && stats.system.status) || '').toLowerCase();
    if (system === 'down') return 'down';
    if (system === 'degraded') return 'degraded';
    if (stats.has_real_traffic === false) return 'idle';
    if (system === 'healthy') return 'healthy';
    return 'unknown';
  }

  function renderOverall(stats) {
    const state = overallState(stats);
    const [icon, text] = BADGES[state];
    const badge = $('overall-status');
    // Only on a change: the badge is a live region, and screen readers announce every rewrite.
    if (badge.dataset.state !== state) {
      badge.dataset.state = state;
      badge.querySelector('.badge-icon').textContent = icon;
      badge.querySelector('.badge-text').textContent = text;
      document.title = text + ' · Titanium dashboard';
    }
    $('idle-hint').hidden = stats.has_real_traffic !== false;
  }

  // ---- Key figures ----

  function renderKpis(stats) {
    const active = $('kpi-active');
    if (isNumber(stats.active_services) && isNumber(stats.total_services)) {
      active.textContent = stats.active_services + '/' + stats.total_services;
      active.dataset.value = active.textContent;
    } else {
      active.textContent = DASH;
      active.dataset.value = '';
    }
    setFigure($('kpi-rps'), stats.requests_per_second, fmt.rps);
    // With no request in the window there is no response time nor success rate to show.
    const measured = isNumber(stats.requests_per_second) && stats.requests_per_second > 0;
    const none = 'no /api request in the last 10 s';
    setFigure($('kpi-mean'), measured ? stats.avg_response_time_ms : null, fmt.ms, none);
    setFigure($('kpi-p95'), measured ? stats.p95_ms : null, fmt.ms, none);
    setFigure($('kpi-p99'), measured ? stats.p99_ms : null, fmt.ms, none);
    setFigure($('kpi-success'), measured ? stats.success_rate : null, fmt.percent, none);
    setFigure($('kpi-rate-limited'), stats.rate_limited_per_second, fmt.rps);
    setState($('dep-database'), stats.database && stats.database.status);
    setState($('dep-cache'), stats.cache && stats.cache.status);
  }

  // ---- Services table ----

  // The load balancer's own row comes from the top level of its /stats; each other row from
  // one entry of services[] (one per pod when a name resolves to several addresses).
  function serviceRows(stats) {
    const rows = [];
    const lbMeasured = isNumber(stats.requests_per_second) && stats.requests_per_second > 0;
    rows.push({
      key: 'load-balancer|' + (stats.instance || ''),
      name: stats.service || 'load-balancer',
      instance: stats.instance || '',
      status: 'ONLINE', // it answered this request
      error: null,
      rps: stats.requests_per_second,
      p95: lbMeasured ? stats.p95_ms : null,
      errorRate: lbMeasured && isNumber(stats.success_rate) ? 1 - stats.success_rate : null,
      uptime: stats.uptime_s,
    });
    for (const entry of stats.services || []) {
      const own = entry.stats || {};
      const measured = isNumber(own.requests_per_second) && own.requests_per_second > 0;
      rows.push({
        key: entry.name + '|' + entry.url,
        name: entry.name,
        instance: own.instance || hostOf(entry.url),
        status: entry.status || 'UNKNOWN',
        error: entry.error || null,
        rps: own.requests_per_second,
        p95: measured ? own.p95_ms : null,
        errorRate: measured ? own.error_rate : null,
        uptime: own.uptime_s,
        fault: entry.status === 'ONLINE' && own.faults ? own.faults : null,
      });
    }
    return rows;
  }

  function hostOf(url) {
    try { return new URL(url).host; } catch (e) { return url || ''; }
  }

  function cell(tr, label, className) {
    const td = document.createElement('td');
    td.dataset.label = label;
    if (className) td.className = className;
    tr.appendChild(td);
    return td;
  }

  function renderServices(rows) {
    const body = $('services-body');
    const fragment = document.createDocumentFragment();
    for (const row of rows) {
      const tr = document.createElement('tr');
      tr.dataset.service = row.name;
      tr.dataset.key = row.key;
      tr.dataset.status = row.status;

      const th = document.createElement('th');
      th.scope = 'row';
      th.className = 'name-cell';
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = row.name;
      const instance = document.createElement('span');
      instance.className = 'instance';
      instance.textContent = row.instance;
      th.append(name, instance);
      tr.appendChild(th);

      const statusCell = cell(tr, 'Status', 'status-cell');
      const status = document.createElement('span');
      status.className = 'state';
      setState(status, row.status);
      statusCell.appendChild(status);
      if (row.error) {
        const error = document.createElement('span');
        error.className = 'error';
        error.textContent = row.error;
        statusCell.appendChild(error);
      }
      if (row.fault) {
        tr.dataset.fault = (row.fault.kinds || []).join(' ');
        statusCell.appendChild(faultBadge(row.fault));
      }
      const none = 'no request in its last 10 s';
      setFigure(cell(tr, 'Requests/s', 'num rps'), row.rps, fmt.rps);
      setFigure(cell(tr, 'p95', 'num p95'), row.p95, fmt.ms, none);
      setFigure(cell(tr, 'Error rate', 'num error-rate'), row.errorRate, fmt.percent, none);
      setFigure(cell(tr, 'Uptime', 'num uptime'), row.uptime, fmt.uptime, 'not reported');
      fragment.appendChild(tr);
    }
    body.replaceChildren(fragment);
  }

  // ---- Alarms ----

  const lastStatus = new Map(); // row key or dependency name -> last status seen
  let alarmCount = 0;

  function addAlarm(kind, subject, text, detail, atMs) {
    const li = document.createElement('li');
    li.dataset.kind = kind;
    li.dataset.subject = subject;
    const time = document.createElement('time');
    time.dateTime = new Date(atMs).toISOString();
    time.textContent = fmt.clock(atMs);
    const what = document.createElement('span');
    what.className = 'what';
    what.textContent = (kind === 'down' ? '✕ ' : kind === 'fault' ? '⚑ ' : '✓ ') + text;
    li.append(time, what);
    if (detail) {
      const d = document.createElement('span');
      d.className = 'detail';
      d.textContent = detail;
      li.appendChild(d);
    }
    const list = $('alarms');
    list.prepend(li);
    while (list.children.length > MAX_ALARMS) list.lastElementChild.remove();
    alarmCount += 1;
    $('alarms-empty').hidden = true;
  }

  function label(row, rows) {
    const pods = rows.filter((r) => r.name === row.name).length;
    return pods > 1 ? row.name + ' (' + row.instance + ')' : row.name;
  }

  const lastFault = new Map(); // row key -> the description of its fault ('' for none)

  function checkFaults(rows, at) {
    for (const row of rows) {
      if (row.status !== 'ONLINE') continue; // an OFFLINE row says nothing about its fault
      const now = row.fault ? describeFault(row.fault) : '';
      const before = lastFault.get(row.key);
      lastFault.set(row.key, now);
      if (now === (before || '')) continue;
      if (now) {
        const expires = Date.parse(row.fault.expires_at);
        addAlarm('fault', row.name, 'FAULT injected on ' + label(row, rows) + ': ' + now,
          'on purpose, through /admin/faults' + (expires ? '; expires by itself at ' + fmt.clock(expires) : ''), at);
      } else {
        addAlarm('fault-end', row.name, 'fault on ' + label(row, rows) + ' removed or expired (was: ' + before + ')', null, at);
      }
    }
    for (const key of [...lastFault.keys()]) if (!rows.some((r) => r.key === key)) lastFault.delete(key);
  }

  function checkAlarms(stats, rows) {
    const at = Date.parse(stats.generated_at) || Date.now();
    checkFaults(rows, at);
    const seen = new Set();
    for (const row of rows) {
      seen.add(row.key);
      const before = lastStatus.get(row.key);
      lastStatus.set(row.key, row.status);
      if (row.status === before) continue;
      if (row.status === 'OFFLINE') {
        addAlarm('down', row.name, label(row, rows) + ' went OFFLINE', row.error, at);
      } else if (before === 'OFFLINE' && row.status === 'ONLINE') {
        addAlarm('up', row.name, label(row, rows) + ' is back ONLINE', null, at);
      }
    }
    for (const [dependency, value] of [['database', stats.database], ['cache', stats.cache]]) {
      const status = value && value.status;
      const before = lastStatus.get('dependency:' + dependency);
      lastStatus.set('dependency:' + dependency, status);
      if (status === before) continue;
      const injected = injectedDependency(rows, dependency);
      if (status === 'OFFLINE') {
        addAlarm('down', dependency, dependency + ' went OFFLINE' + (injected.length ? ' (injected fault)' : ''),
          injected.length ? 'a fault injected on ' + injected.join(', ') + ' makes it behave as if ' + dependency + ' were down' : null, at);
      }
      else if (before === 'OFFLINE' && status === 'ONLINE') addAlarm('up', dependency, dependency + ' is back ONLINE', null, at);
      const tile = $('dep-' + dependency + '-fault');
      tile.hidden = injected.length === 0;
      tile.textContent = injected.length ? '⚑ injected fault: ' + injected.join(', ') : '';
      seen.add('dependency:' + dependency);
    }
    for (const key of [...lastStatus.keys()]) if (!seen.has(key)) lastStatus.delete(key); // a pod that went away
  }

  // ---- Charts: the last 5 minutes, as this page saw them ----

  const history = []; // {t, rps, mean, p95}; null figures break the lines
  const charts = { rps: null, latency: null };

  function makeCharts() {
    if (typeof window.Chart !== 'function') {
      for (const id of ['chart-rps', 'chart-latency']) {
        const p = document.createElement('p');
        p.className = 'muted';
        p.textContent = 'Charts unavailable: vendor/chart.min.js (Debian libjs-chart.js) is not installed.';
        $(id).replaceWith(p);
      }
      return;
    }
    const Chart = window.Chart;
    Chart.defaults.color = '#a3b1bf';
    Chart.defaults.borderColor = '#2e3a46';
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    const axes = (yTitle) => ({
      x: {
        type: 'linear',
        ticks: { stepSize: 60000, includeBounds: false, maxRotation: 0, callback: (v) => fmt.clock(v).slice(0, 5) },
        grid: { color: '#26313c' },
      },
      y: { beginAtZero: true, title: { display: true, text: yTitle }, grid: { color: '#26313c' } },
    });
    const options = (yTitle, legend) => ({
      animation: false,
      parsing: false,
      normalized: true,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: 'nearest', axis: 'x', intersect: false },
      scales: axes(yTitle),
      plugins: {
        legend: { display: legend, labels: { boxHeight: 2 } },
        tooltip: { callbacks: { title: (items) => (items.length ? fmt.clock(items[0].parsed.x) : '') } },
      },
      elements: { point: { radius: 0, hitRadius: 6 }, line: { borderWidth: 2, tension: 0 } },
    });
    charts.rps = new Chart($('chart-rps'), {
      type: 'line',
      data: { datasets: [{ label: 'requests/s', data: [], borderColor: '#60a5fa', backgroundColor: 'rgba(96,165,250,0.15)', fill: true }] },
      options: options('requests/s', false),
    });
    charts.latency = new Chart($('chart-latency'), {
      type: 'line',
      data: {
        datasets: [
          { label: 'mean', data: [], borderColor: '#4ade80' },
          { label: 'p95', data: [], borderColor: '#fbbf24', borderDash: [6, 4] },
        ],
      },
      options: options('ms', true),
    });
  }

  function addPoint(point) {
    history.push(point);
    const oldest = point.t - HISTORY_MS;
    while (history.length && history[0].t < oldest) history.shift();
    if (!charts.rps) return;
    const series = (field) => history.map((p) => ({ x: p.t, y: p[field] }));
    for (const chart of [charts.rps, charts.latency]) {
      chart.options.scales.x.min = oldest;
      chart.options.scales.x.max = point.t;
    }
    charts.rps.data.datasets[0].data = series('rps');
    charts.latency.data.datasets[0].data = series('mean');
    charts.latency.data.datasets[1].data = series('p95');
    charts.rps.update('none');
    charts.latency.update('none');
    const last = history[history.length - 1];
    $('chart-rps').setAttribute('aria-label', 'Requests per second over the last 5 minutes; latest ' + (isNumber(last.rps) ? fmt.rps(last.rps) : DASH));
    $('chart-latency').setAttribute('aria-label', 'Mean and p95 response time over the last 5 minutes; latest mean ' +
      (isNumber(last.mean) ? fmt.ms(last.mean) : DASH) + ', p95 ' + (isNumber(last.p95) ? fmt.ms(last.p95) : DASH));
  }

  // ---- Freshness and reachability ----

  let lastGeneratedAt = null;
  let lastGoodAt = null;
  let unreachable = false;

  function markReachable() {
    if (unreachable) addAlarm('up', 'load-balancer', 'load balancer reachable again', null, Date.now());
    unreachable = false;
    document.body.classList.remove('stale');
    $('conn-banner').hidden = true;
  }

  function markUnreachable(reason) {
    if (!unreachable) {
      addAlarm('down', 'load-balancer', 'load balancer unreachable', reason, Date.now());
      addPoint({ t: Date.now(), rps: null, mean: null, p95: null }); // a gap in the charts
    }
    unreachable = true;
    document.body.classList.add('stale');
    $('conn-detail').textContent = lastGoodAt
      ? '(' + reason + '). Showing the figures from ' + fmt.clock(lastGoodAt) + ', dimmed; retrying every 2 s.'
      : '(' + reason + '). No figures yet; retrying every 2 s.';
    $('conn-banner').hidden = false;
  }

  function render(stats) {
    renderOverall(stats);
    renderKpis(stats);
    const rows = serviceRows(stats);
    renderServices(rows);
    checkAlarms(stats, rows);
    if (stats.generated_at !== lastGeneratedAt) {
      const measured = isNumber(stats.requests_per_second) && stats.requests_per_second > 0;
      addPoint({
        t: Date.now(),
        rps: isNumber(stats.requests_per_second) ? stats.requests_per_second : null,
        mean: measured ? stats.avg_response_time_ms : null,
        p95: measured ? stats.p95_ms : null,
      });
    }
    lastGeneratedAt = stats.generated_at;
    lastGoodAt = Date.now();
    // Set last, so that a reader who sees the new time also sees every figure of that answer.
    const updated = $('updated-at');
    updated.textContent = fmt.clock(Date.parse(stats.generated_at) || lastGoodAt);
    updated.dateTime = stats.generated_at || '';
    updated.dataset.generatedAt = stats.generated_at || '';
  }

  async function fetchStats() {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
    try {
      const response = await fetch('stats', { cache: 'no-store', headers: { Accept: 'application/json' }, signal: controller.signal });
      if (!response.ok) throw new Error('/stats answered ' + response.status);
      return await response.json();
    } catch (error) {
      if (error && error.name === 'AbortError') throw new Error('no answer within ' + FETCH_TIMEOUT_MS / 1000 + ' s');
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  async function poll() {
    let stats = null;
    try {
      stats = await fetchStats();
    } catch (error) {
      markUnreachable(error && error.message ? error.message : String(error));
    }
    if (stats) {
      markReachable();
      try {
        render(stats);
      } catch (error) {
        console.error('dashboard: could not draw /stats', error); // a bug, not an outage
      }
    }
    setTimeout(poll, POLL_MS);
  }

  // ---- Recent traces and the waterfall of one (traces/recent, traces/{id}) ----

  // Each service writes its trace rows in batches (every 5 s by default), so polling faster
  // would only redraw the same list.
  const TRACES_POLL_MS = 5000;
  const TRACES_LIMIT = 20;
  const TOKEN_KEY = 'titanium.adminToken';

  const traces = {
    run: 0, // the latest poll; an older one still in flight neither draws nor reschedules
    timer: null,
    rows: new Map(), // trace_id -> its <tr>, reused from one refresh to the next
    selected: null, // trace_id whose waterfall is open
    shownSpans: 0, // spans drawn in that waterfall
    detailRun: 0,
    focusAfterLoad: false,
    memoryToken: '', // when sessionStorage is unavailable
  };

  const adminToken = {
    get() {
      try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return traces.memoryToken; }
    },
    set(value) {
      traces.memoryToken = value;
      try {
        if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
      } catch (e) { /* storage disabled: kept for this page only */ }
      $('traces-token-forget-wrap').hidden = !value;
    },
  };

  // GET a trace route as JSON, with the admin token when one was given; a failed answer throws
  // an Error carrying `status` and the service's own error message.
  async function fetchTraceJSON(path) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
    const headers = { Accept: 'application/json' };
    const token = adminToken.get();
    if (token) headers.Authorization = 'Bearer ' + token;
    try {
      const response = await fetch(path, { cache: 'no-store', headers, signal: controller.signal });
      if (response.ok) return await response.json();
      let message = path.split('?')[0] + ' answered ' + response.status;
      try {
        const body = await response.json();
        if (body && body.error && body.error.message) message = body.error.message + ' (' + response.status + ')';
      } catch (e) { /* not JSON: the status says enough */ }
      const error = new Error(message);
      error.status = response.status;
      throw error;
    } catch (error) {
      if (error && error.name === 'AbortError') throw new Error('no answer within ' + FETCH_TIMEOUT_MS / 1000 + ' s');
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  const traceFmt = {
    time: (ms) => fmt.clock(ms) + '.' + String(new Date(ms).getMilliseconds()).padStart(3, '0'),
    // started_at and ended_at are whole milliseconds.
    wholeMs: (v) => (v < 1 ? '< 1 ms' : Math.round(v) + ' ms'),
    offset: (v) => '+' + (v < 10 ? v.toFixed(1).replace(/\.0$/, '') : v.toFixed(0)) + ' ms',
  };

  // ✓ 2xx/3xx, ▲ 4xx, ✕ 5xx: the code is always written out, the icon and colour only repeat it.
  function statusClass(code) {
    if (!isNumber(code)) return 'unknown';
    return code >= 500 ? 'bad' : code >= 400 ? 'warn' : 'ok';
  }

  function statusText(code) {
    const icon = { ok: '✓', warn: '▲', bad: '✕', unknown: '?' }[statusClass(code)];
    return icon + ' ' + (isNumber(code) ? String(code) : DASH);
  }

  // Rewritten only on a change: it is a live region.
  function setTracesMessage(kind, text) {
    const el = $('traces-message');
    if (el.dataset.kind === kind && el.textContent === text) return;
    el.dataset.kind = kind || '';
    el.textContent = text || '';
    el.hidden = !text;
  }

  function askForToken(refused) {
    // The list and an open trace may both answer 401 to one refused token: keep saying "refused".
    if (!refused && !$('traces-token-form').hidden && $('traces-message').dataset.kind === 'token-refused') return;
    if (refused) adminToken.set('');
    document.querySelector('.traces-section').classList.add('needs-token');
    $('traces-token-form').hidden = false;
    setTracesMessage(refused ? 'token-refused' : 'token-needed', refused
      ? '✕ The load balancer refused that admin token (401). Paste the right one to see the traces.'
      : '▲ The trace routes need the admin token: the load balancer answered 401. Paste it below to see the traces.');
  }

  function tokenAccepted() {
    document.querySelector('.traces-section').classList.remove('needs-token');
    $('traces-token-form').hidden = true;
  }

  function renderSources(sources) {
    const el = $('traces-sources');
    const missing = (sources || []).filter((s) => s.status !== 'ONLINE');
    el.hidden = missing.length === 0;
    el.textContent = missing.length === 0 ? '' : '▲ Not answering, so their part of each trace is missing: ' +
      missing.map((s) => s.name + ' (' + hostOf(s.url) + (s.error ? ': ' + s.error : '') + ')').join('; ');
  }

  function traceCells(tr, headline) {
    const when = document.createElement('th');
    when.scope = 'row';
    when.className = 'when';
    const time = document.createElement('time');
    if (isNumber(headline.started_at)) {
      time.dateTime = new Date(headline.started_at).toISOString();
      time.textContent = traceFmt.time(headline.started_at);
    } else {
      time.textContent = DASH;
    }
    when.appendChild(time);

    const request = cell(tr, 'Request', 'request');
    // The path says more than a catch-all route such as /api/**.
    request.textContent = (headline.root_method || DASH) + ' ' + (headline.root_path || headline.root_route || '');
    const status = cell(tr, 'Status', 'code');
    status.dataset.class = statusClass(headline.status_code);
    status.textContent = statusText(headline.status_code);
    const services = cell(tr, 'Services', 'trace-services');
    services.textContent = (headline.services || []).join(', ') || DASH;
    const duration = headline.ended_at - headline.started_at;
    const durationCell = cell(tr, 'Duration', 'num duration');
    durationCell.textContent = isNumber(duration) ? traceFmt.wholeMs(duration) : DASH;
    durationCell.dataset.value = isNumber(duration) ? String(duration) : '';
    setFigure(cell(tr, 'Steps', 'num steps'), headline.steps, String);
    tr.prepend(when);
  }

  function traceRow(headline) {
    let tr = traces.rows.get(headline.trace_id);
    if (!tr) {
      tr = document.createElement('tr');
      tr.tabIndex = 0;
      tr.dataset.traceId = headline.trace_id;
      traces.rows.set(headline.trace_id, tr);
    }
    // Cells are rewritten only when the headline changed: no flicker, and a focused row keeps focus.
    const signature = JSON.stringify(headline);
    if (tr.dataset.signature !== signature) {
      tr.replaceChildren();
      traceCells(tr, headline);
      tr.dataset.signature = signature;
      tr.title = 'Trace ' + headline.trace_id + (headline.user_id ? ', user ' + headline.user_id : '');
    }
    return tr;
  }

  // Newest first. Rows already on the page stay where they are (new ones go in above them, old
  // ones drop off the end), so focus and scroll position survive every refresh.
  function renderTraces(body) {
    const list = Array.isArray(body.traces) ? body.traces.filter((t) => t && t.trace_id) : [];
    const tbody = $('traces-body');
    const focused = document.activeElement;
    const focusedId = focused && focused.parentElement === tbody ? focused.dataset.traceId : null;
    const wanted = new Set(list.map((t) => t.trace_id));
    let focusIndex = -1;
    [...tbody.children].forEach((tr, index) => {
      if (tr.dataset.traceId && wanted.has(tr.dataset.traceId)) return;
      if (tr === focused) focusIndex = index;
      traces.rows.delete(tr.dataset.traceId);
      tr.remove();
    });
    let cursor = tbody.firstElementChild;
    for (const headline of list) {
      const tr = traceRow(headline);
      if (tr === cursor) {
        cursor = cursor.nextElementSibling;
      } else {
        tbody.insertBefore(tr, cursor); // new, or (rarely) moved: a later store knew an earlier start
      }
      if (headline.trace_id === traces.selected) tr.setAttribute('aria-current', 'true'); else tr.removeAttribute('aria-current');
    }
    if (list.length === 0) {
      const tr = document.createElement('tr');
      tr.className = 'placeholder';
      const td = document.createElement('td');
      td.colSpan = 6;
      td.className = 'muted';
      td.textContent = 'No trace recorded yet: requests through the load balancer show up here a few seconds after they end.';
      tr.appendChild(td);
      tbody.replaceChildren(tr);
    }
    if (focusedId && traces.rows.has(focusedId) && document.activeElement !== traces.rows.get(focusedId)) {
      traces.rows.get(focusedId).focus({ preventScroll: true });
    } else if (focusIndex >= 0 || traces.focusAfterLoad) {
      // The focused trace dropped off the list (or a token was just given): the nearest row.
      const rows = [...traces.rows.values()];
      const target = rows[Math.min(Math.max(focusIndex, 0), rows.length - 1)] || $('traces-wrap');
      target.focus({ preventScroll: focusIndex >= 0 });
    }
    traces.focusAfterLoad = false;
    renderSources(body.sources);
    const updated = $('traces-updated');
    updated.textContent = 'Updated ' + fmt.clock(Date.now()) + '.';
    updated.dataset.refreshes = String(Number(updated.dataset.refreshes || 0) + 1);

    // Spans still being written when the waterfall was drawn: draw it again once they are.
    const selected = list.find((t) => t.trace_id === traces.selected);
    if (selected && isNumber(selected.steps) && selected.steps > traces.shownSpans) loadTrace(traces.selected, false);
  }

  async function pollTraces() {
    clearTimeout(traces.timer);
    const run = ++traces.run;
    let body = null;
    let failure = null;
    try {
      body = await fetchTraceJSON('traces/recent?limit=' + TRACES_LIMIT);
    } catch (error) {
      failure = error;
    }
    if (run !== traces.run) return; // a newer poll (a token was just given) draws instead
    if (failure && failure.status === 401) {
      askForToken(Boolean(adminToken.get()));
    } else if (failure) {
      setTracesMessage('error', '✕ Could not load the traces: ' + (failure.message || String(failure)) + '. Retrying every 5 s.');
    } else {
      tokenAccepted();
      setTracesMessage('', '');
      try {
        renderTraces(body);
      } catch (error) {
        console.error('dashboard: could not draw traces/recent', error); // a bug, not an outage
      }
    }
    traces.timer = setTimeout(pollTraces, TRACES_POLL_MS);
  }

  // ---- The waterfall: one bar per span, placed by offset_ms and sized by duration_ms ----

  function openTrace(id) {
    traces.selected = id;
    traces.shownSpans = 0;
    for (const [rowId, tr] of traces.rows) {
      if (rowId === id) tr.setAttribute('aria-current', 'true'); else tr.removeAttribute('aria-current');
    }
    const detail = $('trace-detail');
    detail.hidden = false;
    detail.dataset.traceId = id;
    detail.dataset.state = 'loading';
    $('trace-detail-id').textContent = id;
    $('trace-detail-summary').textContent = 'Loading…';
    $('trace-detail-message').hidden = true;
    $('waterfall').replaceChildren();
    detail.focus({ preventScroll: true });
    detail.scrollIntoView({ block: 'nearest' });
    loadTrace(id, true);
  }

  function closeTrace() {
    const id = traces.selected;
    traces.selected = null;
    traces.detailRun += 1;
    $('trace-detail').hidden = true;
    $('trace-detail').dataset.traceId = '';
    const row = id && traces.rows.get(id);
    if (row) {
      row.removeAttribute('aria-current');
      row.focus();
    } else {
      $('traces-wrap').focus();
    }
  }

  async function loadTrace(id, firstTime) {
    const run = ++traces.detailRun;
    let trace = null;
    let failure = null;
    try {
      trace = await fetchTraceJSON('traces/' + encodeURIComponent(id));
    } catch (error) {
      failure = error;
    }
    if (run !== traces.detailRun || traces.selected !== id) return; // closed, or another trace chosen
    const message = $('trace-detail-message');
    if (failure) {
      if (failure.status === 401) askForToken(Boolean(adminToken.get()));
      if (!firstTime) return; // keep the waterfall already drawn
      $('trace-detail').dataset.state = 'error';
      $('trace-detail-summary').textContent = '';
      message.textContent = failure.status === 404
        ? 'No service has this trace (any more): it may be older than the stores keep.'
        : failure.status === 401 ? 'The admin token is needed to open a trace.' : 'Could not load this trace: ' + (failure.message || String(failure)) + '.';
      message.hidden = false;
      return;
    }
    try {
      renderWaterfall(trace);
    } catch (error) {
      console.error('dashboard: could not draw the trace', error);
    }
  }

  function renderWaterfall(trace) {
    const spans = Array.isArray(trace.spans) ? trace.spans : [];
    const ends = spans.map((s) => (s.offset_ms || 0) + (s.duration_ms || 0));
    const total = isNumber(trace.duration_ms) && trace.duration_ms > 0 ? trace.duration_ms : Math.max(0.001, ...ends);
    const byId = new Map(spans.map((s) => [s.span_id, s]));
    const root = spans[0] || {};

    const summary = [
      (root.method || '') + ' ' + (root.path || root.route || ''),
      statusText(root.status_code),
      fmt.ms(total) + ' in all',
      spans.length + (spans.length === 1 ? ' span' : ' spans'),
      'started ' + (isNumber(trace.started_at) ? traceFmt.time(trace.started_at) : DASH),
    ];
    if (root.user_id) summary.push('user ' + root.user_id);
    $('trace-detail-summary').textContent = summary.join(' · ');
    const missing = (trace.sources || []).filter((s) => s.status !== 'ONLINE');
    const message = $('trace-detail-message');
    message.hidden = missing.length === 0;
    message.textContent = missing.length ? '▲ Not answering, so their spans may be missing: ' + missing.map((s) => s.name).join(', ') : '';

    $('waterfall-mid').textContent = fmt.ms(total / 2);
    $('waterfall-end').textContent = fmt.ms(total);

    const fragment = document.createDocumentFragment();
    for (const span of spans) {
      const depth = isNumber(span.depth) ? span.depth : 0;
      const offset = isNumber(span.offset_ms) ? span.offset_ms : 0;
      const duration = isNumber(span.duration_ms) ? span.duration_ms : 0;
      const li = document.createElement('li');
      li.className = 'span';
      li.dataset.service = span.service || '';
      li.dataset.spanId = span.span_id || '';
      li.dataset.depth = String(depth);
      li.dataset.class = statusClass(span.status_code);
      li.dataset.offsetMs = String(offset);
      li.dataset.durationMs = String(duration);
      li.style.setProperty('--depth', String(Math.min(depth, 8)));
      li.title = 'span ' + (span.span_id || '?') + ' · ' + (span.instance || '') + (span.user_id ? ' · user ' + span.user_id : '');

      const labelBox = document.createElement('div');
      labelBox.className = 'span-label';
      if (depth > 0) {
        const marker = document.createElement('span');
        marker.className = 'span-marker';
        marker.setAttribute('aria-hidden', 'true');
        marker.textContent = '↳ ';
        labelBox.appendChild(marker);
      }
      const service = document.createElement('span');
      service.className = 'span-service';
      service.textContent = span.service || DASH;
      labelBox.appendChild(service);
      const parent = span.parent_span_id ? byId.get(span.parent_span_id) : null;
      if (span.parent_span_id) {
        const calledBy = document.createElement('span');
        calledBy.className = 'visually-hidden';
        calledBy.textContent = parent ? ', called by ' + parent.service : ', its caller was not recorded';
        labelBox.appendChild(calledBy);
      }
      const route = document.createElement('span');
      route.className = 'span-route';
      route.textContent = (span.method || '') + ' ' + (span.route || '');
      if (span.path && span.path !== span.route) {
        const path = document.createElement('span');
        path.className = 'span-path';
        path.textContent = ' (' + span.path + ')';
        route.appendChild(path);
      }
      labelBox.appendChild(route);

      const figures = document.createElement('div');
      figures.className = 'span-figures';
      const status = document.createElement('span');
      status.className = 'span-status';
      status.dataset.class = statusClass(span.status_code);
      status.textContent = statusText(span.status_code);
      const took = document.createElement('span');
      took.className = 'span-duration';
      took.textContent = fmt.ms(duration);
      const at = document.createElement('span');
      at.className = 'span-offset';
      at.textContent = 'at ' + traceFmt.offset(offset);
      figures.append(status, ' ', took, ' ', at);

      const track = document.createElement('div');
      track.className = 'span-track';
      track.setAttribute('aria-hidden', 'true');
      const bar = document.createElement('span');
      bar.className = 'span-bar';
      const left = Math.min(Math.max(offset / total * 100, 0), 100);
      const width = Math.min(Math.max(duration / total * 100, 0), 100 - left);
      bar.style.left = 'min(' + left.toFixed(3) + '%, calc(100% - 2px))';
      bar.style.width = width.toFixed(3) + '%';
      track.appendChild(bar);

      li.append(labelBox, figures, track);
      fragment.appendChild(li);
    }
    $('waterfall').replaceChildren(fragment);
    traces.shownSpans = spans.length;
    const detail = $('trace-detail');
    detail.dataset.state = 'loaded';
    detail.dataset.spans = String(spans.length);
  }

  function moveRowFocus(from, step) {
    const rows = [...$('traces-body').querySelectorAll('tr[data-trace-id]')];
    const next = rows[rows.indexOf(from) + step];
    if (next) next.focus();
  }

  function setUpTraces() {
    const tbody = $('traces-body');
    tbody.addEventListener('click', (event) => {
      const tr = event.target.closest('tr[data-trace-id]');
      if (tr) openTrace(tr.dataset.traceId);
    });
    tbody.addEventListener('keydown', (event) => {
      const tr = event.target.closest('tr[data-trace-id]');
      if (!tr || event.target !== tr || event.altKey || event.ctrlKey || event.metaKey) return;
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        openTrace(tr.dataset.traceId);
      } else if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
        event.preventDefault();
        moveRowFocus(tr, event.key === 'ArrowDown' ? 1 : -1);
      }
    });
    $('trace-detail-close').addEventListener('click', closeTrace);
    $('trace-detail').addEventListener('keydown', (event) => {
      if (event.key === 'Escape') closeTrace();
    });
    $('traces-token-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const input = $('traces-token');
      const token = input.value.trim();
      if (!token) return;
      adminToken.set(token);
      input.value = '';
      traces.focusAfterLoad = true;
      pollTraces(); // an open trace not drawn yet (401) follows once the list has it
    });
    $('traces-token-forget').addEventListener('click', () => {
      adminToken.set('');
      pollTraces();
    });
    adminToken.set(adminToken.get()); // shows "Forget" when this tab already has one
    pollTraces();
  }

  // ---- WebSocket heartbeat: "hb" every 5 s while ON, reconnect 2 s after a drop ----

  const heartbeat = { wanted: false, socket: null, sendTimer: null, reconnectTimer: null };

  function heartbeatURL() {
    const url = new URL('api/ws-heartbeat', window.location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return url.href;
  }

  function setHeartbeatState(state, text) {
    const el = $('ws-heartbeat-state');
    el.dataset.state = state;
    el.textContent = text;
  }

  function sendHeartbeat() {
    const socket = heartbeat.socket;
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send('hb');
      setHeartbeatState('connected', 'connected, last "hb" at ' + fmt.clock(Date.now()));
    }
  }

  function connectHeartbeat() {
    clearTimeout(heartbeat.reconnectTimer);
    heartbeat.reconnectTimer = null;
    if (!heartbeat.wanted) return;
    setHeartbeatState('connecting', 'connecting…');
    let socket;
    try {
      socket = new WebSocket(heartbeatURL());
    } catch (error) {
      scheduleReconnect();
      return;
    }
    heartbeat.socket = socket;
    socket.addEventListener('open', () => {
      if (heartbeat.socket !== socket) return;
      sendHeartbeat();
      clearInterval(heartbeat.sendTimer);
      heartbeat.sendTimer = setInterval(sendHeartbeat, HEARTBEAT_EVERY_MS);
    });
    socket.addEventListener('close', () => {
      if (heartbeat.socket !== socket) return; // closed on purpose
      heartbeat.socket = null;
      clearInterval(heartbeat.sendTimer);
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (!heartbeat.wanted) return;
    setHeartbeatState('reconnecting', 'connection lost, reconnecting in 2 s');
    heartbeat.reconnectTimer = setTimeout(connectHeartbeat, HEARTBEAT_RECONNECT_MS);
  }

  function setHeartbeat(on) {
    heartbeat.wanted = on;
    const button = $('toggle-ws-heartbeat-btn');
    button.setAttribute('aria-pressed', on ? 'true' : 'false');
    button.textContent = on ? 'Heartbeat: ON' : 'Heartbeat: OFF';
    if (on) {
      connectHeartbeat();
      return;
    }
    clearTimeout(heartbeat.reconnectTimer);
    clearInterval(heartbeat.sendTimer);
    const socket = heartbeat.socket;
    heartbeat.socket = null;
    if (socket) socket.close(1000, 'heartbeat turned off');
    setHeartbeatState('off', 'WebSocket closed');
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('toggle-ws-heartbeat-btn').addEventListener('click', () => setHeartbeat(!heartbeat.wanted));
    makeCharts();
    poll();
    setUpTraces();
  });
})();
