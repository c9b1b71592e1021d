// Keeps the module list's status column live by polling the kit's status endpoint.
(function () {
  var table = document.querySelector('table.modules[data-status-url]');
  if (!table) return;
  var url = table.getAttribute('data-status-url');
  function refresh() {
    fetch(url, { credentials: 'same-origin' }).then(function (r) { return r.ok ? r.json() : []; }).then(function (rows) {
      (rows || []).forEach(function (m) {
        var tr = document.getElementById('module-' + m.id);
        if (!tr) return;
        var st = tr.querySelector('[data-field=state]');
        if (st) { st.textContent = m.state; st.className = 'state state-' + m.state; }
      });
    }).catch(function () {});
  }
  setInterval(refresh, 2000);
})();
