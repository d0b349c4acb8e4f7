// Shared by the page and the dashboard: the API key box and calls to the service.
"use strict";

const KEY_STORE = "repvgg-serve-key";

/** The `Authorization` header for the key typed in the page (kept in this tab only). */
function authHeaders() {
  const box = document.getElementById("key");
  const key = box ? box.value.trim() : "";
  return key ? { Authorization: "Bearer " + key } : {};
}

/** Keeps the key box in session storage, so a reload of the tab keeps it. */
function keepKey(onChange) {
  const box = document.getElementById("key");
  if (!box) return;
  box.value = sessionStorage.getItem(KEY_STORE) || "";
  box.addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORE, box.value.trim());
    if (onChange) onChange();
  });
  if (box.value) box.closest("details").open = true;
}

/** The service's own words for a failed call: `415 unsupported_media_type: ...`. */
function describeError(status, body) {
  const type = body && body.error_type ? body.error_type : "error";
  const text = body && body.error ? body.error : "the service answered without an error body";
  return (status ? status + " " : "") + type + ": " + text;
}

/** GETs JSON; resolves to `{ok, status, body}` and never throws. */
async function getJson(path) {
  try {
    const response = await fetch(path, { headers: authHeaders(), cache: "no-store" });
    const body = await response.json().catch(() => null);
    return { ok: response.ok, status: response.status, body };
  } catch (e) {
    return { ok: false, status: 0, body: { error_type: "network", error: String(e) } };
  }
}

/** An element with a class and text. */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Milliseconds as a person reads them. */
function ms(value) {
  return value < 10 ? value.toFixed(1) + " ms" : Math.round(value) + " ms";
}
