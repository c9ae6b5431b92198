// The dashboard's service worker: keeps the page itself, so that it opens
// (and shows the last state it saw, marked stale) while the daemon is down.
// The API is never cached here: the page keeps the last status it read.
'use strict';
const CACHE = 'tillmesh-dashboard-v1';
const SHELL = ['/', '/dashboard.js', '/dashboard.css', '/manifest.webmanifest', '/icon.svg'];

self.addEventListener('install', (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (e) => {
  e.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== 'GET' || url.origin !== location.origin || !SHELL.includes(url.pathname)) {
    return;
  }
  // The network first (the daemon serves the newest page); the kept copy
  // when it cannot be reached.
  e.respondWith(
    fetch(e.request)
      .then((r) => {
        if (r.ok) {
          const copy = r.clone();
          caches.open(CACHE).then((c) => c.put(url.pathname, copy));
        }
        return r;
      })
      .catch(() => caches.match(url.pathname)),
  );
});
