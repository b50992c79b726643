// BedWatch console: live updates over server-sent events, acks without a reload, fresh "ago"s.
"use strict";

(function () {
  const alerts = document.getElementById("alerts");
  if (!alerts) return;
  const residents = document.getElementById("residents");
  const live = document.getElementById("live");
  const notice = document.getElementById("notice");
  const liveText = live.textContent;

  function connect() {
    const source = new EventSource(alerts.dataset.events);
    source.addEventListener("alerts", (e) => { alerts.innerHTML = e.data; refreshAges(); });
    source.addEventListener("residents", (e) => { residents.innerHTML = e.data; refreshAges(); });
    source.addEventListener("logout", () => { source.close(); location.assign("/console/login"); });
    source.onopen = () => { live.classList.remove("down"); live.textContent = liveText; };
    // EventSource reconnects by itself; say so meanwhile, since the list may be stale.
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
    notice.textContent = text;
    notice.hidden = false;
    clearTimeout(show.timer);
    show.timer = setTimeout(() => { notice.hidden = true; }, 4000);
  }

  // "12 min ago" in the page's language, kept current between server updates.
  function refreshAges() {
    const zh = document.documentElement.lang.startsWith("zh");
    document.querySelectorAll("time[data-ts]").forEach((t) => {
      const minutes = Math.max(0, Math.floor((Date.now() - Number(t.dataset.ts)) / 60000));
      t.textContent = zh ? `${minutes} 分钟前` : `${minutes} min ago`;
    });
  }

  setInterval(refreshAges, 30000);
  connect();
})();
