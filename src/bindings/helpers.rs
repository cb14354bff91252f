//! Bindings for the token, URI and connection-string helpers.
//!
//! Argument types are checked by the JavaScript façade (`lib/helpers.js`), which gives
//! ws-style messages; these functions convert values and call the core, nothing more.

use hyco_core::rules::Rules;
use hyco_core::{connection_string, sas, uri};
use napi::Env;
use napi_derive::napi;

use crate::error::IntoJs;

/// `createRelayBaseUri(namespace, path)`; `hycoWs` reads the arguments as hyco-ws did.
#[napi(js_name = "createRelayBaseUri", catch_unwind)]
pub fn create_relay_base_uri(
    env: Env,
    namespace: String,
    path: String,
    hyco_ws: Option<bool>,
) -> napi::Result<String> {
    uri::base_uri_with(
        Rules::hyco_ws_if(hyco_ws.unwrap_or(false)),
        &namespace,
        &path,
    )
    .or_throw(&env)
}

/// `createRelayListenUri` (`action` = "listen") and `createRelaySendUri` (`action` = "connect");
/// `hycoWs` reads the arguments as hyco-ws did (see `Rules::HycoWs`).
#[napi(js_name = "createRelayActionUri", catch_unwind)]
pub fn create_relay_action_uri(
    env: Env,
    namespace: String,
    path: String,
    listen: bool,
    token: Option<String>,
    id: Option<String>,
    hyco_ws: Option<bool>,
) -> napi::Result<String> {
    let action = if listen {
        uri::Action::Listen
    } else {
        uri::Action::Connect
    };
    let rules = Rules::hyco_ws_if(hyco_ws.unwrap_or(false));
    uri::action_uri_with(
        rules,
        &namespace,
        &path,
        action,
        token.as_deref(),
        id.as_deref(),
    )
    .or_throw(&env)
}

/// `createRelayHttpsUri(namespace, path, [token, [id]])`.
#[napi(js_name = "createRelayHttpsUri", catch_unwind)]
pub fn create_relay_https_uri(
    env: Env,
    namespace: String,
    path: String,
    token: Option<String>,
    id: Option<String>,
) -> napi::Result<String> {
    uri::https_uri(&namespace, &path, token.as_deref(), id.as_deref()).or_throw(&env)
}

/// `createRelayToken(uri, keyName, key, [expirationSeconds])`. `nowMs` is the test hook that
/// pins the clock; the public façade never passes it. `hycoWs` reads the arguments as
/// hyco-ws did (see `Rules::HycoWs`).
#[napi(js_name = "createRelayToken", catch_unwind)]
pub fn create_relay_token(
    env: Env,
    uri: String,
    key_name: String,
    key: String,
    expiration_seconds: Option<f64>,
    now_ms: Option<f64>,
    hyco_ws: Option<bool>,
) -> napi::Result<String> {
    let now = now_ms.unwrap_or_else(sas::now_ms);
    let rules = Rules::hyco_ws_if(hyco_ws.unwrap_or(false));
    sas::create_token_with(rules, &uri, &key_name, &key, expiration_seconds, now).or_throw(&env)
}

/// `appendRelayToken(uri, keyName, key, [expirationSeconds])`, with the same clock hook and
/// rules.
#[napi(js_name = "appendRelayToken", catch_unwind)]
pub fn append_relay_token(
    env: Env,
    uri: String,
    key_name: String,
    key: String,
    expiration_seconds: Option<f64>,
    now_ms: Option<f64>,
    hyco_ws: Option<bool>,
) -> napi::Result<String> {
    let now = now_ms.unwrap_or_else(sas::now_ms);
    let rules = Rules::hyco_ws_if(hyco_ws.unwrap_or(false));
    uri::append_token_with(rules, &uri, &key_name, &key, expiration_seconds, now).or_throw(&env)
}

/// What `parseRelayToken` returns before the façade turns `expiresAt` into a `Date`.
#[napi(object)]
pub struct ParsedRelayToken {
    /// The signed resource, decoded.
    pub resource: String,
    /// Expiry, Unix seconds.
    pub expires_at: f64,
    /// The SAS rule's name.
    pub key_name: String,
}

/// `parseRelayToken(token)`.
#[napi(js_name = "parseRelayToken", catch_unwind)]
pub fn parse_relay_token(env: Env, token: String) -> napi::Result<ParsedRelayToken> {
    let p = sas::parse_token(&token).or_throw(&env)?;
    Ok(ParsedRelayToken {
        resource: p.resource,
        expires_at: p.expires_at as f64,
        key_name: p.key_name,
    })
}

/// What `parseConnectionString` returns.
#[napi(object)]
pub struct ParsedConnectionString {
    /// `Endpoint` as written.
    pub endpoint: String,
    /// A namespace the URI helpers accept.
    pub namespace: String,
    /// `EntityPath`.
    pub entity_path: Option<String>,
    /// `SharedAccessKeyName`.
    pub shared_access_key_name: Option<String>,
    /// `SharedAccessKey`.
    pub shared_access_key: Option<String>,
    /// `SharedAccessSignature`.
    pub shared_access_signature: Option<String>,
    /// `OperationTimeout` in milliseconds.
    pub operation_timeout: Option<f64>,
}

/// `parseConnectionString(connectionString)`.
#[napi(js_name = "parseConnectionString", catch_unwind)]
pub fn parse_connection_string(
    env: Env,
    connection_string: String,
) -> napi::Result<ParsedConnectionString> {
    let c = connection_string::parse(&connection_string).or_throw(&env)?;
    Ok(ParsedConnectionString {
        endpoint: c.endpoint,
        namespace: c.namespace,
        entity_path: c.entity_path,
        shared_access_key_name: c.shared_access_key_name,
        shared_access_key: c.shared_access_key,
        shared_access_signature: c.shared_access_signature,
        operation_timeout: c.operation_timeout_ms,
    })
}
