// Live updates for the Sync admin pages over one WebSocket, reconnecting when it drops.
(function () {
  'use strict';
  var base = document.body.getAttribute('data-base');
  var page = document.body.getAttribute('data-page');
  var banner = document.getElementById('socket-state');
  var $ = function (id) { return document.getElementById(id); };
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(n) { return Math.round(n).toLocaleString('en'); }

  var ws, hello, onOpen, onMessage, retry = 500;
  function connect() {
    ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + base + '/live');
    ws.onopen = function () { retry = 500; banner.hidden = true; ws.send(JSON.stringify(hello())); if (onOpen) onOpen(); };
    ws.onmessage = function (ev) { onMessage(JSON.parse(ev.data)); };
    ws.onclose = function () { banner.hidden = false; setTimeout(connect, retry); retry = Math.min(retry * 2, 8000); };
  }
  function send(msg) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(msg)); }

  if (page === 'send') {
    var box = document.querySelector('.code-box');
    var owner = box.getAttribute('data-owner');
    $('copy').addEventListener('click', function () {
      var btn = this, code = btn.getAttribute('data-copy'), status = $('copy-status');
      function say(text, label) { btn.textContent = label; status.textContent = ''; setTimeout(function () { status.textContent = text; }, 50); }
      function selectCode() {
        var range = document.createRange(); range.selectNodeContents($('code'));
        var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
        say('The code is selected: press Ctrl+C (or ⌘C) to copy it.', 'Copy');
      }
      if (!navigator.clipboard || !navigator.clipboard.writeText) { selectCode(); return; }
      // A clipboard write can wait for a permission that never comes: fall back then too.
      var settled = false;
      var settle = function (fn) { return function () { if (settled) return; settled = true; clearTimeout(timer); fn(); }; };
      var timer = setTimeout(settle(selectCode), 1500);
      navigator.clipboard.writeText(code).then(settle(function () { say('Copied the code ' + code.split('').join(' ') + '.', 'Copied'); }), settle(selectCode));
    });
    hello = function () { return { op: 'hello', page: 'send', owner: owner }; };
    onMessage = function (m) {
      if (m.type !== 'send') return;
      box.setAttribute('data-live', ''); // the page's socket holds the code from here on
      $('code-dead').hidden = m.code_alive;
      showPending(m.pending);
      var rec = $('receivers'); rec.textContent = '';
      if (!m.sessions.length) rec.appendChild(el('p', { 'class': 'muted' }, 'Nobody yet.'));
      m.sessions.forEach(function (s) {
        var card = el('div', { 'class': 'card receiver' });
        card.appendChild(el('p', { 'class': 'who' }, describe(s.receiver_info) + ' from ' + s.receiver_addr));
        var what = s.progress && s.progress.table ? ' · pulling ' + s.progress.table +
          (s.progress.rows ? ' (' + fmt(s.progress.rows) + ' rows sent)' : '') : '';
        card.appendChild(el('p', {}, s.status + ' since ' + new Date(s.used_at).toLocaleTimeString() + what));
        rec.appendChild(card);
      });
    };
    connect();
  }

  // showPending updates the requests in place, keyed by approval id, so a keyboard
  // user's focus on Approve or Deny survives every update of the page.
  function showPending(list) {
    var box = $('pending'), want = {};
    list.forEach(function (a) { want[a.id] = true; });
    var lostFocus = false;
    Array.prototype.slice.call(box.querySelectorAll('.card.pending')).forEach(function (card) {
      if (want[card.getAttribute('data-id')]) return;
      if (card.contains(document.activeElement)) lostFocus = true;
      box.removeChild(card);
    });
    var empty = box.querySelector('p.muted');
    if (list.length && empty) box.removeChild(empty);
    if (!list.length && !empty) box.appendChild(el('p', { 'class': 'muted' }, 'No requests.'));
    list.forEach(function (a) {
      var who = describe(a.receiver_info) + ' from ' + a.address;
      var card = box.querySelector('.card.pending[data-id="' + CSS.escape(a.id) + '"]');
      if (!card) {
        card = el('div', { 'class': 'card pending', 'data-id': a.id, role: 'group' });
        card.appendChild(el('p', { 'class': 'who' }));
        var ok = el('button', { type: 'button', 'class': 'approve' }, 'Approve');
        var no = el('button', { type: 'button', 'class': 'deny' }, 'Deny');
        // Once decided, the buttons say so (aria-disabled keeps the focus on them,
        // where disabled would drop it) until the request leaves the list.
        var decide = function (op) {
          if (ok.getAttribute('aria-disabled') === 'true') return;
          send({ op: op, id: a.id });
          ok.setAttribute('aria-disabled', 'true'); no.setAttribute('aria-disabled', 'true');
        };
        ok.onclick = function () { decide('approve'); };
        no.onclick = function () { decide('deny'); };
        card.appendChild(ok); card.appendChild(document.createTextNode(' ')); card.appendChild(no);
        box.appendChild(card);
      }
      var p = card.querySelector('.who');
      if (p.textContent !== who) {
        p.textContent = who;
        card.setAttribute('aria-label', 'Request: ' + who);
        card.querySelector('button.approve').setAttribute('aria-label', 'Approve the request of ' + who);
        card.querySelector('button.deny').setAttribute('aria-label', 'Deny the request of ' + who);
      }
    });
    // A decided request's buttons are gone: keep the keyboard in the list.
    if (lostFocus) {
      var next = box.querySelector('button.approve:not([aria-disabled=true])');
      (next || box).focus();
    }
  }

  function describe(info) {
    if (!info) return 'A receiver';
    var parts = [];
    for (var k in info) if (typeof info[k] !== 'object') parts.push(k + ': ' + info[k]);
    return parts.length ? parts.join(', ') : 'A receiver';
  }

  if (page === 'receive') {
    var job = sessionStorage.getItem('fiberkit-sync-job') || '';
    var statusText = {
      idle: '', connecting: 'Connecting…', waiting_approval: 'Waiting for an admin of the sending site to approve…',
      ready: 'Connected. Pick the tables to pull.', transferring: 'Transferring…',
      done: 'Done. The connection is closed: connect with a new code to pull more.',
      failed: '', cancelled: 'Cancelled.'
    };
    hello = function () { return { op: 'hello', page: 'receive', job: job }; };
    var built = '', lastError = '';
    onMessage = function (m) {
      if (m.type !== 'receive') return;
      job = m.job; sessionStorage.setItem('fiberkit-sync-job', job);
      document.body.setAttribute('data-state', m.state);
      $('status').textContent = statusText[m.state] || '';
      var msg = $('message');
      msg.hidden = !m.message; msg.textContent = m.message || ''; msg.setAttribute('data-error', m.error || '');
      // The password is optional until the sending site asks for it.
      var pw = $('password'), wantPw = m.error === 'password_required' || m.error === 'wrong_password';
      if (wantPw) pw.setAttribute('aria-invalid', 'true'); else pw.removeAttribute('aria-invalid');
      if (wantPw && m.error !== lastError) pw.focus();
      lastError = m.error || '';
      var busy = m.state === 'connecting' || m.state === 'waiting_approval' || m.state === 'transferring';
      $('connect-btn').disabled = busy;
      $('picker').hidden = !m.tables.length;
      $('start').disabled = m.state !== 'ready';
      $('cancel').hidden = !busy;
      var key = m.tables.map(function (t) { return t.table + t.state + t.local_rows; }).join('|');
      if (key !== built) { built = key; buildTables(m.tables); }
      for (var t in m.progress) {
        var row = document.querySelector('tr[data-table="' + CSS.escape(t) + '"]');
        if (!row) continue;
        var p = m.progress[t], bar = row.querySelector('progress');
        bar.max = Math.max(p.total, 1); bar.value = p.done ? bar.max : p.rows;
        row.querySelector('.ptext').textContent = p.done ? '100%' :
          Math.floor(100 * p.rows / Math.max(p.total, 1)) + '% · ' + fmt(p.rate) + ' rows/s' + (p.eta_seconds ? ' · ' + Math.ceil(p.eta_seconds) + 's left' : '');
        row.setAttribute('data-done', p.done ? 'true' : 'false');
      }
      var o = m.overall; $('overall-bar').max = Math.max(o.total, 1); $('overall-bar').value = o.rows;
      $('overall-text').textContent = o.total ? fmt(o.rows) + ' / ' + fmt(o.total) + ' rows' + (o.rate ? ' · ' + fmt(o.rate) + ' rows/s' : '') : '';
      showResults(m.results);
    };
    function buildTables(tables) {
      var body = document.querySelector('#tables tbody'); body.textContent = '';
      tables.forEach(function (t) {
        var tr = el('tr', { 'data-table': t.table });
        var pick = el('input', { type: 'checkbox', 'class': 'pick', 'aria-label': 'Transfer ' + t.table });
        pick.checked = t.state !== 'match';
        var td = el('td'); td.appendChild(pick); tr.appendChild(td);
        tr.appendChild(el('td', {}, t.table));
        tr.appendChild(el('td', {}, fmt(t.rows)));
        tr.appendChild(el('td', {}, t.state === 'new' ? '—' : fmt(t.local_rows)));
        tr.appendChild(el('td', { 'class': 'here here-' + t.state }, { 'new': 'New', different: 'Different', match: 'Match' }[t.state]));
        var sel = el('select', { 'class': 'strategy', 'aria-label': 'Strategy for ' + t.table });
        ['default', 'skip', 'overwrite', 'merge', 'append'].forEach(function (s) { sel.appendChild(el('option', { value: s }, s)); });
        td = el('td'); td.appendChild(sel); tr.appendChild(td);
        td = el('td'); td.appendChild(el('progress', { max: '1', value: '0', 'aria-label': 'Progress of ' + t.table })); td.appendChild(el('span', { 'class': 'ptext' }, '')); tr.appendChild(td);
        body.appendChild(tr);
      });
    }
    function showResults(results) {
      var names = Object.keys(results || {}).sort();
      $('results').hidden = !names.length;
      var body = document.querySelector('#results tbody'); body.textContent = '';
      names.forEach(function (n) {
        var r = results[n], tr = el('tr', { 'data-table': n });
        tr.appendChild(el('td', {}, n));
        tr.appendChild(el('td', { 'class': 'created' }, fmt(r.created)));
        tr.appendChild(el('td', { 'class': 'updated' }, fmt(r.updated)));
        tr.appendChild(el('td', { 'class': 'skipped' }, fmt(r.skipped)));
        var td = el('td', { 'class': 'errors' });
        if (r.error) td.appendChild(el('p', { 'class': 'error' }, r.error));
        if (r.errors && r.errors.length) {
          var refused = Math.max(r.failed || 0, r.errors.length);
          var d = el('details'); d.appendChild(el('summary', {}, fmt(refused) + ' records refused' +
            (refused > r.errors.length ? ' (first ' + fmt(r.errors.length) + ' listed)' : '')));
          var ul = el('ul');
          r.errors.forEach(function (e) { ul.appendChild(el('li', {}, JSON.stringify(e.key) + ': ' + e.reason)); });
          d.appendChild(ul); td.appendChild(d);
        } else if (!r.error) td.textContent = '0';
        tr.appendChild(td); body.appendChild(tr);
      });
    }
    $('connect').addEventListener('submit', function (ev) {
      ev.preventDefault();
      document.body.setAttribute('data-state', 'connecting');
      $('message').hidden = true; $('status').textContent = statusText.connecting;
      send({ op: 'connect', url: $('url').value, code: $('code-input').value, password: $('password').value });
    });
    // An interrupted pull resumes over a new connection to its sender, with a new code.
    document.querySelectorAll('form.resume').forEach(function (f) {
      f.addEventListener('submit', function (ev) {
        ev.preventDefault();
        $('url').value = f.getAttribute('data-url');
        document.body.setAttribute('data-state', 'connecting');
        $('message').hidden = true; $('status').textContent = statusText.connecting;
        send({ op: 'resume', pull: f.getAttribute('data-pull'), code: f.elements.code.value, password: f.elements.password.value });
        f.closest('.card').hidden = true;
      });
    });
    $('all').onclick = function () { document.querySelectorAll('.pick').forEach(function (c) { c.checked = true; }); };
    $('none').onclick = function () { document.querySelectorAll('.pick').forEach(function (c) { c.checked = false; }); };
    $('start').onclick = function () {
      var tables = [], strategies = {};
      document.querySelectorAll('#tables tbody tr').forEach(function (tr) {
        if (!tr.querySelector('.pick').checked) return;
        var t = tr.getAttribute('data-table'); tables.push(t);
        var s = tr.querySelector('.strategy').value; if (s !== 'default') strategies[t] = s;
      });
      send({ op: 'start', tables: tables, strategy: $('default-strategy').value, strategies: strategies, create_missing: $('create-missing').checked });
    };
    $('cancel').onclick = function () { send({ op: 'cancel' }); };
    connect();
  }

  // The shape page: the shape's rows, kept up to date. Every subscription starts
  // with a "shape" message (again after a must-refetch), which empties the table;
  // "rows" messages insert, update and delete rows by key. Values are text only.
  if (page === 'shape' && $('rows')) {
    var table = $('rows'), tbody = table.querySelector('tbody'), headRow = table.querySelector('thead tr');
    var handle = table.getAttribute('data-handle'), limit = +table.getAttribute('data-limit');
    var columns = [], rows = new Map(), upToDate = false, resubscribe = null;
    var state = $('shape-state'), notice = $('shape-notice');
    function say(text) { state.textContent = text; }
    function warn(text) { notice.hidden = !text; notice.textContent = text || ''; }
    function count() { return fmt(rows.size) + (rows.size === 1 ? ' row' : ' rows'); }
    function setCell(td, v) {
      td.textContent = v === null ? 'null' : v;
      td.className = v === null ? 'null' : '';
    }
    function flash(e) {
      e.classList.remove('fade'); e.classList.add('changed');
      setTimeout(function () { e.classList.add('fade'); e.classList.remove('changed'); }, 600);
    }
    function start(m) {
      handle = m.handle; columns = m.columns; rows = new Map(); upToDate = false;
      table.setAttribute('data-handle', handle);
      $('shape-handle').textContent = handle;
      headRow.textContent = ''; tbody.textContent = '';
      columns.forEach(function (c) {
        var th = el('th', { scope: 'col' }, c);
        if (m.key.indexOf(c) >= 0) th.setAttribute('data-key', 'true');
        headRow.appendChild(th);
      });
      if (m.refetch) {
        // A replaced shape lives on under its new handle: a reload shows that one.
        history.replaceState(null, '', base + '/live-shapes/' + encodeURIComponent(handle));
        warn('The shape was replaced (its table was truncated or altered, or the shape was dropped): it is reloading as ' + handle + '.');
      }
      say('Loading the snapshot…');
    }
    function apply(c) {
      var tr = rows.get(c.key);
      if (c.op === 'delete') {
        if (tr) { tbody.removeChild(tr); rows.delete(c.key); }
        return;
      }
      if (c.op === 'insert' && !tr) {
        if (rows.size >= limit) return; // the server stops the stream before this
        tr = el('tr', { 'data-key': c.key });
        columns.forEach(function (col) { tr.appendChild(el('td', { 'data-col': col })); });
        rows.set(c.key, tr); tbody.appendChild(tr);
        if (upToDate) flash(tr);
      }
      if (!tr) return;
      columns.forEach(function (col, i) {
        if (!c.value || !Object.prototype.hasOwnProperty.call(c.value, col)) return;
        var td = tr.children[i], v = c.value[col];
        var was = td.className === 'null' ? null : td.textContent;
        if (c.op === 'update' && was === v) return;
        setCell(td, v);
        if (c.op === 'update') flash(td);
      });
    }
    hello = function () { return { op: 'hello', page: 'shape' }; };
    onOpen = function () { send({ op: 'subscribe', handle: handle }); };
    onMessage = function (m) {
      if (m.type === 'shape') { clearTimeout(resubscribe); if (!m.refetch) warn(''); start(m); return; }
      if (m.type === 'rows') {
        m.changes.forEach(apply);
        if (m.up_to_date) upToDate = true;
        say(count() + (upToDate ? ' · up to date, following changes' : ' · loading…'));
        return;
      }
      if (m.type === 'limit') {
        say(count() + ' · stopped');
        warn('This shape has more than ' + fmt(m.limit) + ' rows: the page shows the first ' + fmt(m.limit) + ' and no longer follows changes. Reload it to start again.');
        return;
      }
      if (m.type === 'error') {
        say(count() + ' · stopped');
        warn(m.message + (m.retry ? ' Trying again in a few seconds…' : ''));
        if (m.retry) resubscribe = setTimeout(function () { send({ op: 'subscribe', handle: handle }); }, 3000);
      }
    };
    window.addEventListener('pagehide', function () { send({ op: 'unsubscribe' }); });
    connect();
  }
})();
