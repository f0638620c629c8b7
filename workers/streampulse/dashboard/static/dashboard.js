// StreamPulse dashboard: loads /api/content and /api/pipeline when the page opens, then every
// refresh_s seconds (the server's setting, sent with each answer). Plain ES modules, no framework.

import { renderContent } from "./content.js";
import { slot } from "./dom.js";
import { renderPipeline } from "./pipeline.js";

let refreshMs = 5000;
let timer = null;

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

async function refresh() {
  const results = await Promise.allSettled([getJson("/api/content"), getJson("/api/pipeline")]);
  const [content, pipeline] = results;
  if (content.status === "fulfilled") {
    renderContent(content.value);
    if (content.value.refresh_s) refreshMs = Math.max(1000, content.value.refresh_s * 1000);
  }
  if (pipeline.status === "fulfilled" && pipeline.value.targets) renderPipeline(pipeline.value);
  const stamp = slot("last-updated");
  if (results.some((r) => r.status === "rejected")) {
    slot("content-state").setAttribute("data-state", "offline");
    slot("content-state").textContent = "dashboard unreachable, retrying";
  } else {
    const now = new Date();
    stamp.textContent = "updated " + now.toLocaleTimeString("en-GB", { hour12: false });
    stamp.setAttribute("data-updated-at", now.toISOString());
  }
  document.body.setAttribute("data-loaded", "true");
}

async function loop() {
  timer = null;
  try {
    await refresh();
  } catch (error) {
    console.error(error);
  }
  timer = setTimeout(loop, refreshMs);
}

// A tab brought back to the front refreshes at once instead of showing stale numbers.
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && timer !== null) {
    clearTimeout(timer);
    loop();
  }
});

loop();
