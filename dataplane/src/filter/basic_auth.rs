//! HTTP basic authentication against an htpasswd file: ingress-nginx's `auth-type:
//! basic`, which its template turns into nginx's `auth_basic` and
//! `auth_basic_user_file`, plus `proxy_set_header Authorization ""` so the endpoint
//! never sees the credentials.
//!
//! The file is parsed once, when the table is built, as nginx reads it: lines starting
//! with `#` are comments, a line is `user:hash[:comment]`, the first line naming a user
//! counts. A request without credentials, with an unknown user or a wrong password gets
//! 401 and `WWW-Authenticate: Basic realm="<realm>"`; a user whose hash cannot be
//! checked gets 500, as nginx answers when `crypt()` fails on it; a route whose Secret
//! could not be read gets 503 for everyone (ingress-nginx denies the location: it never
//! serves it unauthenticated).
//!
//! Hashes are those nginx accepts: `$apr1$` and `{SHA}`/`{SSHA}`/`{PLAIN}`, which nginx
//! checks itself, and what it hands to the C library's `crypt()` (ingress-nginx's image
//! links musl): DES, `$1$` (MD5), `$2a$`/`$2b$`/`$2y$` (bcrypt), `$5$`/`$6$` (SHA-crypt).
//!
//! bcrypt is slow on purpose: a check at cost 5 (`htpasswd -B`'s default) takes 1.8 ms,
//! 59 ms at cost 10, and each step doubles it, on the thread that serves the request
//! (measured on one core of the build machine, release build: `hash_check_costs`;
//! SHA-512-crypt 1.6 ms, apr1 0.13 ms, DES 4 us). So a
//! password once verified is remembered, as a salted SHA-256 of the user and password
//! (never the password), in a small cache per route that a new table starts afresh; a
//! wrong password is never remembered and pays the full check every time. Costs above
//! [`MAX_BCRYPT_COST`] are refused when the file is read.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, PoisonError};

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::StatusCode;
use http::header::{AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

use super::{Answer, Filter, Phases, RequestHead, UpstreamHead};

/// Highest bcrypt cost a hash may have: about 240 ms per check at 12 (the default of
/// Python's bcrypt), beyond which one request holds a thread long enough to take a
/// server down with a few wrong passwords a second.
pub const MAX_BCRYPT_COST: u32 = 12;
/// Highest `rounds=` a SHA-crypt hash may ask for: 10 times the default of 5000.
pub const MAX_SHA_CRYPT_ROUNDS: u32 = 50_000;
/// Passwords one route remembers as verified; when full, it starts afresh.
pub const VERIFIED_CACHE_ENTRIES: usize = 1024;

/// How a stored hash is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Hash {
    /// `$apr1$salt$digest` (Apache) or `$1$salt$digest` (crypt): one algorithm, two
    /// magic strings; `encoded` is the full hash as written.
    Md5 {
        magic: &'static [u8],
        salt: Vec<u8>,
        encoded: Vec<u8>,
    },
    /// `{SHA}base64(sha1(password))`.
    Sha1([u8; 20]),
    /// `{SSHA}base64(sha1(password + salt) + salt)`.
    SaltedSha1 { digest: [u8; 20], salt: Vec<u8> },
    /// `{PLAIN}password`.
    Plain(Vec<u8>),
    /// What nginx hands to `crypt()`: DES, bcrypt, SHA-crypt.
    Crypt(String),
}

/// A user's line: a hash to check, or one that cannot be checked (500 when the user
/// tries, as nginx answers).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Hash(Hash),
    Unusable,
}

/// The users of one htpasswd file, each with the hash of their first line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    users: HashMap<Vec<u8>, Entry>,
}

/// A line of an htpasswd file that will not let its user in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based.
    pub line: usize,
    /// The user it names, lossily decoded.
    pub user: String,
    pub why: String,
}

impl Credentials {
    /// Reads an htpasswd file (a Secret's `auth` key). Lines that name no user or have a
    /// hash nginx could not check are reported; the other users still get in.
    pub fn from_htpasswd(text: &[u8]) -> (Credentials, Vec<BadLine>) {
        let mut users = HashMap::new();
        let mut bad = Vec::new();
        for (index, line) in text.split(|&b| b == b'\n').enumerate() {
            let mut report = |user: &[u8], why: String| {
                bad.push(BadLine {
                    line: index + 1,
                    user: String::from_utf8_lossy(user).into_owned(),
                    why,
                })
            };
            if line.is_empty() || line[0] == b'#' || line[0] == b'\r' {
                continue;
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                report(b"", "has no \":\" between a user and a hash".to_string());
                continue;
            };
            let user = &line[..colon];
            let rest = &line[colon + 1..];
            // nginx ends the hash at a colon (a comment follows) or a carriage return.
            let hash = rest.split(|&b| b == b':' || b == b'\r').next().unwrap_or_default();
            if users.contains_key(user) {
                report(
                    user,
                    "names a user an earlier line already has; the first line counts".to_string(),
                );
                continue;
            }
            let entry = match parse_hash(hash) {
                Ok(h) => Entry::Hash(h),
                Err(why) => {
                    report(user, format!("{why}; this user gets 500, as from nginx"));
                    Entry::Unusable
                }
            };
            users.insert(user.to_vec(), entry);
        }
        (Credentials { users }, bad)
    }

    /// ingress-nginx's `auth-secret-type: auth-map`: each key of the Secret is a user,
    /// its value the hash. ingress-nginx writes `key:value` lines and hands them to
    /// nginx, which is what this does too.
    pub fn from_map<'a>(entries: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> (Credentials, Vec<BadLine>) {
        let mut text = Vec::new();
        for (user, hash) in entries {
            text.extend_from_slice(user.as_bytes());
            text.push(b':');
            text.extend_from_slice(hash);
            text.push(b'\n');
        }
        Credentials::from_htpasswd(&text)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

fn is_crypt64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'/'
}

/// What kind of hash `hash` is, checked for the shape its scheme has so that a request
/// never runs a check that cannot succeed (or, for bcrypt, that takes too long).
fn parse_hash(hash: &[u8]) -> Result<Hash, String> {
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.decode(s).ok();
    if let Some(rest) = hash.strip_prefix(b"{PLAIN}") {
        return Ok(Hash::Plain(rest.to_vec()));
    }
    if let Some(rest) = hash.strip_prefix(b"{SHA}") {
        return b64(rest)
            .and_then(|d| <[u8; 20]>::try_from(d.as_slice()).ok())
            .map(Hash::Sha1)
            .ok_or_else(|| "has a {SHA} hash that is not the base64 of 20 bytes".to_string());
    }
    if let Some(rest) = hash.strip_prefix(b"{SSHA}") {
        return match b64(rest) {
            Some(d) if d.len() > 20 => {
                let (digest, salt) = d.split_at(20);
                Ok(Hash::SaltedSha1 {
                    digest: digest.try_into().map_err(|_| String::new())?,
                    salt: salt.to_vec(),
                })
            }
            _ => Err("has a {SSHA} hash that is not the base64 of 20 bytes and a salt".to_string()),
        };
    }
    for magic in [&b"$apr1$"[..], b"$1$"] {
        if let Some(rest) = hash.strip_prefix(magic) {
            let mut parts = rest.splitn(2, |&b| b == b'$');
            let salt = parts.next().unwrap_or_default();
            let digest = parts.next().unwrap_or_default();
            if salt.len() > 8 || digest.len() != 22 || !digest.iter().all(|&b| is_crypt64(b)) {
                return Err(
                    "has an MD5 hash that is not $apr1$ or $1$, a salt of up to 8 characters, $ and 22 characters"
                        .to_string(),
                );
            }
            return Ok(Hash::Md5 {
                magic,
                salt: salt.to_vec(),
                encoded: hash.to_vec(),
            });
        }
    }
    let text = std::str::from_utf8(hash).map_err(|_| "has a hash that is not ASCII".to_string())?;
    if let Some(rest) = ["$2a$", "$2b$", "$2y$"].iter().find_map(|m| text.strip_prefix(m)) {
        let bytes = rest.as_bytes();
        let cost = rest.get(..2).and_then(|c| c.parse::<u32>().ok());
        let shape = bytes.len() == 56 && bytes[2] == b'$' && bytes[3..].iter().all(|&b| is_crypt64(b));
        return match cost {
            Some(cost) if shape && (4..=MAX_BCRYPT_COST).contains(&cost) => Ok(Hash::Crypt(text.to_string())),
            Some(cost) if shape && cost > MAX_BCRYPT_COST => Err(format!(
                "has a bcrypt hash of cost {cost}; Portico checks costs up to {MAX_BCRYPT_COST} (each step doubles the time a request holds a thread)"
            )),
            _ => Err("has a bcrypt hash that is not $2y$, two digits of cost from 04, $ and 53 characters".to_string()),
        };
    }
    if let Some((len, rest)) = [(43, "$5$"), (86, "$6$")]
        .iter()
        .find_map(|&(len, m)| Some((len, text.strip_prefix(m)?)))
    {
        let (rounds, rest) = match rest.strip_prefix("rounds=").and_then(|r| r.split_once('$')) {
            Some((n, rest)) => (n.parse::<u32>().ok(), rest),
            None => (Some(5000), rest),
        };
        let shape = rest
            .split_once('$')
            .is_some_and(|(salt, digest)| salt.len() <= 16 && digest.len() == len && digest.bytes().all(is_crypt64));
        return match rounds {
            Some(r) if shape && r <= MAX_SHA_CRYPT_ROUNDS => Ok(Hash::Crypt(text.to_string())),
            Some(r) if shape => Err(format!(
                "has a SHA-crypt hash of {r} rounds; Portico checks up to {MAX_SHA_CRYPT_ROUNDS}"
            )),
            _ => Err("has a SHA-crypt hash that is not $5$ or $6$, a salt, $ and the digest".to_string()),
        };
    }
    if text.len() == 13 && text.bytes().all(is_crypt64) {
        return Ok(Hash::Crypt(text.to_string()));
    }
    if text.is_empty() {
        return Err("has no hash".to_string());
    }
    Err("has a hash nginx cannot check (bcrypt $2y$, $apr1$, {SHA}, SHA-crypt $5$/$6$, MD5 $1$ or 13-character DES crypt)".to_string())
}

/// Compares without an early exit, so the time taken says nothing of where a guess
/// went wrong.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const CRYPT64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Poul-Henning Kamp's MD5-crypt, which Apache's `$apr1$` repeats with its own magic.
fn md5_crypt(password: &[u8], magic: &[u8], salt: &[u8]) -> Vec<u8> {
    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt = alt.finalize();
    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(magic);
    ctx.update(salt);
    for chunk in password.chunks(16) {
        ctx.update(&alt[..chunk.len()]);
    }
    let mut i = password.len();
    while i != 0 {
        if i & 1 != 0 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut sum = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 != 0 {
            c.update(password);
        } else {
            c.update(sum);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 != 0 {
            c.update(sum);
        } else {
            c.update(password);
        }
        sum = c.finalize();
    }
    let mut out = Vec::with_capacity(magic.len() + salt.len() + 23);
    out.extend_from_slice(magic);
    out.extend_from_slice(salt);
    out.push(b'$');
    let mut put = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out.push(CRYPT64[(v & 0x3f) as usize]);
            v >>= 6;
        }
    };
    let s = |i: usize| u32::from(sum[i]);
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put((s(a) << 16) | (s(b) << 8) | s(c), 4);
    }
    put(s(11), 2);
    out
}

/// What a check of the credentials says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Allowed,
    /// 401 with the challenge.
    Refused,
    /// 500: the user's hash cannot be checked.
    Unusable,
}

impl Hash {
    fn verify(&self, password: &[u8]) -> Verdict {
        let ok = match self {
            Hash::Md5 { magic, salt, encoded } => same(&md5_crypt(password, magic, salt), encoded),
            Hash::Sha1(digest) => same(&Sha1::digest(password), digest),
            Hash::SaltedSha1 { digest, salt } => {
                let mut h = Sha1::new();
                h.update(password);
                h.update(salt);
                same(&h.finalize(), digest)
            }
            Hash::Plain(p) => same(password, p),
            Hash::Crypt(hash) => match pwhash::unix::crypt(password, hash) {
                Ok(computed) => same(computed.as_bytes(), hash.as_bytes()),
                Err(_) => return Verdict::Unusable,
            },
        };
        if ok { Verdict::Allowed } else { Verdict::Refused }
    }
}

/// `user` and `password` from `Authorization: Basic base64(user:password)`.
fn basic_credentials(value: &HeaderValue) -> Option<(Vec<u8>, Vec<u8>)> {
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let v = value.as_bytes();
    if v.len() < 6 || !v[..6].eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let encoded = v[6..].trim_ascii();
    let decoded = ENGINE.decode(encoded).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

/// The verified-credentials cache: salted SHA-256 digests of `user:password` pairs a
/// check let in.
#[derive(Debug)]
struct Verified {
    salt: [u8; 16],
    digests: Mutex<HashSet<[u8; 32]>>,
}

impl Verified {
    fn new() -> Verified {
        // Two independently seeded hashers: random enough for a salt, no new crate.
        let mut salt = [0u8; 16];
        for half in salt.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u8(0);
            half.copy_from_slice(&h.finish().to_le_bytes());
        }
        Verified {
            salt,
            digests: Mutex::new(HashSet::new()),
        }
    }

    fn key(&self, user: &[u8], password: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update((user.len() as u64).to_le_bytes());
        h.update(user);
        h.update(password);
        h.finalize().into()
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        self.digests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(key)
    }

    fn insert(&self, key: [u8; 32]) {
        let mut set = self.digests.lock().unwrap_or_else(PoisonError::into_inner);
        if set.len() >= VERIFIED_CACHE_ENTRIES {
            set.clear();
        }
        set.insert(key);
    }
}

/// The filter: the realm's challenge and the users, or nothing when the Secret could
/// not be read (every request then gets 503).
#[derive(Debug)]
pub struct BasicAuth {
    realm: String,
    challenge: HeaderValue,
    credentials: Option<Credentials>,
    verified: Verified,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("realm {0:?} has a character a header value cannot carry")]
pub struct InvalidRealm(pub String);

impl BasicAuth {
    /// Users from `credentials` get in; the realm is quoted into the challenge.
    pub fn new(realm: &str, credentials: Credentials) -> Result<BasicAuth, InvalidRealm> {
        let quoted = realm.replace('\\', "\\\\").replace('"', "\\\"");
        let challenge =
            HeaderValue::from_str(&format!("Basic realm=\"{quoted}\"")).map_err(|_| InvalidRealm(realm.to_string()))?;
        Ok(BasicAuth {
            challenge,
            credentials: Some(credentials),
            ..Self::unavailable(realm)
        })
    }

    /// Nobody gets in: every request gets 503 (the Secret is missing or unreadable).
    pub fn unavailable(realm: &str) -> BasicAuth {
        BasicAuth {
            realm: realm.to_string(),
            // Never sent: a 503 carries no challenge.
            challenge: HeaderValue::from_static("Basic realm=\"\""),
            credentials: None,
            verified: Verified::new(),
        }
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// How many users may get in; `None` when nobody can (503).
    pub fn users(&self) -> Option<usize> {
        self.credentials.as_ref().map(Credentials::len)
    }

    fn check(&self, credentials: &Credentials, authorization: Option<&HeaderValue>) -> Verdict {
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return Verdict::Refused;
        };
        let Some(entry) = credentials.users.get(&user) else {
            return Verdict::Refused;
        };
        let Entry::Hash(hash) = entry else {
            return Verdict::Unusable;
        };
        let key = self.verified.key(&user, &password);
        if self.verified.contains(&key) {
            return Verdict::Allowed;
        }
        let verdict = hash.verify(&password);
        if verdict == Verdict::Allowed {
            self.verified.insert(key);
        }
        verdict
    }
}

impl Filter for BasicAuth {
    fn request(&self, req: &RequestHead<'_>) -> Option<Answer> {
        let mut headers = HeaderMap::new();
        let status = match &self.credentials {
            None => StatusCode::SERVICE_UNAVAILABLE,
            Some(c) => match self.check(c, req.headers.get(AUTHORIZATION)) {
                Verdict::Allowed => return None,
                Verdict::Unusable => StatusCode::INTERNAL_SERVER_ERROR,
                Verdict::Refused => {
                    headers.insert(WWW_AUTHENTICATE, self.challenge.clone());
                    StatusCode::UNAUTHORIZED
                }
            },
        };
        Some(Answer::Status { status, headers })
    }

    /// The template's `proxy_set_header Authorization ""`: the endpoint never sees the
    /// password.
    fn upstream_request(&self, req: &mut UpstreamHead<'_>) {
        req.headers.remove(AUTHORIZATION);
    }

    fn header_names(&self) -> Option<Vec<http::header::HeaderName>> {
        Some(vec![AUTHORIZATION])
    }

    fn phases(&self) -> Phases {
        Phases {
            request: true,
            upstream_request: true,
            ..Phases::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_password: &str) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_password);
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    fn auth(file: &[u8]) -> BasicAuth {
        let (credentials, bad) = Credentials::from_htpasswd(file);
        assert_eq!(bad, vec![], "{}", String::from_utf8_lossy(file));
        BasicAuth::new("test auth", credentials).unwrap()
    }

    fn verdict(a: &BasicAuth, header: Option<HeaderValue>) -> Verdict {
        a.check(a.credentials.as_ref().unwrap(), header.as_ref())
    }

    /// `foo`'s line with password `bar`, in every scheme nginx's auth_basic accepts
    /// (hashes made by openssl passwd, glibc's crypt() and Python's hashlib).
    const BAR: &[&[u8]] = &[
        b"foo:$apr1$OFG3Xybp$ckL0FHDAkoXYIlH9.cysT0",
        b"foo:$1$saltsalt$56ibbfTGLAsNdA0n6U1Nn/",
        b"foo:$2y$05$abcdefghijklmnopqrstuuUq7qXkDOZJ5Q8HA9wCOH0FErWp6q0b6",
        b"foo:$2b$05$abcdefghijklmnopqrstuuUq7qXkDOZJ5Q8HA9wCOH0FErWp6q0b6",
        b"foo:$2a$05$abcdefghijklmnopqrstuuUq7qXkDOZJ5Q8HA9wCOH0FErWp6q0b6",
        b"foo:$5$saltsalt$/CnP1OkUPI/YYxBjMGRYh.bV5VNRz1I7OKD4GRMrHm4",
        b"foo:$6$saltsalt$13ZWs86TCGWlKvPnoiZ5uGRk0I6FWQWsoBjy.0NUb9IUt/pnMWcsVBWPeXm2zbrm1/3NvnFsJFn2dIliX8SAJ/",
        b"foo:{SHA}Ys23Ag/5IOWqZCw9QGaVDdHwH00=",
        b"foo:{SSHA}aTajYe2SJsRWrbKsIV9ZttXLp9RzYWx0",
        b"foo:{PLAIN}bar",
        b"foo:ab9VHpu2/1Qrs",
    ];

    /// Every hash nginx's auth_basic accepts lets `foo` in with `bar` and refuses `baz`.
    #[test]
    fn each_hash_scheme_nginx_accepts_checks_the_password() {
        for &line in BAR {
            let a = auth(line);
            let name = String::from_utf8_lossy(line);
            assert_eq!(verdict(&a, Some(basic("foo:bar"))), Verdict::Allowed, "{name}");
            assert_eq!(verdict(&a, Some(basic("foo:baz"))), Verdict::Refused, "{name}");
        }
    }

    /// MD5-crypt's edge cases: an empty password, and one longer than a digest.
    #[test]
    fn apr1_handles_empty_and_long_passwords() {
        assert_eq!(md5_crypt(b"", b"$apr1$", b"a"), b"$apr1$a$lsAcX0kKaMIVmrCtUuk5b0");
        assert_eq!(
            md5_crypt(b"a-much-longer-password-than-16-bytes", b"$apr1$", b"xy"),
            b"$apr1$xy$666XLPaqdUBDpS7j92X8./"
        );
    }

    /// No credentials, another scheme, bad base64, no colon, an unknown user: 401.
    #[test]
    fn anything_but_valid_credentials_is_refused() {
        let a = auth(b"foo:{PLAIN}bar\n");
        for header in [
            None,
            Some(HeaderValue::from_static("Bearer Zm9vOmJhcg==")),
            Some(HeaderValue::from_static("Basic !!!")),
            Some(basic("foobar")),
            Some(basic("bar:bar")),
            Some(basic("foo:bar ")),
        ] {
            assert_eq!(verdict(&a, header.clone()), Verdict::Refused, "{header:?}");
        }
        // The scheme is case-insensitive, padding optional, as in nginx.
        assert_eq!(
            verdict(&a, Some(HeaderValue::from_static("bAsIc   Zm9vOmJhcg"))),
            Verdict::Allowed
        );
    }

    /// Comments, blank lines and CRLF endings are skipped; the hash ends at a colon;
    /// the first line of a user counts.
    #[test]
    fn htpasswd_lines_are_read_as_nginx_reads_them() {
        let (c, bad) =
            Credentials::from_htpasswd(b"# users\r\n\r\nfoo:{PLAIN}bar:comment\r\nfoo:{PLAIN}other\n\nbaz:{PLAIN}qux");
        assert_eq!(c.len(), 2);
        assert_eq!(bad.len(), 1);
        assert_eq!((bad[0].line, bad[0].user.as_str()), (4, "foo"));
        let a = BasicAuth::new("", c).unwrap();
        assert_eq!(verdict(&a, Some(basic("foo:bar"))), Verdict::Allowed);
        assert_eq!(verdict(&a, Some(basic("foo:other"))), Verdict::Refused);
        assert_eq!(verdict(&a, Some(basic("baz:qux"))), Verdict::Allowed);
    }

    /// A hash nginx could not check is reported and answers 500 for its user only
    /// (ingress-nginx's e2e test: `auth: "foo:"` gives 500); lines without a colon are
    /// reported and skipped.
    #[test]
    fn unusable_hashes_are_reported_and_fail_for_their_user_only() {
        let cases: &[(&[u8], &str)] = &[
            (b"foo:", "has no hash"),
            (
                b"foo:$2y$13$abcdefghijklmnopqrstuuUq7qXkDOZJ5Q8HA9wCOH0FErWp6q0b6",
                "cost 13",
            ),
            (
                b"foo:$2y$5$abcdefghijklmnopqrstuuUq7qXkDOZJ5Q8HA9wCOH0FErWp6q0b6",
                "two digits",
            ),
            (b"foo:$apr1$toolongsalt$ckL0FHDAkoXYIlH9.cysT0", "up to 8"),
            (b"foo:{SHA}short", "20 bytes"),
            (
                b"foo:$5$rounds=999999999$salt$/CnP1OkUPI/YYxBjMGRYh.bV5VNRz1I7OKD4GRMrHm4",
                "rounds",
            ),
            (b"foo:$y$j9T$salt$hash", "cannot check"),
            (b"foo:\xff\xfe", "not ASCII"),
        ];
        for &(line, why) in cases {
            let mut file = line.to_vec();
            file.extend_from_slice(b"\nok:{PLAIN}pw\nno colon here\n");
            let (c, bad) = Credentials::from_htpasswd(&file);
            assert_eq!(bad.len(), 2, "{bad:?}");
            assert!(bad[0].why.contains(why), "{:?} lacks {why:?}", bad[0].why);
            assert_eq!(bad[1].line, 3);
            let a = BasicAuth::new("r", c).unwrap();
            assert_eq!(verdict(&a, Some(basic("foo:bar"))), Verdict::Unusable);
            assert_eq!(verdict(&a, Some(basic("ok:pw"))), Verdict::Allowed);
        }
    }

    /// auth-map: each key a user, each value a hash, with the file's rules.
    #[test]
    fn auth_map_entries_are_users() {
        let (c, bad) = Credentials::from_map([("foo", &b"{PLAIN}bar"[..]), ("baz", b"{PLAIN}qux\n")]);
        assert_eq!((c.len(), bad), (2, vec![]));
        let a = BasicAuth::new("", c).unwrap();
        assert_eq!(verdict(&a, Some(basic("baz:qux"))), Verdict::Allowed);
    }

    /// A 401 carries the realm's challenge; the route phase answers 503 for everyone
    /// when the Secret could not be read; the endpoint never sees `Authorization`.
    #[test]
    fn answers_and_the_upstream_request() {
        let cfg = crate::config::ProxyConfig::default();
        let uri: http::Uri = "/".parse().unwrap();
        let mut headers = HeaderMap::new();
        let head = |headers: &HeaderMap| -> Option<Answer> {
            let a = BasicAuth::new("say \"hi\"", Credentials::from_htpasswd(b"foo:{PLAIN}bar").0).unwrap();
            a.request(&RequestHead {
                method: &http::Method::GET,
                uri: &uri,
                headers,
                host: "h",
                tls: false,
                client: std::net::IpAddr::from([192, 0, 2, 1]),
                cfg: &cfg,
                client_cert: None,
            })
        };
        let Some(Answer::Status { status, headers: h }) = head(&headers) else {
            panic!("no answer")
        };
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(h[WWW_AUTHENTICATE], "Basic realm=\"say \\\"hi\\\"\"");
        headers.insert(AUTHORIZATION, basic("foo:bar"));
        assert_eq!(head(&headers), None);

        let down = BasicAuth::unavailable("r");
        let answer = down.request(&RequestHead {
            method: &http::Method::GET,
            uri: &uri,
            headers: &headers,
            host: "h",
            tls: false,
            client: std::net::IpAddr::from([192, 0, 2, 1]),
            cfg: &cfg,
            client_cert: None,
        });
        assert!(matches!(
            answer,
            Some(Answer::Status {
                status: StatusCode::SERVICE_UNAVAILABLE,
                ..
            })
        ));

        let mut upstream = UpstreamHead {
            headers: &mut headers,
            uri: &uri,
            host: None,
            path_and_query: None,
            tls: false,
            client_cert: None,
        };
        down.upstream_request(&mut upstream);
        assert!(!headers.contains_key(AUTHORIZATION));
        assert!(BasicAuth::new("bad\nrealm", Credentials::default()).is_err());
    }

    /// A verified password is remembered (the second check skips bcrypt); a wrong
    /// one never is.
    #[test]
    fn verified_passwords_are_cached_and_wrong_ones_are_not() {
        let a = auth(b"foo:$2y$05$abcdefghijklmnopqrstuuUq7qXkDOZJ5Q8HA9wCOH0FErWp6q0b6");
        let key = a.verified.key(b"foo", b"bar");
        assert!(!a.verified.contains(&key));
        assert_eq!(verdict(&a, Some(basic("foo:bar"))), Verdict::Allowed);
        assert!(a.verified.contains(&key));
        assert_eq!(verdict(&a, Some(basic("foo:baz"))), Verdict::Refused);
        assert!(!a.verified.contains(&a.verified.key(b"foo", b"baz")));
        assert_eq!(a.verified.digests.lock().unwrap().len(), 1);
    }

    /// What a check costs per scheme, uncached (run with `--ignored --nocapture`).
    #[test]
    #[ignore = "a measurement"]
    fn hash_check_costs() {
        let cost_10: &[u8] = b"foo:$2y$10$abcdefghijklmnopqrstuudO6teB13oFvk/9EbehmiFkbrz5oWBUO";
        for &line in BAR.iter().chain([&cost_10]) {
            let (c, _) = Credentials::from_htpasswd(line);
            let Some(Entry::Hash(h)) = c.users.get(&b"foo"[..]) else {
                panic!()
            };
            let start = std::time::Instant::now();
            for _ in 0..5 {
                assert_eq!(h.verify(b"bar"), Verdict::Allowed);
            }
            println!("{}: {:?}", String::from_utf8_lossy(line), start.elapsed() / 5);
        }
    }
}
