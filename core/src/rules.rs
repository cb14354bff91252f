//! How strictly the helpers read their arguments: strictly (the default), or as Microsoft's
//! hyco-ws did where what it did is well defined, for code written against it (the
//! `hyco-ws-rs/hyco-ws` entry point).

/// The argument rules of the token and address helpers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rules {
    /// Empty keys and paths and negative lifetimes are refused.
    #[default]
    Strict,
    /// hyco-ws's: an empty key signs (HMAC takes any key), a negative lifetime gives a token
    /// that has already expired, an empty path gives the address of `/$hc/`. An empty or
    /// missing key name is still refused: hyco-ws wrote `skn=` or `skn=null` into a token no
    /// service accepts.
    HycoWs,
}

impl Rules {
    /// The rules for `hyco_ws` (a flag from JavaScript).
    pub fn hyco_ws_if(hyco_ws: bool) -> Rules {
        if hyco_ws {
            Rules::HycoWs
        } else {
            Rules::Strict
        }
    }

    /// Whether an empty key may sign a token.
    pub fn empty_key(self) -> bool {
        self == Rules::HycoWs
    }

    /// Whether a negative lifetime is taken (an already expired token).
    pub fn past_expiry(self) -> bool {
        self == Rules::HycoWs
    }

    /// Whether an address may have an empty Hybrid Connection path.
    pub fn empty_path(self) -> bool {
        self == Rules::HycoWs
    }
}
