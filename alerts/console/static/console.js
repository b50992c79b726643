// BedWatch console: live updates over server-sent events, acks without a reload, fresh "ago"s.
"use strict";

(function () {
  // The page names its stream; each element with data-live="NAME" takes the events NAME.
  const stream = document.querySelector("[data-events]");
  if (!stream) return;
  const live = document.getElementById("live");
  const notice = document.getElementById("notice");
  const liveText = live.textContent;

  function connect() {
    const source = new EventSource(stream.dataset.events);
    document.querySelectorAll("[data-live]").forEach((target) => {
      source.addEventListener(target.dataset.live, (e) => { target.innerHTML = e.data; refreshAges(); });
    });
    source.addEventListener("logout", () => { source.close(); location.assign("/console/login"); });
    source.onopen = () => { live.classList.remove("down"); live.textContent = liveText; };
    // EventSource reconnects by itself; say so meanwhile, since the page may be stale.
    source.onerror = () => { live.classList.add("down"); live.textContent = live.dataset.reconnecting; };
  }

  // Ack and resolve without leaving the page; the stream brings the new list.
  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!form.classList.contains("act")) return;
    event.preventDefault();
    form.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      const body = await response.json();
      show(body.message || body.error || response.statusText);
    } catch (err) {
      form.submit();  // no script path left: the plain form post still works
    }
  });

  function show(text) {
    if (!notice) return;
    notice.textContent = text;
    notice.hidden = false;
    clearTimeout(show.timer);
    show.timer = setTimeout(() => { notice.hidden = true; }, 4000);
  }

  // "12 min ago" in the page's language, kept current between server updates. Counted on the
  // service's clock: how far this device's clock is from it is noted when a time first shows.
  function refreshAges() {
    const zh = document.documentElement.lang.startsWith("zh");
    document.querySelectorAll("time[data-ts]").forEach((t) => {
      if (!t.dataset.skew) t.dataset.skew = String(Number(t.dataset.now) - Date.now());
      const now = Date.now() + Number(t.dataset.skew);
      const minutes = Math.max(0, Math.floor((now - Number(t.dataset.ts)) / 60000));
      t.textContent = zh ? `${minutes} 分钟前` : `${minutes} min ago`;
    });
  }

  setInterval(refreshAges, 30000);
  connect();
})();
