"use strict";
// Shared by every page: JSON calls to the API with the session's CSRF token.
window.safeboard = (() => {
  let csrf = null;
  async function call(method, path, body) {
    const headers = { "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (csrf && method !== "GET") headers["X-CSRF-Token"] = csrf;
    const response = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) {
      const error = new Error(data && data.error ? data.error.message : response.statusText);
      error.status = response.status;
      throw error;
    }
    if (data && data.csrf_token) csrf = data.csrf_token;
    return data;
  }
  function status(text, isError) {
    const node = document.getElementById("status");
    node.textContent = text;
    node.className = isError ? "error" : "";
  }
  return { call, status };
})();
