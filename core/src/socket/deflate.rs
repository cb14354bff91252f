//! permessage-deflate negotiation (RFC 7692), for both roles and with ws 8's rules: the
//! `Sec-WebSocket-Extensions` grammar (ws's `extension.parse`/`format`), a client's offer and
//! its check of the answer, and a server's choice among the offers.
//!
//! Roles are those of the extension, not of the wire: a listener's accept socket is a
//! WebSocket client on the wire but the deflate *server* (it compresses under the `server_*`
//! parameters and inflates under the `client_*` ones). [`Agreement::server`] says which.

use std::collections::HashMap;

use crate::socket::error::SocketError;

/// The extension's name.
pub const EXTENSION: &str = "permessage-deflate";

/// A parameter's values as written (`None` for a parameter without a value).
pub type Values = Vec<(String, Vec<Option<String>>)>;

/// A parsed header: each extension name with its configurations, in the header's order.
pub type Offers = Vec<(String, Vec<Values>)>;

/// A `*_max_window_bits` option, with ws's four states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WindowBits {
    /// Not given (`undefined`).
    #[default]
    Unset,
    /// `false`: refuse the parameter.
    Off,
    /// `true`: offer or accept it without a value.
    Any,
    /// A number of bits, 8 to 15.
    Bits(u8),
}

impl WindowBits {
    fn number(self) -> Option<u8> {
        match self {
            WindowBits::Bits(b) => Some(b),
            _ => None,
        }
    }
}

/// ws's `perMessageDeflate` options that shape the negotiation and the compressor
/// (`threshold` is applied by the owner, which decides per message what to compress).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateOptions {
    /// `serverNoContextTakeover`: `None` unset, else the boolean.
    pub server_no_context_takeover: Option<bool>,
    /// `clientNoContextTakeover`.
    pub client_no_context_takeover: Option<bool>,
    /// `serverMaxWindowBits`.
    pub server_max_window_bits: WindowBits,
    /// `clientMaxWindowBits`.
    pub client_max_window_bits: WindowBits,
    /// `zlibDeflateOptions.level`, -1 (zlib's default, 6) to 9.
    pub level: i8,
    /// `zlibDeflateOptions.memLevel`, 1 to 9 (default 8).
    pub mem_level: u8,
}

impl Default for DeflateOptions {
    fn default() -> Self {
        DeflateOptions {
            server_no_context_takeover: None,
            client_no_context_takeover: None,
            server_max_window_bits: WindowBits::Unset,
            client_max_window_bits: WindowBits::Unset,
            level: -1,
            mem_level: 8,
        }
    }
}

/// A parameter of permessage-deflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// `server_no_context_takeover`.
    ServerNoContextTakeover,
    /// `client_no_context_takeover`.
    ClientNoContextTakeover,
    /// `server_max_window_bits`.
    ServerMaxWindowBits,
    /// `client_max_window_bits`.
    ClientMaxWindowBits,
}

impl Param {
    fn name(self) -> &'static str {
        match self {
            Param::ServerNoContextTakeover => "server_no_context_takeover",
            Param::ClientNoContextTakeover => "client_no_context_takeover",
            Param::ServerMaxWindowBits => "server_max_window_bits",
            Param::ClientMaxWindowBits => "client_max_window_bits",
        }
    }
}

/// A parameter's value: present without a value (`true`), or a number of bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// Present, no value.
    Flag,
    /// A window size in bits (8 to 15).
    Bits(u8),
}

/// One configuration's parameters, in order (the order ws formats them in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(Param, Value)>);

impl Params {
    /// The value of `p`, if present.
    pub fn get(&self, p: Param) -> Option<Value> {
        self.0.iter().find(|(k, _)| *k == p).map(|(_, v)| *v)
    }

    fn bits(&self, p: Param) -> Option<u8> {
        match self.get(p) {
            Some(Value::Bits(b)) => Some(b),
            _ => None,
        }
    }

    /// Sets `p` (in place if present, else at the end: as a JavaScript object's keys).
    fn set(&mut self, p: Param, v: Value) {
        match self.0.iter_mut().find(|(k, _)| *k == p) {
            Some(entry) => entry.1 = v,
            None => self.0.push((p, v)),
        }
    }

    fn remove(&mut self, p: Param) {
        self.0.retain(|(k, _)| *k != p);
    }

    /// The header value for these parameters: `permessage-deflate; a; b=10`.
    pub fn format(&self) -> String {
        let mut s = String::from(EXTENSION);
        for (k, v) in &self.0 {
            s.push_str("; ");
            s.push_str(k.name());
            if let Value::Bits(b) = v {
                s.push('=');
                s.push_str(&b.to_string());
            }
        }
        s
    }
}

/// What was agreed for a connection, and how this end compresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// The agreed parameters.
    pub params: Params,
    /// This end is the extension's server (it compresses under `server_*`).
    pub server: bool,
    /// The compression level (-1 for zlib's default).
    pub level: i8,
    /// zlib's memLevel.
    pub mem_level: u8,
}

impl Agreement {
    fn own(&self) -> (Param, Param) {
        if self.server {
            (Param::ServerNoContextTakeover, Param::ServerMaxWindowBits)
        } else {
            (Param::ClientNoContextTakeover, Param::ClientMaxWindowBits)
        }
    }

    fn peer(&self) -> (Param, Param) {
        if self.server {
            (Param::ClientNoContextTakeover, Param::ClientMaxWindowBits)
        } else {
            (Param::ServerNoContextTakeover, Param::ServerMaxWindowBits)
        }
    }

    /// This end's compressor: its window bits (15 unless agreed) and whether it starts
    /// afresh after each message.
    pub fn deflate_window(&self) -> (u8, bool) {
        let (nct, bits) = self.own();
        (
            self.params.bits(bits).unwrap_or(15),
            self.params.get(nct).is_some(),
        )
    }

    /// The peer's compressor, which this end's inflater follows.
    pub fn inflate_window(&self) -> (u8, bool) {
        let (nct, bits) = self.peer();
        (
            self.params.bits(bits).unwrap_or(15),
            self.params.get(nct).is_some(),
        )
    }
}

/// How a connection negotiates permessage-deflate in its opening handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Negotiation {
    /// As a client: offer with these options and check the server's answer.
    Offer(DeflateOptions),
    /// As the deflate server over a client connection (a listener's accept socket): send
    /// the answer chosen from the sender's offer ([`accept_offer`]).
    Answer(Agreement),
}

impl Negotiation {
    /// The `Sec-WebSocket-Extensions` request header's value.
    pub fn header(&self) -> String {
        match self {
            Negotiation::Offer(o) => offer(o),
            Negotiation::Answer(a) => a.params.format(),
        }
    }
}

/// RFC 7230 `tchar`, as ws's `tokenChars`.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Entries grouped by name, in the order names first appear, with an index by name: a
/// linear search per entry made a header of tens of thousands of distinct names take
/// seconds (256 KiB: 4.5 s; ws parses it in about 0.1 s).
struct Grouped<T> {
    list: Vec<(String, Vec<T>)>,
    index: HashMap<String, usize>,
}

impl<T> Grouped<T> {
    fn new() -> Self {
        Grouped {
            list: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Adds `elem` under `name`.
    fn push(&mut self, name: &str, elem: T) {
        match self.index.get(name) {
            Some(&at) => self.list[at].1.push(elem),
            None => {
                self.index.insert(name.to_owned(), self.list.len());
                self.list.push((name.to_owned(), vec![elem]));
            }
        }
    }

    /// Everything so far, leaving this empty.
    fn take(&mut self) -> Vec<(String, Vec<T>)> {
        self.index.clear();
        std::mem::take(&mut self.list)
    }
}

/// Parses a `Sec-WebSocket-Extensions` value as ws's `extension.parse` does (same grammar,
/// same errors: `Unexpected character at index N`, `Unexpected end of input`).
pub fn parse(header: &str) -> Result<Offers, String> {
    let b = header.as_bytes();
    let unexpected = |i: usize| format!("Unexpected character at index {i}");
    let mut offers = Grouped::new();
    let mut params = Grouped::new();
    let (mut must_unescape, mut is_escaping, mut in_quotes) = (false, false, false);
    let mut extension: Option<String> = None;
    let mut param: Option<String> = None;
    let (mut start, mut end): (Option<usize>, Option<usize>) = (None, None);
    let mut last = 0u8;
    for (i, &code) in b.iter().enumerate() {
        last = code;
        let blank = code == b' ' || code == b'\t';
        if extension.is_none() {
            if end.is_none() && is_token(code) {
                start.get_or_insert(i);
            } else if i != 0 && blank {
                if end.is_none() && start.is_some() {
                    end = Some(i);
                }
            } else if code == b';' || code == b',' {
                let s = start.ok_or_else(|| unexpected(i))?;
                let name = &header[s..end.unwrap_or(i)];
                if code == b',' {
                    offers.push(name, params.take());
                } else {
                    extension = Some(name.to_owned());
                }
                (start, end) = (None, None);
            } else {
                return Err(unexpected(i));
            }
        } else if param.is_none() {
            if end.is_none() && is_token(code) {
                start.get_or_insert(i);
            } else if blank {
                if end.is_none() && start.is_some() {
                    end = Some(i);
                }
            } else if code == b';' || code == b',' {
                let s = start.ok_or_else(|| unexpected(i))?;
                params.push(&header[s..end.unwrap_or(i)], None);
                if code == b',' {
                    let ext = extension.take().unwrap_or_default();
                    offers.push(&ext, params.take());
                }
                (start, end) = (None, None);
            } else if code == b'=' && start.is_some() && end.is_none() {
                param = start.map(|s| header[s..i].to_owned());
                (start, end) = (None, None);
            } else {
                return Err(unexpected(i));
            }
        } else if is_escaping {
            if !is_token(code) {
                return Err(unexpected(i));
            }
            if start.is_none() {
                start = Some(i);
            } else {
                must_unescape = true;
            }
            is_escaping = false;
        } else if in_quotes {
            if is_token(code) {
                start.get_or_insert(i);
            } else if code == b'"' && start.is_some() {
                in_quotes = false;
                end = Some(i);
            } else if code == b'\\' {
                is_escaping = true;
            } else {
                return Err(unexpected(i));
            }
        } else if code == b'"' && i > 0 && b[i - 1] == b'=' {
            in_quotes = true;
        } else if end.is_none() && is_token(code) {
            start.get_or_insert(i);
        } else if start.is_some() && blank {
            if end.is_none() {
                end = Some(i);
            }
        } else if code == b';' || code == b',' {
            let s = start.ok_or_else(|| unexpected(i))?;
            let mut value = header[s..end.unwrap_or(i)].to_owned();
            if must_unescape {
                value = value.replace('\\', "");
                must_unescape = false;
            }
            let name = param.take().unwrap_or_default();
            params.push(&name, Some(value));
            if code == b',' {
                let ext = extension.take().unwrap_or_default();
                offers.push(&ext, params.take());
            }
            (start, end) = (None, None);
        } else {
            return Err(unexpected(i));
        }
    }
    let Some(s) = start else {
        return Err("Unexpected end of input".into());
    };
    if in_quotes || last == b' ' || last == b'\t' {
        return Err("Unexpected end of input".into());
    }
    let token = &header[s..end.unwrap_or(b.len())];
    match extension {
        None => offers.push(token, params.take()),
        Some(ext) => {
            match param {
                None => params.push(token, None),
                Some(p) if must_unescape => params.push(&p, Some(token.replace('\\', ""))),
                Some(p) => params.push(&p, Some(token.to_owned())),
            }
            offers.push(&ext, params.take());
        }
    }
    Ok(offers.take())
}

/// A window size as RFC 7692 writes it and ws 8.23 reads it: 8 to 15 in decimal, without a
/// sign, leading zero, fraction or exponent (earlier ws took JavaScript's `+value`, so
/// `0xa` and `1e1` were 10).
fn window_value(key: &str, v: &str) -> Result<u8, String> {
    match v.as_bytes() {
        [d @ b'8'..=b'9'] => Ok(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Ok(10 + d - b'0'),
        _ => Err(format!("Invalid value for parameter \"{key}\": {v}")),
    }
}

/// ws's `normalizeParams`: each configuration's parameters checked and typed.
fn normalize(configs: &[Values], is_server: bool) -> Result<Vec<Params>, String> {
    configs
        .iter()
        .map(|values| {
            let mut params = Params::default();
            for (key, list) in values {
                if list.len() > 1 {
                    return Err(format!("Parameter \"{key}\" must have only a single value"));
                }
                let v = list.first().cloned().flatten();
                let shown = v.clone().unwrap_or_else(|| "true".into());
                let (p, value) = match key.as_str() {
                    "client_max_window_bits" => match &v {
                        Some(s) => (
                            Param::ClientMaxWindowBits,
                            Value::Bits(window_value(key, s)?),
                        ),
                        None if is_server => (Param::ClientMaxWindowBits, Value::Flag),
                        None => return Err(format!("Invalid value for parameter \"{key}\": true")),
                    },
                    "server_max_window_bits" => (
                        Param::ServerMaxWindowBits,
                        Value::Bits(window_value(key, &shown)?),
                    ),
                    "client_no_context_takeover" | "server_no_context_takeover" => {
                        if v.is_some() {
                            return Err(format!("Invalid value for parameter \"{key}\": {shown}"));
                        }
                        let p = if key.starts_with("client") {
                            Param::ClientNoContextTakeover
                        } else {
                            Param::ServerNoContextTakeover
                        };
                        (p, Value::Flag)
                    }
                    _ => return Err(format!("Unknown parameter \"{key}\"")),
                };
                params.0.push((p, value));
            }
            Ok(params)
        })
        .collect()
}

/// A client's offer for `opts` (ws's `offer()`, formatted).
pub fn offer(opts: &DeflateOptions) -> String {
    let mut p = Params::default();
    if opts.server_no_context_takeover == Some(true) {
        p.0.push((Param::ServerNoContextTakeover, Value::Flag));
    }
    if opts.client_no_context_takeover == Some(true) {
        p.0.push((Param::ClientNoContextTakeover, Value::Flag));
    }
    match opts.server_max_window_bits {
        WindowBits::Bits(b) => p.0.push((Param::ServerMaxWindowBits, Value::Bits(b))),
        WindowBits::Any => p.0.push((Param::ServerMaxWindowBits, Value::Flag)),
        _ => {}
    }
    match opts.client_max_window_bits {
        WindowBits::Bits(b) => p.0.push((Param::ClientMaxWindowBits, Value::Bits(b))),
        WindowBits::Any | WindowBits::Unset => p.0.push((Param::ClientMaxWindowBits, Value::Flag)),
        WindowBits::Off => {}
    }
    p.format()
}

/// ws's `acceptAsServer`: the first offer `opts` can take, with the parameters it adds.
fn accept_as_server(opts: &DeflateOptions, offers: Vec<Params>) -> Result<Params, String> {
    let acceptable = |p: &Params| {
        let refused = (opts.server_no_context_takeover == Some(false)
            && p.get(Param::ServerNoContextTakeover).is_some())
            || p.bits(Param::ServerMaxWindowBits).is_some_and(|offered| {
                opts.server_max_window_bits == WindowBits::Off
                    || opts
                        .server_max_window_bits
                        .number()
                        .is_some_and(|o| o > offered)
            })
            || opts.client_max_window_bits.number().is_some_and(|o| {
                match p.get(Param::ClientMaxWindowBits) {
                    Some(Value::Bits(offered)) => o > offered,
                    Some(Value::Flag) => false,
                    None => true,
                }
            });
        !refused
    };
    let mut accepted = offers
        .into_iter()
        .find(acceptable)
        .ok_or_else(|| "None of the extension offers can be accepted".to_owned())?;
    if opts.server_no_context_takeover == Some(true) {
        accepted.set(Param::ServerNoContextTakeover, Value::Flag);
    }
    if opts.client_no_context_takeover == Some(true) {
        accepted.set(Param::ClientNoContextTakeover, Value::Flag);
    }
    if let Some(b) = opts.server_max_window_bits.number() {
        accepted.set(Param::ServerMaxWindowBits, Value::Bits(b));
    }
    if let Some(b) = opts.client_max_window_bits.number() {
        accepted.set(Param::ClientMaxWindowBits, Value::Bits(b));
    } else if accepted.get(Param::ClientMaxWindowBits) == Some(Value::Flag)
        || opts.client_max_window_bits == WindowBits::Off
    {
        accepted.remove(Param::ClientMaxWindowBits);
    }
    Ok(accepted)
}

/// ws's `acceptAsClient`: the server's answer checked against what was offered.
fn accept_as_client(opts: &DeflateOptions, response: Vec<Params>) -> Result<Params, String> {
    let mut params = response.into_iter().next().unwrap_or_default();
    if opts.client_no_context_takeover == Some(false)
        && params.get(Param::ClientNoContextTakeover).is_some()
    {
        return Err("Unexpected parameter \"client_no_context_takeover\"".into());
    }
    match params.bits(Param::ClientMaxWindowBits) {
        None => {
            if let Some(b) = opts.client_max_window_bits.number() {
                params.set(Param::ClientMaxWindowBits, Value::Bits(b));
            }
        }
        Some(answered) => {
            if opts.client_max_window_bits == WindowBits::Off
                || opts
                    .client_max_window_bits
                    .number()
                    .is_some_and(|o| answered > o)
            {
                return Err("Unexpected or invalid parameter \"client_max_window_bits\"".into());
            }
        }
    }
    Ok(params)
}

/// A listener's choice, as ws's `WebSocketServer` makes it: `Ok(None)` when the sender
/// offered no permessage-deflate (other extensions are ignored), the agreement otherwise.
/// `Err` carries ws's reason for a 400: `Invalid or unacceptable Sec-WebSocket-Extensions
/// header` (a header that does not parse, a bad parameter in any offer, or no offer this
/// end can accept).
pub fn accept_offer(opts: &DeflateOptions, header: &str) -> Result<Option<Agreement>, String> {
    let refuse = |why: String| {
        log::debug!("deflate: refusing the offer: {why}");
        "Invalid or unacceptable Sec-WebSocket-Extensions header".to_owned()
    };
    let offers = parse(header).map_err(refuse)?;
    let Some((_, configs)) = offers.into_iter().find(|(k, _)| k == EXTENSION) else {
        return Ok(None);
    };
    let params = normalize(&configs, true)
        .and_then(|n| accept_as_server(opts, n))
        .map_err(refuse)?;
    Ok(Some(Agreement {
        params,
        server: true,
        level: opts.level,
        mem_level: opts.mem_level,
    }))
}

/// Whether `header` reads as a server's answer: one permessage-deflate configuration whose
/// parameters a client can take (`client_max_window_bits` with a value). ws's client sends
/// an *offer* (`permessage-deflate; client_max_window_bits`), which is not one.
pub fn is_answer(header: &str) -> bool {
    match parse(header) {
        Ok(offers) => match offers.as_slice() {
            [(name, configs)] => {
                name == EXTENSION && configs.len() == 1 && normalize(configs, false).is_ok()
            }
            _ => false,
        },
        Err(_) => false,
    }
}

/// The agreement of an accept socket that answers with `answer` (from [`accept_offer`],
/// passed through its owner), compressing with `opts`' level and memLevel.
pub fn answered(answer: &str, opts: &DeflateOptions) -> Result<Agreement, String> {
    let offers = parse(answer)?;
    match offers.as_slice() {
        [(name, configs)] if name == EXTENSION && configs.len() == 1 => {
            let params = normalize(configs, true)?.pop().unwrap_or_default();
            Ok(Agreement {
                params,
                server: true,
                level: opts.level,
                mem_level: opts.mem_level,
            })
        }
        _ => Err(format!("not a permessage-deflate answer: {answer}")),
    }
}

/// A client's check of the server's `Sec-WebSocket-Extensions` (`answer`, `None` when the
/// response has none) as ws makes it, with ws's messages.
pub fn check_answer(
    negotiation: Option<&Negotiation>,
    answer: Option<&str>,
) -> Result<Option<Agreement>, SocketError> {
    let fail = |m: &str| SocketError::coded(m, "ERR_INVALID_HTTP_RESPONSE");
    match (negotiation, answer) {
        (_, None) => Ok(match negotiation {
            // The accept socket's answer is the agreement: the service passes it on to the
            // sender whether or not it echoes it here.
            Some(Negotiation::Answer(a)) => Some(a.clone()),
            _ => None,
        }),
        (None, Some(_)) => Err(fail(
            "Server sent a Sec-WebSocket-Extensions header but no extension was requested",
        )),
        (Some(n), Some(header)) => {
            let offers =
                parse(header).map_err(|_| fail("Invalid Sec-WebSocket-Extensions header"))?;
            if offers.len() != 1 || offers[0].0 != EXTENSION {
                return Err(fail("Server indicated an extension that was not requested"));
            }
            let configs = &offers[0].1;
            match n {
                Negotiation::Offer(opts) => {
                    let params = normalize(configs, false)
                        .and_then(|r| accept_as_client(opts, r))
                        .map_err(|_| fail("Invalid Sec-WebSocket-Extensions header"))?;
                    Ok(Some(Agreement {
                        params,
                        server: false,
                        level: opts.level,
                        mem_level: opts.mem_level,
                    }))
                }
                Negotiation::Answer(a) => {
                    // The relay's echo of this end's own answer: it must say the same.
                    let same = normalize(configs, true).is_ok_and(|r| {
                        r.len() == 1
                            && r[0].0.len() == a.params.0.len()
                            && r[0].0.iter().all(|(k, v)| a.params.get(*k) == Some(*v))
                    });
                    if same {
                        Ok(Some(a.clone()))
                    } else {
                        Err(fail("Invalid Sec-WebSocket-Extensions header"))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(opts: DeflateOptions, header: &str) -> Result<Option<String>, String> {
        accept_offer(&opts, header).map(|a| a.map(|a| a.params.format()))
    }

    #[test]
    fn parses_like_ws() {
        let o = parse("foo; bar; baz=1; bar=2, permessage-deflate; x=\"a\\b\", foo").unwrap();
        assert_eq!(o.len(), 2);
        assert_eq!(o[0].0, "foo");
        assert_eq!(o[0].1.len(), 2);
        assert_eq!(
            o[0].1[0],
            vec![
                ("bar".into(), vec![None, Some("2".into())]),
                ("baz".into(), vec![Some("1".into())])
            ]
        );
        assert_eq!(o[1].1[0], vec![("x".into(), vec![Some("ab".into())])]);
        assert_eq!(
            parse("a;b=\"c\"").unwrap()[0].1[0][0].1[0].as_deref(),
            Some("c")
        );
        for (bad, err) in [
            ("", "Unexpected end of input"),
            ("foo ", "Unexpected end of input"),
            ("foo;b=\"c", "Unexpected end of input"),
            (",", "Unexpected character at index 0"),
            ("foo,,", "Unexpected character at index 4"),
            ("foo;=", "Unexpected character at index 4"),
            ("fo o", "Unexpected character at index 3"),
            ("foo; b=\"c d\"", "Unexpected character at index 9"),
            ("foo; b=\"\\ \"", "Unexpected character at index 9"),
            ("föo", "Unexpected character at index 1"),
        ] {
            assert_eq!(parse(bad).unwrap_err(), err, "{bad:?}");
        }
    }

    #[test]
    fn offers_as_ws() {
        let d = DeflateOptions::default();
        assert_eq!(offer(&d), "permessage-deflate; client_max_window_bits");
        let all = DeflateOptions {
            server_no_context_takeover: Some(true),
            client_no_context_takeover: Some(true),
            server_max_window_bits: WindowBits::Bits(10),
            client_max_window_bits: WindowBits::Bits(11),
            ..d
        };
        assert_eq!(
            offer(&all),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11"
        );
        let off = DeflateOptions {
            client_max_window_bits: WindowBits::Off,
            server_max_window_bits: WindowBits::Any,
            ..d
        };
        assert_eq!(offer(&off), "permessage-deflate; server_max_window_bits");
    }

    #[test]
    fn servers_choose_as_ws() {
        let d = DeflateOptions::default();
        let ok = |o, h| server(o, h).unwrap();
        assert_eq!(ok(d, "x-webkit-deflate-frame"), None);
        assert_eq!(
            ok(d, "permessage-deflate; client_max_window_bits").as_deref(),
            Some("permessage-deflate")
        );
        // A browser's offers: the first acceptable one wins.
        assert_eq!(
            ok(
                d,
                "permessage-deflate; client_max_window_bits, permessage-deflate"
            )
            .as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(
            ok(
                d,
                "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12"
            )
            .as_deref(),
            Some("permessage-deflate; server_max_window_bits=10; client_max_window_bits=12")
        );
        let strict = DeflateOptions {
            server_no_context_takeover: Some(true),
            client_no_context_takeover: Some(true),
            server_max_window_bits: WindowBits::Bits(11),
            client_max_window_bits: WindowBits::Bits(12),
            ..d
        };
        assert_eq!(
            ok(strict, "permessage-deflate; client_max_window_bits").as_deref(),
            Some("permessage-deflate; client_max_window_bits=12; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11")
        );
        // Offers it cannot take are passed over; none left is a 400.
        let no_nct = DeflateOptions {
            server_no_context_takeover: Some(false),
            ..d
        };
        assert_eq!(
            ok(
                no_nct,
                "permessage-deflate; server_no_context_takeover, permessage-deflate"
            )
            .as_deref(),
            Some("permessage-deflate")
        );
        let refused = "Invalid or unacceptable Sec-WebSocket-Extensions header";
        assert_eq!(
            server(no_nct, "permessage-deflate; server_no_context_takeover").unwrap_err(),
            refused
        );
        let bits = DeflateOptions {
            server_max_window_bits: WindowBits::Bits(12),
            client_max_window_bits: WindowBits::Bits(10),
            ..d
        };
        assert!(server(
            bits,
            "permessage-deflate; server_max_window_bits=11; client_max_window_bits"
        )
        .is_err());
        assert!(server(bits, "permessage-deflate").is_err());
        assert!(server(bits, "permessage-deflate; client_max_window_bits=9").is_err());
        let off = DeflateOptions {
            server_max_window_bits: WindowBits::Off,
            client_max_window_bits: WindowBits::Off,
            ..d
        };
        assert!(server(off, "permessage-deflate; server_max_window_bits=9").is_err());
        assert_eq!(
            ok(off, "permessage-deflate; client_max_window_bits=9").as_deref(),
            Some("permessage-deflate")
        );
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=1.5",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_max_window_bits=10; client_max_window_bits=11",
            "permessage-deflate, permessage-deflate; bad",
            "permessage-deflate;",
        ] {
            assert_eq!(server(d, bad).unwrap_err(), refused, "{bad}");
        }
        // Decimal only, as RFC 7692 and ws 8.23 (JavaScript's 0xa, 010, 1e1, 10.0, +10 are
        // refused).
        for odd in ["0xa", "010", "1e1", "10.0", "+10", "0b1010", "16", "7"] {
            let offer = format!("permessage-deflate; server_max_window_bits={odd}");
            assert_eq!(server(d, &offer).unwrap_err(), refused, "{odd}");
        }
        assert_eq!(
            ok(d, "permessage-deflate; server_max_window_bits=10").as_deref(),
            Some("permessage-deflate; server_max_window_bits=10")
        );
    }

    #[test]
    fn clients_check_answers_as_ws() {
        let d = DeflateOptions::default();
        let offer = Negotiation::Offer(d);
        let check =
            |n: &Negotiation, h: &str| check_answer(Some(n), Some(h)).map_err(|e| e.message);
        let a = check(
            &offer,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
        )
        .unwrap()
        .unwrap();
        assert!(!a.server);
        assert_eq!(a.deflate_window(), (15, false));
        assert_eq!(a.inflate_window(), (10, true));
        assert_eq!(
            check(&offer, "permessage-deflate; client_max_window_bits=9")
                .unwrap()
                .unwrap()
                .deflate_window(),
            (9, false)
        );
        assert_eq!(
            check(&offer, "permessage-deflate; client_max_window_bits").unwrap_err(),
            "Invalid Sec-WebSocket-Extensions header"
        );
        assert_eq!(
            check(&offer, "foo").unwrap_err(),
            "Server indicated an extension that was not requested"
        );
        assert_eq!(
            check(&offer, "permessage-deflate, foo").unwrap_err(),
            "Server indicated an extension that was not requested"
        );
        assert_eq!(
            check(&offer, "permessage-deflate;").unwrap_err(),
            "Invalid Sec-WebSocket-Extensions header"
        );
        assert_eq!(
            check_answer(None, Some("permessage-deflate"))
                .unwrap_err()
                .message,
            "Server sent a Sec-WebSocket-Extensions header but no extension was requested"
        );
        assert_eq!(check_answer(Some(&offer), None), Ok(None));
        let strict = Negotiation::Offer(DeflateOptions {
            client_no_context_takeover: Some(false),
            client_max_window_bits: WindowBits::Bits(10),
            ..d
        });
        assert!(check(&strict, "permessage-deflate; client_no_context_takeover").is_err());
        assert!(check(&strict, "permessage-deflate; client_max_window_bits=11").is_err());
        assert_eq!(
            check(&strict, "permessage-deflate")
                .unwrap()
                .unwrap()
                .params
                .format(),
            "permessage-deflate; client_max_window_bits=10"
        );
        // The accept socket: the deflate server over a client connection.
        let answer = accept_offer(&d, "permessage-deflate; server_no_context_takeover")
            .unwrap()
            .unwrap();
        assert!(answer.server);
        assert_eq!(answer.deflate_window(), (15, true));
        assert_eq!(answer.inflate_window(), (15, false));
        let n = Negotiation::Answer(answer.clone());
        assert_eq!(n.header(), "permessage-deflate; server_no_context_takeover");
        assert_eq!(check_answer(Some(&n), None), Ok(Some(answer.clone())));
        assert_eq!(
            check(&n, "permessage-deflate;server_no_context_takeover"),
            Ok(Some(answer.clone()))
        );
        assert!(check(&n, "permessage-deflate").is_err());
        assert_eq!(answered(&answer.params.format(), &d), Ok(answer));
        assert!(answered("foo", &d).is_err());
        assert!(is_answer("permessage-deflate; client_max_window_bits=10"));
        assert!(!is_answer("permessage-deflate; client_max_window_bits"));
        assert!(!is_answer("permessage-deflate, permessage-deflate"));
        assert!(!is_answer("foo"));
        assert!(answered("permessage-deflate, permessage-deflate", &d).is_err());
    }
}
