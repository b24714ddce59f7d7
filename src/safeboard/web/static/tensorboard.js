// The "TensorBoard" button (web/tensorboard_button.py): starts (or reuses) TensorBoard over
// the runs' event files and opens its one-time link in a new tab.
import { call, el, say } from "./app.js";

const button = document.getElementById("open-tensorboard");
const status = document.getElementById("tensorboard-status");

async function open() {
  // The tab is opened now, while the click counts: one opened after the wait would be
  // blocked. It is cut from this page at once (no opener), then sent to the link.
  const tab = window.open("", "_blank");
  if (tab) tab.opener = null;
  button.disabled = true;
  say(status, "Starting TensorBoard…");
  try {
    const opened = await call("POST", "/api/v1/tensorboards", { runs: JSON.parse(button.dataset.runs) });
    if (tab && !tab.closed) {
      tab.location.replace(opened.link);
      say(status, "TensorBoard is open in a new tab.");
    } else {  // the browser allowed no tab: a link to click
      status.replaceChildren(el("a", { href: opened.link, target: "_blank", rel: "noopener noreferrer" },
        "Open TensorBoard"));
    }
  } catch (error) {
    if (tab) tab.close();
    say(status, `TensorBoard: ${error.message}`, true);
  } finally {
    button.disabled = false;
  }
}

if (button) button.addEventListener("click", open);
