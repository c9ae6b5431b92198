//! Google OAuth 2.0: the authorization endpoint (with PKCE and a consent the
//! test or demo approves), the token endpoint (authorization code, refresh,
//! both dialects of the device grant), device codes, and revocation.

use std::collections::HashMap;

use axum::extract::{Query, State as Ext};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::state::{
    Authorization, Device, SCOPE_APPDATA, SCOPE_DRIVE, SCOPE_FILE, now_ms, oauth_error, random_id,
};
use crate::{Shared, lock};

type Params = HashMap<String, String>;

/// Scopes the device flow allows (Google's list).
const DEVICE_SCOPES: &[&str] = &[
    "openid",
    "email",
    "profile",
    SCOPE_APPDATA,
    SCOPE_FILE,
    "https://www.googleapis.com/auth/youtube",
    "https://www.googleapis.com/auth/youtube.readonly",
];

/// Scopes the emulator knows.
const KNOWN_SCOPES: &[&str] = &[
    "openid",
    "email",
    "profile",
    SCOPE_APPDATA,
    SCOPE_FILE,
    SCOPE_DRIVE,
];

fn client_ok(s: &Shared, client: &str) -> bool {
    let st = lock(s);
    !client.is_empty()
        && (st.options.clients.is_empty() || st.options.clients.iter().any(|c| c == client))
}

fn scopes_of(p: &Params) -> Vec<String> {
    p.get("scope")
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

fn is_loopback(uri: &str) -> bool {
    ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"]
        .iter()
        .any(|p| uri.starts_with(p))
}

/// `GET /o/oauth2/v2/auth`: check the request, then send the browser back to
/// the client's loopback address with a code once the user approves.
pub async fn authorize(Ext(s): Ext<Shared>, Query(p): Query<Params>) -> Response {
    let client = p.get("client_id").cloned().unwrap_or_default();
    if !client_ok(&s, &client) {
        return (StatusCode::UNAUTHORIZED, Html("Error 401: invalid_client")).into_response();
    }
    let redirect = p.get("redirect_uri").cloned().unwrap_or_default();
    if !is_loopback(&redirect) {
        return (
            StatusCode::BAD_REQUEST,
            Html("Error 400: invalid_request (redirect_uri must be a loopback address)"),
        )
            .into_response();
    }
    if p.get("response_type").map(String::as_str) != Some("code") {
        return back(
            &redirect,
            &[("error", "unsupported_response_type")],
            p.get("state"),
        );
    }
    let scopes = scopes_of(&p);
    if scopes.is_empty() || scopes.iter().any(|x| !KNOWN_SCOPES.contains(&x.as_str())) {
        return back(&redirect, &[("error", "invalid_scope")], p.get("state"));
    }
    let challenge = match (p.get("code_challenge"), p.get("code_challenge_method")) {
        (Some(c), m) => {
            let m = m.cloned().unwrap_or_else(|| "plain".into());
            if m != "S256" && m != "plain" {
                return back(&redirect, &[("error", "invalid_request")], p.get("state"));
            }
            Some((c.clone(), m))
        }
        (None, _) => None,
    };
    let id = random_id(16);
    let auto = {
        let mut st = lock(&s);
        let auto = st.options.auto_approve;
        st.authorizations.insert(
            id.clone(),
            Authorization {
                client,
                redirect_uri: redirect,
                scopes,
                state: p.get("state").cloned(),
                challenge,
                approved: auto.then_some(true),
                code: None,
            },
        );
        auto
    };
    if auto {
        return decide(&s, &id);
    }
    Html(format!(
        "<!doctype html><title>Sign in - Google Accounts (emulator)</title>\
         <p>Tillmesh wants to see and manage its own files in your Google Drive.</p>\
         <p><a id=allow href=\"/o/oauth2/v2/consent?request={id}&decision=allow\">Allow</a> \
         <a id=deny href=\"/o/oauth2/v2/consent?request={id}&decision=deny\">Cancel</a></p>"
    ))
    .into_response()
}

/// `GET /o/oauth2/v2/consent?request=ID&decision=allow|deny`: the user's
/// answer on the consent page; also where a page waiting for
/// [`crate::Emulator::approve`] is sent on.
pub async fn consent(Ext(s): Ext<Shared>, Query(p): Query<Params>) -> Response {
    let id = p.get("request").cloned().unwrap_or_default();
    {
        let mut st = lock(&s);
        let Some(a) = st.authorizations.get_mut(&id) else {
            return (StatusCode::NOT_FOUND, Html("no such request")).into_response();
        };
        match p.get("decision").map(String::as_str) {
            Some("allow") => a.approved = Some(true),
            Some("deny") => a.approved = Some(false),
            _ => {}
        }
    }
    decide(&s, &id)
}

/// Send the browser back with a code, or an error, or keep it waiting.
fn decide(s: &Shared, id: &str) -> Response {
    let mut st = lock(s);
    let Some(a) = st.authorizations.get_mut(id) else {
        return (StatusCode::NOT_FOUND, Html("no such request")).into_response();
    };
    match a.approved {
        None => Html(format!(
            "<!doctype html><meta http-equiv=refresh content=\"1; url=/o/oauth2/v2/consent?request={id}\">\
             <p>Waiting for the user's consent.</p>"
        ))
        .into_response(),
        Some(false) => {
            let (r, state) = (a.redirect_uri.clone(), a.state.clone());
            back(&r, &[("error", "access_denied")], state.as_ref())
        }
        Some(true) => {
            let code = format!("4/{}", random_id(30));
            a.code = Some(code.clone());
            let scope = a.scopes.join(" ");
            let (r, state) = (a.redirect_uri.clone(), a.state.clone());
            back(&r, &[("code", &code), ("scope", &scope)], state.as_ref())
        }
    }
}

fn back(redirect: &str, params: &[(&str, &str)], state: Option<&String>) -> Response {
    let mut all: Vec<(&str, &str)> = params.to_vec();
    if let Some(st) = state {
        all.push(("state", st));
    }
    let q = serde_urlencoded::to_string(&all).unwrap_or_default();
    let sep = if redirect.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{redirect}{sep}{q}")).into_response()
}

/// Form parameters from the body, then the query (Google takes both).
fn form(body: &[u8], query: Option<&str>) -> Params {
    let mut p: Params = serde_urlencoded::from_bytes(body).unwrap_or_default();
    if let Some(q) = query {
        let extra: Params = serde_urlencoded::from_str(q).unwrap_or_default();
        for (k, v) in extra {
            p.entry(k).or_insert(v);
        }
    }
    p
}

/// `POST /token`.
pub async fn token(Ext(s): Ext<Shared>, uri: axum::http::Uri, body: axum::body::Bytes) -> Response {
    if let Some(r) = lock(&s).status_fault(crate::Route::Token) {
        return r;
    }
    let p = form(&body, uri.query());
    let client = p.get("client_id").cloned().unwrap_or_default();
    if !client_ok(&s, &client) {
        return oauth_error(401, "invalid_client", "The OAuth client was not found.");
    }
    match p.get("grant_type").map(String::as_str) {
        Some("authorization_code") => exchange_code(&s, &client, &p),
        Some("refresh_token") => refresh(&s, &client, &p),
        Some("urn:ietf:params:oauth:grant-type:device_code") => {
            poll_device(&s, &client, p.get("device_code"))
        }
        Some("http://oauth.net/grant_type/device/1.0") => poll_device(&s, &client, p.get("code")),
        _ => oauth_error(400, "unsupported_grant_type", "Invalid grant_type."),
    }
}

fn exchange_code(s: &Shared, client: &str, p: &Params) -> Response {
    let code = p.get("code").cloned().unwrap_or_default();
    let mut st = lock(s);
    let found = st
        .authorizations
        .iter()
        .find(|(_, a)| a.code.as_deref() == Some(code.as_str()))
        .map(|(id, a)| (id.clone(), a.clone()));
    let Some((id, a)) = found else {
        return oauth_error(400, "invalid_grant", "Malformed auth code.");
    };
    // A code is good once.
    st.authorizations.remove(&id);
    if a.client != client {
        return oauth_error(
            400,
            "invalid_grant",
            "The code was issued to another client.",
        );
    }
    if p.get("redirect_uri") != Some(&a.redirect_uri) {
        return oauth_error(400, "redirect_uri_mismatch", "Bad Request");
    }
    if let Some((challenge, method)) = &a.challenge {
        let Some(verifier) = p.get("code_verifier") else {
            return oauth_error(400, "invalid_grant", "Missing code verifier.");
        };
        let computed = if method == "S256" {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(verifier.as_bytes()))
        } else {
            verifier.clone()
        };
        if &computed != challenge {
            return oauth_error(400, "invalid_grant", "Invalid code verifier.");
        }
    }
    let body = st.new_grant(client, a.scopes);
    axum::Json(body).into_response()
}

fn refresh(s: &Shared, client: &str, p: &Params) -> Response {
    let token = p.get("refresh_token").cloned().unwrap_or_default();
    let mut st = lock(s);
    let Some(g) = st.grants.get(&token).cloned() else {
        return oauth_error(400, "invalid_grant", "Bad Request");
    };
    if g.revoked {
        return oauth_error(400, "invalid_grant", "Token has been expired or revoked.");
    }
    if g.client != client {
        return oauth_error(401, "unauthorized_client", "Unauthorized");
    }
    let (access, secs) = st.issue_access(&token);
    st.stats.refreshes += 1;
    axum::Json(json!({
        "access_token": access,
        "expires_in": secs,
        "scope": g.scopes.join(" "),
        "token_type": "Bearer",
    }))
    .into_response()
}

fn poll_device(s: &Shared, client: &str, code: Option<&String>) -> Response {
    let Some(code) = code else {
        return oauth_error(
            400,
            "invalid_request",
            "Missing required parameter: device_code",
        );
    };
    let now = now_ms();
    let mut st = lock(s);
    let Some(d) = st.devices.get_mut(code) else {
        return oauth_error(400, "invalid_grant", "Malformed device code.");
    };
    if d.client != client {
        return oauth_error(401, "invalid_client", "Unauthorized");
    }
    if d.done || now > d.expires_ms {
        return oauth_error(400, "expired_token", "Expired device code.");
    }
    let early = d
        .last_poll_ms
        .is_some_and(|last| now.saturating_sub(last) + 200 < d.interval_s * 1000);
    d.last_poll_ms = Some(now);
    match d.approved {
        None if early => oauth_error(403, "slow_down", "Rate limit exceeded"),
        None => oauth_error(428, "authorization_pending", "Precondition Required"),
        Some(false) => oauth_error(403, "access_denied", "Forbidden"),
        Some(true) => {
            d.done = true;
            let (client, scopes) = (d.client.clone(), d.scopes.clone());
            let body = st.new_grant(&client, scopes);
            axum::Json(body).into_response()
        }
    }
}

/// `POST /device/code`.
pub async fn device_code(
    Ext(s): Ext<Shared>,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Response {
    let p = form(&body, uri.query());
    let client = p.get("client_id").cloned().unwrap_or_default();
    if !client_ok(&s, &client) {
        return oauth_error(401, "invalid_client", "The OAuth client was not found.");
    }
    let scopes = scopes_of(&p);
    if scopes.is_empty() || scopes.iter().any(|x| !DEVICE_SCOPES.contains(&x.as_str())) {
        return oauth_error(400, "invalid_scope", "Invalid device flow scope.");
    }
    let device = random_id(40);
    let user = format!("{}-{}", random_id(4), random_id(4)).to_uppercase();
    let mut st = lock(&s);
    let approved = st.options.auto_approve.then_some(true);
    let verification = format!("{}/device", st.url);
    let interval = st.options.device_interval_s;
    st.devices.insert(
        device.clone(),
        Device {
            client,
            user_code: user.clone(),
            scopes,
            approved,
            expires_ms: now_ms() + 1_800_000,
            interval_s: interval,
            last_poll_ms: None,
            done: false,
        },
    );
    axum::Json(json!({
        "device_code": device,
        "user_code": user,
        "verification_url": verification,
        "expires_in": 1800,
        "interval": interval,
    }))
    .into_response()
}

/// `GET /device?user_code=CODE&decision=allow|deny`: the page where the user
/// enters the code (and, here, answers at once).
pub async fn device_page(Ext(s): Ext<Shared>, Query(p): Query<Params>) -> Response {
    let Some(code) = p.get("user_code") else {
        return Html(
            "<!doctype html><form><label>Enter the code <input name=user_code></label>\
             <button name=decision value=allow>Allow</button></form>",
        )
        .into_response();
    };
    let mut st = lock(&s);
    let Some(d) = st.devices.values_mut().find(|d| &d.user_code == code) else {
        return (StatusCode::NOT_FOUND, Html("That code was not found.")).into_response();
    };
    d.approved = Some(p.get("decision").map(String::as_str) != Some("deny"));
    Html("Done: return to your device.").into_response()
}

/// `POST /revoke` with `token=` (an access or refresh token) in the form or
/// the query.
pub async fn revoke(
    Ext(s): Ext<Shared>,
    uri: axum::http::Uri,
    _headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let p = form(&body, uri.query());
    let token = p.get("token").cloned().unwrap_or_default();
    let mut st = lock(&s);
    let grant = if st.grants.contains_key(&token) {
        Some(token)
    } else {
        st.access.get(&token).map(|a| a.grant.clone())
    };
    match grant.and_then(|g| st.grants.get_mut(&g)) {
        Some(g) if !g.revoked => {
            g.revoked = true;
            st.stats.revocations += 1;
            StatusCode::OK.into_response()
        }
        _ => oauth_error(400, "invalid_token", "Token expired or revoked"),
    }
}
