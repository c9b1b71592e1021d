// Keeps the module list live by polling the kit's status endpoint: state, restart
// count, last error, whether the config file locks the enabled flag, and the toggle.
(function () {
  var table = document.querySelector('table.modules[data-status-url]');
  if (!table) return;
  var url = table.getAttribute('data-status-url');
  function field(tr, name) { return tr.querySelector('[data-field="' + name + '"]'); }
  function show(el, on) { if (el) el.hidden = !on; }
  function update(m) {
    var tr = document.getElementById('module-' + m.id);
    if (!tr) return;
    var st = field(tr, 'state');
    if (st) { st.textContent = m.state; st.className = 'state state-' + m.state; }
    var rs = field(tr, 'restarts');
    if (rs) { rs.textContent = 'restarted ' + (m.restarts || 0) + '×'; show(rs, m.restarts > 0); }
    var er = field(tr, 'error');
    if (er) { er.textContent = m.error || ''; show(er, !!m.error); }
    var locked = field(tr, 'locked');
    var lv = field(tr, 'locked-value');
    if (lv) lv.textContent = m.enabled ? 'on' : 'off';
    show(locked, m.locked);
    var form = field(tr, 'toggle');
    show(form, !m.locked);
    if (form) {
      var input = form.querySelector('input[name=enabled]');
      if (input) input.value = m.enabled ? 'false' : 'true';
      var btn = form.querySelector('button.toggle');
      if (btn) { btn.textContent = m.enabled ? 'Disable' : 'Enable'; btn.setAttribute('aria-pressed', m.enabled ? 'true' : 'false'); }
    }
    show(field(tr, 'open'), m.enabled);
  }
  function refresh() {
    fetch(url, { credentials: 'same-origin' }).then(function (r) { return r.ok ? r.json() : []; }).then(function (rows) {
      (rows || []).forEach(update);
    }).catch(function () {});
  }
  setInterval(refresh, 2000);
})();
