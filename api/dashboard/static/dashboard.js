// The dashboard's only script: confirmations before actions, and live parts that refresh.
// Without it every page still works: the server asks for confirmation itself.
"use strict";

// A form with data-confirm asks first; once confirmed it is marked so the server acts.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
  event.preventDefault();
  if (!window.confirm(form.dataset.confirm)) return;
  const confirmed = form.querySelector('input[name="confirmed"]');
  if (confirmed) confirmed.value = "yes";
  form.submit();
});

// An element with data-refresh-url is replaced by that fragment every data-refresh-s seconds,
// while the tab is visible, until the server says there is nothing left to follow.
function follow(region) {
  const url = region.dataset.refreshUrl;
  const every = 1000 * Number(region.dataset.refreshS || 5);
  const note = document.querySelector("[data-refresh-status]");
  let timer = null;

  async function refresh() {
    if (document.hidden) return;
    if (region.contains(document.activeElement) && document.activeElement !== document.body) return;
    try {
      const answer = await fetch(url, {
        credentials: "same-origin", headers: {"X-Requested-With": "fetch"}, cache: "no-store",
      });
      if (answer.status === 401) {
        window.location.assign("/dashboard/login?next=" + encodeURIComponent(location.pathname + location.search));
        return;
      }
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      region.innerHTML = await answer.text();
      region.dataset.refreshedAt = String(Date.now());
      if (note) note.textContent = "Refreshes every " + every / 1000 + " s";
      if (answer.headers.get("X-Dashboard-Final") === "1") {
        window.clearInterval(timer);
        // the page's other parts (buttons, gallery) change too; the notice is stale by now
        const next = new URL(window.location.href);
        next.searchParams.delete("notice");
        window.location.replace(next.toString());
      }
    } catch (error) {
      if (note) note.textContent = "Refresh failed (" + error.message + "); retrying";
    }
  }
  timer = window.setInterval(refresh, every);
}

document.querySelectorAll("[data-refresh-url]").forEach(follow);
