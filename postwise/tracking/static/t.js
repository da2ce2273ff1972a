/*! Postwise website tracking (docs/tracking-web.md). No dependencies, ES2017.
 *
 * <script src="https://POSTWISE_HOST/t.js" data-write-key="pw_wk_..." async></script>
 *
 * Calls made before this file loads are kept if the page defines the queue stub:
 *   window.postwise = window.postwise || [];
 *   ["page", "identify", "track", "consent"].forEach(function (m) {
 *     postwise[m] = postwise[m] || function () {
 *       postwise.push([m].concat(Array.prototype.slice.call(arguments)));
 *     };
 *   });
 */
(function () {
  "use strict";

  var LIBRARY = { name: "postwise.js", version: "__POSTWISE_VERSION__" };
  var COOKIE = "pw_aid";
  var CONSENT_COOKIE = "pw_consent";
  var USER_KEY = "pw_uid";
  var YEAR_SECONDS = 365 * 24 * 3600;
  var FLUSH_MS = 1000;
  var MAX_QUEUE = 100; // events held before a flush is forced
  var MAX_PENDING = 100; // calls held while waiting for consent
  var MAX_BODY = 60000; // under the 64 KB a beacon or keepalive request may carry

  var existing = window.postwise;
  if (existing && existing.loaded) return;

  var script =
    document.currentScript ||
    document.querySelector('script[data-write-key][src*="/t.js"]');
  var data = (script && script.dataset) || {};
  var writeKey = data.writeKey || "";
  var apiHost = (data.apiHost || (script ? new URL(script.src, location.href).origin : ""))
    .replace(/\/+$/, "");
  var requireConsent = data.requireConsent === "true";
  var autoPage = data.autoPage !== "false";
  var cookieDomain = data.cookieDomain || "";

  function doNotTrack() {
    var nav = navigator;
    return (
      nav.doNotTrack === "1" ||
      window.doNotTrack === "1" ||
      nav.msDoNotTrack === "1" ||
      nav.globalPrivacyControl === true
    );
  }

  function readCookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return null;
  }

  function writeCookie(name, value, maxAge) {
    var cookie = name + "=" + encodeURIComponent(value) + "; Path=/; Max-Age=" + maxAge +
      "; SameSite=Lax";
    if (cookieDomain) cookie += "; Domain=" + cookieDomain;
    if (location.protocol === "https:") cookie += "; Secure";
    document.cookie = cookie;
  }

  function storage(op, key, value) {
    try {
      if (op === "get") return window.localStorage.getItem(key);
      if (op === "set") window.localStorage.setItem(key, value);
      if (op === "del") window.localStorage.removeItem(key);
    } catch (e) {
      // Storage disabled (private mode, sandboxed frame): the cookie alone must do.
    }
    return null;
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); });
    return h.slice(0, 4).join("") + "-" + h.slice(4, 6).join("") + "-" + h.slice(6, 8).join("") +
      "-" + h.slice(8, 10).join("") + "-" + h.slice(10).join("");
  }

  // Consent: granted unless the page asks for it; a remembered choice counts as given.
  var consented = !requireConsent || readCookie(CONSENT_COOKIE) === "1";
  var pending = []; // calls made while consent is not given; sent once it is
  var queue = [];
  var timer = null;
  var anonymousId = null;
  var userId = null;

  function allowed() {
    return consented && !doNotTrack() && writeKey !== "";
  }

  function anonymous() {
    if (anonymousId) return anonymousId;
    anonymousId = readCookie(COOKIE) || storage("get", COOKIE) || uuid();
    writeCookie(COOKIE, anonymousId, YEAR_SECONDS);
    storage("set", COOKIE, anonymousId);
    return anonymousId;
  }

  function campaign() {
    var out = {};
    var params = new URLSearchParams(location.search);
    ["source", "medium", "campaign", "term", "content"].forEach(function (key) {
      var value = params.get("utm_" + key);
      if (value) out[key === "campaign" ? "name" : key] = value;
    });
    return out;
  }

  function pageInfo() {
    return {
      url: location.href,
      path: location.pathname,
      referrer: document.referrer,
      title: document.title,
      search: location.search,
    };
  }

  function context() {
    var ctx = {
      library: LIBRARY,
      page: pageInfo(),
      userAgent: navigator.userAgent,
      locale: navigator.language,
    };
    var utm = campaign();
    if (Object.keys(utm).length) ctx.campaign = utm;
    return ctx;
  }

  function message(type, fields) {
    var msg = {
      type: type,
      messageId: uuid(),
      anonymousId: anonymous(),
      timestamp: new Date().toISOString(),
      context: context(),
    };
    if (userId) msg.userId = userId;
    Object.keys(fields).forEach(function (key) { msg[key] = fields[key]; });
    return msg;
  }

  function body(batch) {
    return JSON.stringify({ batch: batch, sentAt: new Date().toISOString(), writeKey: writeKey });
  }

  // Batches small enough for a beacon; one oversized event travels alone.
  function chunks(events) {
    var out = [];
    var current = [];
    events.forEach(function (event) {
      current.push(event);
      if (current.length > 1 && body(current).length > MAX_BODY) {
        current.pop();
        out.push(current);
        current = [event];
      }
    });
    if (current.length) out.push(current);
    return out;
  }

  function post(batch, attempt) {
    // text/plain keeps this a "simple" cross-origin request: no preflight round trip.
    fetch(apiHost + "/v1/batch", {
      method: "POST",
      body: body(batch),
      headers: { "Content-Type": "text/plain;charset=UTF-8" },
      credentials: "omit",
      keepalive: true,
      mode: "cors",
    }).then(function (response) {
      if ((response.status === 429 || response.status >= 500) && attempt < 3) retry(batch, attempt);
    }, function () {
      if (attempt < 3) retry(batch, attempt);
    });
  }

  function retry(batch, attempt) {
    setTimeout(function () { post(batch, attempt + 1); }, 1000 * Math.pow(2, attempt));
  }

  function flush(unloading) {
    if (timer) {
      clearTimeout(timer);
      timer = null;
    }
    if (!queue.length) return;
    var events = queue;
    queue = [];
    chunks(events).forEach(function (batch) {
      var sent = false;
      if (unloading && navigator.sendBeacon) {
        sent = navigator.sendBeacon(apiHost + "/v1/batch", body(batch));
      }
      if (!sent) post(batch, 0);
    });
  }

  function enqueue(msg) {
    queue.push(msg);
    if (queue.length >= MAX_QUEUE) flush(false);
    else if (!timer) timer = setTimeout(function () { flush(false); }, FLUSH_MS);
  }

  function record(type, fields) {
    if (doNotTrack() || writeKey === "") return;
    if (!consented) {
      if (pending.length < MAX_PENDING) pending.push([type, fields, new Date().toISOString()]);
      return;
    }
    enqueue(message(type, fields));
  }

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  var api = {
    loaded: true,
    page: function (name, properties) {
      if (isObject(name)) {
        properties = name;
        name = undefined;
      }
      var props = Object.assign(pageInfo(), isObject(properties) ? properties : {});
      var fields = { properties: props };
      if (typeof name === "string" && name) fields.name = name;
      record("page", fields);
    },
    identify: function (id, traits) {
      if (isObject(id)) {
        traits = id;
        id = undefined;
      }
      if (id !== undefined && id !== null && id !== "") {
        userId = String(id);
        if (allowed()) storage("set", USER_KEY, userId);
      }
      record("identify", { traits: isObject(traits) ? traits : {} });
    },
    track: function (event, properties) {
      if (typeof event !== "string" || !event) return;
      record("track", { event: event, properties: isObject(properties) ? properties : {} });
    },
    consent: function (granted) {
      if (granted === true) {
        consented = true;
        if (doNotTrack()) {
          pending = [];
          return;
        }
        writeCookie(CONSENT_COOKIE, "1", YEAR_SECONDS);
        if (userId) storage("set", USER_KEY, userId);
        var held = pending;
        pending = [];
        held.forEach(function (call) {
          var msg = message(call[0], call[1]);
          msg.timestamp = call[2];
          enqueue(msg);
        });
      } else {
        // Withdrawal: forget the visitor on this site and drop what was not yet sent.
        consented = false;
        pending = [];
        queue = [];
        anonymousId = null;
        userId = null;
        writeCookie(COOKIE, "", 0);
        writeCookie(CONSENT_COOKIE, "", 0);
        storage("del", COOKIE);
        storage("del", USER_KEY);
      }
    },
    flush: function () { flush(false); },
  };

  if (allowed()) userId = storage("get", USER_KEY);

  addEventListener("pagehide", function () { flush(true); });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") flush(true);
  });

  window.postwise = api;
  var earlier = Array.isArray(existing) ? existing : [];
  var pageCalled = earlier.some(function (call) { return call && call[0] === "page"; });
  // Consent first, so that calls queued before it are not held back for nothing.
  earlier
    .filter(function (call) { return call && call[0] === "consent"; })
    .concat(earlier.filter(function (call) { return call && call[0] !== "consent"; }))
    .forEach(function (call) {
      if (typeof api[call[0]] === "function") api[call[0]].apply(null, call.slice(1));
    });
  if (autoPage && !pageCalled) api.page();
})();
