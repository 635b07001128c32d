// The recommended tokenlife browser client, in plain JavaScript (no build step, no framework).
//
// - The refresh token is never visible here: tokenlife sets it as an HttpOnly, Secure,
//   SameSite=Strict cookie, sent only to /refresh and /logout, and answers a browser page
//   without it in the JSON body. Every request that needs it says `credentials: "include"`.
// - The access token is kept in memory only (not localStorage): a reload gets a new one
//   from the cookie ("refresh on page load").
// - On a 401, one refresh is made however many calls failed at once (single-flight), then
//   each call is retried once.
// - Two tabs refreshing at the same moment both stay signed in: the second presents the
//   token the first just spent, and within the grace window (TOKENLIFE_REFRESH_GRACE)
//   tokenlife answers it with the same successor instead of treating it as reuse.
"use strict";

const app = (() => {
  // Where the API is: the page's <meta name="tokenlife-api">, else the page's own origin. A
  // `?api=` in the address is honoured only for a page on this machine (the example and its
  // test): anywhere else, a link could send the user's password to another site.
  const local = ["localhost", "127.0.0.1", "[::1]"].includes(location.hostname);
  const configured = document.querySelector('meta[name="tokenlife-api"]')?.content;
  const api = (local && new URLSearchParams(location.search).get("api")) || configured || location.origin;
  let accessToken = null;
  let refreshing = null; // the one refresh in flight, shared by every caller

  async function post(path, body) {
    const init = { method: "POST", credentials: "include", headers: {} };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(api + path, init);
  }

  /** Gets a new access token from the refresh cookie; one request however many ask. */
  function refresh() {
    if (!refreshing) {
      refreshing = (async () => {
        try {
          const response = await post("/refresh");
          if (!response.ok) {
            accessToken = null;
            return false;
          }
          const grant = await response.json();
          accessToken = grant.access_token;
          return true;
        } catch (error) {
          accessToken = null; // network error, or refused by CORS (a page we are not)
          return false;
        } finally {
          refreshing = null;
        }
      })();
    }
    return refreshing;
  }

  /** An API call with the access token; on 401, one shared refresh and one retry. */
  async function call(path, init = {}) {
    const send = () =>
      fetch(api + path, {
        ...init,
        headers: { ...(init.headers || {}), authorization: "Bearer " + accessToken },
      });
    let response = accessToken ? await send() : null;
    if (!response || response.status === 401) {
      if (!(await refresh())) throw new Error("signed out");
      response = await send();
    }
    return response;
  }

  async function login(username, password) {
    const response = await post("/login", { username, password });
    const grant = await response.json();
    if (!response.ok) throw new Error(grant.error_description || grant.error);
    accessToken = grant.access_token;
    return Object.keys(grant); // what the page was given (no refresh_token)
  }

  async function logout() {
    await refreshing; // a refresh in flight must not bring a token back afterwards
    const response = await post("/logout");
    accessToken = null;
    // Say so if it failed: on a shared computer "signed out" must mean it.
    if (!response.ok) throw new Error("logout failed: " + response.status);
  }

  async function whoami() {
    const response = await call("/userinfo");
    if (!response.ok) throw new Error("userinfo: " + response.status);
    return response.json();
  }

  /** Every live session of the user, following the listing's pages. */
  async function devices() {
    const all = [];
    let cursor = null;
    do {
      const query = cursor ? "?cursor=" + encodeURIComponent(cursor) : "";
      const response = await call("/sessions" + query);
      if (!response.ok) throw new Error("sessions: " + response.status);
      const page = await response.json();
      all.push(...page.sessions);
      cursor = page.next_cursor;
    } while (cursor);
    return all;
  }

  async function signOut(sid) {
    const response = await call("/sessions/" + encodeURIComponent(sid), { method: "DELETE" });
    return response.status;
  }

  async function signOutOthers() {
    const response = await call("/sessions/revoke-others", { method: "POST" });
    return (await response.json()).ended;
  }

  // ---------------------------------------------------------------- the page
  const $ = (id) => document.getElementById(id);
  const when = (secs) => new Date(secs * 1000).toLocaleString();

  async function show() {
    const signedIn = accessToken !== null;
    $("status").textContent = signedIn ? "signed in" : "signed out";
    $("login-form").hidden = signedIn;
    $("app").hidden = !signedIn;
    if (!signedIn) return;
    const me = await whoami();
    $("sub").textContent = me.sub;
    $("scope").textContent = me.scope;
    await showDevices();
  }

  async function showDevices() {
    const rows = $("devices");
    rows.textContent = "";
    for (const session of await devices()) {
      const row = rows.insertRow();
      row.insertCell().textContent = session.current ? "this device" : "";
      row.insertCell().textContent = session.user_agent || "unknown";
      row.insertCell().textContent = session.source_ip || "";
      row.insertCell().textContent = when(session.created_at);
      row.insertCell().textContent = when(session.last_used_at);
      const cell = row.insertCell();
      if (!session.current) {
        const button = document.createElement("button");
        button.textContent = "Sign out";
        button.onclick = async () => { await signOut(session.sid); await showDevices(); };
        cell.append(button);
      }
    }
  }

  async function start() {
    $("api").textContent = api;
    $("login").onsubmit = async (event) => {
      event.preventDefault();
      const form = new FormData(event.target);
      try {
        await login(form.get("username"), form.get("password"));
        $("login-error").textContent = "";
      } catch (error) {
        $("login-error").textContent = error.message;
      }
      await show();
    };
    $("logout").onclick = async () => { await logout(); await show(); };
    $("whoami").onclick = async () => alert(JSON.stringify(await whoami(), null, 2));
    $("refresh-devices").onclick = showDevices;
    $("revoke-others").onclick = async () => { await signOutOthers(); await showDevices(); };
    await refresh(); // refresh on page load, from the cookie
    await show();
  }

  const ready = start();
  // What the tests drive (and a console user may try).
  return { ready, login, logout, refresh, call, whoami, devices, signOut, signOutOthers,
           get accessToken() { return accessToken; } };
})();
