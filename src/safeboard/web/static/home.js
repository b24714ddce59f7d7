"use strict";
(() => {
  const { call, status } = window.safeboard;

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;  // never innerHTML: names come from users
    return td;
  }

  async function showKeys() {
    const keys = await call("GET", "/api/v1/keys");
    const body = document.querySelector("#keys tbody");
    body.replaceChildren(...keys.filter((k) => !k.revoked_at).map((key) => {
      const row = document.createElement("tr");
      row.append(cell(key.name), cell(key.id), cell(key.scope),
        cell(key.expires_at ? key.expires_at.slice(0, 10) : "never"),
        cell(key.last_used_at ? `${key.last_used_at.slice(0, 16)} from ${key.last_used_address}` : "never"));
      return row;
    }));
    document.getElementById("keys").hidden = false;
  }

  call("GET", "/api/v1/auth/session").then(async (session) => {
    document.getElementById("who").textContent = `Signed in as ${session.user.username} (${session.user.role})`;
    const logout = document.getElementById("logout");
    logout.hidden = false;
    logout.addEventListener("click", () => {
      call("POST", "/api/v1/auth/logout").then(() => location.replace("/login"))
        .catch((error) => status(error.message, true));
    });
    status("");
    await showKeys();
  }).catch((error) => {
    if (error.status === 401) location.replace(`/login?next=${encodeURIComponent(location.pathname)}`);
    else status(error.message, true);
  });
})();
